import Checkpoints
import DreamsrApp
import Foundation
import XCTest

/// `dreamsr forward flux` end to end on the committed diffusers-parity fixture.
final class ForwardRunnerTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/flux")

    func testFluxForwardWritesSample() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: out) }
        let shapes = try ForwardRegistry.run(component: "flux", weights: fixtures.appendingPathComponent("guidance/diffusers"),
                                             config: nil, inputs: fixtures.appendingPathComponent("guidance/inputs_b2.safetensors"), out: out)
        XCTAssertEqual(shapes.map(\.0), ["sample"])
        let got = try SafeTensorsFile(url: out).tensor(named: "sample")
        let ref = try SafeTensorsFile(url: fixtures.appendingPathComponent("guidance/outputs_b2.safetensors")).tensor(named: "sample")
        XCTAssertLessThanOrEqual(got.maxAbsDifference(ref) / ref.maxAbs(), 1e-4)
    }

    func testUnknownComponentAndMissingInputs() throws {
        XCTAssertThrowsError(try ForwardRegistry.run(component: "nope", weights: fixtures, config: nil, inputs: fixtures, out: fixtures)) {
            XCTAssertEqual(($0 as? ForwardError)?.code, .unknownComponent)
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-\(UUID().uuidString).safetensors")
        XCTAssertThrowsError(try ForwardRegistry.run(component: "flux", weights: fixtures.appendingPathComponent("guidance/diffusers"),
                                                     config: nil, inputs: fixtures.appendingPathComponent("plain/inputs_b1.safetensors"), out: out)) {
            XCTAssertEqual(($0 as? ForwardError)?.code, .missingInput)
            XCTAssertTrue("\($0)".contains("guidance"))
        }
    }
}
