import DreamSRPipeline
import Foundation
import Imaging
import Jobs
import Logging
import Metrics
import Models
import PipelineRuntime
import Raster
import Support
import Tensor
import Upscaling

/// What an image job carries between stages.
public struct ImageJob: Sendable {
    public var decoded: DecodedImage?
    public var restored: PlanarImage?
    /// The DreamSR stages' state (prompts, latents); nil in the Real-ESRGAN-only pipeline.
    public var dreamsr: DreamSRJobState?
    public init() {}
}

/// Builds the real stages (libvips decode/encode, tiled model restoration) from a pipeline definition.
///
/// Blocking work runs on dedicated `ComputeLane`s (one per worker of a stage), never on the cooperative pool. Model
/// weights are loaded in the restore stage's `prepare` (so `/ready` turns true only when they are in memory),
/// one model instance per restore worker.
public struct ImagePipelineFactory: PipelineFactory {
    /// Makes a restorer from a model folder (the restore stage's `model:`, resolved under `models_dir`).
    public typealias RestorerLoader = @Sendable (_ modelDirectory: String) throws -> any TileRestorer

    let loadRestorer: RestorerLoader
    /// What a limit error tells the user to change (the CLI names its flags); nil: the daemon's config keys.
    let limitHints: (pixels: String, fileSize: String)?

    public init(loadRestorer: @escaping RestorerLoader = ImagePipelineFactory.defaultRestorerLoader,
                limitHints: (pixels: String, fileSize: String)? = nil) {
        self.loadRestorer = loadRestorer
        self.limitHints = limitHints
    }

    /// Any catalog model's folder (`model: NAME` in a pipeline file; see `ModelLocator`).
    public static let defaultRestorerLoader: RestorerLoader = { dir in try NCNNModelRestorer(model: dir) }

    public func scrapeGauges() -> [String: Double] {
        ["dreamsr_vips_memory_bytes": Double(ImageCodec.vipsMemoryBytes)]
    }

    public func healthProblem() -> String? {
        let h = ImageCodec.health
        return h.ok ? nil : h.message
    }

    public func makePipeline(_ definition: PipelineDefinition, config: DaemonConfig, logger: Logger,
                             metricsFactory: any MetricsFactory) throws -> PipelineHandle {
        let limits = ImageLimits(maxPixels: Int(config.maxInputMegapixels * 1_000_000), maxFileBytes: config.maxFileBytes,
                                 pixelLimitHint: limitHints?.pixels
                                    ?? "limits.max_input_megapixels in \(config.file) (or DREAMSR_LIMITS_MAX_INPUT_MEGAPIXELS)",
                                 fileSizeLimitHint: limitHints?.fileSize
                                    ?? "limits.max_file_bytes in \(config.file) (or DREAMSR_LIMITS_MAX_FILE_BYTES)")
        let restoreDef = definition.stage(.restore)
        let scale = restoreDef == nil ? 1 : 4 // refined once the model is loaded; used only to weigh jobs
        var dreamsr: DreamSRStages?
        var controlnet: FluxControlNetStages?
        if let cn = definition.controlnet {
            // Start-up check: every weight file is present; a missing one is named with where to download it.
            let paths = (definition.controlnetModels ?? FluxControlNetModelPaths(variant: cn.variant)).resolved(base: config.modelsDirectory)
            let registry = FluxControlNetRegistry.shared(paths, variant: cn.variant)
            do { try registry.validate(pipelineFile: definition.file) } catch let e as DreamSRPipelineError {
                throw AppError(.models, e.message)
            }
            controlnet = try FluxControlNetStages(definition: definition, registry: registry, logger: logger)
        } else if definition.needsDreamSRModels {
            // Start-up check: every weight file of the DreamSR model set is present (headers read, nothing loaded).
            let paths = (definition.models ?? DreamSRModelPaths()).resolved(base: config.modelsDirectory)
            let registry = ModelRegistry.shared(paths, precision: definition.dreamsr.precision)
            do { try registry.validate(pipelineFile: definition.file) } catch let e as DreamSRPipelineError {
                throw AppError(.models, e.message)
            }
            dreamsr = try DreamSRStages(definition: definition, registry: registry, logger: logger)
        }
        var stages: [Stage<ImageJob>] = []
        for def in definition.stages {
            switch def.kind {
            case .decode:
                stages.append(decodeStage(def, limits: limits, scale: scale, keepMetadata: definition.keepMetadata))
            case .restore where def.restorer == .dreamsr:
                stages.append(dreamsr!.restoreStage(def))
            case .restore:
                let modelPath = DaemonConfig.absolute(def.model!, base: config.modelsDirectory)
                stages.append(restoreStage(def, modelDirectory: modelPath, logger: logger))
            case .encode:
                stages.append(encodeStage(def, defaultFormat: definition.outputFormat))
            case .caption:
                stages.append(controlnet?.captionStage(def) ?? dreamsr!.captionStage(def))
            case .texture:
                stages.append(controlnet?.textureStage(def) ?? dreamsr!.textureStage(def))
            case .blend:
                stages.append(controlnet?.blendStage(def) ?? dreamsr!.blendStage(def))
            }
        }
        let pipeline = try Pipeline(
            configuration: PipelineConfiguration(name: definition.name, capacity: definition.capacity,
                                                 jobTimeout: definition.jobTimeout),
            stages: stages, logger: logger, metricsFactory: metricsFactory) { _ in ImageJob() }
        return PipelineHandle(pipeline)
    }

