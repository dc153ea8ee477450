import Checkpoints
import Foundation
import Tensor
import Testing
@testable import Models

/// Parity of the Swift DreamSR model with tools/dreamsr_reference.py (fixtures by tools/make_dreamsr_fixtures.py).
@Suite(.serialized, .timeLimit(.minutes(10)))
final class DreamSRModelTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/dreamsr")

    static func loadModel() throws -> DreamSRModel {
        let flux = try FluxTransformer.load(from: CheckpointSet(url: fixtures.appendingPathComponent("flux-tiny.safetensors")))
        return try DreamSRModel.load(checkpoint: fixtures.appendingPathComponent("dreamsr-tiny.safetensors"), flux: flux)
    }

    static func tensors(_ name: String) throws -> [String: Tensor] {
        try SafeTensorsFile(url: fixtures.appendingPathComponent(name)).allTensors()
    }

    static func inputs(_ t: [String: Tensor], hidden: Tensor, timestep: [Float]) -> DreamSRInputs {
        DreamSRInputs(hiddenStates: hidden, condLatents: t["cond_latents"]!, encoderHiddenStates: t["encoder_hidden_states"]!,
                      pooledProjections: t["pooled_projections"]!, localEncoderHiddenStates: t["local_encoder_hidden_states"]!,
                      localPooledProjections: t["local_pooled_projections"]!, timestep: timestep,
                      guidance: t["guidance"]!.toArray(), imgIds: t["img_ids"]!, txtIds: t["txt_ids"]!,
                      localTxtIds: t["local_txt_ids"]!)
    }

    /// max |a − b| / (max b − min b).
    static func relError(_ a: Tensor, _ b: Tensor) -> Float {
        let v = b.toArray()
        let range = (v.max() ?? 0) - (v.min() ?? 0)
        return a.maxAbsDifference(b) / max(range, 1e-12)
    }

    @Test func configFromCheckpointMetadata() throws {
        let m = try Self.loadModel()
        #expect(m.config.controlnetDepth == 2)
        #expect(m.config.loraRank == 4)
        #expect(m.config.loraScale == 2)
        #expect(m.config.patchSize == 128)
        #expect(m.controlnet.blocks.count == 2)
        // LoRA on every listed Linear: 10 canonical linears per main double block, 3 per single block.
        #expect(m.mainLoRA.adapters.count == 2 * 10 + 2 * 3)
        #expect(m.controlnetLoRA.adapters.count == 2 * 10)
        #expect((m.mainLoRA.adapter(for: "double_blocks.1.img_attn.qkv")?.parts.count) == 3)
        #expect((m.mainLoRA.adapter(for: "single_blocks.0.linear1")?.parts.map(\.outputOffset).sorted()) == [0, 64, 128, 192])
    }

    @Test func stepMatchesReference() throws {
        let m = try Self.loadModel()
        let t = try Self.tensors("step.safetensors")
        let v = try m.velocity(Self.inputs(t, hidden: t["hidden_states"]!, timestep: t["timestep"]!.toArray()), lora: false)
        #expect(v.shape == t["sample"]!.shape)
        #expect(Self.relError(v, t["sample"]!) <= 1e-3)
        // The DreamSR parts matter (the fixture is not plain FLUX).
        #expect(v.maxAbsDifference(t["flux_sample"]!) > 1e-2)
    }

    @Test func restoreMatchesReference() throws {
        let m = try Self.loadModel()
        let t = try Self.tensors("restore.safetensors")
        let (v, z) = try m.restore(Self.inputs(t, hidden: t["cond_latents"]!, timestep: []))
        #expect(Self.relError(v, t["sample"]!) <= 1e-3)
        #expect(Self.relError(z, t["z_dr"]!) <= 1e-3)
        // LoRA on differs from LoRA off.
        var i = Self.inputs(t, hidden: t["cond_latents"]!, timestep: [1, 1])
        i.timestep = [1, 1]
        let off = try m.velocity(i, lora: false)
        #expect(off.maxAbsDifference(v) > 1e-2)
    }

    @Test func zeroInitialisedPartsReproducePlainFlux() throws {
        let m = try Self.loadModel().zeroingOutputLayers()
        let t = try Self.tensors("step.safetensors")
        let inp = Self.inputs(t, hidden: t["hidden_states"]!, timestep: t["timestep"]!.toArray())
        let plain = try m.velocity(inp, lora: false, useControlNet: false)
        for lora in [false, true] {
            let v = try m.velocity(inp, lora: lora)
            #expect(v.maxAbsDifference(plain) == 0, "zero-init DreamSR (lora \(lora)) must equal plain FLUX exactly")
        }
        #expect(Self.relError(plain, t["flux_sample"]!) <= 1e-3)
    }

    @Test func rejectsCheckpointWithoutConfigAndBadDepth() throws {
        let flux = try FluxTransformer.load(from: CheckpointSet(url: Self.fixtures.appendingPathComponent("flux-tiny.safetensors")))
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try DreamSRModel.load(checkpoint: Self.fixtures.appendingPathComponent("step.safetensors"), flux: flux) }) {
            #expect("\(thrown)".contains("dreamsr_config"), "\(thrown)")
        }
        var cfg = DreamSRConfig()
        cfg.controlnetDepth = 3
        cfg.patchSize = 128
        cfg.patchOverlap = 32
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try DreamSRModel.load(checkpoint: Self.fixtures.appendingPathComponent("dreamsr-tiny.safetensors"),
                                                   flux: flux, configOverride: cfg) }) {
            #expect("\(thrown)".contains("controlnet_depth"), "\(thrown)")
        }
    }
}

