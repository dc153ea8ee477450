import Captioning
import DreamSRPipeline
import Foundation
import Imaging
import Logging
import Models
import PipelineRuntime
import Raster
import Tensor

/// What a DreamSR job carries between the caption, restore, texture and blend stages.
public final class DreamSRJobState: @unchecked Sendable {
    /// Output size (LR × scale) and the size it is computed at (sides rounded up to a multiple of 16).
    public let geometry: DreamSRImageGeometry
    /// The LR image resized by Lanczos3 to the output size: VAE input and colour-fix reference.
    public var lrUpscaled: PlanarImage?
    public var globalPrompt: String?
    public var localPrompts: [String] = []
    public var globalEncoding: DreamSRPromptEncoding?
    public var localEncodings: [DreamSRPromptEncoding] = []
    public var zLQ: Tensor?
    public var zDR: Tensor?
    public var zOut: Tensor?

    init(geometry: DreamSRImageGeometry) { self.geometry = geometry }
}

/// The DreamSR stages (dreamsr-architecture items 6-11) over the shared model set of a `ModelRegistry`: thin adapters
/// from the stage runtime (lanes, job state, notes, errors, captioning) to `DreamSRImagePipeline`, which does the work.
struct DreamSRStages: Sendable {
    let registry: ModelRegistry
    let options: DreamSRPipelineOptions
    let captioner: Captioner
    let logger: Logger
    /// "dual-branch", ..., or "realesrgan-restorer+texture".
    let modeName: String

    var mode: DreamSRMode { options.mode }

    init(definition: PipelineDefinition, registry: ModelRegistry, logger: Logger) throws {
        self.registry = registry
        options = definition.dreamsr
        captioner = try Self.makeCaptioner(definition, logger: logger)
        self.logger = logger
        let realesrgan = definition.stage(.restore)?.restorer == .realesrgan
        modeName = realesrgan ? "realesrgan-restorer+texture (\(options.mode.rawValue))" : options.mode.rawValue
    }

    /// The captioner of a pipeline file's `caption:` block.
    static func makeCaptioner(_ definition: PipelineDefinition, logger: Logger) throws -> Captioner {
        var cc = CaptionerConfiguration(endpoint: definition.caption.endpoint.flatMap(URL.init(string:)))
        cc.model = definition.caption.model
        if let p = definition.caption.fixedPrompt { cc.fixedGlobalPrompt = p }
        cc.fixedLocalPrompt = definition.caption.fixedLocalPrompt
        cc.timeout = definition.caption.timeoutSeconds
        cc.retries = definition.caption.retries
        cc.retryBackoff = definition.caption.retryBackoffSeconds
        cc.concurrency = definition.caption.concurrency
        if let t = definition.caption.globalPromptTemplate { cc.globalPromptTemplate = t }
        if let t = definition.caption.localPromptTemplate { cc.localPromptTemplate = t }
        do { return try Captioner(configuration: cc, logger: logger) } catch {
            throw ConfigError(file: definition.file, key: "caption", problem: "\(error)")
        }
    }


    var prepare: @Sendable () async throws -> Void {
        let registry = registry, logger = logger, options = options
        return {
            if registry.isLoaded { return }
            let lane = ComputeLane(label: "dreamsr-load")
            do {
                _ = try await lane.run { try registry.load() }
            } catch {
                throw PipelineError.startup("\(error)")
            }
            let policy = (try? DreamSRImagePipeline(models: registry.load(), options: options).textEncoderPolicy) ?? ""
            logger.info("DreamSR model set loaded", metadata: ["flux": "\(registry.paths.flux)", "dreamsr": "\(registry.paths.dreamsr)",
                                                               "text_encoders": "\(policy)"])
        }
    }

    /// The loaded model set as a pipeline with this file's options.
    private func pipeline() throws -> DreamSRImagePipeline {
        DreamSRImagePipeline(models: try registry.load(), options: options)
    }

