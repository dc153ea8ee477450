import Captioning
import Foundation
import Imaging
import Logging
import Models
import PipelineRuntime
import Raster
import Tensor
import Upscaling

/// What a DreamSR job carries between the caption, restore, texture and blend stages.
public final class DreamSRJobState: @unchecked Sendable {
    /// Output size (LR × scale) and the size it is computed at (sides rounded up to a multiple of 16).
    public let outWidth: Int, outHeight: Int, padWidth: Int, padHeight: Int
    public let scale: Int
    /// The LR image resized by Lanczos3 to the output size: VAE input and colour-fix reference.
    public var lrUpscaled: PlanarImage?
    public var globalPrompt: String?
    public var localPrompts: [String] = []
    public var globalEncoding: DreamSRPromptEncoding?
    public var localEncodings: [DreamSRPromptEncoding] = []
    public var zLQ: Tensor?
    public var zDR: Tensor?
    public var zOut: Tensor?

    init(lrWidth: Int, lrHeight: Int, scale: Int) {
        self.scale = scale
        outWidth = lrWidth * scale
        outHeight = lrHeight * scale
        padWidth = (outWidth + 15) / 16 * 16
        padHeight = (outHeight + 15) / 16 * 16
    }
}

/// The DreamSR stages (dreamsr-architecture items 6-11) over the shared model set of a `ModelRegistry`.
struct DreamSRStages: Sendable {
    let registry: ModelRegistry
    let options: DreamSRPipelineOptions
    let mode: DreamSRMode
    let captioner: Captioner
    let logger: Logger
    /// "dual-branch", ..., or "realesrgan-restorer+texture".
    let modeName: String

    init(definition: PipelineDefinition, registry: ModelRegistry, logger: Logger) throws {
        self.registry = registry
        options = definition.dreamsr
        mode = DreamSRMode(rawValue: definition.dreamsr.mode)!
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
        do { captioner = try Captioner(configuration: cc, logger: logger) } catch {
            throw ConfigError(file: definition.file, key: "caption", problem: "\(error)")
        }
        self.logger = logger
        let realesrgan = definition.stage(.restore)?.restorer == .realesrgan
        modeName = realesrgan ? "realesrgan-restorer+texture (\(mode.rawValue))" : mode.rawValue
    }

    var prepare: @Sendable () async throws -> Void {
        let registry = registry, logger = logger
        return {
            if registry.isLoaded { return }
            let lane = ComputeLane(label: "dreamsr-load")
            do {
                _ = try await lane.run { try registry.load() }
            } catch {
                throw PipelineError.startup("\(error)")
            }
            logger.info("DreamSR model set loaded", metadata: ["flux": "\(registry.paths.flux)", "dreamsr": "\(registry.paths.dreamsr)"])
        }
    }

    private func sampler(_ models: DreamSRModelSet, realesrgan: Bool = false) -> DreamSRStagedSampler {
        // The Real-ESRGAN restorer replaces the restoration pass: the texture stage runs as the full model's.
        DreamSRStagedSampler(model: models.model, mode: realesrgan ? .dualBranch : mode, steps: options.steps,
                             batchSize: options.batch)
    }