    // MARK: Stages

    static func lanes(_ name: String, _ n: Int, niceIncrement: Int32 = 0) -> [ComputeLane] {
        (0..<n).map { ComputeLane(label: "\(name)-\($0)", niceIncrement: niceIncrement) }
    }

    /// Decode and encode lanes run at a lower priority than the model lanes: on a machine whose cores the model
    /// keeps busy they take what the model leaves instead of preempting its threads.
    static let sideWorkNice: Int32 = 5

    /// Round-robin over a stage's lanes; with `concurrency` workers and as many lanes, each job gets a free one.
    final class LanePool: Sendable {
        let lanes: [ComputeLane]
        private let next = Locked(0)
        init(_ lanes: [ComputeLane]) { self.lanes = lanes }
        func take() -> Int { next.withLock { n in defer { n = (n + 1) % lanes.count }; return n } }
    }

    private func decodeStage(_ def: StageDefinition, limits: ImageLimits, scale: Int, keepMetadata: Bool) -> Stage<ImageJob> {
        let pool = LanePool(Self.lanes("decode", def.runtime.concurrency, niceIncrement: Self.sideWorkNice))
        return Stage(def.runtime) { ctx in
            guard case .file(let path) = ctx.request.source else {
                throw PipelineError.badInput("only local files can be decoded here; URL sources are fetched by their connector")
            }
            let decoded: DecodedImage
            do {
                decoded = try await pool.lanes[pool.take()].run { try ImageCodec.decode(path: path, limits: limits, keepMetadata: keepMetadata) }
            } catch let e as ImagingError {
                throw PipelineError(e.isRetriable ? .stageFailed : .badInput, e.description, isRetriable: e.isRetriable)
            }
            // Weight: the input plus the output canvas, in megapixels.
            let inMP = Double(decoded.width * decoded.height) / 1_000_000
            ctx.megapixels = inMP * Double(1 + scale * scale)
            ctx.payload.decoded = decoded
        }
    }

