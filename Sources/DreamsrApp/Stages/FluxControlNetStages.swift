import Captioning
import DreamSRPipeline
import Foundation
import Logging
import Models
import PipelineRuntime
import Tensor

/// The caption, texture and blend stages of a FLUX ControlNet pipeline (a pipeline file with a `controlnet:` block):
/// thin adapters from the stage runtime to `FluxControlNetUpscalePipeline`, over the shared model set of a
/// `FluxControlNetRegistry`. The texture stage starts from the restore stage's image (Real-ESRGAN), or from the
/// resized LR image without one.
struct FluxControlNetStages: Sendable {
    let registry: FluxControlNetRegistry
    let options: FluxControlNetTextureOptions
    let image: DreamSRPipelineOptions
    let captioner: Captioner
    let logger: Logger

    init(definition: PipelineDefinition, registry: FluxControlNetRegistry, logger: Logger) throws {
        self.registry = registry
        options = definition.controlnet ?? FluxControlNetTextureOptions()
        image = definition.dreamsr
        captioner = try DreamSRStages.makeCaptioner(definition, logger: logger)
        self.logger = logger
    }

    /// The default output scale (Real-ESRGAN's x4) when a job asks for none.
    static let defaultScale = 4

    var prepare: @Sendable () async throws -> Void {
        let registry = registry, logger = logger
        return {
            if registry.isLoaded { return }
            do {
                _ = try await ComputeLane(label: "controlnet-load").run { try registry.load() }
            } catch {
                throw PipelineError.startup("\(error)")
            }
            logger.info("FLUX ControlNet model set loaded", metadata: ["flux": "\(registry.paths.flux)",
                                                                       "controlnet": "\(registry.paths.controlnet)"])
        }
    }

    private func pipeline() throws -> FluxControlNetUpscalePipeline {
        FluxControlNetUpscalePipeline(models: try registry.load(), options: options, image: image)
    }

    private func state(_ ctx: inout JobContext<ImageJob>, pipeline: FluxControlNetUpscalePipeline) throws -> DreamSRJobState {
        if let s = ctx.payload.dreamsr { return s }
        guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("no decoded image") }
        let scale = ctx.request.scale ?? Self.defaultScale
        guard (1...8).contains(scale) else { throw PipelineError.badInput("scale \(scale) is not supported: 1...8") }
        let s = DreamSRJobState(geometry: try pipeline.geometry(lrWidth: decoded.width, lrHeight: decoded.height, scale: scale))
        ctx.payload.dreamsr = s
        ctx.notes.append("mode: flux-controlnet (\(options.variant.rawValue))")
        return s
    }

    func captionStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("caption", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let pipeline = try me.pipeline()
            let s = try me.state(&ctx, pipeline: pipeline)
            try await DreamSRStages.caption(&ctx, state: s, plan: try pipeline.plan(s.geometry), patchSize: me.options.patchSize,
                                            captioner: me.captioner, lane: pool.lanes[pool.take()],
                                            encode: pipeline.encode(prompt:))
        }
    }

    func textureStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("texture", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let pipeline = try me.pipeline()
            let s = try me.state(&ctx, pipeline: pipeline)
            guard let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("texture: no decoded image") }
            let restored = ctx.payload.restored
            let lane = pool.lanes[pool.take()]
            let flag = ctx.cancellation, progress = ctx.progress, request = ctx.request.prompt
            var sigmas: [Float] = []
            do {
                sigmas = try await lane.run {
                    let codec = pipeline.codec
                    let reference = try codec.upsized(decoded.color, s.geometry)
                    s.lrUpscaled = reference
                    let control = try codec.encodeLatent(reference, s.geometry)
                    s.zLQ = control
                    let start = try restored.map { try codec.encodeLatent(try codec.upsized($0, s.geometry), s.geometry) } ?? control
                    let (g, l) = try DreamSRStages.prompts(s, patches: try pipeline.plan(s.geometry).count, captioner: me.captioner,
                                                           request: request, encode: pipeline.encode(prompt:))
                    let r = try pipeline.texture(control: control, start: start, globalPrompt: g, localPrompts: l,
                                                 isCancelled: { flag.isCancelled }, onStep: { progress.report(done: $0, of: $1) })
                    s.zOut = r.zOut
                    return r.sigmas
                }
            } catch {
                if flag.isCancelled { throw CancellationError() }
                if let e = error as? PipelineError { throw e }
                throw PipelineError(.stageFailed, "texture: \(error)", isRetriable: false)
            }
            ctx.payload.restored = nil
            ctx.notes.append("texture: FLUX.1-\(me.options.variant.rawValue) + ControlNet, \(sigmas.count - 1) steps from sigma "
                             + String(format: "%.3f", sigmas.first ?? 0) + " ("
                             + (restored != nil ? "from the restored image" : "from the resized LR image") + ")")
        }
    }

    func blendStage(_ def: StageDefinition) -> Stage<ImageJob> {
        let me = self
        let pool = ImagePipelineFactory.LanePool(ImagePipelineFactory.lanes("blend", def.runtime.concurrency))
        return Stage(def.runtime, prepare: prepare) { ctx in
            let pipeline = try me.pipeline()
            let s = try me.state(&ctx, pipeline: pipeline)
            guard let zOut = s.zOut, let decoded = ctx.payload.decoded else { throw PipelineError.stageFailed("blend: no texture result") }
            let lane = pool.lanes[pool.take()]
            let codec = pipeline.codec
            do {
                ctx.payload.restored = try await lane.run {
                    let pixels = try codec.decodeLatent(zOut, s.geometry)
                    let reference = try s.lrUpscaled ?? codec.upsized(decoded.color, s.geometry)
                    return try codec.finish(pixels, reference: reference, grey: decoded.color.channels == 1,
                                            colorFix: pipeline.colorFix)
                }
            } catch let e as PipelineError { throw e } catch {
                throw PipelineError(.stageFailed, "blend: \(error)", isRetriable: false)
            }
            ctx.payload.dreamsr = nil
            ctx.notes.append("blend: VAE decode (" + (codec.decodeIsTiled(zOut) ? "tiled, \(codec.decodeTileCells)-cell tiles" : "one tile")
                             + "), colour fix \(pipeline.colorFix.rawValue)" + (decoded.alpha != nil ? ", alpha re-attached" : ""))
        }
    }
}