    private func state(_ ctx: inout JobContext<ImageJob>, models: DreamSRModelSet) throws -> DreamSRJobState {
        if let s = ctx.payload.dreamsr { return s }
        guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("no decoded image") }
        let scale = ctx.request.scale ?? models.model.config.scale
        guard (1...8).contains(scale) else { throw PipelineError.badInput("scale \(scale) is not supported: 1...8") }
        let s = DreamSRJobState(lrWidth: decoded.width, lrHeight: decoded.height, scale: scale)
        ctx.payload.dreamsr = s
        ctx.notes.append("mode: \(modeName)")
        return s
    }

    private static func rgb(_ image: PlanarImage) -> PlanarImage {
        guard image.channels == 1 else { return image }
        return PlanarImage(width: image.width, height: image.height, channels: 3, pixels: image.pixels + image.pixels + image.pixels)
    }

    /// LR (or restored) pixels resized by Lanczos3 to the output size, then encoded: z = sf (z_raw − shift).
    private func encodeLatent(_ pixels: PlanarImage, isLR: Bool, state s: DreamSRJobState, models: DreamSRModelSet) throws -> Tensor {
        let img = Self.rgb(pixels)
        let sized = img.width == s.outWidth && img.height == s.outHeight ? img
            : try ImageCodec.resize(img, width: s.outWidth, height: s.outHeight)
        // Reflect-pad to multiples of 16 (cropped back after decoding).
        let (w, h, pw, ph) = (s.outWidth, s.outHeight, s.padWidth, s.padHeight)
        let x = Tensor(zeros: [1, 3, ph, pw])
        x.withUnsafeMutableBufferPointer { dst in
            for c in 0..<3 { for y in 0..<ph { for xx in 0..<pw {
                let sy = DreamSRPatchPlan.reflect(y, h), sx = DreamSRPatchPlan.reflect(xx, w)
                dst[(c * ph + y) * pw + xx] = sized.pixels[(c * h + sy) * w + sx] * 2 - 1
            } } }
        }
        let vae = models.vae
        let tiling = max(pw, ph) > options.vaeTile ? options.vaeTiling(tile: options.vaeTile) : .untiled
        let raw = try vae.encode(x, tiling: tiling)
        let z = Tensor(zeros: Array(raw.shape.dropFirst()))
        let sf = vae.config.scalingFactor, sh = vae.config.shiftFactor
        z.assign(raw) { sf * ($0 - sh) }
        if s.lrUpscaled == nil && isLR { s.lrUpscaled = sized }
        return z
    }

    // MARK: caption

    func captionStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("caption", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let models = try me.registry.load()
            let s = try me.state(&ctx, models: models)
            guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("caption: no decoded image") }
            let plan = try me.sampler(models).plan(latentWidth: s.padWidth / 8, latentHeight: s.padHeight / 8)
            let hasEndpoint = me.captioner.configuration.endpoint != nil
            let lane = pool.lanes[pool.take()]
            // Regions: each patch's area in LR pixels (images are sent only when a model will look at them).
            let patchLR = Double(models.model.config.patchSize) / Double(s.scale)
            let regionSpecs: [(Int, PixelRect)] = (0..<plan.count).map { i in
                let (y, x) = plan.origin(i)
                let x0 = min(decoded.width - 1, Int(Double(x * 8) / Double(s.scale)))
                let y0 = min(decoded.height - 1, Int(Double(y * 8) / Double(s.scale)))
                let w = max(1, min(decoded.width - x0, Int(patchLR.rounded(.up))))
                let hgt = max(1, min(decoded.height - y0, Int(patchLR.rounded(.up))))
                return (i, PixelRect(x: x0, y: y0, width: w, height: hgt))
            }
            let (whole, regions): (CaptionImage, [CaptionRegion]) = try await lane.run {
                func png(_ img: PlanarImage) throws -> CaptionImage {
                    guard hasEndpoint else { return CaptionImage(data: Data(), mimeType: "image/png") }
                    return CaptionImage(data: try ImageCodec.encodeToData(color: img, alpha: nil, bitDepth: 8, grey: decoded.isGrey,
                                                                          format: .png, quality: 92), mimeType: "image/png")
                }
                return (try png(decoded.color), try regionSpecs.map { i, r in
                    CaptionRegion(index: i, x: r.x, y: r.y, width: r.width, height: r.height, image: try png(decoded.color.cropped(to: r)))
                })
            }
            let result = await me.captioner.prompts(for: whole, regions: regions,
                                                    overrides: PromptOverrides(global: ctx.request.prompt))
            ctx.notes += result.notes
            s.globalPrompt = result.global.text
            s.localPrompts = result.locals.map(\.text)
            (s.globalEncoding, s.localEncodings) = try await lane.run {
                (try models.encode(prompt: result.global.text), try result.locals.map { try models.encode(prompt: $0.text) })
            }
            ctx.notes += Self.promptNotes(result)
        }
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

    /// Fixed prompts when a pipeline has no caption stage.
    private func ensurePrompts(_ s: DreamSRJobState, plan: DreamSRPatchPlan, models: DreamSRModelSet, request: String?) throws {
        if s.globalEncoding != nil { return }
        let text = request ?? captioner.configuration.fixedGlobalPrompt
        let local = captioner.configuration.fixedLocalPrompt ?? text
        s.globalPrompt = text
        s.localPrompts = Array(repeating: local, count: plan.count)
        s.globalEncoding = try models.encode(prompt: text)
        s.localEncodings = Array(repeating: try models.encode(prompt: local), count: plan.count)
    }

    // MARK: restore (DreamSR restorer)

    func restoreStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("restore", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let models = try me.registry.load()
            let s = try me.state(&ctx, models: models)
            guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("restore: no decoded image") }
            let sampler = me.sampler(models)
            let lane = pool.lanes[pool.take()]
            let request = ctx.request.prompt
            let restores = me.mode.restores
            do {
                try await lane.run {
                    s.zLQ = try me.encodeLatent(decoded.color, isLR: true, state: s, models: models)
                    if restores {
                        let plan = try sampler.plan(latentWidth: s.padWidth / 8, latentHeight: s.padHeight / 8)
                        try me.ensurePrompts(s, plan: plan, models: models, request: request)
                        s.zDR = try sampler.restore(zLQ: s.zLQ!, globalPrompt: s.globalEncoding!, localPrompts: s.localEncodings)
                    }
                }
            } catch let e as PipelineError { throw e } catch {
                throw PipelineError(.stageFailed, "restore: \(error)", isRetriable: false)
            }
            let encodeNote = max(s.padWidth, s.padHeight) > me.options.vaeTile
                ? "tiled VAE encode (\(me.options.vaeTile) px tiles, shared GroupNorm statistics)" : "VAE encode (one tile)"
            ctx.notes.append(restores ? "restore: DreamSR one-step LoRA restoration (t = \(models.model.config.restoreT)) after \(encodeNote)"
                             : "restore: no restoration pass (\(me.mode.rawValue)); \(encodeNote) of the Lanczos3-resized LR only")
        }
    }

    // MARK: texture

    func textureStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("texture", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let models = try me.registry.load()
            let s = try me.state(&ctx, models: models)
            let realesrgan = s.zLQ == nil
            guard let source = realesrgan ? ctx.payload.restored : ctx.payload.decoded?.color else {
                throw PipelineError.stageFailed("texture: no restored image")
            }
            let sampler = me.sampler(models, realesrgan: realesrgan)
            let lane = pool.lanes[pool.take()]
            let flag = ctx.cancellation
            let progress = ctx.progress
            let request = ctx.request.prompt
            let seed = UInt64(me.options.seed)
            var sigmas: [Double] = []
            do {
                sigmas = try await lane.run {
                    if realesrgan { s.zLQ = try me.encodeLatent(source, isLR: false, state: s, models: models) }
                    let zLQ = s.zLQ!
                    let plan = try sampler.plan(latentWidth: zLQ.shape[2], latentHeight: zLQ.shape[1])
                    try me.ensurePrompts(s, plan: plan, models: models, request: request)
                    let noise = DreamSRNoise.gaussian(shape: zLQ.shape, seed: seed)
                    let r = try sampler.texture(zLQ: zLQ, start: s.zDR ?? zLQ, noise: noise, globalPrompt: s.globalEncoding!,
                                                localPrompts: s.localEncodings, isCancelled: { flag.isCancelled },
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
            let models = try me.registry.load()
            let s = try me.state(&ctx, models: models)
            guard let zOut = s.zOut, let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("blend: no texture result") }
            let method = ColorFix.Method(rawValue: me.options.colorFix ?? models.model.config.colorFix.rawValue) ?? .wavelet
            let lane = pool.lanes[pool.take()]
            let tile = me.options.vaeTile / 8
            do {
                ctx.payload.restored = try await lane.run {
                    let vae = models.vae
                    let raw = Tensor(zeros: [1] + zOut.shape)
                    let sf = vae.config.scalingFactor, sh = vae.config.shiftFactor
                    raw.assign(zOut) { $0 / sf + sh }
                    let tiling = max(zOut.shape[1], zOut.shape[2]) > tile ? me.options.vaeTiling(tile: tile) : .untiled
                    let px = try vae.decode(raw, tiling: tiling)
                    let (ph, pw, w, h) = (px.shape[2], px.shape[3], s.outWidth, s.outHeight)
                    var out = PlanarImage(width: w, height: h, channels: 3)
                    px.withUnsafeBufferPointer { src in
                        for c in 0..<3 { for y in 0..<h { for x in 0..<w {
                            out.pixels[(c * h + y) * w + x] = (src[(c * ph + y) * pw + x] + 1) / 2
                        } } }
                    }
                    let reference = try s.lrUpscaled ?? ImageCodec.resize(Self.rgb(decoded.color), width: w, height: h)
                    out = try ColorFix.apply(method, output: out, reference: reference)
                    for i in 0..<out.pixels.count { out.pixels[i] = min(1, max(0, out.pixels[i])) }
                    if decoded.color.channels == 1 {
                        let n = w * h
                        out = PlanarImage(width: w, height: h, channels: 1, pixels: (0..<n).map {
                            (out.pixels[$0] + out.pixels[n + $0] + out.pixels[2 * n + $0]) / 3
                        })
                    }
                    return out
                }
            } catch let e as PipelineError { throw e } catch {
                throw PipelineError(.stageFailed, "blend: \(error)", isRetriable: false)
            }
            ctx.payload.dreamsr = nil
            let tiled = max(zOut.shape[1], zOut.shape[2]) > tile
            ctx.notes.append("blend: VAE decode (" + (tiled ? "tiled, \(tile)-cell tiles, shared GroupNorm statistics, "
                + "tile states in \(me.options.vaeTileStates)" : "one tile")
                             + "), colour fix \(method.rawValue)" + (decoded.alpha != nil ? ", alpha re-attached" : ""))
        }
    }
}

extension DreamSRPipelineOptions {
    /// The VAE tiling these options ask for, with `tile` cells per tile core.
    func vaeTiling(tile: Int) -> VAETiling {
        let scratch = URL(fileURLWithPath: vaeScratchDirectory ?? FileManager.default.temporaryDirectory.path,
                          isDirectory: true)
        let storage: VAETiling.StateStorage = vaeTileStates == "memory" ? .memory
            : .spill(scratch, memoryBytes: vaeTileMemoryMB << 20)
        return VAETiling(tileSize: tile, storage: storage)
    }
}