    private func restoreStage(_ def: StageDefinition, modelDirectory: String, logger: Logger) -> Stage<ImageJob> {
        let n = def.runtime.concurrency
        let pool = LanePool(Self.lanes("restore", n))
        let upscalers = Locked<[ImageUpscaler]>([])
        let loader = loadRestorer
        let options = UpscaleOptions(tileSize: def.tileSize, overlap: def.tileOverlap,
                                     contextPadding: def.tilePad ?? TiledUpscaler.defaultContextPadding, tta: def.tta,
                                     sharedStatistics: def.sharedStatistics)
        let prepare: @Sendable () async throws -> Void = {
            // One model instance (it is safe to call concurrently), one tiler per worker lane.
            let restorer: any TileRestorer
            do {
                restorer = try await pool.lanes[0].run { try loader(modelDirectory) }
            } catch {
                throw PipelineError.startup("restore model from \(modelDirectory): \(error)")
            }
            // Context around each tile: the pipeline's `tile_pad`, else the model's receptive field (catalog), else
            // the default.
            var tiling = options
            tiling.contextPadding = def.tilePad ?? (restorer as? NCNNModelRestorer)?.model.tilePad
                ?? TiledUpscaler.defaultContextPadding
            let made = try (0..<n).map { _ in try ImageUpscaler(restorer: restorer, options: tiling) }
            logger.info("restore model loaded", metadata: ["model": "\(restorer.name)", "workers": "\(n)",
                                                           "dir": "\(modelDirectory)", "tta": "\(options.tta)"])
            upscalers.withLock { $0 = made }
        }
        return Stage(def.runtime, prepare: prepare) { ctx in
            guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("restore: no decoded image") }
            let lane = pool.take()
            let upscaler = upscalers.current[lane]
            let scale = ctx.request.scale.map(Double.init)
            if let scale, !(scale > 0 && scale <= Double(upscaler.scale)) {
                throw PipelineError.badInput("scale \(Int(scale)) is not supported: 1...\(upscaler.scale) (the model's scale)")
            }
            let flag = ctx.cancellation
            let progress = ctx.progress
            do {
                ctx.payload.restored = try await pool.lanes[lane].run {
                    try upscaler.restore(decoded, scale: scale, progress: { progress.report(done: $0, of: $1) },
                                         isCancelled: { flag.isCancelled })
                }
            } catch {
                // The engine's errors become one PipelineError here, and nowhere else.
                if flag.isCancelled { throw CancellationError() }
                switch error {
                case let e as UpscalingError: throw PipelineError(.stageFailed, e.message)
                case let e as ImagingError: throw PipelineError(.stageFailed, e.description, isRetriable: e.isRetriable)
                default: throw PipelineError(.stageFailed, "\(error)")
                }
            }
            ctx.notes.append("restore: \(upscaler.restorerName) x\(upscaler.scale)")
        }
    }

    private func encodeStage(_ def: StageDefinition, defaultFormat: String) -> Stage<ImageJob> {
        let pool = LanePool(Self.lanes("encode", def.runtime.concurrency, niceIncrement: Self.sideWorkNice))
        return Stage(def.runtime) { ctx in
            guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("encode: no decoded image") }
            let color = ctx.payload.restored ?? decoded.color
            let formatName = ctx.request.format ?? defaultFormat
            guard let format = ImageFormat(fileExtension: formatName) else {
                throw PipelineError.badInput("unknown output format '\(formatName)'")
            }
            guard let output = ctx.request.output else { throw PipelineError.badInput("the request names no output path") }
            let alpha = decoded.alpha
            let quality = def.quality
            let metadata = decoded.metadata
            do {
                try await pool.lanes[pool.take()].run {
                    var outAlpha: PlanarImage? = nil
                    if let alpha {
                        outAlpha = try ImageCodec.resize(alpha, width: color.width, height: color.height)
                    }
                    try ImageCodec.encode(color: color, alpha: outAlpha, bitDepth: decoded.bitDepth, grey: decoded.isGrey,
                                          format: format, quality: quality, metadata: metadata, to: output)
                }
            } catch let e as ImagingError {
                throw PipelineError(.stageFailed, e.description, isRetriable: e.isRetriable)
            }
            ctx.payload.decoded = nil
            ctx.payload.restored = nil
            ctx.output = output
            ctx.width = color.width
            ctx.height = color.height
        }
    }
}