    private func state(_ ctx: inout JobContext<ImageJob>, pipeline: DreamSRImagePipeline) throws -> DreamSRJobState {
        if let s = ctx.payload.dreamsr { return s }
        guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("no decoded image") }
        let scale = ctx.request.scale ?? pipeline.models.model.config.scale
        guard (1...8).contains(scale) else { throw PipelineError.badInput("scale \(scale) is not supported: 1...8") }
        let s = DreamSRJobState(geometry: try pipeline.geometry(lrWidth: decoded.width, lrHeight: decoded.height, scale: scale))
        ctx.payload.dreamsr = s
        ctx.notes.append("mode: \(modeName)")
        return s
    }

    // MARK: caption

    func captionStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("caption", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let pipeline = try me.pipeline()
            let s = try me.state(&ctx, pipeline: pipeline)
            let lane = pool.lanes[pool.take()]
            try await Self.caption(&ctx, state: s, plan: try pipeline.plan(s.geometry),
                                   patchSize: pipeline.models.model.config.patchSize, captioner: me.captioner, lane: lane,
                                   encode: pipeline.encode(prompt:), encoded: pipeline.promptsEncoded)
            ctx.notes.append(pipeline.textEncoderPolicy)
        }
    }

    /// The caption stage's work for any texture pipeline: the whole LR image and each patch's LR area (`patchSize`
    /// output pixels from the patch's corner) go to the captioner; the prompts are encoded with `encode` on `lane`.
    static func caption(_ ctx: inout JobContext<ImageJob>, state s: DreamSRJobState, plan: DreamSRPatchPlan, patchSize: Int,
                        captioner: Captioner, lane: ComputeLane,
                        encode: @escaping @Sendable (String) throws -> DreamSRPromptEncoding,
                        encoded: @escaping @Sendable () -> Void = {}) async throws {
        guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("caption: no decoded image") }
        let hasEndpoint = captioner.configuration.endpoint != nil
        // Regions: each patch's area in LR pixels (images are sent only when a model will look at them).
        let regionRects = s.geometry.patchRegionsLR(plan, patchSize: patchSize)
        let (whole, regions): (CaptionImage, [CaptionRegion]) = try await lane.run {
            func png(_ img: PlanarImage) throws -> CaptionImage {
                guard hasEndpoint else { return CaptionImage(data: Data(), mimeType: "image/png") }
                return CaptionImage(data: try ImageCodec.encodeToData(color: img, alpha: nil, bitDepth: 8, grey: decoded.isGrey,
                                                                      format: .png, quality: 92), mimeType: "image/png")
            }
            return (try png(decoded.color), try regionRects.enumerated().map { i, r in
                CaptionRegion(index: i, x: r.x, y: r.y, width: r.width, height: r.height, image: try png(decoded.color.cropped(to: r)))
            })
        }
        let result = await captioner.prompts(for: whole, regions: regions,
                                             overrides: PromptOverrides(global: ctx.request.prompt))
        ctx.notes += result.notes
        s.globalPrompt = result.global.text
        s.localPrompts = result.locals.map(\.text)
        (s.globalEncoding, s.localEncodings) = try await lane.run {
            defer { encoded() }
            return (try encode(result.global.text), try result.locals.map { try encode($0.text) })
        }
        ctx.notes += Self.promptNotes(result)
    }

    /// Most local prompts a job result lists one by one (the count is always given).
    static let listedLocalPrompts = 64

    /// The prompts a job used, with where each came from: `caption: global prompt (model): TEXT` and
    /// `caption: N local prompts (6 model, 2 fallback; K distinct): [0] TEXT | [1] TEXT | ...`.
    static func promptNotes(_ result: CaptionResult) -> [String] {
        func name(_ source: Caption.Source) -> String {
            switch source {
            case .model: "model"
            case .cache: "cache"
            case .override: "job"
            case .fixed: "fixed"
            case .fallback: "fallback"
            }
        }
        var counts: [String: Int] = [:]
        for c in result.locals { counts[name(c.source), default: 0] += 1 }
        let tally = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        let listed = result.locals.prefix(listedLocalPrompts).enumerated().map { "[\($0.offset)] \($0.element.text)" }
        let more = result.locals.count > listedLocalPrompts ? " | ... (\(result.locals.count - listedLocalPrompts) more)" : ""
        return [
            "caption: global prompt (\(name(result.global.source))): \(result.global.text)",
            "caption: \(result.locals.count) local prompts (\(tally.isEmpty ? "none" : tally); "
                + "\(Set(result.locals.map(\.text)).count) distinct): " + listed.joined(separator: " | ") + more,
        ]
    }

    /// Fixed prompts when a pipeline has no caption stage; the encodings to sample with.
    private func prompts(_ s: DreamSRJobState, plan: DreamSRPatchPlan, pipeline: DreamSRImagePipeline,
                         request: String?) throws -> (DreamSRPromptEncoding, [DreamSRPromptEncoding]) {
        defer { pipeline.promptsEncoded() }
        return try Self.prompts(s, patches: plan.count, captioner: captioner, request: request, encode: pipeline.encode(prompt:))
    }

    /// The caption stage's encodings, or (no caption stage) the job's prompt / the fixed prompts, encoded once.
    static func prompts(_ s: DreamSRJobState, patches: Int, captioner: Captioner, request: String?,
                        encode: (String) throws -> DreamSRPromptEncoding) throws -> (DreamSRPromptEncoding, [DreamSRPromptEncoding]) {
        if let g = s.globalEncoding { return (g, s.localEncodings) }
        let text = request ?? captioner.configuration.fixedGlobalPrompt
        let local = captioner.configuration.fixedLocalPrompt ?? text
        s.globalPrompt = text
        s.localPrompts = Array(repeating: local, count: patches)
        let g = try encode(text), l = try encode(local)
        (s.globalEncoding, s.localEncodings) = (g, Array(repeating: l, count: patches))
        return (g, s.localEncodings)
    }

    // MARK: restore (DreamSR restorer)

    func restoreStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("restore", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let pipeline = try me.pipeline()
            let s = try me.state(&ctx, pipeline: pipeline)
            guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("restore: no decoded image") }
            let lane = pool.lanes[pool.take()]
            let request = ctx.request.prompt
            let restores = me.mode.restores
            do {
                try await lane.run {
                    let sized = try pipeline.upsized(decoded.color, s.geometry)
                    s.lrUpscaled = sized
                    let zLQ = try pipeline.encodeLatent(sized, s.geometry)
                    s.zLQ = zLQ
                    if restores {
                        let (g, l) = try me.prompts(s, plan: try pipeline.plan(s.geometry), pipeline: pipeline, request: request)
                        s.zDR = try pipeline.restore(zLQ: zLQ, globalPrompt: g, localPrompts: l)
                    }
                }
            } catch let e as PipelineError { throw e } catch {
                throw PipelineError(.stageFailed, "restore: \(error)", isRetriable: false)
            }
            let encodeNote = pipeline.vaeIsTiled(s.geometry)
                ? "tiled VAE encode (\(me.options.vaeTile) px tiles, shared GroupNorm statistics)" : "VAE encode (one tile)"
            ctx.notes.append(restores ? "restore: DreamSR one-step LoRA restoration (t = \(pipeline.models.model.config.restoreT)) after \(encodeNote)"
                             : "restore: no restoration pass (\(me.mode.rawValue)); \(encodeNote) of the Lanczos3-resized LR only")
        }
    }

    // MARK: texture

    func textureStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("texture", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let pipeline = try me.pipeline()
            let s = try me.state(&ctx, pipeline: pipeline)
            let realesrgan = s.zLQ == nil
            guard let source = realesrgan ? ctx.payload.restored : ctx.payload.decoded?.color else {
                throw PipelineError.stageFailed("texture: no restored image")
            }
            let lane = pool.lanes[pool.take()]
            let flag = ctx.cancellation
            let progress = ctx.progress
            let request = ctx.request.prompt
            var sigmas: [Double] = []
            do {
                sigmas = try await lane.run {
                    let zLQ: Tensor
                    if let z = s.zLQ { zLQ = z } else {
                        zLQ = try pipeline.encodeLatent(try pipeline.upsized(source, s.geometry), s.geometry)
                        s.zLQ = zLQ
                    }
                    let (g, l) = try me.prompts(s, plan: try pipeline.plan(s.geometry), pipeline: pipeline, request: request)
                    let r = try pipeline.texture(zLQ: zLQ, start: s.zDR ?? zLQ, globalPrompt: g, localPrompts: l,
                                                 afterPixelRestorer: realesrgan, isCancelled: { flag.isCancelled },
                                                 onStep: { progress.report(done: $0, of: $1) })
                    s.zOut = r.zOut
                    return r.sigmas
                }
            } catch {
                if flag.isCancelled { throw CancellationError() }
                if let e = error as? PipelineError { throw e }
                throw PipelineError(.stageFailed, "texture: \(error)", isRetriable: false)
            }
            ctx.notes.append("texture: \(sigmas.count - 1) steps from sigma \(String(format: "%.3f", sigmas.first ?? 0)) ("
                             + (realesrgan ? "from the Real-ESRGAN restoration" : me.mode.restores ? "from z_dr" : "from z_lq") + ")")
        }
    }

    // MARK: blend

    func blendStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("blend", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let pipeline = try me.pipeline()
            let s = try me.state(&ctx, pipeline: pipeline)
            guard let zOut = s.zOut, let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("blend: no texture result") }
            let lane = pool.lanes[pool.take()]
            do {
                ctx.payload.restored = try await lane.run {
                    let pixels = try pipeline.decodeLatent(zOut, s.geometry)
                    let reference = try s.lrUpscaled ?? pipeline.upsized(decoded.color, s.geometry)
                    return try pipeline.finish(pixels, reference: reference, grey: decoded.color.channels == 1)
                }
            } catch let e as PipelineError { throw e } catch {
                throw PipelineError(.stageFailed, "blend: \(error)", isRetriable: false)
            }
            ctx.payload.dreamsr = nil
            ctx.notes.append("blend: VAE decode (" + (pipeline.decodeIsTiled(zOut) ? "tiled, \(pipeline.decodeTileCells)-cell tiles, "
                + "shared GroupNorm statistics, tile states in \(me.options.vaeTileStates.rawValue)" : "one tile")
                             + "), colour fix \(pipeline.colorFix.rawValue)" + (decoded.alpha != nil ? ", alpha re-attached" : ""))
        }
    }
}
