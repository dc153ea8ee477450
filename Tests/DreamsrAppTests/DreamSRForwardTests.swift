import Checkpoints
import DreamsrApp
import Foundation
import Testing

/// `dreamsr forward dreamsr-step|dreamsr-restore` end to end on the committed DreamSR fixtures.
@Suite(.serialized, .timeLimit(.minutes(10)))
final class DreamSRForwardTests {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/dreamsr")

    private func relError(_ out: URL, _ name: String, _ refFile: String) throws -> Float {
        let got = try SafeTensorsFile(url: out).tensor(named: name)
        let ref = try SafeTensorsFile(url: fixtures.appendingPathComponent(refFile)).tensor(named: name)
        let v = ref.toArray()
        return got.maxAbsDifference(ref) / ((v.max() ?? 0) - (v.min() ?? 0))
    }

    @Test func stepAndRestoreComponents() throws {
        for (component, file, outputs) in [("dreamsr-step", "step.safetensors", ["sample"]),
                                           ("dreamsr-restore", "restore.safetensors", ["sample", "z_dr"])] {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("dsr-\(UUID().uuidString).safetensors")
            defer { try? FileManager.default.removeItem(at: out) }
            let shapes = try ForwardRegistry.run(
                component: component, weights: fixtures.appendingPathComponent("flux-tiny.safetensors"), config: nil,
                inputs: fixtures.appendingPathComponent(file), out: out,
                controlnet: fixtures.appendingPathComponent("dreamsr-tiny.safetensors"))
            #expect(shapes.map(\.0) == outputs)
            for o in outputs { #expect(try relError(out, o, file) <= 1e-3, "\(component) \(o)") }
        }
    }

    @Test func dreamSRComponentsNeedTheCheckpoint() throws {
        #expect(ForwardRegistry.names.contains("dreamsr-step"))
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try ForwardRegistry.run(
            component: "dreamsr-restore", weights: fixtures.appendingPathComponent("flux-tiny.safetensors"), config: nil,
            inputs: fixtures.appendingPathComponent("restore.safetensors"), out: fixtures.appendingPathComponent("x")) }) {
            #expect(((thrown as? ForwardError)?.code) == .missingInput)
            #expect("\(thrown)".contains("--controlnet"))
        }
    }
}
