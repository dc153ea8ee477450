import DreamsrApp
import DreamSRPipeline
import Foundation
import Imaging
import Jobs
import Logging
import Metrics
import PipelineRuntime
import Raster
import Tensor
import Testing
import Upscaling

/// A complete tiny random model set in a models folder: the FLUX + DreamSR fixtures of tools/make_dreamsr_fixtures.py,
/// the VAE fixture (Tests/Fixtures/vae) and the text encoders + tokenizers of tools/make_pipeline_fixtures.py.
func tinyModelsDirectory() throws -> String {
    let dir = try tempDir() + "/models"
    let fm = FileManager.default
    let fx = repoRoot + "/Tests/Fixtures"
    for sub in ["flux", "vae", "dreamsr"] { try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true) }
    try fm.copyItem(atPath: fx + "/dreamsr/flux-tiny.safetensors", toPath: dir + "/flux/flux-tiny.safetensors")
    try fm.copyItem(atPath: fx + "/dreamsr/dreamsr-tiny.safetensors", toPath: dir + "/dreamsr/dreamsr-tiny.safetensors")
    try fm.copyItem(atPath: fx + "/vae/vae_small_diffusers.safetensors", toPath: dir + "/vae/diffusion_pytorch_model.safetensors")
    try fm.copyItem(atPath: fx + "/vae/vae_small_config.json", toPath: dir + "/vae/config.json")
    for sub in ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"] {
        try fm.copyItem(atPath: fx + "/pipeline/" + sub, toPath: dir + "/" + sub)
    }
    return dir
}

/// The same tiny set laid out as the shipped pipelines/dreamsr*.yaml expect (flux1-dev/..., dreamsr/dreamsr.safetensors).
func tinyModelsInShippedLayout() throws -> String {
    let src = try tinyModelsDirectory()
    let dir = try tempDir() + "/models"
    let fm = FileManager.default
    try fm.createDirectory(atPath: dir + "/flux1-dev/transformer", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: dir + "/dreamsr", withIntermediateDirectories: true)
    try fm.moveItem(atPath: src + "/flux/flux-tiny.safetensors", toPath: dir + "/flux1-dev/transformer/flux-tiny.safetensors")
    try fm.moveItem(atPath: src + "/dreamsr/dreamsr-tiny.safetensors", toPath: dir + "/dreamsr/dreamsr.safetensors")
    for sub in ["vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"] {
        try fm.moveItem(atPath: src + "/" + sub, toPath: dir + "/flux1-dev/" + sub)
    }
    return dir
}

