import Checkpoints
import DreamSRPipeline
import DreamsrApp
import Foundation
import Testing

/// `dreamsr models check`: per weight file its format, tensor types with counts, parameters and resident size = the
/// mapped bytes plus the float32 copies the loader of its role makes (headers only).
@Suite(.serialized, .timeLimit(.minutes(2))) struct ModelsCheckSummaryTests {
    static let fixtures = URL(fileURLWithPath: repoRoot + "/Tests/Fixtures")

    /// A T5-shaped safetensors file written here: bf16 embedding and projection, F32 norm and relative bias.
    static func writeT5Like(_ url: URL) throws {
        func bf16(_ name: String, _ shape: [Int]) -> SafeTensorsWriter.Entry {
            SafeTensorsWriter.Entry(name: name, dtype: .bf16, shape: shape) { $0.initializeMemory(as: UInt8.self, repeating: 0x3c) }
        }
        func f32(_ name: String, _ shape: [Int]) -> SafeTensorsWriter.Entry {
            SafeTensorsWriter.Entry(name: name, dtype: .f32, shape: shape) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
        }
        try SafeTensorsWriter.write([
            bf16("shared.weight", [100, 32]),
            bf16("encoder.block.0.layer.0.SelfAttention.q.weight", [32, 32]),
            f32("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [32, 4]),
            f32("encoder.block.0.layer.0.layer_norm.weight", [32]),
        ], to: url)
    }

    @Test func safetensorsT5FileCopiesItsEmbeddingNormAndBias() throws {
        let url = URL(fileURLWithPath: try tempDir() + "/t5.safetensors")
        try Self.writeT5Like(url)
        let f = try #require(try WeightFileSummary.summarize(url).first)
        #expect(f.format == "safetensors" && f.role == .t5)
        #expect(f.typesDescription == "BF16 x2, F32 x2")
        #expect(f.parameters == 3200 + 1024 + 128 + 32)
        #expect(f.tensorBytes == (3200 + 1024) * 2 + (128 + 32) * 4)
        #expect(f.mappedBytes == f.tensorBytes, "the q projection runs in place, so the file stays mapped")
        #expect(f.float32CopyBytes == (3200 + 128 + 32) * 4, "embedding, relative bias and norm are copied; q is not")
        #expect(f.residentBytes == f.tensorBytes + f.float32CopyBytes)
        // Loaded as something else, the same file is counted by that role's rules.
        let unknown = try #require(try WeightFileSummary.summarize(url, role: .unknown).first)
        #expect(unknown.float32CopyBytes == 0 && unknown.residentBytes == unknown.tensorBytes)
    }

    /// The DreamSR loader reads every Linear (ControlNet, image MLPs, Context Cross-Attention, LoRA A/B) in place:
    /// only biases and norm scales count as float32 copies.
    @Test func dreamsrCheckpointCopiesOnlyBiasesAndNorms() throws {
        let url = Self.fixtures.appendingPathComponent("dreamsr/dreamsr-tiny.safetensors")
        let f = try #require(try WeightFileSummary.summarize(url).first)
        let infos = try SafeTensorsFile(url: url).tensorInfos
        #expect(f.role == .dreamsr)
        #expect(infos.contains { $0.name.contains(".lora_A.") } && infos.contains { $0.name.hasPrefix("controlnet.context_attn.") })
        #expect(f.float32CopyBytes == infos.filter { $0.shape.count <= 1 }.reduce(0) { $0 + $1.elementCount * 4 })
        #expect(f.residentBytes == f.tensorBytes + f.float32CopyBytes)
    }

    @Test func ggufFluxScaledFP8AndVAEFixtures() throws {
        let q8 = try #require(try WeightFileSummary.summarize(Self.fixtures.appendingPathComponent("flux/gguf/flux-q8_0.gguf")).first)
        let gguf = try GGUFFile(url: Self.fixtures.appendingPathComponent("flux/gguf/flux-q8_0.gguf"))
        #expect(q8.format == "GGUF v3" && q8.role == .flux)
        let oneD = gguf.tensorInfos.filter { $0.shape.count == 1 }
        #expect(oneD.count == 48 && oneD.allSatisfy { $0.dtype == .f32 })
        #expect(q8.float32CopyBytes == oneD.reduce(0) { $0 + $1.elementCount * 4 }, "biases and norm scales only")
        #expect(q8.mappedBytes == gguf.tensorInfos.reduce(0) { $0 + $1.byteCount })

        let fp8 = try #require(try WeightFileSummary.summarize(Self.fixtures.appendingPathComponent("flux/gguf/flux-fp8-scaled.safetensors")).first)
        #expect(fp8.format == "safetensors (FP8 scaled)" && fp8.role == .flux)
        #expect(fp8.typesDescription.contains("F8_E4M3 x"))

        let vae = try #require(try WeightFileSummary.summarize(Self.fixtures.appendingPathComponent("vae/vae_small_bfl.safetensors")).first)
        #expect(vae.role == .vae && vae.format == "safetensors")
        #expect(vae.mappedBytes == 0, "the VAE loader copies everything and closes the file")
        #expect(vae.float32CopyBytes == vae.parameters * 4 && vae.residentBytes == vae.parameters * 4)
    }

    @Test func cliPrintsFormatTypesParametersAndResidentSize() throws {
        let t5 = URL(fileURLWithPath: try tempDir() + "/t5.safetensors")
        try Self.writeT5Like(t5)
        let gguf = Self.fixtures.appendingPathComponent("flux/gguf/flux-q8_0.gguf").path
        let r = try runDreamsr(["models", "check", "--weights", gguf, "--weights", t5.path], timeout: 60)
        #expect(r.status == 0, "\(r.output)")
        let q8 = try #require(try WeightFileSummary.summarize(URL(fileURLWithPath: gguf)).first)
        let mib = { (b: Int) in String(format: "%.1f MiB", Double(b) / 1_048_576) }
        #expect(r.output.contains("\(gguf): GGUF v3, F32 x48, Q8_0 x34, F16 x2; 482448 params; FLUX transformer: "
                                  + "\(mib(q8.residentBytes)) resident (\(mib(q8.mappedBytes)) mapped + \(mib(q8.float32CopyBytes)) float32 copies)"),
                "\(r.output)")
        #expect(r.output.contains("\(t5.path): safetensors, BF16 x2, F32 x2; 4384 params; T5 encoder: "), "\(r.output)")
        let bad = try runDreamsr(["models", "check", "--weights", t5.path + ".missing"], timeout: 60)
        #expect(bad.status == 1 && bad.output.contains("UNREADABLE \(t5.path).missing"), "\(bad.output)")
    }
}
