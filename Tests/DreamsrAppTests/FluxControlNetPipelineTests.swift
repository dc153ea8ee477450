import DreamsrApp
import DreamSRPipeline
import Foundation
import Imaging
import Jobs
import PipelineRuntime
import Testing

/// The tiny random FLUX ControlNet model set in the layout the shipped pipelines/flux*-controlnet-upscale.yaml expect:
/// the tiny FLUX transformer (dev: Tests/Fixtures/dreamsr/flux-tiny; schnell: flux_controlnet/schnell_pipeline), the
/// tiny ControlNet of tools/make_flux_controlnet_upscale_fixtures.py, the VAE and text encoder fixtures, and the real
/// Real-ESRGAN weights (a link to the project's models folder).
func tinyControlNetModels(_ variant: FluxVariant) throws -> String {
    let dir = try tempDir() + "/models"
    let fm = FileManager.default
    let fx = repoRoot + "/Tests/Fixtures"
    let base = dir + (variant == .dev ? "/flux1-dev" : "/flux1-schnell")
    for sub in ["/transformer", "/vae"] { try fm.createDirectory(atPath: base + sub, withIntermediateDirectories: true) }
    if variant == .dev {
        try fm.copyItem(atPath: fx + "/dreamsr/flux-tiny.safetensors", toPath: base + "/transformer/flux-tiny.safetensors")
    } else {
        for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
            try fm.copyItem(atPath: fx + "/flux_controlnet/schnell_pipeline/" + f, toPath: base + "/transformer/" + f)
        }
    }
    try fm.copyItem(atPath: fx + "/flux_controlnet/cn_pipeline", toPath: dir + "/flux1-dev-controlnet-upscaler")
    try fm.copyItem(atPath: fx + "/vae/vae_small_diffusers.safetensors", toPath: base + "/vae/diffusion_pytorch_model.safetensors")
    try fm.copyItem(atPath: fx + "/vae/vae_small_config.json", toPath: base + "/vae/config.json")
    for sub in ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"] {
        try fm.copyItem(atPath: fx + "/pipeline/" + sub, toPath: base + "/" + sub)
    }
    try fm.createSymbolicLink(atPath: dir + "/realesrgan-x4plus", withDestinationPath: try Daemon.modelsDir() + "/realesrgan-x4plus")
    return dir
}