/// Runs the built `dreamsr` binary to completion; returns its exit status and combined output.
/// Runs the built `dreamsr` binary to completion; kills it and throws after `timeout` seconds (a hang fails the test).
func runDreamsr(_ args: [String], timeout: Double = 180) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try Daemon.binary())
    p.arguments = args
    let log = try tempDir() + "/out.log"
    FileManager.default.createFile(atPath: log, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
    p.standardOutput = handle
    p.standardError = handle
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
    if p.isRunning {
        p.terminate()
        Thread.sleep(forTimeInterval: 1)
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        try? handle.close()
        throw DeadlineExceeded(what: "dreamsr \(args.first ?? "") (killed after \(Int(timeout)) s)",
                               output: (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }
    p.waitUntilExit()
    try handle.close()
    return (p.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
}

struct DeadlineExceeded: Error, CustomStringConvertible {
    let what: String
    let output: String
    var description: String { "\(what) did not finish in time; its output:\n\(output)" }
}

func tinyPipelineYAML(name: String = "dreamsr", mode: String = "dual-branch", steps: Int? = nil,
                      colorFix: String = "wavelet") -> String {
    """
    name: \(name)
    capacity: {items: 2, megapixels: 16}
    models:
      flux: flux/flux-tiny.safetensors
      vae: vae
      clip: text_encoder
      t5: text_encoder_2
      clip_tokenizer: tokenizer
      t5_tokenizer: tokenizer_2
      dreamsr: dreamsr/dreamsr-tiny.safetensors
    dreamsr:
      mode: \(mode)
      color_fix: \(colorFix)
      vae_tile: 64
      batch: 2
    \(steps.map { "  steps: \($0)\n" } ?? "")stages:
      - stage: decode
      - stage: caption
      - stage: restore
        restorer: dreamsr
      - stage: texture
      - stage: blend
      - stage: encode
    """
}

/// A 48x32 RGBA test picture (gradients + a square), written as PNG.
func writeSmallRGBA(_ path: String) throws {
    let w = 48, h = 32
    var color = PlanarImage(width: w, height: h, channels: 3)
    var alpha = PlanarImage(width: w, height: h, channels: 1, fill: 1)
    for y in 0..<h { for x in 0..<w {
        color.pixels[y * w + x] = Float(x) / Float(w)
        color.pixels[w * h + y * w + x] = Float(y) / Float(h)
        color.pixels[2 * w * h + y * w + x] = (x / 8 + y / 8) % 2 == 0 ? 0.8 : 0.2
        alpha.pixels[y * w + x] = x < 8 ? 0.5 : 1
    } }
    try ImageCodec.encode(color: color, alpha: alpha, bitDepth: 8, grey: false, format: .png, quality: 90, to: path)
}

func dreamsrConfig(models: String) throws -> DaemonConfig {
    var c = try DaemonConfig.quickStart(watch: "/tmp/i", output: "/tmp/o", metricsAddress: nil, env: [:])
    c.modelsDirectory = models
    return c
}

/// A stand-in pixel restorer (nearest-neighbour x4) for the Real-ESRGAN-restorer ablation's wiring.
struct NearestX4Restorer: TileRestorer {
    var scale: Int { 4 }
    var name: String { "nearest-x4" }
    func restore(_ tile: Tensor) throws -> Tensor {
        let (c, h, w) = (tile.shape[1], tile.shape[2], tile.shape[3])
        let out = Tensor(zeros: [1, c, 4 * h, 4 * w])
        for ch in 0..<c { for y in 0..<(4 * h) { for x in 0..<(4 * w) {
            out[flat: (ch * 4 * h + y) * 4 * w + x] = tile[flat: (ch * h + y / 4) * w + x / 4]
        } } }
        return out
    }
}

@Suite(.serialized, .timeLimit(.minutes(10))) struct DreamSRPipelineTests {
    @Test func realESRGANRestorerThenTextureAblation() async throws {
        try ImageCodec.initialize()
        let models = try tinyModelsDirectory()
        let work = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let yaml = tinyPipelineYAML(name: "dreamsr-realesrgan-texture", steps: 2)
            .replacingOccurrences(of: "    restorer: dreamsr", with: "    restorer: realesrgan\n    model: realesrgan-x4plus")
        let def = try PipelineDefinition.parse(yaml: yaml, file: "x.yaml")
        let factory = ImagePipelineFactory(loadRestorer: { _ in NearestX4Restorer() })
        let o = try #require(try await PipelineRunner(definition: def, config: try dreamsrConfig(models: models), factory: factory)
            .run([JobRequest(id: JobID("esr"), source: .file(work + "/in.png"), output: work + "/out.png")]).first)
        #expect(o.status == .ok, "\(o.errorStage ?? "") \(o.errorMessage ?? "")")
        #expect(o.width == 192 && o.height == 128)
        #expect(o.notes.contains("mode: realesrgan-restorer+texture (dual-branch)"), "\(o.notes)")
        #expect(o.notes.contains("restore: nearest-x4 x4"), "\(o.notes)")
        #expect(o.notes.contains { $0.hasPrefix("texture: 2 steps from sigma 0.800 (from the Real-ESRGAN restoration)") }, "\(o.notes)")
        for stage in ["caption", "restore", "texture", "blend"] { #expect((o.stageSeconds[stage] ?? 0) > 0) }
    }

    @Test func endToEndDualBranchRunsEveryStageThroughTheRuntime() async throws {
        try ImageCodec.initialize()
        let models = try tinyModelsDirectory()
        let work = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let def = try PipelineDefinition.parse(yaml: tinyPipelineYAML(), file: "dreamsr.yaml")
        let runner = PipelineRunner(definition: def, config: try dreamsrConfig(models: models))
        let outcomes = try await runner.run([JobRequest(id: JobID("e2e"), source: .file(work + "/in.png"),
                                                        output: work + "/out.png")])
        let o = try #require(outcomes.first)
        #expect(o.status == .ok, "\(o.errorStage ?? "") \(o.errorMessage ?? "")")
        #expect(o.width == 192 && o.height == 128)
        for stage in ["decode", "caption", "restore", "texture", "blend", "encode"] {
            #expect((o.stageSeconds[stage] ?? 0) > 0, "no timing for stage \(stage): \(o.stageSeconds)")
        }
        #expect(o.pipeline == "dreamsr")
        #expect(o.notes.contains("mode: dual-branch"), "\(o.notes)")
        #expect(o.notes.contains { $0.contains("no endpoint configured; fixed prompts used") }, "\(o.notes)")
        #expect(o.notes.contains { $0.hasPrefix("caption: global prompt (fixed): high quality photo") }, "\(o.notes)")
        #expect(o.notes.contains { $0.hasPrefix("caption: ") && $0.contains(" local prompts (") && $0.contains(" fixed; 1 distinct): [0] ") },
                "\(o.notes)")
        #expect(o.notes.contains { $0.hasPrefix("restore: DreamSR one-step LoRA restoration") && $0.contains("tiled VAE encode (64 px tiles") }, "\(o.notes)")
        #expect(o.notes.contains { $0.hasPrefix("texture: 16 steps from sigma 0.800") }, "\(o.notes)")
        #expect(o.notes.contains { $0.contains("tiled, 8-cell tiles") && $0.contains("colour fix wavelet") && $0.contains("alpha re-attached") }, "\(o.notes)")
        let out = try ImageCodec.decode(path: work + "/out.png")
        #expect(out.width == 192 && out.height == 128)
        let alpha = try #require(out.alpha)
        #expect(abs(alpha[0, 64, 4] - 0.5) < 0.02 && abs(alpha[0, 64, 100] - 1) < 0.02, "alpha re-attached from the input")
        // Not a flat image: the texture stage produced varying pixels.
        let px = out.color.pixels
        #expect((px.max() ?? 0) - (px.min() ?? 0) > 0.05)
    }

    @Test(arguments: ["single-branch-global", "single-branch-local", "without-lora"])
    func ablationModesRunAndReportTheirMode(mode: String) async throws {
        try ImageCodec.initialize()
        let models = try tinyModelsDirectory()
        let work = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let def = try PipelineDefinition.parse(yaml: tinyPipelineYAML(name: "dreamsr-\(mode)", mode: mode, steps: 2, colorFix: "adain"),
                                               file: "x.yaml")
        let o = try #require(try await PipelineRunner(definition: def, config: try dreamsrConfig(models: models))
            .run([JobRequest(id: JobID(mode), source: .file(work + "/in.png"), output: work + "/out.png")]).first)
        #expect(o.status == .ok, "\(o.errorStage ?? "") \(o.errorMessage ?? "")")
        #expect(o.notes.contains("mode: \(mode)"), "\(o.notes)")
        #expect(o.width == 192 && o.height == 128)
        if mode == "without-lora" {
            #expect(o.notes.contains { $0.hasPrefix("restore: no restoration pass") })
            #expect(o.notes.contains { $0.hasPrefix("texture: 2 steps from sigma 1.000") }, "\(o.notes)")
        }
    }

    /// The model set is loaded once and shared by jobs; a seed gives the same pixels again; a job's prompt replaces
    /// the global prompt (and changes the result).
    @Test func jobsShareTheModelsAreSeededAndTakeThePromptOverride() async throws {
        try ImageCodec.initialize()
        let models = try tinyModelsDirectory()
        let work = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let def = try PipelineDefinition.parse(yaml: tinyPipelineYAML(steps: 2), file: "dreamsr.yaml")
        let out = try await PipelineRunner(definition: def, config: try dreamsrConfig(models: models)).run([
            JobRequest(id: JobID("a"), source: .file(work + "/in.png"), output: work + "/a.png"),
            JobRequest(id: JobID("b"), source: .file(work + "/in.png"), output: work + "/b.png"),
            JobRequest(id: JobID("c"), source: .file(work + "/in.png"), output: work + "/c.png", prompt: "a red brick wall"),
        ])
        #expect(out.allSatisfy { $0.status == .ok }, "\(out.map { $0.errorMessage ?? "" })")
        let a = try ImageCodec.decode(path: work + "/a.png").color, b = try ImageCodec.decode(path: work + "/b.png").color
        let c = try ImageCodec.decode(path: work + "/c.png").color
        #expect(a == b, "same input, same seed: same output")
        #expect(a != c, "another global prompt changes the texture")
        #expect(out[2].notes.contains("captioner: global prompt from the job"), "\(out[2].notes)")
        #expect(out[2].notes.contains("caption: global prompt (job): a red brick wall"), "\(out[2].notes)")
        let registry = ModelRegistry.shared(def.models!.resolved(base: models))
        #expect(registry.isLoaded)
    }

    /// Tiled VAE states on disk (the default: memory bounded by one tile) or in memory give the same pixels; the
    /// scratch folder is left empty; a bad value is refused naming the key.
    @Test func vaeTileStatesOnDiskOrInMemoryGiveTheSamePixels() async throws {
        try ImageCodec.initialize()
        let models = try tinyModelsDirectory()
        let work = try tempDir()
        let scratch = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let base = tinyPipelineYAML(steps: 2)
        #expect(try PipelineDefinition.parse(yaml: base, file: "d.yaml").dreamsr.vaeTileStates == .disk)
        var outputs: [PlanarImage] = []
        for (i, states) in ["disk", "memory"].enumerated() {
            let yaml = base.replacingOccurrences(of: "  vae_tile: 64\n",
                                                 with: "  vae_tile: 64\n  vae_tile_states: \(states)\n  vae_scratch_dir: \(scratch)\n"
                                                     + (states == "disk" ? "  vae_tile_memory_mb: 0\n" : ""))
            let def = try PipelineDefinition.parse(yaml: yaml, file: "d.yaml")
            #expect(def.dreamsr.vaeTileStates.rawValue == states && def.dreamsr.vaeScratchDirectory == scratch)
            #expect(def.dreamsr.vaeTileMemoryMB == (states == "disk" ? 0 : 1024))
            let o = try #require(try await PipelineRunner(definition: def, config: try dreamsrConfig(models: models))
                .run([JobRequest(id: JobID("s\(i)"), source: .file(work + "/in.png"), output: work + "/\(states).png")]).first)
            #expect(o.status == .ok, "\(o.errorStage ?? "") \(o.errorMessage ?? "")")
            #expect(o.notes.contains { $0.contains("tile states in \(states)") }, "\(o.notes)")
            outputs.append(try ImageCodec.decode(path: work + "/\(states).png").color)
        }
        #expect(outputs[0] == outputs[1])
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).isEmpty)
        let bad = base.replacingOccurrences(of: "  vae_tile: 64\n", with: "  vae_tile: 64\n  vae_tile_states: ssd\n")
        #expect(throws: (any Error).self) { try PipelineDefinition.parse(yaml: bad, file: "d.yaml") }
        do { _ = try PipelineDefinition.parse(yaml: bad, file: "d.yaml") } catch {
            #expect("\(error)".contains("vae_tile_states"), "\(error)")
        }
    }

    @Test func missingWeightsAreAStartUpErrorNamingFileAndLayout() throws {
        let models = try tinyModelsDirectory()
        try FileManager.default.removeItem(atPath: models + "/text_encoder_2")
        let def = try PipelineDefinition.parse(yaml: tinyPipelineYAML(), file: "dreamsr.yaml")
        do {
            _ = try ImagePipelineFactory().makePipeline(def, config: try dreamsrConfig(models: models), logger: .init(label: "t"),
                                                        metricsFactory: NOOPMetricsHandler.instance)
            Issue.record("a pipeline was built without its T5 weights")
        } catch let e as AppError {
            #expect(e.message.contains(models + "/text_encoder_2"))
            #expect(e.message.contains("t5:") && e.message.contains("text_encoder_2/ folder"))
            #expect(!e.message.contains("flux:"), "only missing components are listed: \(e.message)")
        }
    }

    @Test func modelsCheckReportsPresenceAndMemoryFromHeaders() throws {
        let models = try tinyModelsDirectory()
        try FileManager.default.removeItem(atPath: models + "/tokenizer_2")
        let def = try PipelineDefinition.parse(yaml: tinyPipelineYAML(), file: "dreamsr.yaml")
        let registry = ModelRegistry(paths: def.models!.resolved(base: models))
        let entries = Dictionary(uniqueKeysWithValues: registry.check().map { ($0.component.key, $0) })
        #expect(entries.count == 7)
        #expect(entries["t5_tokenizer"]?.present == false)
        #expect(entries["t5_tokenizer"]?.problem?.contains("does not exist") == true)
        let flux = try #require(entries["flux"])
        // bf16 weights run in place (mapped); biases and norm scales are float32 copies.
        let oneD = try WeightFileSummary.summarize(URL(fileURLWithPath: flux.files[0]), role: .flux)[0]
        #expect(flux.present && flux.parameters > 100_000 && flux.memoryBytes == flux.fileBytes + oneD.float32CopyBytes)
        #expect(oneD.float32CopyBytes > 0 && oneD.float32CopyBytes < flux.parameters / 10)
        #expect(flux.fileBytes == flux.parameters * 2, "bf16 fixture: 2 bytes per parameter on disk")
        #expect(entries["dreamsr"]?.present == true && entries["vae"]?.present == true)
        #expect(!registry.isLoaded, "check reads headers only")
    }

    /// The acceptance run: `dreamsr upscale --pipeline dreamsr` (the shipped pipeline file) on a small image with the
    /// tiny random model set, through the daemon's runtime, printing per-stage timings; then `dreamsr models check`.
    @Test func cliUpscaleWithTheShippedDreamsrPipeline() throws {
        try ImageCodec.initialize()
        let models = try tinyModelsInShippedLayout()
        let work = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let r = try runDreamsr(["upscale", "--pipeline", "dreamsr", "--pipelines-dir", repoRoot + "/pipelines",
                                "--models-dir", models, work + "/in.png", "-o", work + "/out.png"])
        #expect(r.status == 0, "\(r.output)")
        let line = try #require(r.output.split(separator: "\n").first { $0.contains("-> \(work)/out.png (192x128) [dreamsr]") },
                                "\(r.output)")
        for stage in ["decode", "caption", "restore", "texture", "blend", "encode"] {
            #expect(line.contains(" \(stage) "), "no timing for \(stage) in: \(line)")
        }
        #expect(r.output.contains("mode: dual-branch"))
        #expect(try ImageCodec.decode(path: work + "/out.png").width == 192)

        let check = try runDreamsr(["models", "check", "--pipeline", "dreamsr", "--pipelines-dir", repoRoot + "/pipelines",
                                    "--models-dir", models])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("7 present, 0 missing"), "\(check.output)")
        try FileManager.default.removeItem(atPath: models + "/dreamsr/dreamsr.safetensors")
        let missing = try runDreamsr(["models", "check", "--pipeline", "dreamsr", "--pipelines-dir", repoRoot + "/pipelines",
                                      "--models-dir", models])
        #expect(missing.status == 1)
        #expect(missing.output.contains("MISSING  dreamsr") && missing.output.contains("dreamsr_config"), "\(missing.output)")
        let refused = try runDreamsr(["upscale", "--pipeline", "dreamsr", "--pipelines-dir", repoRoot + "/pipelines",
                                      "--models-dir", models, work + "/in.png", "-o", work + "/out2.png"])
        #expect(refused.status == 2 && refused.output.contains("dreamsr/dreamsr.safetensors does not exist"), "\(refused.output)")
        #expect(!FileManager.default.fileExists(atPath: work + "/out2.png"))
    }

    @Test func theShippedPipelineFilesParse() throws {
        for name in ["dreamsr", "dreamsr-single-branch-global", "dreamsr-single-branch-local", "dreamsr-without-lora",
                     "dreamsr-realesrgan-texture"] {
            let def = try PipelineDefinition.load(path: repoRoot + "/pipelines/\(name).yaml")
            #expect(def.name == name)
            #expect(def.needsDreamSRModels && def.models != nil)
            #expect(def.stages.map(\.kind) == [.decode, .caption, .restore, .texture, .blend, .encode])
        }
        #expect(try PipelineDefinition.load(path: repoRoot + "/pipelines/dreamsr-without-lora.yaml").dreamsr.mode == .withoutLoRA)
        #expect(try PipelineDefinition.load(path: repoRoot + "/pipelines/dreamsr-realesrgan-texture.yaml").stage(.restore)?.restorer == .realesrgan)
    }
}
