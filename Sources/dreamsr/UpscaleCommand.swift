import ArgumentParser
import DreamsrApp
import Foundation
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
            One input: OUTPUT is a file (format from its extension or --format) or an existing folder.
            Several inputs: OUTPUT is a folder (created if missing); each output is named after its input.
            Each failed input prints one error line; the others are still processed; the exit code is 1 if any failed.
            """
    )

    @Argument(help: "Input image files (JPEG, PNG, WebP, TIFF, HEIF/AVIF, GIF).")
    var inputs: [String]

    @Option(name: .shortAndLong, help: "Output file (one input) or folder.")
    var output: String

    @Option(help: "Output scale (default: the model's, 4). Other values resample the model output with Lanczos3.")
    var scale: Double?

    @Option(help: "Tile size in input pixels (memory grows with it; the output is the same).")
    var tile: Int = TiledUpscaler.defaultTileSize

    @Option(help: "Tile overlap in input pixels (blended with feathered weights).")
    var overlap: Int = TiledUpscaler.defaultOverlap

    @Option(help: "Context pixels added around each tile and cropped away (against border effects).")
    var tilePad: Int = TiledUpscaler.defaultContextPadding

    @Option(help: "Output format: png, jpeg, webp, tiff (default: from the output name, else png).")
    var format: String?

    @Option(help: "JPEG/WebP quality, 1-100.")
    var quality: Int = 92

    @Option(help: "Model folder or name (default: realesrgan-x4plus, searched in $DREAMSR_MODELS_DIR, ./models).")
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

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one input file") }
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be 1-100, got \(quality)") }
        if let f = format, ImageFormat(rawValue: f.lowercased()) == nil, ImageFormat(fileExtension: f) == nil {
            throw ValidationError("--format must be png, jpeg, webp or tiff, got '\(f)'")
        }
        if let t = threads, t < 1 { throw ValidationError("--threads must be >= 1") }
        guard maxMegapixels > 0 else { throw ValidationError("--max-megapixels must be positive") }
    }

    func run() async throws {
        if let t = threads { BLASRuntime.setThreads(t) }
        try ImageCodec.initialize()
        let fmt = format.flatMap { ImageFormat(rawValue: $0.lowercased()) ?? ImageFormat(fileExtension: $0) }
        if let pipeline { return try await runPipeline(pipeline, format: fmt) }
        var limits = ImageLimits()
        limits.maxPixels = Int(maxMegapixels * 1_000_000)
        let options = UpscaleOptions(scale: scale, tileSize: tile, overlap: overlap, contextPadding: tilePad, format: fmt, quality: quality,
                                     limits: limits)
        let restorer: RealESRGANRestorer
        do {
            restorer = try RealESRGANRestorer(modelPath: model)
        } catch {
            printError("dreamsr: error: \(error)")
            throw ExitCode(2)
        }
        let upscaler = try ImageUpscaler(restorer: restorer, options: options)
        let targets = try planOutputs(format: fmt)
        let lane = ComputeLane(label: "upscale")
        var failures = 0
        for (input, out) in targets {
            let bar = ProgressReporter(label: (input as NSString).lastPathComponent)
            do {
                let report = try await lane.run { try upscaler.upscaleFile(input: input, output: out, progress: bar.update) }
                bar.finish()
                let secs = report.stageSeconds.values.reduce(0, +)
                print("\(input) -> \(report.output) (\(report.width)x\(report.height), \(report.tiles) tiles, "
                      + String(format: "%.1fs)", secs))
            } catch {
                bar.finish()
                failures += 1
                printError("dreamsr: error: \(input): \(error)")
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    /// `--pipeline`: the daemon's runtime, in-process, one job per input; per-stage timings printed per job.
    private func runPipeline(_ name: String, format fmt: ImageFormat?) async throws {
        let env = ProcessInfo.processInfo.environment
        let cwd = FileManager.default.currentDirectoryPath
        var config = try DaemonConfig.parse(yaml: "{}", file: "<command line>", baseDirectory: cwd, env: env)
        if let modelsDir { config.modelsDirectory = URL(fileURLWithPath: modelsDir, relativeTo: URL(fileURLWithPath: cwd)).path }
        config.maxInputMegapixels = maxMegapixels
        let dir = pipelinesDir ?? env["DREAMSR_PIPELINES_DIR"] ?? (cwd + "/pipelines")
        let runner: PipelineRunner
        do {
            runner = PipelineRunner(definition: try PipelineRunner.resolve(name, pipelinesDirectory: dir), config: config)
        } catch {
            printError("dreamsr: error: \(error)")
            throw ExitCode(2)
        }
        let requests = try planOutputs(format: fmt).map { input, out in
            JobRequest(id: JobID((input as NSString).lastPathComponent), source: .file(input), output: out, prompt: prompt,
                       scale: scale.map { Int($0.rounded()) }, format: fmt?.fileExtension)
        }
        let order = ["decode", "caption", "restore", "texture", "blend", "encode"]
        let outcomes: [JobOutcome]
        do {
            outcomes = try await runner.run(requests) { o in
                let stages = o.stageSeconds.sorted { (order.firstIndex(of: $0.key) ?? 99, $0.key) < (order.firstIndex(of: $1.key) ?? 99, $1.key) }
                    .map { String(format: "%@ %.2fs", $0.key, $0.value) }.joined(separator: ", ")
                if o.status == .ok {
                    print("\(o.id) -> \(o.output ?? "?") (\(o.width ?? 0)x\(o.height ?? 0)) [\(o.pipeline ?? name)] \(stages)")
                } else {
                    printError("dreamsr: error: \(o.id): \(o.errorStage ?? "?"): \(o.errorMessage ?? "failed") [\(stages)]")
                }
                for n in o.notes { print("  \(n)") }
            }
        } catch {
            printError("dreamsr: error: \(error)")
            throw ExitCode(2)
        }
        if outcomes.contains(where: { $0.status != .ok }) { throw ExitCode(1) }
    }

    /// Pairs each input with its output path.
    private func planOutputs(format: ImageFormat?) throws -> [(String, String)] {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: output, isDirectory: &isDir)
        let asFolder = inputs.count > 1 || (exists && isDir.boolValue) || output.hasSuffix("/")
        if !asFolder { return [(inputs[0], output)] }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        return inputs.map { input in
            let base = ((input as NSString).lastPathComponent as NSString).deletingPathExtension
            let inExt = (input as NSString).pathExtension
            let ext = format?.fileExtension ?? ImageFormat(fileExtension: inExt)?.fileExtension ?? "png"
            return (input, (output as NSString).appendingPathComponent("\(base).\(ext)"))
        }
    }
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