/// A Kohya-style LoRA file (BFL names, fused qkv / linear1, `.alpha`) must act like the peft one it was made from.
@Suite(.serialized, .timeLimit(.minutes(10)))
final class DreamSRKohyaLoRATests {
    @Test func kohyaLoRAEqualsPeftLoRA() throws {
        let fx = DreamSRModelTests.fixtures
        let src = try SafeTensorsFile(url: fx.appendingPathComponent("dreamsr-tiny.safetensors"))
        let r = 4
        var out: [(String, Tensor)] = []
        for n in src.header.names where !(n.hasPrefix("transformer.") && n.contains(".lora_")) {
            out.append((n, try src.tensor(named: n)))
        }
        func get(_ n: String) throws -> Tensor { try src.tensor(named: n) }
        /// Fuses parts (peft A [r, in], B [o, r]) into down [k·r, in] and block-diagonal up [Σo, k·r].
        func fuse(_ mods: [String], prefix: String, kohya: String) throws {
            let a = try mods.map { try get("transformer.\(prefix)\($0).lora_A.weight") }
            let b = try mods.map { try get("transformer.\(prefix)\($0).lora_B.weight") }
            let inF = a[0].shape[1], k = mods.count
            let outs = b.map { $0.shape[0] }, total = outs.reduce(0, +)
            let down = Tensor(zeros: [k * r, inF]), up = Tensor(zeros: [total, k * r])
            var row = 0
            for j in 0..<k {
                down.copyValues(from: a[j], count: r * inF, to: j * r * inF)
                for o in 0..<outs[j] { for q in 0..<r { up[flat: (row + o) * k * r + j * r + q] = b[j][flat: o * r + q] } }
                row += outs[j]
            }
            out.append(("lora_unet_\(kohya).lora_down.weight", down))
            out.append(("lora_unet_\(kohya).lora_up.weight", up))
            // peft scale is alpha / rank = 2 for every part; Kohya scale = alpha / (k·r).
            out.append(("lora_unet_\(kohya).alpha", Tensor(shape: [], values: [Float(2 * k * r)])))
        }
        for i in 0..<2 {
            let p = "transformer_blocks.\(i)."
            let k = "double_blocks_\(i)_"
            try fuse(["norm1.linear"], prefix: p, kohya: k + "img_mod_lin")
            try fuse(["norm1_context.linear"], prefix: p, kohya: k + "txt_mod_lin")
            try fuse(["attn.to_q", "attn.to_k", "attn.to_v"], prefix: p, kohya: k + "img_attn_qkv")
            try fuse(["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"], prefix: p, kohya: k + "txt_attn_qkv")
            try fuse(["attn.to_out.0"], prefix: p, kohya: k + "img_attn_proj")
            try fuse(["attn.to_add_out"], prefix: p, kohya: k + "txt_attn_proj")
            try fuse(["ff.net.0.proj"], prefix: p, kohya: k + "img_mlp_0")
            try fuse(["ff.net.2"], prefix: p, kohya: k + "img_mlp_2")
            try fuse(["ff_context.net.0.proj"], prefix: p, kohya: k + "txt_mlp_0")
            try fuse(["ff_context.net.2"], prefix: p, kohya: k + "txt_mlp_2")
            let s = "single_transformer_blocks.\(i)."
            try fuse(["norm.linear"], prefix: s, kohya: "single_blocks_\(i)_modulation_lin")
            try fuse(["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"], prefix: s, kohya: "single_blocks_\(i)_linear1")
            try fuse(["proj_out"], prefix: s, kohya: "single_blocks_\(i)_linear2")
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-kohya-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsWriter.write(tensors: out, metadata: src.metadata, to: url)

        let flux = try FluxTransformer.load(from: CheckpointSet(url: fx.appendingPathComponent("flux-tiny.safetensors")))
        let kohya = try DreamSRModel.load(checkpoint: url, flux: flux)
        #expect(kohya.mainLoRA.adapters.count == 26)
        #expect((kohya.mainLoRA.adapter(for: "single_blocks.1.linear1")?.parts.count) == 1)
        let t = try DreamSRModelTests.tensors("restore.safetensors")
        let (v, _) = try kohya.restore(DreamSRModelTests.inputs(t, hidden: t["cond_latents"]!, timestep: []))
        #expect(DreamSRModelTests.relError(v, t["sample"]!) <= 1e-3)
    }
}

@Suite(.serialized, .timeLimit(.minutes(10)))
final class DreamSRInjectionTests {
    /// The fixture checkpoint cut to ControlNet depth 1 with "interval" injection (layer 0 feeds both main blocks).
    @Test func intervalInjectionMatchesReference() throws {
        let fx = DreamSRModelTests.fixtures
        let src = try SafeTensorsFile(url: fx.appendingPathComponent("dreamsr-tiny.safetensors"))
        let layer1 = ["controlnet.transformer_blocks.1.", "controlnet.controlnet_img_mlps.1.", "controlnet.context_attn.1."]
        var out: [(String, Tensor)] = []
        for n in src.header.names where !layer1.contains(where: { n.hasPrefix($0) }) { out.append((n, try src.tensor(named: n))) }
        var cfg = try DreamSRConfig(jsonString: src.metadata[DreamSRConfig.metadataKey]!)
        cfg.controlnetDepth = 1
        cfg.injection = .interval
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-interval-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsWriter.write(tensors: out, metadata: [DreamSRConfig.metadataKey: cfg.jsonString()], to: url)
        let flux = try FluxTransformer.load(from: CheckpointSet(url: fx.appendingPathComponent("flux-tiny.safetensors")))
        let m = try DreamSRModel.load(checkpoint: url, flux: flux)
        #expect(m.config.injection == .interval)
        let t = try DreamSRModelTests.tensors("step.safetensors")
        let v = try m.velocity(DreamSRModelTests.inputs(t, hidden: t["hidden_states"]!, timestep: t["timestep"]!.toArray()), lora: false)
        #expect(DreamSRModelTests.relError(v, t["sample_interval_depth1"]!) <= 1e-3)
    }
}
