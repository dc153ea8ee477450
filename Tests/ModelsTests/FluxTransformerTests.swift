import Checkpoints
import Foundation
import Models
import Tensor
import XCTest

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

final class FluxTransformerTests: XCTestCase {
    func check(variant: String, weights: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try FluxTransformer.load(from: CheckpointSet(url: weights))
        for batch in [1, 2] {
            let inp = try loadTensors(fluxFixtures.appendingPathComponent("\(variant)/inputs_b\(batch).safetensors"))
            let ref = try loadTensors(fluxFixtures.appendingPathComponent("\(variant)/outputs_b\(batch).safetensors"))["sample"]!
            let out = try model.forward(fluxInputs(inp))
            XCTAssertEqual(out.shape, ref.shape, file: file, line: line)
            let e = relErr(out, ref)
            XCTAssertLessThanOrEqual(e, 1e-4, "\(variant) \(weights.lastPathComponent) batch \(batch): rel err \(e)", file: file, line: line)
        }
    }

    func testDiffusersLayoutWithGuidance() throws {
        try check(variant: "guidance", weights: fluxFixtures.appendingPathComponent("guidance/diffusers"))
    }

    func testBFLLayoutWithGuidance() throws {
        try check(variant: "guidance", weights: fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors"))
    }

    func testDiffusersLayoutWithoutGuidance() throws {
        try check(variant: "plain", weights: fluxFixtures.appendingPathComponent("plain/diffusers"))
    }

    func testBFLLayoutWithoutGuidance() throws {
        try check(variant: "plain", weights: fluxFixtures.appendingPathComponent("plain/flux-bfl.safetensors"))
    }

    func testConfigFromJSONMatchesDetectedFromShapes() throws {
        let json = try FluxConfig(diffusersConfigJSON: Data(contentsOf: fluxFixtures.appendingPathComponent("guidance/diffusers/config.json")))
        let bfl = try CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors"))
        let (layout, prefix) = try FluxWeightMap.detect(names: bfl.names)
        XCTAssertEqual(layout, .bfl)
        let detected = try FluxConfig(detectingFrom: FluxWeightMap.canonicalShapes(of: bfl, layout: layout, prefix: prefix))
        XCTAssertEqual(json, detected)
        XCTAssertEqual(json.hiddenSize, 64)
        XCTAssertEqual(json.axesDim, [4, 14, 14])
        XCTAssertTrue(json.guidanceEmbed)
    }

    /// ComfyUI single files prefix BFL keys with `model.diffusion_model.` and may carry other components' keys.
    func testComfyPrefixLoadsLikeBFL() throws {
        let src = try loadTensors(fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("comfy-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: tmp) }
        var entries = src.keys.sorted().map { (FluxWeightMap.comfyPrefix + $0, src[$0]!) }
        entries.append(("vae.decoder.conv_in.weight", Tensor(zeros: [2, 2])))
        try SafeTensorsWriter.write(tensors: entries, to: tmp)
        let model = try FluxTransformer.load(from: CheckpointSet(url: tmp))
        let inp = try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b1.safetensors"))
        let ref = try loadTensors(fluxFixtures.appendingPathComponent("guidance/outputs_b1.safetensors"))["sample"]!
        XCTAssertLessThanOrEqual(relErr(try model.forward(fluxInputs(inp)), ref), 1e-4)
    }

    func testLazyAndResidentWeightsAgree() throws {
        let set = try CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/diffusers"))
        let lazy = try FluxTransformer.load(from: set)
        let resident = try FluxTransformer.load(from: set, residentWeights: true)
        if case .resident = lazy.doubleBlocks[0].imgQKV.weight { XCTFail("bf16 weights should load lazily") }
        let inp = fluxInputs(try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b2.safetensors")))
        // Lazy bf16 weights run in place (dequantized per 64-row panel, then sgemm): the same float32 products as
        // the resident weights, summed per panel, so equal up to float32 rounding.
        XCTAssertLessThanOrEqual(relErr(try lazy.forward(inp), try resident.forward(inp)), 1e-6)
    }

    func testMissingAndUnexpectedKeysAreListed() throws {
        let src = try loadTensors(fluxFixtures.appendingPathComponent("guidance/diffusers/diffusion_pytorch_model.safetensors"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flux-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = try FluxConfig(diffusersConfigJSON: Data(contentsOf: fluxFixtures.appendingPathComponent("guidance/diffusers/config.json")))

        var missing = src
        missing["transformer_blocks.1.attn.add_k_proj.weight"] = nil
        let f1 = dir.appendingPathComponent("missing.safetensors")
        try SafeTensorsWriter.write(tensors: missing.keys.sorted().map { ($0, missing[$0]!) }, to: f1)
        XCTAssertThrowsError(try FluxTransformer.load(from: CheckpointSet(url: f1), config: cfg)) { e in
            let err = e as? CheckpointError
            XCTAssertEqual(err?.code, .missingKeys)
            XCTAssertTrue(err?.message.contains("transformer_blocks.1.attn.add_k_proj.weight") ?? false, "\(e)")
        }

        var extra = src
        extra["transformer_blocks.0.attn.bogus.weight"] = Tensor(zeros: [3])
        let f2 = dir.appendingPathComponent("extra.safetensors")
        try SafeTensorsWriter.write(tensors: extra.keys.sorted().map { ($0, extra[$0]!) }, to: f2)
        XCTAssertThrowsError(try FluxTransformer.load(from: CheckpointSet(url: f2), config: cfg)) { e in
            let err = e as? CheckpointError
            XCTAssertEqual(err?.code, .unexpectedKeys)
            XCTAssertTrue(err?.message.contains("transformer_blocks.0.attn.bogus.weight") ?? false, "\(e)")
        }

        var wrong = src
        wrong["proj_out.weight"] = Tensor(zeros: [15, 64])
        let f3 = dir.appendingPathComponent("shape.safetensors")
        try SafeTensorsWriter.write(tensors: wrong.keys.sorted().map { ($0, wrong[$0]!) }, to: f3)
        XCTAssertThrowsError(try FluxTransformer.load(from: CheckpointSet(url: f3), config: cfg)) { e in
            XCTAssertEqual((e as? CheckpointError)?.code, .shapeMismatch, "\(e)")
        }
    }

    /// Hooks after double blocks see both streams and can inject residuals (ControlNet / DreamSR).
    func testDoubleBlockHookInjection() throws {
        let model = try FluxTransformer.load(from: CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors")))
        let inp = fluxInputs(try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b1.safetensors")))
        let base = try model.forward(inp)
        let counter = Counter()
        let same = try model.forward(inp, options: FluxForwardOptions(afterDoubleBlock: { s in
            counter.add(s.block)
            XCTAssertEqual(s.img?.shape, [16, 64])
            XCTAssertEqual(s.txt?.shape, [8, 64])
        }))
        XCTAssertEqual(counter.values, [0, 1])
        XCTAssertEqual(same.maxAbsDifference(base), 0)
        let changed = try model.forward(inp, options: FluxForwardOptions(afterDoubleBlock: { s in
            if s.block == 1 { for i in 0..<s.img!.count { s.img![flat: i] += Float(i % 7) * 0.1 } }
        }))
        XCTAssertGreaterThan(changed.maxAbsDifference(base), 1e-3)
    }

    /// A LoRA with B = 0 is the identity; a LoRA on the fused qkv equals merging `s·B·A` into the k rows.
    func testLoRAOnFusedLinearMatchesMergedWeights() throws {
        let lin = try FluxTransformer.load(from: CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors")))
            .doubleBlocks[0].imgQKV
        var rng = SystemRandomNumberGenerator()
        func rand(_ s: [Int]) -> Tensor { Tensor(shape: s) { _ in Float.random(in: -0.5...0.5, using: &rng) } }
        let x = rand([5, 64]), a = rand([4, 64]), b = rand([64, 4])
        let zero = LoRAAdapter(parts: [.init(outputOffset: 64, down: a, up: Tensor(zeros: [64, 4]), scale: 1)])
        XCTAssertEqual(lin(x, lora: zero).maxAbsDifference(lin(x)), 0)
        let lora = LoRAAdapter(parts: [.init(outputOffset: 64, down: a, up: b, scale: 0.5)])
        let w = lin.weight.materialize().copy()
        for o in 0..<64 { for i in 0..<64 {
            var s: Float = 0
            for r in 0..<4 { s += b[flat: o * 4 + r] * a[flat: r * 64 + i] }
            w[flat: (64 + o) * 64 + i] += 0.5 * s
        } }
        let merged = Linear(name: lin.name, weight: .resident(w), bias: lin.bias)
        XCTAssertLessThan(relErr(lin(x, lora: lora), merged(x)), 1e-5)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var v: [Int] = []
    func add(_ i: Int) { lock.lock(); v.append(i); lock.unlock() }
    var values: [Int] { lock.lock(); defer { lock.unlock() }; return v }
}