@Suite(.serialized, .timeLimit(.minutes(6))) struct FluxControlNetPipelineTests {
    @Test func theShippedControlNetPipelinesParse() throws {
        for (name, variant) in [("flux-controlnet-upscale", FluxVariant.dev), ("flux-schnell-controlnet-upscale", .schnell)] {
            let def = try PipelineDefinition.load(path: repoRoot + "/pipelines/\(name).yaml")
            #expect(def.name == name)
            #expect(def.controlnet?.variant == variant && def.controlnet?.startSigma == 0.8)
            #expect(def.controlnet?.effectiveSteps == (variant == .dev ? 20 : 4))
            #expect(def.controlnetModels?.controlnet == "flux1-dev-controlnet-upscaler" && def.models == nil)
            #expect(def.stages.map(\.kind) == [.decode, .caption, .restore, .texture, .blend, .encode])
            #expect(def.stage(.restore)?.restorer == .realesrgan)
        }
        let bad = """
        name: x
        controlnet: {variant: dev, patch: 520}
        stages: [{stage: decode}, {stage: texture}, {stage: blend}, {stage: encode}]
        """
        #expect(throws: (any Error).self) { try PipelineDefinition.parse(yaml: bad, file: "x.yaml") }
        do { _ = try PipelineDefinition.parse(yaml: bad, file: "x.yaml") } catch {
            #expect("\(error)".contains("patch") && "\(error)".contains("multiple of 16"), "\(error)")
        }
        let dreamsrRestorer = """
        name: x
        controlnet: {variant: schnell}
        stages: [{stage: decode}, {stage: restore, restorer: dreamsr}, {stage: texture}, {stage: blend}, {stage: encode}]
        """
        do {
            _ = try PipelineDefinition.parse(yaml: dreamsrRestorer, file: "x.yaml")
            Issue.record("a ControlNet texture after the DreamSR restorer was accepted")
        } catch {
            #expect("\(error)".contains("restorer realesrgan"), "\(error)")
        }
    }

    /// `dreamsr upscale --pipeline flux-controlnet-upscale` (the shipped file, tiny random weights, real Real-ESRGAN);
    /// then `models check` with the ControlNet and the transformer missing names repositories and files, and
    /// `upscale` refuses with the same names and writes nothing.
    @Test func cliUpscaleThenMissingWeightsNameRepositoriesAndFiles() throws {
        try ImageCodec.initialize()
        let models = try tinyControlNetModels(.dev)
        let work = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let common = ["--pipelines-dir", repoRoot + "/pipelines", "--models-dir", models]
        let r = try runDreamsr(["upscale", "--pipeline", "flux-controlnet-upscale"] + common + [work + "/in.png", "-o", work + "/out.png"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("-> \(work)/out.png (192x128) [flux-controlnet-upscale]"), "\(r.output)")
        #expect(r.output.contains("texture: FLUX.1-dev + ControlNet, 20 steps from sigma 0.800 (from the restored image)"), "\(r.output)")
        let out = try ImageCodec.decode(path: work + "/out.png")
        #expect(out.width == 192 && out.height == 128 && out.alpha != nil)

        let check = try runDreamsr(["models", "check", "--pipeline", "flux-controlnet-upscale"] + common)
        #expect(check.status == 0 && check.output.contains("7 present, 0 missing"), "\(check.output)")
        try FileManager.default.removeItem(atPath: models + "/flux1-dev-controlnet-upscaler")
        try FileManager.default.removeItem(atPath: models + "/flux1-dev/transformer")
        let missing = try runDreamsr(["models", "check", "--pipeline", "flux-controlnet-upscale"] + common)
        #expect(missing.status == 1, "\(missing.output)")
        #expect(missing.output.contains("5 present, 2 missing"), "\(missing.output)")
        #expect(missing.output.contains("MISSING  controlnet") && missing.output.contains("MISSING  flux "), "\(missing.output)")
        #expect(missing.output.contains("download: jasperai/Flux.1-dev-Controlnet-Upscaler: config.json + diffusion_pytorch_model.safetensors (3.58 GB)"),
                "\(missing.output)")
        #expect(missing.output.contains("download: black-forest-labs/FLUX.1-dev: transformer/") && missing.output.contains("flux1-dev.safetensors (23.8 GB)"),
                "\(missing.output)")
        #expect(!missing.output.contains("MISSING  vae"), "only missing components are listed")
        let refused = try runDreamsr(["upscale", "--pipeline", "flux-controlnet-upscale"] + common + [work + "/in.png", "-o", work + "/out2.png"])
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains("jasperai/Flux.1-dev-Controlnet-Upscaler") && refused.output.contains("black-forest-labs/FLUX.1-dev"),
                "\(refused.output)")
        #expect(!FileManager.default.fileExists(atPath: work + "/out2.png"))
    }

    /// The schnell variant through the runtime in-process (shipped file; the restorer replaced by nearest x4).
    @Test func schnellVariantRunsThroughTheRuntime() async throws {
        try ImageCodec.initialize()
        let models = try tinyControlNetModels(.schnell)
        let work = try tempDir()
        try writeSmallRGBA(work + "/in.png")
        let def = try PipelineDefinition.load(path: repoRoot + "/pipelines/flux-schnell-controlnet-upscale.yaml")
        let factory = ImagePipelineFactory(loadRestorer: { _ in NearestX4Restorer() })
        let o = try #require(try await PipelineRunner(definition: def, config: try dreamsrConfig(models: models), factory: factory)
            .run([JobRequest(id: JobID("schnell"), source: .file(work + "/in.png"), output: work + "/out.png")]).first)
        #expect(o.status == .ok, "\(o.errorStage ?? "") \(o.errorMessage ?? "")")
        #expect(o.width == 192 && o.height == 128)
        #expect(o.notes.contains("mode: flux-controlnet (schnell)"), "\(o.notes)")
        #expect(o.notes.contains("texture: FLUX.1-schnell + ControlNet, 4 steps from sigma 0.800 (from the restored image)"), "\(o.notes)")
        #expect(o.notes.contains { $0.hasPrefix("blend: VAE decode") && $0.contains("colour fix wavelet") }, "\(o.notes)")
    }

    /// The daemon: `serve` with the shipped schnell pipeline (4 steps: the dev one ran through the CLI above) over a
    /// watch folder; one image in, one 4x image out, SIGTERM.
    @Test func daemonWatchFolderRunsTheControlNetPipeline() async throws {
        try ImageCodec.initialize()
        let models = try tinyControlNetModels(.schnell)
        let root = try tempDir(), dir = root + "/in", out = root + "/out"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let config = root + "/dreamsr.yaml"
        try """
        log_level: info
        models_dir: \(models)
        pipelines_dir: \(repoRoot)/pipelines
        pipeline: flux-schnell-controlnet-upscale
        sources:
          watch:
            - dir: \(dir)
              output: \(out)
              poll_seconds: 0.2
              stable_seconds: 0.1
        """.write(toFile: config, atomically: true, encoding: .utf8)
        try writeSmallRGBA(root + "/pic.png")
        try FileManager.default.moveItem(atPath: root + "/pic.png", toPath: dir + "/pic.png")
        let log = root + "/log"
        let p = try Daemon.start(["serve", "--config", config], log: log, env: ["DREAMSR_MODELS_DIR": models])
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func outputs() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: out))?.filter { !$0.hasPrefix(".") } ?? [] }
        try await Daemon.waitUntil("the ControlNet pipeline's output", timeout: .seconds(240), log: log) {
            outputs().count == 1 && FileManager.default.fileExists(atPath: dir + "/done/pic.png")
        }
        kill(p.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p) == 0)
        let decoded = try ImageCodec.decode(path: out + "/" + outputs()[0])
        #expect(decoded.width == 192 && decoded.height == 128)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("FLUX ControlNet model set loaded"), "\(text.suffix(2000))")
    }
}
