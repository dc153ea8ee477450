import Checkpoints
import Foundation
import Models
import Tensor
import Testing

let fluxFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/flux")

func loadTensors(_ url: URL) throws -> [String: Tensor] {
    try SafeTensorsFile(url: url).allTensors()
}

func fluxInputs(_ t: [String: Tensor]) -> FluxInputs {
    FluxInputs(hiddenStates: t["hidden_states"]!, encoderHiddenStates: t["encoder_hidden_states"]!,
               pooledProjections: t["pooled_projections"]!, timestep: t["timestep"]!.toArray(),
               guidance: t["guidance"]?.toArray(), imgIds: t["img_ids"]!, txtIds: t["txt_ids"]!)
}

/// max |a − b| / max |b|
func relErr(_ a: Tensor, _ b: Tensor) -> Float { a.maxAbsDifference(b) / max(b.maxAbs(), 1e-12) }

@Suite(.serialized, .timeLimit(.minutes(10)))
final class FluxTransformerTests {
    func check(variant: String, weights: URL, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let model = try FluxTransformer.load(from: CheckpointSet(url: weights))
        for batch in [1, 2] {
            let inp = try loadTensors(fluxFixtures.appendingPathComponent("\(variant)/inputs_b\(batch).safetensors"))
            let ref = try loadTensors(fluxFixtures.appendingPathComponent("\(variant)/outputs_b\(batch).safetensors"))["sample"]!
            let out = try model.forward(fluxInputs(inp))
            #expect(out.shape == ref.shape, sourceLocation: sourceLocation)
            let e = relErr(out, ref)
            #expect(e <= 1e-4, "\(variant) \(weights.lastPathComponent) batch \(batch): rel err \(e)", sourceLocation: sourceLocation)
        }
    }

    @Test func diffusersLayoutWithGuidance() throws {
        try check(variant: "guidance", weights: fluxFixtures.appendingPathComponent("guidance/diffusers"))
    }

