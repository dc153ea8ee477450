import Checkpoints
import Foundation
import Models
import Tensor
import Testing

/// FLUX from the files converters write for CPUs: GGUF (stable-diffusion.cpp / ComfyUI-GGUF, Q8_0 and friends) and
/// ComfyUI scaled-FP8 safetensors. Header-only (sparse) files with the real FLUX.1-dev names and shapes check the
/// config inference and key mapping; the tiny committed fixtures (tools/make_flux_gguf_fixtures.py) check that the
/// forward on the quantized file equals the float32 forward on its dequantized weights (names, shapes, dequant wiring).
@Suite(.timeLimit(.minutes(2))) struct FluxQuantizedWeightsTests {
    static let fixtures = fluxFixtures.appendingPathComponent("gguf")

    // MARK: Tiny model: quantized forward == float32 forward on the dequantized weights

    /// The inferred config of the tiny fixture (guidance/diffusers/config.json).
    static var tinyConfig: FluxConfig {
        var c = FluxConfig()
        c.inChannels = 16; c.outChannels = 16; c.numHeads = 2; c.headDim = 32; c.depth = 2; c.depthSingle = 2
        c.contextDim = 32; c.pooledDim = 16; c.axesDim = [4, 14, 14]
        return c
    }

    func forwardsAgree(quantized: String, dequantized: String, expectedTypes: Set<TensorDType>) throws {
        let set = try CheckpointSet(url: Self.fixtures.appendingPathComponent(quantized))
        #expect(Set(set.tensorFiles.flatMap { $0.tensorInfos.map(\.dtype) }) == expectedTypes)
        #expect(try FluxConfig.inferred(from: set) == Self.tinyConfig)
        let model = try FluxTransformer.load(from: set)
        #expect(model.config == Self.tinyConfig)
        // Quantized weights stay in the file (dequantized per call), not copied to float32 at load.
        guard case .lazy(let qkv) = model.doubleBlocks[1].imgQKV.weight else {
            Issue.record("\(quantized): quantized weights must stay lazy")
            return
        }
        #expect(qkv.parts[0].info.name == FluxWeightMap.comfyPrefix + "double_blocks.1.img_attn.qkv.weight")
        let reference = try FluxTransformer.load(from: CheckpointSet(url: Self.fixtures.appendingPathComponent(dequantized)))
        for batch in [1, 2] {
            let inp = fluxInputs(try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b\(batch).safetensors")))
            let out = try model.forward(inp)
            let ref = try reference.forward(inp)
            #expect(out.shape == ref.shape)
            #expect(out.toArray().allSatisfy { $0.isFinite })
            let e = relErr(out, ref)
            #expect(e <= 1e-5, "\(quantized) batch \(batch): rel err \(e) vs the float32 forward on its dequantized weights")
            // And it is still the diffusers model it was made from, up to the quantization error.
            let orig = try loadTensors(fluxFixtures.appendingPathComponent("guidance/outputs_b\(batch).safetensors"))["sample"]!
            let q = relErr(out, orig)
            #expect(q > 0 && q < 0.1, "\(quantized) batch \(batch): rel err \(q) vs the unquantized diffusers output")
        }
    }

    @Test func q8_0GGUFForwardMatchesDequantizedFloat32() throws {
        try forwardsAgree(quantized: "flux-q8_0.gguf", dequantized: "flux-q8_0-dequantized.safetensors",
                          expectedTypes: [.q8_0, .f16, .f32])
    }

    @Test func scaledFP8ForwardMatchesDequantizedFloat32() throws {
        try forwardsAgree(quantized: "flux-fp8-scaled.safetensors", dequantized: "flux-fp8-scaled-dequantized.safetensors",
                          expectedTypes: [.f8e4m3, .bf16, .f32])
    }

    /// The scaled-FP8 companions are consumed only for weights that are used: a stray `scale_weight` is still reported.
    @Test func strayScaleTensorIsUnexpected() throws {
        let dir = try TemporaryFolder()
        let src = try SafeTensorsFile(url: Self.fixtures.appendingPathComponent("flux-fp8-scaled.safetensors"))
        var tensors: [(String, String, [Int])] = src.tensorInfos.map { ($0.name, $0.dtype.rawValue, $0.shape) }
        tensors.append((FluxWeightMap.comfyPrefix + "final_layer.norm.scale_weight", "F32", []))
        let url = dir.url.appendingPathComponent("stray.safetensors")
        try writeSparseSafeTensors(tensors, to: url)
        #expect {
            try FluxTransformer.load(from: CheckpointSet(url: url))
        } throws: { e in
            let err = e as? CheckpointError
            return err?.code == .unexpectedKeys && err!.message.contains("final_layer.norm.scale_weight")
                && !err!.message.contains("scaled_fp8")
        }
    }

    // MARK: Full-size headers: config inference and key mapping

    static func devShapes() throws -> [(String, [Int])] {
        let data = try Data(contentsOf: fluxFixtures.appendingPathComponent("flux1-dev-keys.json"))
        let obj = try JSONSerialization.jsonObject(with: data) as! [String: [String: [Int]]]
        return obj["bfl"]!.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// The ggml type a FLUX GGUF converter picks: 2-D weights in `type` when their rows are whole blocks of it, else
    /// F16; 1-D tensors F32.
    static func ggufType(_ shape: [Int], _ type: TensorDType) -> TensorDType {
        guard shape.count == 2 else { return .f32 }
        return shape[1] % type.blockSize == 0 ? type : .f16
    }

    @Test(arguments: [("model.diffusion_model.", TensorDType.q8_0), ("", .q4_K), ("", .bf16)])
    func devGGUFHeaderInfersConfig(prefix: String, type: TensorDType) throws {
        let dir = try TemporaryFolder()
        let tensors = try Self.devShapes().map { (prefix + $0.0, Self.ggufType($0.1, type), $0.1) }
        #expect(tensors.count == 780)
        let url = dir.url.appendingPathComponent("flux1-dev-\(type.rawValue).gguf")
        try writeSparseGGUF(tensors, to: url)
        let set = try CheckpointSet(url: url)
        #expect(set.ggufFiles.count == 1)
        #expect(try FluxConfig.inferred(from: set) == .dev)
        let model = try FluxTransformer.load(from: set)
        #expect(model.config == .dev)
        #expect(model.doubleBlocks.count == 19 && model.singleBlocks.count == 38)
        guard case .lazy(let l1) = model.singleBlocks[37].linear1.weight else {
            Issue.record("GGUF weights must stay lazy")
            return
        }
        #expect(l1.shape == [21504, 3072])
        #expect(l1.dtypes == [type])
        #expect(l1.rawView?.dtype == type)
    }

    /// FLUX.1-schnell is FLUX.1-dev without the guidance embedder.
    @Test func schnellGGUFHeaderInfersNoGuidance() throws {
        let dir = try TemporaryFolder()
        let tensors = try Self.devShapes().filter { !$0.0.hasPrefix("guidance_in.") }
            .map { (FluxWeightMap.comfyPrefix + $0.0, Self.ggufType($0.1, .q8_0), $0.1) }
        let url = dir.url.appendingPathComponent("flux1-schnell-Q8_0.gguf")
        try writeSparseGGUF(tensors, to: url)
        let set = try CheckpointSet(url: url)
        #expect(try FluxConfig.inferred(from: set) == .schnell)
        #expect(try FluxTransformer.load(from: set).guidanceIn == nil)
    }

    /// ComfyUI's `flux1-dev-fp8` scaled checkpoint: F8_E4M3 weights, their `scale_weight` / `scale_input`, BF16
    /// biases, the `scaled_fp8` marker; with the VAE and text encoders of a ComfyUI all-in-one file beside it.
    @Test func devScaledFP8HeaderLoadsWithoutUnexpectedKeys() throws {
        let dir = try TemporaryFolder()
        let p = FluxWeightMap.comfyPrefix
        var tensors: [(String, String, [Int])] = []
        for (name, shape) in try Self.devShapes() {
            if shape.count == 2 {
                tensors.append((p + name, "F8_E4M3", shape))
                let stem = p + name.dropLast("weight".count)
                tensors.append((stem + "scale_weight", "F32", []))
                tensors.append((stem + "scale_input", "F32", []))
            } else {
                tensors.append((p + name, name.hasSuffix(".bias") ? "BF16" : "F32", shape))
            }
        }
        tensors.append((p + "scaled_fp8", "F8_E4M3", [0]))
        tensors.append(("first_stage_model.decoder.conv_in.weight", "BF16", [512, 16, 3, 3]))
        let url = dir.url.appendingPathComponent("flux1-dev-fp8-scaled.safetensors")
        try writeSparseSafeTensors(tensors, to: url)
        let set = try CheckpointSet(url: url)
        #expect(try FluxConfig.inferred(from: set) == .dev)
        let model = try FluxTransformer.load(from: set)
        guard case .lazy(let w) = model.doubleBlocks[0].imgQKV.weight else {
            Issue.record("FP8 weights must stay lazy")
            return
        }
        #expect(w.dtypes == [.f8e4m3])
    }
}

/// A scratch folder removed when the value is dropped.
final class TemporaryFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("flux-quant-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Writes a safetensors header for `tensors` (name, safetensors dtype, shape) and extends the file to its full size
/// without writing data (a sparse file: full-size FLUX headers cost nothing on disk).
func writeSparseSafeTensors(_ tensors: [(String, String, [Int])], to url: URL) throws {
    var offset = 0
    var parts: [String] = []
    for (name, dtype, shape) in tensors {
        let bytes = shape.reduce(1, *) * TensorDType(rawValue: dtype)!.byteSize
        parts.append("\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
        offset += bytes
    }
    var header = Array(("{" + parts.joined(separator: ",") + "}").utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    var len = UInt64(header.count).littleEndian
    FileManager.default.createFile(atPath: url.path, contents: Data(bytes: &len, count: 8) + Data(header))
    let h = try FileHandle(forWritingTo: url)
    try h.truncate(atOffset: UInt64(8 + header.count + offset))
    try h.close()
}

/// Writes a GGUF v3 header (no metadata, alignment 32) for `tensors` (name, ggml type, row-major shape) and extends
/// the file to its full size without writing data (sparse).
func writeSparseGGUF(_ tensors: [(String, TensorDType, [Int])], to url: URL) throws {
    var out = Data()
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
    out.append(contentsOf: Array("GGUF".utf8))
    u32(3); u64(UInt64(tensors.count)); u64(0)
    var offset = 0
    for (name, type, shape) in tensors {
        str(name)
        u32(UInt32(shape.count))
        for d in shape.reversed() { u64(UInt64(d)) }
        u32(UInt32(type.ggmlTypeID!))
        u64(UInt64(offset))
        offset += type.byteCount(elements: shape.reduce(1, *))!
        offset = (offset + 31) / 32 * 32
    }
    while out.count % 32 != 0 { out.append(0) }
    let total = out.count + offset
    FileManager.default.createFile(atPath: url.path, contents: out)
    let h = try FileHandle(forWritingTo: url)
    try h.truncate(atOffset: UInt64(total))
    try h.close()
}
