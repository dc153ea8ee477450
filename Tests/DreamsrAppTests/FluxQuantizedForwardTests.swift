import Checkpoints
import DreamSRPipeline
import DreamsrApp
import Foundation
import Testing

/// `dreamsr forward flux` on a GGUF / scaled-FP8 file with no config (inferred from the file), and the
/// `dreamsr models check` summary of such files (format, tensor types, parameters, resident size).
@Suite(.timeLimit(.minutes(2))) struct FluxQuantizedForwardTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/flux")

    @Test(arguments: [("flux-q8_0.gguf", "flux-q8_0-dequantized.safetensors"),
                      ("flux-fp8-scaled.safetensors", "flux-fp8-scaled-dequantized.safetensors")])
    func forwardWithInferredConfig(weights: String, dequantized: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwdq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let inputs = Self.fixtures.appendingPathComponent("guidance/inputs_b2.safetensors")
        let out = dir.appendingPathComponent("q.safetensors"), ref = dir.appendingPathComponent("f32.safetensors")
        let shapes = try ForwardRegistry.run(component: "flux", weights: Self.fixtures.appendingPathComponent("gguf/\(weights)"),
                                             config: nil, inputs: inputs, out: out)
        #expect(shapes.map(\.0) == ["sample"] && shapes[0].1 == [2, 16, 16])
        try ForwardRegistry.run(component: "flux", weights: Self.fixtures.appendingPathComponent("gguf/\(dequantized)"),
                                config: nil, inputs: inputs, out: ref)
        let got = try SafeTensorsFile(url: out).tensor(named: "sample")
        let want = try SafeTensorsFile(url: ref).tensor(named: "sample")
        #expect(got.maxAbsDifference(want) / want.maxAbs() <= 1e-5)
    }

    @Test func summaryOfGGUFCountsTypesAndParameters() throws {
        let url = Self.fixtures.appendingPathComponent("gguf/flux-q8_0.gguf")
        let s = try WeightFileSummary.summarize(url)
        #expect(s.count == 1)
        let f = s[0]
        #expect(f.format == "GGUF v3")
        // The tiny FLUX: 2-D weights with 32-multiple rows in Q8_0, img_in / vector_in.in_layer (rows of 16) in F16,
        // every bias and norm scale in F32.
        let gguf = try GGUFFile(url: url)
        #expect(f.typesDescription == "F32 x48, Q8_0 x34, F16 x2")
        #expect(f.parameters == 482_448)
        #expect(f.tensorCount == gguf.tensorInfos.count)
        // Parameters are values, not stored bytes: the same as the float32 file of the same model.
        let f32 = try WeightFileSummary.summarize(Self.fixtures.appendingPathComponent("gguf/flux-q8_0-dequantized.safetensors"))[0]
        #expect(f32.format == "safetensors" && f32.typesDescription == "F32 x\(gguf.tensorInfos.count)")
        #expect(f.parameters == f32.parameters)
        #expect(f32.tensorBytes == f32.parameters * 4)
        // Q8_0 is 34 bytes per 32 values.
        let q8 = gguf.tensorInfos.filter { $0.dtype == .q8_0 }
        #expect(q8.allSatisfy { $0.byteCount == $0.elementCount / 32 * 34 })
        #expect(f.tensorBytes == gguf.tensorInfos.reduce(0) { $0 + $1.byteCount })
        #expect(f.tensorBytes < f32.tensorBytes / 3)
        #expect(f.fileBytes >= f.tensorBytes)
    }
}
