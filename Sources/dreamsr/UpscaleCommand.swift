import ArgumentParser
import DreamsrApp
import Foundation
import Synchronization
import Imaging
import Jobs
import Tensor
import Upscaling

/// `dreamsr upscale INPUT... -o OUTPUT`: one-shot upscaling of image files.
struct UpscaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upscale",
        abstract: "Upscale image files (Real-ESRGAN x4plus by default).",
        discussion: """
            One input: OUTPUT is a file (format from its extension or --format) or an existing folder. \
            Several inputs: OUTPUT is a folder (created if missing); each output is named after its input.

            An output is never one of the inputs (unless --overwrite, for an input's own output), never a device, \
            FIFO or folder, and two inputs never share an output: such a command is refused before any work. \
            Every input is checked (exists, readable, image header within the limits) before the model loads. \
            Each failed input prints one line `dreamsr: error: "INPUT": stage: reason` (names quoted, control \
            characters escaped, libvips warnings folded into that line); the others are still processed.

            Exit status: 0 all inputs upscaled; 1 at least one input failed (the others were written); \
            2 the model or pipeline could not be loaded; 64 usage error (bad option or value, refused output: \
            nothing read or written).
            """
    )

    @Argument(help: "Input image files (JPEG, PNG, WebP, TIFF, HEIF/AVIF, GIF).")
    var inputs: [String]

    @Option(name: .shortAndLong, help: "Output file (one input) or folder.")
    var output: String

    @Option(help: ArgumentHelp("Output scale, an integer \(UpscaleOptions.scales.lowerBound)-\(UpscaleOptions.scales.upperBound) (default: the model's, 4).",
                               discussion: "The daemon's range. Other values than the model's resample its output with Lanczos3."))
    var scale: Int?

    @Flag(help: "Allow the output to be its input file itself: the source is replaced by its upscaled version.")
    var overwrite = false

    @Option(help: "Tile size in input pixels (memory grows with it; the output is the same).")
    var tile: Int = TiledUpscaler.defaultTileSize

    @Option(help: "Tile overlap in input pixels (blended with feathered weights).")
    var overlap: Int = TiledUpscaler.defaultOverlap

    @Option(help: "Context pixels added around each tile and cropped away (against border effects; default: the model's receptive field, 24 for realesrgan-x4plus).")
    var tilePad: Int?

    @Option(help: "Output format: png, jpeg, webp, tiff (default: from the output name, else png).")
    var format: String?

    @Option(help: "JPEG/WebP quality, 1-100.")
    var quality: Int = 92

    @Option(help: ArgumentHelp("Model name (`dreamsr models list`), model folder or .param file (default: realesrgan-x4plus).",
                               discussion: "Names are searched in $DREAMSR_MODELS_DIR, ./models, ~/.local/share/dreamsr/models, /usr/share/dreamsr/models. A family name plus --scale picks its native model (realesr-animevideov3 --scale 2). Without --model, a --scale no installed photo model has natively is reached by resampling realesrgan-x4plus's output."))
    var model: String?

    @Option(help: ArgumentHelp("Run a pipeline file through the daemon's stage runtime: a name (PIPELINES_DIR/NAME.yaml) or a file path, e.g. dreamsr.",
                               discussion: "Without it, the one-shot Real-ESRGAN path runs."))
    var pipeline: String?

    @Option(help: "Folder of pipeline files (default: $DREAMSR_PIPELINES_DIR, else ./pipelines).")
    var pipelinesDir: String?

    @Option(help: "Models folder the pipeline's model paths are relative to (default: $DREAMSR_MODELS_DIR, else ./models).")
    var modelsDir: String?

    @Option(help: "Prompt for the caption stage (replaces the global prompt).")
    var prompt: String?

    @Option(help: "Compute threads (default: all cores).")
    var threads: Int?

    @Option(help: "Largest accepted source image in megapixels (width x height x pages).")
    var maxMegapixels: Double = 50

    @Option(help: "Largest accepted source file in MiB.")
    var maxFileMb: Double = 256

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one input file") }
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be 1-100, got \(quality)") }
        if let f = format, ImageFormat(rawValue: f.lowercased()) == nil, ImageFormat(fileExtension: f) == nil {
            throw ValidationError("--format must be png, jpeg, webp or tiff, got \(quoted(f))")
        }
        if let s = scale, !UpscaleOptions.scales.contains(s) {
            throw ValidationError("--scale must be an integer \(UpscaleOptions.scales.lowerBound)-\(UpscaleOptions.scales.upperBound), got \(s)")
        }
        if let t = threads, t < 1 { throw ValidationError("--threads must be >= 1") }
        guard maxMegapixels > 0, maxMegapixels.isFinite else { throw ValidationError("--max-megapixels must be positive") }
        guard maxFileMb > 0, maxFileMb.isFinite else { throw ValidationError("--max-file-mb must be positive") }
    }

    func run() async throws {
        if let t = threads { BLASRuntime.setThreads(t) }
        try ImageCodec.initialize()
        let warnings = WarningCollector()
        ImageCodec.setWarningHandler { warnings.add($0) }
        let fmt = format.flatMap { ImageFormat(rawValue: $0.lowercased()) ?? ImageFormat(fileExtension: $0) }
        let limits = ImageLimits(maxPixels: Int(maxMegapixels * 1_000_000), maxFileBytes: Int(maxFileMb * 1_048_576),
                                 pixelLimitHint: "--max-megapixels", fileSizeLimitHint: "--max-file-mb")
        let planned: [OutputPlan.Target]
        do {
            planned = try OutputPlan.plan(inputs: inputs, output: output, format: fmt, overwrite: overwrite)
        } catch let e as UsageError {
            printError("dreamsr: error: \(e)")
            throw ExitCode(64) // EX_USAGE
        }
        // Every input is checked before the model loads: a bad file costs a header read, not a model load.
        var failures = 0
        var targets: [OutputPlan.Target] = []
        for t in planned {
            do {
                _ = try ImageCodec.probe(path: t.input, limits: limits)
                targets.append(t)
            } catch {
                failures += 1
                printError("dreamsr: error: \(quoted(t.input)): input: \(oneLine("\(error)"))\(warnings.drainSuffix())")
            }
        }
        if targets.isEmpty { throw ExitCode(1) }
        if let pipeline {
            try await runPipeline(pipeline, targets: targets, format: fmt, warnings: warnings, failures: failures)
            return
        }
        let restorer: NCNNModelRestorer
        let upscaler: ImageUpscaler
        do {
            restorer = try NCNNModelRestorer(model: model, scale: scale)
            let options = UpscaleOptions(scale: scale.map(Double.init), tileSize: tile, overlap: overlap,
                                         contextPadding: tilePad ?? restorer.model.tilePad,
                                         format: fmt, quality: quality, limits: limits)
            upscaler = try ImageUpscaler(restorer: restorer, options: options)
        } catch {
            printError("dreamsr: error: \(oneLine("\(error)"))\(warnings.drainSuffix())")
            throw ExitCode(2)
        }
        let outScale = scale ?? restorer.scale
        let modelNote = outScale == restorer.scale ? "\(restorer.name), native \(outScale)x"
            : "\(restorer.name) \(restorer.scale)x, resampled to \(outScale)x"
        let lane = ComputeLane(label: "upscale")
        for t in targets {
            let bar = ProgressReporter(label: quoted((t.input as NSString).lastPathComponent))
            _ = warnings.drainSuffix()
            do {
                let report = try await lane.run { try upscaler.upscaleFile(input: t.input, output: t.output, progress: bar.update) }
                bar.finish()
                let secs = report.stageSeconds.values.reduce(0, +)
                print("\(oneLine(t.input)) -> \(oneLine(report.output)) (\(report.width)x\(report.height), \(report.tiles) tiles, "
                      + String(format: "%.1fs", secs) + "; \(modelNote))")
            } catch {
                bar.finish()
                failures += 1
                printError("dreamsr: error: \(quoted(t.input)): \(oneLine("\(error)"))\(warnings.drainSuffix())")
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    /// `--pipeline`: the daemon's runtime, in-process, one job per input; per-stage timings printed per job.
    private func runPipeline(_ name: String, targets: [OutputPlan.Target], format fmt: ImageFormat?,
                             warnings: WarningCollector, failures: Int) async throws {
        let env = ProcessInfo.processInfo.environment
        let cwd = FileManager.default.currentDirectoryPath
        let runner: PipelineRunner
        do {
            var config = try DaemonConfig.parse(yaml: "{}", file: "<command line>", baseDirectory: cwd, env: env)
            if let modelsDir { config.modelsDirectory = URL(fileURLWithPath: modelsDir, relativeTo: URL(fileURLWithPath: cwd)).path }
            config.maxInputMegapixels = maxMegapixels
            config.maxFileBytes = Int(maxFileMb * 1_048_576)
            let dir = pipelinesDir ?? env["DREAMSR_PIPELINES_DIR"] ?? (cwd + "/pipelines")
            runner = PipelineRunner(definition: try PipelineRunner.resolve(name, pipelinesDirectory: dir), config: config)
        } catch {
            printError("dreamsr: error: \(oneLine("\(error)"))")
            throw ExitCode(2)
        }
        let requests = targets.map { t in
            JobRequest(id: JobID((t.input as NSString).lastPathComponent), source: .file(t.input), output: t.output, prompt: prompt,
                       scale: scale, format: fmt?.fileExtension)
        }
        let order = ["decode", "caption", "restore", "texture", "blend", "encode"]
        let outcomes: [JobOutcome]
        do {
            outcomes = try await runner.run(requests) { o in
                let stages = o.stageSeconds.sorted { (order.firstIndex(of: $0.key) ?? 99, $0.key) < (order.firstIndex(of: $1.key) ?? 99, $1.key) }
                    .map { String(format: "%@ %.2fs", $0.key, $0.value) }.joined(separator: ", ")
                if o.status == .ok {
                    print("\(oneLine(o.id.rawValue)) -> \(oneLine(o.output ?? "?")) (\(o.width ?? 0)x\(o.height ?? 0)) [\(o.pipeline ?? name)] \(stages)")
                } else {
                    printError("dreamsr: error: \(quoted(o.id.rawValue)): \(o.errorStage ?? "?"): \(oneLine(o.errorMessage ?? "failed")) [\(stages)]"
                               + warnings.drainSuffix())
                }
                for n in o.notes { print("  \(oneLine(n))") }
            }
        } catch {
            printError("dreamsr: error: \(oneLine("\(error)"))")
            throw ExitCode(2)
        }
        if failures > 0 || outcomes.contains(where: { $0.status != .ok }) { throw ExitCode(1) }
    }
}

/// libvips warnings of the input being processed, kept out of stderr and appended to that input's error line.
final class WarningCollector: Sendable {
    private let lines = Mutex<[String]>([])

    func add(_ warning: String) {
        lines.withLock { if $0.count < 20 { $0.append(warning) } }
    }

    /// " (libvips: w1; w2)" with the warnings gathered since the last call, or "" when there were none.
    func drainSuffix() -> String {
        let taken = lines.withLock { l in
            let out = l
            l = []
            return out
        }
        guard !taken.isEmpty else { return "" }
        return " (libvips: " + oneLine(taken.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: "; ")) + ")"
    }
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