    @Test func bFLLayoutWithGuidance() throws {
        try check(variant: "guidance", weights: fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors"))
    }

    @Test func diffusersLayoutWithoutGuidance() throws {
        try check(variant: "plain", weights: fluxFixtures.appendingPathComponent("plain/diffusers"))
    }

    @Test func bFLLayoutWithoutGuidance() throws {
        try check(variant: "plain", weights: fluxFixtures.appendingPathComponent("plain/flux-bfl.safetensors"))
    }

    @Test func configFromJSONMatchesDetectedFromShapes() throws {
        let json = try FluxConfig(diffusersConfigJSON: Data(contentsOf: fluxFixtures.appendingPathComponent("guidance/diffusers/config.json")))
        let bfl = try CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors"))
        let (layout, prefix) = try FluxWeightMap.detect(names: bfl.names)
        #expect(layout == .bfl)
        let detected = try FluxConfig(detectingFrom: FluxWeightMap.canonicalShapes(of: bfl, layout: layout, prefix: prefix))
        #expect(json == detected)
        #expect(json.hiddenSize == 64)
        #expect(json.axesDim == [4, 14, 14])
        #expect(json.guidanceEmbed)
    }

    /// ComfyUI single files prefix BFL keys with `model.diffusion_model.` and may carry other components' keys.
    @Test func comfyPrefixLoadsLikeBFL() throws {
        let src = try loadTensors(fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("comfy-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: tmp) }
        var entries = src.keys.sorted().map { (FluxWeightMap.comfyPrefix + $0, src[$0]!) }
        entries.append(("vae.decoder.conv_in.weight", Tensor(zeros: [2, 2])))
        try SafeTensorsWriter.write(tensors: entries, to: tmp)
        let model = try FluxTransformer.load(from: CheckpointSet(url: tmp))
        let inp = try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b1.safetensors"))
        let ref = try loadTensors(fluxFixtures.appendingPathComponent("guidance/outputs_b1.safetensors"))["sample"]!
        #expect(relErr(try model.forward(fluxInputs(inp)), ref) <= 1e-4)
    }

    @Test func lazyAndResidentWeightsAgree() throws {
        let set = try CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/diffusers"))
        let lazy = try FluxTransformer.load(from: set)
        let resident = try FluxTransformer.load(from: set, residentWeights: true)
        if case .resident = lazy.doubleBlocks[0].imgQKV.weight { Issue.record("bf16 weights should load lazily") }
        let inp = fluxInputs(try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b2.safetensors")))
        // Lazy bf16 weights run in place (dequantized per 64-row panel, then sgemm): the same float32 products as
        // the resident weights, summed per panel, so equal up to float32 rounding.
        #expect(relErr(try lazy.forward(inp), try resident.forward(inp)) <= 1e-6)
    }

    @Test func missingAndUnexpectedKeysAreListed() throws {
        let src = try loadTensors(fluxFixtures.appendingPathComponent("guidance/diffusers/diffusion_pytorch_model.safetensors"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flux-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = try FluxConfig(diffusersConfigJSON: Data(contentsOf: fluxFixtures.appendingPathComponent("guidance/diffusers/config.json")))

        var missing = src
        missing["transformer_blocks.1.attn.add_k_proj.weight"] = nil
        let f1 = dir.appendingPathComponent("missing.safetensors")
        try SafeTensorsWriter.write(tensors: missing.keys.sorted().map { ($0, missing[$0]!) }, to: f1)
        if let e = #expect(throws: (any Error).self, performing: { _ = try FluxTransformer.load(from: CheckpointSet(url: f1), config: cfg) }) {
            let err = e as? CheckpointError
            #expect((err?.code) == .missingKeys)
            #expect(err?.message.contains("transformer_blocks.1.attn.add_k_proj.weight") ?? false, "\(e)")
        }

        var extra = src
        extra["transformer_blocks.0.attn.bogus.weight"] = Tensor(zeros: [3])
        let f2 = dir.appendingPathComponent("extra.safetensors")
        try SafeTensorsWriter.write(tensors: extra.keys.sorted().map { ($0, extra[$0]!) }, to: f2)
        if let e = #expect(throws: (any Error).self, performing: { _ = try FluxTransformer.load(from: CheckpointSet(url: f2), config: cfg) }) {
            let err = e as? CheckpointError
            #expect((err?.code) == .unexpectedKeys)
            #expect(err?.message.contains("transformer_blocks.0.attn.bogus.weight") ?? false, "\(e)")
        }

        var wrong = src
        wrong["proj_out.weight"] = Tensor(zeros: [15, 64])
        let f3 = dir.appendingPathComponent("shape.safetensors")
        try SafeTensorsWriter.write(tensors: wrong.keys.sorted().map { ($0, wrong[$0]!) }, to: f3)
        if let e = #expect(throws: (any Error).self, performing: { _ = try FluxTransformer.load(from: CheckpointSet(url: f3), config: cfg) }) {
            #expect(((e as? CheckpointError)?.code) == .shapeMismatch, "\(e)")
        }
    }

    /// Hooks after double blocks see both streams and can inject residuals (ControlNet / DreamSR).
    @Test func doubleBlockHookInjection() throws {
        let model = try FluxTransformer.load(from: CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors")))
        let inp = fluxInputs(try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b1.safetensors")))
        let base = try model.forward(inp)
        let counter = Counter()
        let same = try model.forward(inp, options: FluxForwardOptions(afterDoubleBlock: { s in
            counter.add(s.block)
            #expect((s.img?.shape) == [16, 64])
            #expect((s.txt?.shape) == [8, 64])
        }))
        #expect(counter.values == [0, 1])
        #expect(same.maxAbsDifference(base) == 0)
        let changed = try model.forward(inp, options: FluxForwardOptions(afterDoubleBlock: { s in
            if s.block == 1 { for i in 0..<s.img!.count { s.img![flat: i] += Float(i % 7) * 0.1 } }
        }))
        #expect(changed.maxAbsDifference(base) > 1e-3)
    }

    /// A LoRA with B = 0 is the identity; a LoRA on the fused qkv equals merging `s·B·A` into the k rows.
    @Test func loRAOnFusedLinearMatchesMergedWeights() throws {
        let lin = try FluxTransformer.load(from: CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors")))
            .doubleBlocks[0].imgQKV
        var rng = SystemRandomNumberGenerator()
        func rand(_ s: [Int]) -> Tensor { Tensor(shape: s) { _ in Float.random(in: -0.5...0.5, using: &rng) } }
        let x = rand([5, 64]), a = rand([4, 64]), b = rand([64, 4])
        let zero = LoRAAdapter(parts: [.init(outputOffset: 64, down: a, up: Tensor(zeros: [64, 4]), scale: 1)])
        #expect(lin(x, lora: zero).maxAbsDifference(lin(x)) == 0)
        let lora = LoRAAdapter(parts: [.init(outputOffset: 64, down: a, up: b, scale: 0.5)])
        let w = lin.weight.materialize().copy()
        for o in 0..<64 { for i in 0..<64 {
            var s: Float = 0
            for r in 0..<4 { s += b[flat: o * 4 + r] * a[flat: r * 64 + i] }
            w[flat: (64 + o) * 64 + i] += 0.5 * s
        } }
        let merged = Linear(name: lin.name, weight: .resident(w), bias: lin.bias)
        #expect(relErr(lin(x, lora: lora), merged(x)) < 1e-5)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var v: [Int] = []
    func add(_ i: Int) { lock.lock(); v.append(i); lock.unlock() }
    var values: [Int] { lock.lock(); defer { lock.unlock() }; return v }
}
