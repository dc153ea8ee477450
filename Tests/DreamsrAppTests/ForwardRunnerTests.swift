import Checkpoints
import DreamsrApp
import Foundation
import Testing

/// `dreamsr forward flux` end to end on the committed diffusers-parity fixture.
@Suite(.serialized, .timeLimit(.minutes(10)))
final class ForwardRunnerTests {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/flux")

    @Test func fluxForwardWritesSample() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: out) }
        let shapes = try ForwardRegistry.run(component: "flux", weights: fixtures.appendingPathComponent("guidance/diffusers"),
                                             config: nil, inputs: fixtures.appendingPathComponent("guidance/inputs_b2.safetensors"), out: out)
        #expect(shapes.map(\.0) == ["sample"])
        let got = try SafeTensorsFile(url: out).tensor(named: "sample")
        let ref = try SafeTensorsFile(url: fixtures.appendingPathComponent("guidance/outputs_b2.safetensors")).tensor(named: "sample")
        #expect(got.maxAbsDifference(ref) / ref.maxAbs() <= 1e-4)
    }

    @Test func unknownComponentAndMissingInputs() throws {
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try ForwardRegistry.run(component: "nope", weights: fixtures, config: nil, inputs: fixtures, out: fixtures) }) {
            #expect(((thrown as? ForwardError)?.code) == .unknownComponent)
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-\(UUID().uuidString).safetensors")
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try ForwardRegistry.run(component: "flux", weights: fixtures.appendingPathComponent("guidance/diffusers"),
                                                     config: nil, inputs: fixtures.appendingPathComponent("plain/inputs_b1.safetensors"), out: out) }) {
            #expect(((thrown as? ForwardError)?.code) == .missingInput)
            #expect("\(thrown)".contains("guidance"))
        }
    }
}
