import Checkpoints
import Foundation
@testable import Models
import Tensor
import Testing

@Suite(.serialized, .timeLimit(.minutes(10)))
final class FluxLoRATests {
    func model() throws -> FluxTransformer {
        try FluxTransformer.load(from: CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/diffusers")))
    }

    /// Unmerged peft LoRA on every Linear (split q/k/v and proj_mlp on fused layers, swapped final modulation) equals
    /// diffusers running the merged weights W + B·A.
    @Test func peftLoRAMatchesMergedDiffusers() throws {
        let m = try model()
        let lora = try FluxLoRA.load(CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/lora-peft.safetensors")), config: m.config)
        #expect((Set(lora.adapters["double_blocks.0.img_attn.qkv"]?.parts.map(\.outputOffset) ?? [])) == [0, 64, 128])
        #expect((lora.adapters["single_blocks.1.linear1"]?.parts.count) == 4)
        let inp = fluxInputs(try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b2.safetensors")))
        let ref = try loadTensors(fluxFixtures.appendingPathComponent("guidance/lora_outputs_b2.safetensors"))["sample"]!
        let out = try m.forward(inp, options: FluxForwardOptions(lora: lora))
        #expect(relErr(out, ref) <= 1e-4)
        let plain = try loadTensors(fluxFixtures.appendingPathComponent("guidance/outputs_b2.safetensors"))["sample"]!
        #expect(relErr(plain, ref) > 1e-2, "the LoRA must change the output")
        #expect(relErr(try m.forward(inp), plain) <= 1e-4, "no LoRA passed = base model")
    }

    /// Kohya files with BFL names carry one pair per fused layer; stacking the split pairs block-diagonally (alpha =
    /// total rank ⇒ scale 1) must give the same forward.
    @Test func kohyaFusedLoRAEqualsSplitPeftLoRA() throws {
        let m = try model()
        let peftSet = try CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/lora-peft.safetensors"))
        let peft = try FluxLoRA.load(peftSet, config: m.config)
        var entries: [(String, Tensor)] = []
        for (linear, adapter) in peft.adapters.sorted(by: { $0.key < $1.key }) {
            let inF = adapter.parts[0].down.shape[1]
            let totalR = adapter.parts.reduce(0) { $0 + $1.down.shape[0] }
            let outF = adapter.parts.map { $0.outputOffset + $0.up.shape[0] }.max()!
            let down = Tensor(zeros: [totalR, inF]), up = Tensor(zeros: [outF, totalR])
            var r0 = 0
            for p in adapter.parts {
                let r = p.down.shape[0]
                down.copyValues(from: p.down, count: r * inF, to: r0 * inF)
                for o in 0..<p.up.shape[0] { for j in 0..<r { up[flat: (p.outputOffset + o) * totalR + r0 + j] = p.up[flat: o * r + j] } }
                r0 += r
            }
            let key = "lora_unet_" + linear.replacingOccurrences(of: ".", with: "_")
            entries += [(key + ".lora_down.weight", down), (key + ".lora_up.weight", up),
                        (key + ".alpha", Tensor(shape: [], values: [Float(totalR)]))]
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kohya-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsWriter.write(tensors: entries, to: url)
        let kohya = try FluxLoRA.load(CheckpointSet(url: url), config: m.config)
        #expect(Set(kohya.adapters.keys) == Set(peft.adapters.keys))
        let inp = fluxInputs(try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b1.safetensors")))
        let a = try m.forward(inp, options: FluxForwardOptions(lora: peft))
        let b = try m.forward(inp, options: FluxForwardOptions(lora: kohya))
        #expect(relErr(b, a) <= 1e-5)
    }

    @Test func unknownLoRAKeysAreListed() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("badlora-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsWriter.write(tensors: [
            ("transformer.transformer_blocks.0.attn.to_nope.lora_A.weight", Tensor(zeros: [2, 64])),
            ("transformer.transformer_blocks.0.attn.to_nope.lora_B.weight", Tensor(zeros: [64, 2])),
        ], to: url)
        let cfg = try model().config
        if let e = #expect(throws: (any Error).self, performing: { _ = try FluxLoRA.load(CheckpointSet(url: url), config: cfg) }) {
            #expect(((e as? CheckpointError)?.code) == .unexpectedKeys)
            #expect("\(e)".contains("to_nope"))
        }
    }
}
