import Checkpoints
import DreamsrApp
import Foundation
import Testing

/// `dreamsr forward flux --controlnet CN [--controlnet-config C] ...` on the diffusers fixtures of
/// tools/make_flux_controlnet_fixtures.py: one plain, one union and two ControlNets, <= 1e-4 relative.
@Suite(.timeLimit(.minutes(2))) struct FluxControlNetForwardTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/flux_controlnet")

    static func temp() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("fwdcn-\(UUID().uuidString).safetensors")
    }

    @Test(arguments: [("plain", ["cn_plain"]), ("union", ["cn_union"]), ("multi", ["cn_plain", "cn_union"])])
    func forwardMatchesDiffusers(case_: String, controlnets: [String]) throws {
        let out = Self.temp()
        defer { try? FileManager.default.removeItem(at: out) }
        // weights as files, configs given explicitly (the folder form is covered by the model tests)
        let shapes = try ForwardRegistry.run(
            component: "flux", weights: Self.dir.appendingPathComponent("dev"), config: nil,
            inputs: Self.dir.appendingPathComponent("forward_\(case_)_inputs.safetensors"), out: out,
            controlnets: controlnets.map { Self.dir.appendingPathComponent("\($0)/diffusion_pytorch_model.safetensors") },
            controlnetConfigs: controlnets.map { Self.dir.appendingPathComponent("\($0)/config.json") })
        let ref = try SafeTensorsFile(url: Self.dir.appendingPathComponent("forward_\(case_)_outputs.safetensors")).allTensors()
        #expect(Set(shapes.map(\.0)) == Set(ref.keys))
        let got = try SafeTensorsFile(url: out).allTensors()
        for (name, want) in ref {
            let g = try #require(got[name])
            #expect(g.shape == want.shape, "\(name)")
            #expect(g.maxAbsDifference(want) / want.maxAbs() <= 1e-4, "\(case_) \(name)")
        }
    }

    @Test func missingControlInputsAndConfigCountAreRefused() throws {
        let out = Self.temp()
        defer { try? FileManager.default.removeItem(at: out) }
        let cn = Self.dir.appendingPathComponent("cn_union")
        // the plain inputs have no controlnet_mode, which the union ControlNet needs
        let e1 = #expect(throws: ForwardError.self) {
            try ForwardRegistry.run(component: "flux", weights: Self.dir.appendingPathComponent("dev"), config: nil,
                                    inputs: Self.dir.appendingPathComponent("forward_plain_inputs.safetensors"), out: out,
                                    controlnets: [cn])
        }
        #expect(e1?.code == .missingInput && e1?.message.contains("controlnet_mode") == true)
        // two ControlNets need indexed inputs
        let e2 = #expect(throws: ForwardError.self) {
            try ForwardRegistry.run(component: "flux", weights: Self.dir.appendingPathComponent("dev"), config: nil,
                                    inputs: Self.dir.appendingPathComponent("forward_union_inputs.safetensors"), out: out,
                                    controlnets: [cn, cn])
        }
        #expect(e2?.message.contains("controlnet_cond.0") == true)
        let e3 = #expect(throws: ForwardError.self) {
            try ForwardRegistry.run(component: "flux", weights: Self.dir.appendingPathComponent("dev"), config: nil,
                                    inputs: Self.dir.appendingPathComponent("forward_union_inputs.safetensors"), out: out,
                                    controlnets: [cn, cn], controlnetConfigs: [cn.appendingPathComponent("config.json")])
        }
        #expect(e3?.code == .badInput)
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }
}
