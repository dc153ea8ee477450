import Checkpoints
import DreamsrApp
import Foundation
import Models
import Tensor
import Testing

/// The precision setting: `dreamsr forward flux --precision fp32|bf16` and the pipeline's `dreamsr.precision`.
@Suite(.timeLimit(.minutes(2))) struct FluxPrecisionTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/flux")

    @Test func forwardFluxBF16StaysWithinTheBF16BoundOfFP32() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwdp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = Self.fixtures.appendingPathComponent("gguf/flux-q8_0.gguf")
        let inputs = Self.fixtures.appendingPathComponent("guidance/inputs_b2.safetensors")
        var outs: [[Float]] = []
        for p in ["fp32", "bf16"] {
            let out = dir.appendingPathComponent("\(p).safetensors")
            try ForwardRegistry.run(component: "flux", weights: weights, config: nil, inputs: inputs, out: out, precision: p)
            outs.append(try SafeTensorsFile(url: out).tensor(named: "sample").toArray())
        }
        var num = 0.0, den = 0.0
        for (a, b) in zip(outs[1], outs[0]) {
            num += Double(a - b) * Double(a - b)
            den += Double(b) * Double(b)
        }
        let rel = (num / den).squareRoot()
        #expect(rel > 0 && rel <= 2e-2, "bf16 vs fp32 relative L2 \(rel)")
    }

    @Test func badPrecisionIsRefusedNamingTheKey() throws {
        let dir = FileManager.default.temporaryDirectory
        let weights = Self.fixtures.appendingPathComponent("gguf/flux-q8_0.gguf")
        let inputs = Self.fixtures.appendingPathComponent("guidance/inputs_b2.safetensors")
        #expect { try ForwardRegistry.run(component: "flux", weights: weights, config: nil, inputs: inputs,
                                          out: dir.appendingPathComponent("never-\(UUID().uuidString)"), precision: "fp16")
        } throws: { "\($0)".contains("--precision") && "\($0)".contains("fp16") }
        #expect { try ForwardRegistry.run(component: "vae-decode", weights: weights, config: nil, inputs: inputs,
                                          out: dir.appendingPathComponent("never-\(UUID().uuidString)"), precision: "bf16")
        } throws: { "\($0)".contains("--precision") && "\($0)".contains("vae-decode") }

        let yaml = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("pipelines/dreamsr.yaml"), encoding: .utf8)
        #expect(try PipelineDefinition.parse(yaml: yaml, file: "dreamsr.yaml").dreamsr.precision == .fp32)
        let bf16 = yaml.replacingOccurrences(of: "  batch: 4\n", with: "  batch: 4\n  precision: bf16\n")
        #expect(try PipelineDefinition.parse(yaml: bf16, file: "dreamsr.yaml").dreamsr.precision == .bf16)
        let auto = yaml.replacingOccurrences(of: "  batch: 4\n", with: "  batch: 4\n  precision: auto\n")
        #expect(try PipelineDefinition.parse(yaml: auto, file: "dreamsr.yaml").dreamsr.precision
                == (KernelISA.hasBF16DotProducts ? .bf16 : .fp32))
        #expect(try ComputePrecision(parsing: "auto", key: "--precision") == ComputePrecision.forThisCPU)
        let bad = yaml.replacingOccurrences(of: "  batch: 4\n", with: "  batch: 4\n  precision: fp16\n")
        #expect { try PipelineDefinition.parse(yaml: bad, file: "dreamsr.yaml") } throws: { e in
            guard let e = e as? ConfigError else { return false }
            return e.key.hasSuffix("precision") && "\(e)".contains("fp16") && "\(e)".contains("auto")
        }
    }
}
