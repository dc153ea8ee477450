import DreamSRPipeline
import DreamsrApp
import Foundation
import Imaging
import Jobs
import Models
import Tensor
import Testing

/// `dreamsr.release_text_encoders: auto|true|false`: with `true` the T5 / CLIP encoders are dropped once a job's
/// prompts are encoded (nothing, the registry included, keeps them alive) and loaded again for the next job's new
/// prompt; with `false` they stay loaded; `auto` follows MemAvailable against what the model set takes.
@Suite(.serialized, .timeLimit(.minutes(5))) struct TextEncoderReleaseTests {
    @Test func optionParsesAndDefaultsToAuto() throws {
        func parse(_ line: String) throws -> PipelineDefinition {
            try PipelineDefinition.parse(yaml: tinyPipelineYAML().replacingOccurrences(of: "  batch: 2", with: "  batch: 2\n" + line),
                                         file: "x.yaml")
        }
        #expect(try PipelineDefinition.parse(yaml: tinyPipelineYAML(), file: "x.yaml").dreamsr.releaseTextEncoders == .auto)
        #expect(try parse("  release_text_encoders: true").dreamsr.releaseTextEncoders == .always)
        #expect(try parse("  release_text_encoders: false").dreamsr.releaseTextEncoders == .never)
        #expect(try parse("  release_text_encoders: auto").dreamsr.releaseTextEncoders == .auto)
        do {
            _ = try parse("  release_text_encoders: sometimes")
            Issue.record("an unknown value was accepted")
        } catch {
            #expect("\(error)".contains("release_text_encoders") && "\(error)".contains("auto, true, false"), "\(error)")
        }
    }

    /// pipelines/dreamsr-full-q8_0.yaml: the file names make_full_size_flux.py writes, 16 texture steps, batch 1,
    /// precision auto (bf16 with AVX512_BF16, else fp32), auto release; the documented sed gives its fp32 twin; a 128x128 input at x4 is one 512x512 patch.
    @Test func theFullSizePipelineFile() throws {
        let path = repoRoot + "/pipelines/dreamsr-full-q8_0.yaml"
        let def = try PipelineDefinition.load(path: path)
        let m = try #require(def.models)
        #expect([m.flux, m.dreamsr, m.t5, m.clip, m.vae] == ["flux1-dev-Q8_0.gguf", "dreamsr-full-Q8_0.gguf", "t5xxl-Q8_0.gguf",
                                                             "clip-l.safetensors", "ae.safetensors"])
        #expect(m.clipTokenizer == "tokenizers/clip" && m.t5Tokenizer == "tokenizers/t5")
        #expect(def.dreamsr.steps == 16 && def.dreamsr.batch == 1 && def.dreamsr.mode == .dualBranch)
        // precision: auto — bf16 where the dot-product instructions are, fp32 elsewhere
        #expect(def.dreamsr.precision == (KernelISA.hasBF16DotProducts ? .bf16 : .fp32))
        #expect(def.dreamsr.precision == ComputePrecision.forThisCPU && def.dreamsr.releaseTextEncoders == .auto)
        #expect(def.stages.map(\.kind) == [.decode, .caption, .restore, .texture, .blend, .encode])
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let fp32 = text.replacingOccurrences(of: "\n  precision: auto ", with: "\n  precision: fp32 ")  // docs/generative.md's sed
        #expect(fp32 != text)
        #expect(try PipelineDefinition.parse(yaml: fp32, file: "fp32.yaml").dreamsr.precision == .fp32)
        let bf16 = text.replacingOccurrences(of: "\n  precision: auto ", with: "\n  precision: bf16 ")
        #expect(try PipelineDefinition.parse(yaml: bf16, file: "bf16.yaml").dreamsr.precision == .bf16)
        let g = try DreamSRImageGeometry(lrWidth: 128, lrHeight: 128, scale: 4)
        #expect(g.outWidth == 512 && g.latentWidth == 64 && g.latentHeight == 64)
        // The checkpoint config's patch (512 px = 64 cells) and overlap (128 px = 16 cells).
        #expect(try DreamSRPatchPlan(latentWidth: 64, latentHeight: 64, patch: 64, overlap: 16, weighting: .uniform).count == 1)
    }

    @Test func autoReleasesWhenMemAvailableIsBelowTheSet() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:    3000000 kB\n"
        let available = ModelSetMemory.parseAvailable(meminfo)
        #expect(available == 3_000_000 * 1024)
        #expect(ModelSetMemory.parseAvailable("MemTotal: 1 kB\n") == nil)
        let short = ModelSetMemory(availableBytes: available, residentBytes: 20 << 30, textEncoderBytes: 5 << 30)
        let ample = ModelSetMemory(availableBytes: available, residentBytes: 1 << 30, textEncoderBytes: 1 << 20)
        let unknown = ModelSetMemory(availableBytes: nil, residentBytes: 20 << 30, textEncoderBytes: 5 << 30)
        typealias R = DreamSRPipelineOptions.TextEncoderRelease
        #expect(R.auto.releases(short) && !R.auto.releases(ample) && !R.auto.releases(unknown))
        #expect(R.always.releases(ample) && !R.never.releases(short))
        #expect(ModelSetMemory.availableBytes().map { $0 > 0 } ?? true, "this machine's /proc/meminfo parses")
    }

    /// Two jobs one after the other with different prompts, on the tiny model set (1 + 1 steps).
    @Test(arguments: [true, false])
    func releasedAfterEncodingOrKept(release: Bool) async throws {
        try ImageCodec.initialize()
        let models = try tinyModelsDirectory()
        let work = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let yaml = tinyPipelineYAML(steps: 1)
            .replacingOccurrences(of: "  batch: 2", with: "  batch: 2\n  release_text_encoders: \(release)")
        let def = try PipelineDefinition.parse(yaml: yaml, file: "dreamsr.yaml")
        let registry = ModelRegistry.shared(def.models!.resolved(base: models), precision: def.dreamsr.precision)
        let text = try registry.load().text
        weak var firstT5 = text.residentEncoders?.t5
        weak var firstCLIP = text.residentEncoders?.clip
        #expect(firstT5 != nil && text.loadCount == 1)

        let config = try dreamsrConfig(models: models)
        for (id, prompt) in [("a", nil), ("b", "a red brick wall")] as [(String, String?)] {
            let o = try #require(try await PipelineRunner(definition: def, config: config).run([
                JobRequest(id: JobID(id), source: .file(work + "/in.png"), output: work + "/\(id).png", prompt: prompt),
            ]).first)
            #expect(o.status == .ok, "\(o.errorStage ?? "") \(o.errorMessage ?? "")")
            #expect(o.notes.contains { $0.hasPrefix(release ? "text encoders: released after each job's prompts (release_text_encoders: true;"
                                                            : "text encoders: kept loaded (release_text_encoders: false;") }, "\(o.notes)")
            #expect((text.residentEncoders == nil) == release, "after job \(id)")
        }
        if release {
            // Released after job a, loaded again for job b's new prompt, released again.
            #expect(text.loadCount == 2 && text.releaseCount == 2)
            #expect(firstT5 == nil && firstCLIP == nil, "nothing (registry, model set, prompt cache) keeps the released encoders alive")
        } else {
            #expect(text.loadCount == 1 && text.releaseCount == 0)
            #expect(firstT5 != nil && firstT5 === text.residentEncoders?.t5)
        }
        #expect(try ImageCodec.decode(path: work + "/b.png").width == 192)
    }
}
