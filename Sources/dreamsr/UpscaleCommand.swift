import ArgumentParser
import DreamsrApp
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Imaging
import Jobs
import Tensor
import Upscaling

/// `dreamsr upscale INPUT... -o OUTPUT`: one-shot upscaling of image files, through the daemon's stage runtime (the
/// built-in Real-ESRGAN pipeline, or `--pipeline FILE`).
struct UpscaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upscale",
        abstract: "Upscale image files or folders (Real-ESRGAN x4plus by default).",
        discussion: """
            One input file: OUTPUT is a file (format from its extension or --format) or an existing folder. \
            Several inputs: OUTPUT is a folder (created if missing); each output is named after its input. \
            A folder input (-i DIR; --recursive for its subfolders, mirrored in OUTPUT) puts the command in folder \
            mode: OUTPUT is a folder and each output is named <stem>_x<scale>.<ext> (--suffix to change that); an \
            output that would replace an input is refused.

            An output is never one of the inputs (unless --overwrite, for an input file's own output), never a \
            device, FIFO or folder, and two inputs never share an output: such a command is refused before any work. \
            Every input is checked (exists, readable, image header within the limits) before the model loads. \
            Each failed input prints one line `dreamsr: error: "INPUT": stage: reason` (names quoted, control \
            characters escaped, libvips warnings folded into that line); the others are still processed.

            Flags of realesrgan-ncnn-vulkan are accepted: -i input, -o output, -s scale, -t tile, -n/-m model, \
            -f format, -j load:proc:save (proc sets the threads), -x test-time augmentation.

            --tta restores every tile in 8 orientations and averages them: it takes about 8 times as long \
            (8 model runs per tile; 7.9x to 9.5x measured on a one-tile 32x32 crop, 2 cores).

            Exit status: 0 all inputs upscaled (or skipped by --skip-existing); 1 at least one input failed (the \
            others were written); 2 the model or pipeline could not be loaded; 64 usage error (bad option or value, \
            refused output: nothing read or written).
            """
    )

    @Argument(help: "Input image files or folders (JPEG, PNG, WebP, TIFF, HEIF/AVIF, GIF).")
    var inputs: [String] = []

    @Option(name: [.customShort("i"), .customLong("input")], help: "An input file or folder (repeatable; as the positional inputs).")
    var inputOptions: [String] = []

    @Flag(help: "With a folder input: also upscale the images of its subfolders (mirrored in the output folder).")
    var recursive = false

    @Option(name: .shortAndLong, help: "Output file (one input file) or folder.")
    var output: String

    @Option(name: .shortAndLong,
            help: ArgumentHelp("Output scale, an integer \(UpscaleOptions.scales.lowerBound)-\(UpscaleOptions.scales.upperBound) (default: the model's, 4).",
                               discussion: "The daemon's range. Other values than the model's resample its output with Lanczos3."))
    var scale: Int?

    @Flag(help: "Allow the output to be its input file itself: the source is replaced by its upscaled version.")
    var overwrite = false

    @Flag(help: "Skip an input whose output already exists (the existing file is left as it is).")
    var skipExisting = false

    @Option(help: "Folder mode: added to each output's stem (default: _x<scale>, e.g. photo_x4.png).")
    var suffix: String?

    @Option(name: .shortAndLong, help: "Tile size in input pixels (memory grows with it; the output is the same).")
    var tile: Int = TiledUpscaler.defaultTileSize

    @Option(help: "Tile overlap in input pixels (blended with feathered weights; default 16, less for tiles under 34).")
    var overlap: Int?

    @Option(help: "Context pixels added around each tile and cropped away (against border effects; default: the model's receptive field, 24 for realesrgan-x4plus).")
    var tilePad: Int?

    @Flag(name: [.customShort("x"), .long],
          help: "Test-time augmentation: each tile restored in 8 flips/rotations, averaged (about 8x slower).")
    var tta = false

    @Flag(help: "Real-CUGAN / waifu2x cunet: each tile uses its own squeeze-excitation averages instead of the whole image's (faster, but tiled output then differs from untiled output; see docs/models.md).")
    var perTileStatistics = false

    @Flag(help: "Write no metadata: EXIF, XMP, IPTC and the ICC profile are kept by default (wide-gamut inputs stay in their profile); with --strip outputs are sRGB without metadata.")
    var strip = false

    @Option(name: .shortAndLong, help: "Output format: png, jpeg, webp, tiff (default: from the output name, else png).")
    var format: String?

    @Option(help: "JPEG/WebP quality, 1-100 (default: 92, or the pipeline's encode stage).")
    var quality: Int?

    @Option(name: [.customShort("m"), .customShort("n"), .long],
            help: ArgumentHelp("Model name (`dreamsr models list`), model folder or .param file (default: realesrgan-x4plus).",
                               discussion: "Names are searched in $DREAMSR_MODELS_DIR, ./models, ~/.local/share/dreamsr/models, /usr/share/dreamsr/models. A family name plus --scale picks its native model (realesr-animevideov3 --scale 2). Without --model, a --scale no installed photo model has natively is reached by resampling realesrgan-x4plus's output."))
    var model: String?

    @Option(help: ArgumentHelp("Run a pipeline file through the daemon's stage runtime: a name (PIPELINES_DIR/NAME.yaml) or a file path, e.g. dreamsr.",
                               discussion: "Without it, the built-in Real-ESRGAN pipeline runs (decode -> restore -> encode)."))
    var pipeline: String?

    @Option(help: "Folder of pipeline files (default: $DREAMSR_PIPELINES_DIR, else ./pipelines).")
    var pipelinesDir: String?

    @Option(help: "Models folder the pipeline's model paths are relative to (default: $DREAMSR_MODELS_DIR, else ./models).")
    var modelsDir: String?

    @Option(help: "Prompt for the caption stage (replaces the global prompt).")
    var prompt: String?

    @Option(help: "Compute threads (default: all cores).")
    var threads: Int?

    @Option(name: .customShort("j"), help: "realesrgan-ncnn-vulkan's load:proc:save thread counts: proc sets --threads.")
    var ncnnThreads: String?

    @Option(help: "Largest accepted source image in megapixels (width x height x pages).")
    var maxMegapixels: Double = 50

    @Option(help: "Largest accepted source file in MiB.")
    var maxFileMb: Double = 256

    var allInputs: [String] { inputs + inputOptions }

    /// --threads, else the proc count of -j.
    var computeThreads: Int? {
        if let threads { return threads }
        guard let j = ncnnThreads else { return nil }
        let parts = j.split(separator: ":", omittingEmptySubsequences: false)
        return Int(parts.count == 3 ? parts[1] : parts[0])
    }

    func validate() throws {
        guard !allInputs.isEmpty else { throw ValidationError("give at least one input file or folder") }
        if let quality, !(1...100).contains(quality) { throw ValidationError("--quality must be 1-100, got \(quality)") }
        if let f = format, ImageFormat(rawValue: f.lowercased()) == nil, ImageFormat(fileExtension: f) == nil {
            throw ValidationError("--format must be png, jpeg, webp or tiff, got \(quoted(f))")
        }
        if let s = scale, !UpscaleOptions.scales.contains(s) {
            throw ValidationError("--scale must be an integer \(UpscaleOptions.scales.lowerBound)-\(UpscaleOptions.scales.upperBound), got \(s)")
        }
        if let j = ncnnThreads {
            let parts = j.split(separator: ":", omittingEmptySubsequences: false)
            guard [1, 3].contains(parts.count), parts.allSatisfy({ (Int($0) ?? 0) >= 1 }) else {
                throw ValidationError("-j must be N or load:proc:save (positive integers), got \(quoted(j))")
            }
        }
        if let t = threads, t < 1 { throw ValidationError("--threads must be >= 1") }
        // The tiler's own rules, named by the flags that set them (refused before anything is read).
        guard tile >= 8 else { throw ValidationError("--tile (-t) must be >= 8, got \(tile)") }
        if let overlap, !(overlap >= 0 && overlap * 2 < tile) {
            throw ValidationError("--overlap must be >= 0 and less than half of --tile (\(tile)), got \(overlap)")
        }
        if let tilePad, tilePad < 0 { throw ValidationError("--tile-pad must be >= 0, got \(tilePad)") }
        guard maxMegapixels > 0, maxMegapixels.isFinite else { throw ValidationError("--max-megapixels must be positive") }
        guard maxFileMb > 0, maxFileMb.isFinite else { throw ValidationError("--max-file-mb must be positive") }
        if let suffix, suffix.contains("/") || suffix.contains("\0") { throw ValidationError("--suffix must not contain '/'") }
    }

    func run() async throws {
        if let t = computeThreads { BLASRuntime.setThreads(t) }
        try ImageCodec.initialize()
        let warnings = WarningCollector()
        ImageCodec.setWarningHandler { warnings.add($0) }
        let fmt = format.flatMap { ImageFormat(rawValue: $0.lowercased()) ?? ImageFormat(fileExtension: $0) }
        let limits = ImageLimits(maxPixels: Int(maxMegapixels * 1_000_000), maxFileBytes: Int(maxFileMb * 1_048_576),
                                 pixelLimitHint: "--max-megapixels", fileSizeLimitHint: "--max-file-mb")
        var planned: [OutputPlan.Target]
        let definition: PipelineDefinition
        do {
            let sources = try OutputPlan.sources(allInputs, recursive: recursive, excluding: output)
            planned = try OutputPlan.plan(sources: sources, output: output, format: fmt, overwrite: overwrite,
                                          suffix: suffix ?? "_x\(scale ?? 4)")
            definition = try pipelineDefinition()
        } catch let e as UsageError {
            printError("dreamsr: error: \(e)")
            throw ExitCode(64) // EX_USAGE
        } catch {
            printError("dreamsr: error: \(oneLine("\(error)"))")
            throw ExitCode(2)
        }
        if skipExisting {
            planned = planned.filter { t in
                var st = stat()
                guard lstat(t.output, &st) == 0 else { return true }
                print("\(oneLine(t.input)) -> \(oneLine(t.output)) exists: skipped")
                return false
            }
            if planned.isEmpty { return }
        }
        // Every input is checked before the model loads: a bad file costs a header read, not a model load.
        var failures = 0
        var targets: [(target: OutputPlan.Target, header: ImageHeader)] = []
        for t in planned {
            do {
                targets.append((t, try ImageCodec.probe(path: t.input, limits: limits)))
            } catch {
                failures += 1
                printError("dreamsr: error: \(quoted(t.input)): input: \(oneLine("\(error)"))\(warnings.drainSuffix())")
            }
        }
        if targets.isEmpty { throw ExitCode(1) }
        // Folder mode mirrors subfolders: their output folders are made now, after every refusal and check.
        for t in targets {
            let parent = (t.target.output as NSString).deletingLastPathComponent
            do {
                try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            } catch {
                printError("dreamsr: error: cannot create the output folder \(quoted(parent)): \(oneLine(error.localizedDescription))")
                throw ExitCode(1)
            }
        }
        try await runPipeline(definition, targets: targets, warnings: warnings, failures: failures)
    }

    /// The pipeline to run: `--pipeline`, else the built-in Real-ESRGAN one with this command's tile geometry; the
    /// command's quality and --tta applied to it.
    private func pipelineDefinition() throws -> PipelineDefinition {
        var def: PipelineDefinition
        if let pipeline {
            let env = ProcessInfo.processInfo.environment
            let dir = pipelinesDir ?? env["DREAMSR_PIPELINES_DIR"] ?? (FileManager.default.currentDirectoryPath + "/pipelines")
            def = try PipelineRunner.resolve(pipeline, pipelinesDirectory: dir)
        } else {
            def = try PipelineDefinition.parse(yaml: PipelineDefinition.builtInRealESRGANYAML, file: "<built-in realesrgan>")
            for i in def.stages.indices where def.stages[i].kind == .restore {
                def.stages[i].tileSize = tile
                // The default overlap shrinks for small tiles (it must stay under half the tile).
                def.stages[i].tileOverlap = overlap ?? min(TiledUpscaler.defaultOverlap, max(0, (tile - 1) / 2))
                def.stages[i].tilePad = tilePad
            }
        }
        if strip { def.keepMetadata = false }
        for i in def.stages.indices {
            if def.stages[i].kind == .encode, let quality { def.stages[i].quality = quality }
            if def.stages[i].kind == .restore, tta {
                guard def.stages[i].restorer == .realesrgan else {
                    throw UsageError("--tta applies to the realesrgan restorer; pipeline '\(def.name)' restores with \(def.stages[i].restorer.rawValue)")
                }
                def.stages[i].tta = true
            }
            if def.stages[i].kind == .restore, perTileStatistics {
                guard def.stages[i].restorer == .realesrgan else {
                    throw UsageError("--per-tile-statistics applies to the realesrgan restorer; pipeline '\(def.name)' restores with \(def.stages[i].restorer.rawValue)")
                }
                def.stages[i].sharedStatistics = false
            }
        }
        return def
    }

    /// The daemon's runtime, in-process, one job per input; one line per output, per-stage timings with --pipeline.
    private func runPipeline(_ definition: PipelineDefinition, targets: [(target: OutputPlan.Target, header: ImageHeader)],
                             warnings: WarningCollector, failures: Int) async throws {
        let env = ProcessInfo.processInfo.environment
        let cwd = FileManager.default.currentDirectoryPath
        let runner: PipelineRunner
        do {
            var config = try DaemonConfig.parse(yaml: "{}", file: "<command line>", baseDirectory: cwd, env: env)
            if let modelsDir { config.modelsDirectory = URL(fileURLWithPath: modelsDir, relativeTo: URL(fileURLWithPath: cwd)).path }
            config.maxInputMegapixels = maxMegapixels
            config.maxFileBytes = Int(maxFileMb * 1_048_576)
            let hints = (pixels: "--max-megapixels", fileSize: "--max-file-mb")
            let factory: ImagePipelineFactory
            if pipeline == nil {
                // The built-in pipeline loads the model the way --model names it (folder, name or default search).
                let model = self.model
                let scale = self.scale
                factory = ImagePipelineFactory(loadRestorer: { _ in try NCNNModelRestorer(model: model, scale: scale) },
                                               limitHints: hints)
            } else {
                factory = ImagePipelineFactory(limitHints: hints)
            }
            runner = PipelineRunner(definition: definition, config: config, factory: factory)
        } catch {
            printError("dreamsr: error: \(oneLine("\(error)"))")
            throw ExitCode(2)
        }
        // Job ids are unique per run (two folders may hold files of the same name).
        let requests = targets.enumerated().map { i, t in
            JobRequest(id: JobID("\(i + 1):" + (t.target.input as NSString).lastPathComponent), source: .file(t.target.input),
                       output: t.target.output, prompt: prompt, scale: scale, format: t.target.format.fileExtension)
        }
        let byID = Dictionary(uniqueKeysWithValues: zip(requests.map(\.id), targets))
        let bars = ProgressBars()
        let restore = definition.stage(.restore)
        let builtIn = pipeline == nil
        // Which model the built-in pipeline runs and whether the asked scale is native to it (said in each line).
        let modelNote: String = {
            guard builtIn, let located = try? ModelLocator.resolve(model, scale: scale) else { return "" }
            let outScale = scale ?? located.model.scale
            return outScale == located.model.scale ? "; \(located.model.name), native \(outScale)x"
                : "; \(located.model.name) \(located.model.scale)x, resampled to \(outScale)x"
        }()
        let order = ["decode", "caption", "restore", "texture", "blend", "encode"]
        let outcomes: [JobOutcome]
        do {
            _ = warnings.drainSuffix()
            // The built-in pipeline prints what the one-shot CLI always printed (one line per input), no runtime log.
            outcomes = try await runner.run(requests, quiet: builtIn, onProgress: { id, stage, done, total in
                guard stage == "restore", total > 0, let t = byID[id] else { return }
                bars.bar(for: id, label: quoted((t.target.input as NSString).lastPathComponent)).update(done: done, total: total)
            }) { o in
                bars.finish(o.id)
                guard let t = byID[o.id] else { return }
                let input = t.target.input
                let stages = o.stageSeconds.sorted { (order.firstIndex(of: $0.key) ?? 99, $0.key) < (order.firstIndex(of: $1.key) ?? 99, $1.key) }
                    .map { String(format: "%@ %.2fs", $0.key, $0.value) }.joined(separator: ", ")
                if o.status == .ok {
                    if builtIn, let restore {
                        let side = min(t.header.width, t.header.height)
                        let grid = try? TiledUpscaler.tileCount(width: t.header.width, height: t.header.height,
                                                                tileSize: restore.tileSize,
                                                                overlap: min(restore.tileOverlap, max(0, side - 1)))
                        let secs = o.stageSeconds.values.reduce(0, +)
                        print("\(oneLine(input)) -> \(oneLine(o.output ?? t.target.output)) (\(o.width ?? 0)x\(o.height ?? 0), "
                              + "\(grid ?? 0) tiles" + (restore.tta ? ", tta" : "") + String(format: ", %.1fs", secs) + modelNote + ")")
                    } else {
                        print("\(oneLine(input)) -> \(oneLine(o.output ?? "?")) (\(o.width ?? 0)x\(o.height ?? 0)) [\(o.pipeline ?? definition.name)] \(stages)")
                    }
                } else {
                    printError("dreamsr: error: \(quoted(input)): \(o.errorStage ?? "?"): \(oneLine(o.errorMessage ?? "failed"))"
                               + (builtIn ? "" : " [\(stages)]") + warnings.drainSuffix())
                }
                if !builtIn { for n in o.notes { print("  \(oneLine(n))") } }
            }
        } catch {
            printError("dreamsr: error: \(oneLine("\(error)"))")
            throw ExitCode(2)
        }
        if failures > 0 || outcomes.contains(where: { $0.status != .ok }) { throw ExitCode(1) }
    }
}

/// One progress bar per job, made when its restore stage first reports (so its clock starts with the work).
final class ProgressBars: Sendable {
    private let bars = Mutex<[JobID: ProgressReporter]>([:])

    func bar(for id: JobID, label: String) -> ProgressReporter {
        bars.withLock { b in
            if let bar = b[id] { return bar }
            let bar = ProgressReporter(label: label)
            b[id] = bar
            return bar
        }
    }

    func finish(_ id: JobID) { bars.withLock { $0.removeValue(forKey: id) }?.finish() }
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
