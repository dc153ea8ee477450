import Checkpoints
import DreamsrApp
import Foundation
import Testing

/// `dreamsr forward clip-text|t5` end to end on the committed transformers-parity fixtures.
@Suite(.timeLimit(.minutes(10))) struct TextEncoderForwardTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/text_encoders")

    @Test(arguments: [("clip-text", "clip_text", ["last_hidden_state", "pooler_output"]),
                      ("t5", "t5", ["last_hidden_state"])])
    func forwardWritesTransformersOutputs(component: String, folder: String, names: [String]) throws {
        let dir = Self.fixtures.appendingPathComponent(folder)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: out) }
        // No --config: config.json beside the weights is used.
        let shapes = try ForwardRegistry.run(component: component, weights: dir.appendingPathComponent("model.safetensors"),
                                             config: nil, inputs: dir.appendingPathComponent("io.safetensors"), out: out)
        #expect(shapes.map(\.0) == names)
        let got = try SafeTensorsFile(url: out)
        let ref = try SafeTensorsFile(url: dir.appendingPathComponent("io.safetensors"))
        for n in names {
            let a = try got.tensor(named: n), b = try ref.tensor(named: n)
            #expect(a.maxAbsDifference(b) <= 1e-4 * b.maxAbs(), "\(component) \(n)")
        }
    }
}
