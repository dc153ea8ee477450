import Checkpoints
import DreamsrApp
import Foundation
import XCTest

/// `dreamsr forward dreamsr-step|dreamsr-restore` end to end on the committed DreamSR fixtures.
final class DreamSRForwardTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/dreamsr")

    private func relError(_ out: URL, _ name: String, _ refFile: String) throws -> Float {
        let got = try SafeTensorsFile(url: out).tensor(named: name)
        let ref = try SafeTensorsFile(url: fixtures.appendingPathComponent(refFile)).tensor(named: name)
        let v = ref.toArray()
        return got.maxAbsDifference(ref) / ((v.max() ?? 0) - (v.min() ?? 0))
    }

    func testStepAndRestoreComponents() throws {
        for (component, file, outputs) in [("dreamsr-step", "step.safetensors", ["sample"]),
                                           ("dreamsr-restore", "restore.safetensors", ["sample", "z_dr"])] {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("dsr-\(UUID().uuidString).safetensors")
            defer { try? FileManager.default.removeItem(at: out) }
            let shapes = try ForwardRegistry.run(
                component: component, weights: fixtures.appendingPathComponent("flux-tiny.safetensors"), config: nil,
                inputs: fixtures.appendingPathComponent(file), out: out,
                controlnet: fixtures.appendingPathComponent("dreamsr-tiny.safetensors"))
            XCTAssertEqual(shapes.map(\.0), outputs)
            for o in outputs { XCTAssertLessThanOrEqual(try relError(out, o, file), 1e-3, "\(component) \(o)") }
        }
    }

    func testDreamSRComponentsNeedTheCheckpoint() {
        XCTAssertTrue(ForwardRegistry.names.contains("dreamsr-step"))
        XCTAssertThrowsError(try ForwardRegistry.run(
            component: "dreamsr-restore", weights: fixtures.appendingPathComponent("flux-tiny.safetensors"), config: nil,
            inputs: fixtures.appendingPathComponent("restore.safetensors"), out: fixtures.appendingPathComponent("x"))) {
            XCTAssertEqual(($0 as? ForwardError)?.code, .missingInput)
            XCTAssertTrue("\($0)".contains("--controlnet"))
        }
    }
}
