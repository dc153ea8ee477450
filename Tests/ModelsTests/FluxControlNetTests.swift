import Checkpoints
import Foundation
import Models
import Tensor
import Testing

/// diffusers `FluxControlNetModel` / `FluxMultiControlNetModel` parity on the tiny random fixtures of
/// tools/make_flux_controlnet_fixtures.py, the residual injection, and the loader's refusals.
@Suite(.timeLimit(.minutes(2))) struct FluxControlNetTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/flux_controlnet")

    static func load(_ name: String) throws -> FluxControlNet {
        try FluxControlNet.load(from: CheckpointSet(url: dir.appendingPathComponent(name)))
    }

    static func transformer(_ name: String = "dev") throws -> FluxTransformer {
        try FluxTransformer.load(from: CheckpointSet(url: dir.appendingPathComponent(name)))
    }

    static func modes(_ t: Tensor?) -> [Int]? { t?.toArray().map { Int($0.rounded()) } }

    /// Checks the residuals and the transformer's `sample` against diffusers.
    static func check(_ case_: String, units: (([String: Tensor]) throws -> [FluxControlNetUnit])) throws {
        let inp = try loadTensors(dir.appendingPathComponent("forward_\(case_)_inputs.safetensors"))
        let ref = try loadTensors(dir.appendingPathComponent("forward_\(case_)_outputs.safetensors"))
        let x = fluxInputs(inp)
        let res = try #require(try FluxMultiControlNet.residuals(try units(inp), inputs: x))
        let nd = ref.keys.filter { $0.hasPrefix("controlnet_block_samples.") }.count
        let ns = ref.keys.filter { $0.hasPrefix("controlnet_single_block_samples.") }.count
        #expect(res.double.count == nd && res.single.count == ns)
        for (i, r) in res.double.enumerated() {
            let want = ref["controlnet_block_samples.\(i)"]!
            #expect(relErr(r, want.reshaped(r.shape)) <= 1e-4, "\(case_) double residual \(i)")
        }
        for (i, r) in res.single.enumerated() {
            let want = ref["controlnet_single_block_samples.\(i)"]!
            #expect(relErr(r, want.reshaped(r.shape)) <= 1e-4, "\(case_) single residual \(i)")
        }
        let model = try transformer()
        let out = try model.forward(x, controlnet: res)
        let want = ref["sample"]!
        #expect(out.shape == want.shape)
        let e = relErr(out, want)
        #expect(e <= 1e-4, "\(case_) sample rel err \(e)")
        // The residuals matter: without them the output is far from the reference.
        #expect(relErr(try model.forward(x), want) > 1e-2)
    }

    @Test func plainControlNetMatchesDiffusers() throws {
        let cn = try Self.load("cn_plain")
        #expect(cn.config.flux.depth == 2 && cn.config.flux.depthSingle == 3 && !cn.config.isUnion)
        try Self.check("plain") { t in
            [FluxControlNetUnit(controlnet: cn, cond: t["controlnet_cond"]!, scale: t["conditioning_scale"]![flat: 0])]
        }
    }

    @Test func unionControlNetWithModePerItemMatchesDiffusers() throws {
        let cn = try Self.load("cn_union")
        #expect(cn.config.numModes == 3)
        try Self.check("union") { t in
            [FluxControlNetUnit(controlnet: cn, cond: t["controlnet_cond"]!, mode: Self.modes(t["controlnet_mode"]),
                                scale: t["conditioning_scale"]![flat: 0])]
        }
    }

    @Test func twoControlNetsSumLikeMultiControlNet() throws {
        let a = try Self.load("cn_plain"), b = try Self.load("cn_union")
        try Self.check("multi") { t in
            [FluxControlNetUnit(controlnet: a, cond: t["controlnet_cond.0"]!, scale: t["conditioning_scale.0"]![flat: 0]),
             FluxControlNetUnit(controlnet: b, cond: t["controlnet_cond.1"]!, mode: Self.modes(t["controlnet_mode.1"]),
                                scale: t["conditioning_scale.1"]![flat: 0])]
        }
    }

    /// diffusers' `index_block // ceil(blocks / samples)`.
    @Test func residualIntervalFollowsDiffusers() {
        #expect((0..<19).map { FluxControlNetResiduals.sampleIndex(block: $0, blocks: 19, samples: 5) }
                == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4])
        #expect((0..<4).map { FluxControlNetResiduals.sampleIndex(block: $0, blocks: 4, samples: 3) } == [0, 0, 1, 1])
        #expect((0..<38).map { FluxControlNetResiduals.sampleIndex(block: $0, blocks: 38, samples: 10) }.last == 9)
        #expect((0..<2).map { FluxControlNetResiduals.sampleIndex(block: $0, blocks: 2, samples: 4) } == [0, 1])
    }

    /// Without config.json the config is seen in the tensors and equals the file's.
    @Test func configInferredFromTensorsEqualsConfigJSON() throws {
        for name in ["cn_plain", "cn_union", "cn_schnell"] {
            let folder = Self.dir.appendingPathComponent(name)
            let json = try FluxControlNetConfig(diffusersConfigJSON: Data(contentsOf: folder.appendingPathComponent("config.json")))
            let set = try CheckpointSet(url: folder.appendingPathComponent("diffusion_pytorch_model.safetensors"))
            let inferred = try FluxControlNetConfig.inferred(from: set, prefix: "")
            #expect(inferred == json, "\(name)")
        }
        let schnell = try FluxControlNetConfig(diffusersConfigJSON: Data(contentsOf: Self.dir.appendingPathComponent("cn_schnell/config.json")))
        #expect(!schnell.flux.guidanceEmbed && schnell.numModes == nil)
    }

    /// A bf16 checkpoint (weights kept narrow, widened per call) gives the residuals of the same values in float32;
    /// neither file has a config.json, so both configs are inferred.
    @Test func bf16CheckpointMatchesItsFloat32Values() throws {
        let src = try loadTensors(Self.dir.appendingPathComponent("cn_plain/diffusion_pytorch_model.safetensors"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cnbf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        var bf: [SafeTensorsWriter.Entry] = [], f32: [SafeTensorsWriter.Entry] = []
        for name in src.keys.sorted() {
            let t = src[name]!
            let bits: [UInt16] = t.toArray().map { v in
                let b = v.bitPattern
                return UInt16((b + 0x7FFF + ((b >> 16) & 1)) >> 16)  // round to nearest even
            }
            let widened = bits.map { Float(bitPattern: UInt32($0) << 16) }
            bf.append(.init(name: name, dtype: .bf16, shape: t.shape) { buf in bits.withUnsafeBytes { buf.copyMemory(from: $0) } })
            f32.append(.init(name: name, dtype: .f32, shape: t.shape) { buf in widened.withUnsafeBytes { buf.copyMemory(from: $0) } })
        }
        let bfURL = tmp.appendingPathComponent("cn-bf16.safetensors"), f32URL = tmp.appendingPathComponent("cn-f32.safetensors")
        try SafeTensorsWriter.write(bf, to: bfURL)
        try SafeTensorsWriter.write(f32, to: f32URL)
        let a = try FluxControlNet.load(from: CheckpointSet(url: bfURL))
        let b = try FluxControlNet.load(from: CheckpointSet(url: f32URL))
        if case .lazy = a.doubleBlocks[0].imgQKV.weight {} else { Issue.record("bf16 weights should stay lazy") }
        let t = try loadTensors(Self.dir.appendingPathComponent("forward_plain_inputs.safetensors"))
        let ra = try a.residuals(fluxInputs(t), controlnetCond: t["controlnet_cond"]!, conditioningScale: 0.7)
        let rb = try b.residuals(fluxInputs(t), controlnetCond: t["controlnet_cond"]!, conditioningScale: 0.7)
        for (x, y) in zip(ra.double + ra.single, rb.double + rb.single) { #expect(relErr(x, y) <= 1e-5) }
    }

    /// A ControlNet without single blocks (the layout of e.g. Union-Pro 2.0): inferred from the tensors, and its
    /// double-block residuals are those of the full ControlNet (they come before the single blocks).
    @Test func controlNetWithoutSingleBlocks() throws {
        let src = try loadTensors(Self.dir.appendingPathComponent("cn_plain/diffusion_pytorch_model.safetensors"))
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("cn0-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: file) }
        let kept = src.keys.sorted().filter { !$0.hasPrefix("single_transformer_blocks.") && !$0.hasPrefix("controlnet_single_blocks.") }
        try SafeTensorsWriter.write(tensors: kept.map { ($0, src[$0]!) }, to: file)
        let short = try FluxControlNet.load(from: CheckpointSet(url: file))
        #expect(short.config.flux.depth == 2 && short.config.flux.depthSingle == 0)
        let t = try loadTensors(Self.dir.appendingPathComponent("forward_plain_inputs.safetensors"))
        let r = try short.residuals(fluxInputs(t), controlnetCond: t["controlnet_cond"]!, conditioningScale: 0.7)
        let full = try Self.load("cn_plain").residuals(fluxInputs(t), controlnetCond: t["controlnet_cond"]!, conditioningScale: 0.7)
        #expect(r.single.isEmpty && r.double.count == 2)
        for (a, b) in zip(r.double, full.double) { #expect(a.maxAbsDifference(b) == 0) }
        // the transformer takes double residuals alone
        _ = try Self.transformer().forward(fluxInputs(t), controlnet: r)
    }

    @Test func missingTensorIsNamed() throws {
        let src = try loadTensors(Self.dir.appendingPathComponent("cn_plain/diffusion_pytorch_model.safetensors"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.copyItem(at: Self.dir.appendingPathComponent("cn_plain/config.json"),
                                         to: tmp.appendingPathComponent("config.json"))
        let drop = "controlnet_single_blocks.2.weight"
        try SafeTensorsWriter.write(tensors: src.keys.sorted().filter { $0 != drop }.map { ($0, src[$0]!) },
                                    to: tmp.appendingPathComponent("model.safetensors"))
        let e = #expect(throws: CheckpointError.self) { try FluxControlNet.load(from: CheckpointSet(url: tmp)) }
        #expect(e?.code == .missingKeys && e?.message.contains(drop) == true)
    }

    @Test func wrongConfigsAreRefused() throws {
        // a transformer's config.json is not a ControlNet's
        let e1 = #expect(throws: CheckpointError.self) {
            try FluxControlNetConfig(diffusersConfigJSON: Data(contentsOf: Self.dir.appendingPathComponent("dev/config.json")))
        }
        #expect(e1?.message.contains("FluxTransformer2DModel") == true)
        // a transformer checkpoint is not a ControlNet checkpoint
        let e2 = #expect(throws: CheckpointError.self) { _ = try Self.load("dev") }
        #expect(e2?.code == .unknownLayout && e2?.message.contains("controlnet_x_embedder") == true)
        // a config with more blocks than the file has: the missing tensors are listed
        let cfg = try FluxControlNetConfig(diffusersConfigJSON: Data(contentsOf: Self.dir.appendingPathComponent("cn_union/config.json")))
        let e3 = #expect(throws: CheckpointError.self) {
            try FluxControlNet.load(from: CheckpointSet(url: Self.dir.appendingPathComponent("cn_plain")), config: cfg)
        }
        #expect(e3?.code == .missingKeys && e3?.message.contains("controlnet_mode_embedder.weight") == true)
        // the pixel-space variant
        let hint = #"{"_class_name": "FluxControlNetModel", "conditioning_embedding_channels": 16}"#
        #expect(throws: CheckpointError.self) { try FluxControlNetConfig(diffusersConfigJSON: Data(hint.utf8)) }
    }

    @Test func unionNeedsAValidMode() throws {
        let cn = try Self.load("cn_union")
        let t = try loadTensors(Self.dir.appendingPathComponent("forward_union_inputs.safetensors"))
        let e1 = #expect(throws: CheckpointError.self) {
            try cn.residuals(fluxInputs(t), controlnetCond: t["controlnet_cond"]!)
        }
        #expect(e1?.message.contains("controlnet_mode") == true)
        let e2 = #expect(throws: CheckpointError.self) {
            try cn.residuals(fluxInputs(t), controlnetCond: t["controlnet_cond"]!, mode: [3, 0])
        }
        #expect(e2?.message.contains("out of range") == true)
    }

    @Test func residualsOfAnotherWidthAreRefused() throws {
        let cn = try Self.load("cn_plain")
        let t = try loadTensors(Self.dir.appendingPathComponent("forward_plain_inputs.safetensors"))
        let res = try cn.residuals(fluxInputs(t), controlnetCond: t["controlnet_cond"]!)
        let narrow = FluxControlNetResiduals(double: res.double.map { _ in Tensor(zeros: [2 * 16, 8]) }, single: [])
        #expect(throws: CheckpointError.self) { _ = try Self.transformer().forward(fluxInputs(t), controlnet: narrow) }
        let short = FluxControlNetResiduals(double: [res.double[0]], single: res.single)
        #expect(throws: CheckpointError.self) { _ = try res.adding(short) }
    }
}
