import Foundation
import Models
import Raster
import Tensor

/// The sizes one DreamSR image is computed at: the output is LR × scale; the VAE and the sampler see it with its
/// sides rounded up to a multiple of 16 (reflect-padded, cropped back after decoding); latents are 1/8 of that.
public struct DreamSRImageGeometry: Sendable, Equatable {
    public let lrWidth: Int, lrHeight: Int
    public let scale: Int
    public let outWidth: Int, outHeight: Int
    public let padWidth: Int, padHeight: Int

    public init(lrWidth: Int, lrHeight: Int, scale: Int) throws {
        guard lrWidth > 0, lrHeight > 0, scale > 0 else {
            throw DreamSRPipelineError(.invalidInput, "cannot upscale a \(lrWidth)x\(lrHeight) image by \(scale)")
        }
        self.lrWidth = lrWidth
        self.lrHeight = lrHeight
        self.scale = scale
        outWidth = lrWidth * scale
        outHeight = lrHeight * scale
        padWidth = (outWidth + 15) / 16 * 16
        padHeight = (outHeight + 15) / 16 * 16
    }

    public var latentWidth: Int { padWidth / 8 }
    public var latentHeight: Int { padHeight / 8 }

    /// Each patch's area in LR pixels, row-major (what a captioning model is shown for that patch's local prompt):
    /// the patch's top-left latent cell mapped back to LR pixels, `patchSize / scale` pixels (rounded up) wide and
    /// high, clipped to the image and at least one pixel.
    public func patchRegionsLR(_ plan: DreamSRPatchPlan, patchSize: Int) -> [PixelRect] {
        let side = Int((Double(patchSize) / Double(scale)).rounded(.up))
        return (0..<plan.count).map { i in
            let (y, x) = plan.origin(i)
            let x0 = min(lrWidth - 1, Int(Double(x * 8) / Double(scale)))
            let y0 = min(lrHeight - 1, Int(Double(y * 8) / Double(scale)))
            return PixelRect(x: x0, y: y0, width: max(1, min(lrWidth - x0, side)), height: max(1, min(lrHeight - y0, side)))
        }
    }
}

/// DreamSR's image path around the samplers (dreamsr-architecture items 6-11), over a loaded model set, in the shape
/// of diffusers' one-pipeline-per-family: prompt encoding, LR resize, image -> latent (reflect pad, [-1, 1], tiled
/// VAE encode, z = sf (z_raw - shift)), the restore and texture samplers (MultiDiffusion over patches), latent ->
/// image (z / sf + shift, tiled VAE decode, crop, [0, 1]) and the colour fix. Blocking: run it on a compute lane.
public struct DreamSRImagePipeline: Sendable {
    public let models: DreamSRModelSet
    public let options: DreamSRPipelineOptions

    public init(models: DreamSRModelSet, options: DreamSRPipelineOptions) {
        self.models = models
        self.options = options
    }

    public var mode: DreamSRMode { options.mode }
    /// The colour fix that runs: the options', else the checkpoint config's.
    public var colorFix: ColorFix.Method { options.colorFix ?? models.model.config.colorFix }

    public func geometry(lrWidth: Int, lrHeight: Int, scale: Int? = nil) throws -> DreamSRImageGeometry {
        try DreamSRImageGeometry(lrWidth: lrWidth, lrHeight: lrHeight, scale: scale ?? models.model.config.scale)
    }

    /// The staged sampler of this pipeline's mode; `afterPixelRestorer`: the texture stage continues a pixel-space
    /// restoration (Real-ESRGAN), so it runs as the full model's (dual-branch) whatever the mode.
    public func sampler(afterPixelRestorer: Bool = false) -> DreamSRStagedSampler {
        DreamSRStagedSampler(model: models.model, mode: afterPixelRestorer ? .dualBranch : mode, steps: options.steps,
                             batchSize: options.batch)
    }

    /// The patch plan of an image's latent.
    public func plan(_ geometry: DreamSRImageGeometry) throws -> DreamSRPatchPlan {
        try sampler().plan(latentWidth: geometry.latentWidth, latentHeight: geometry.latentHeight)
    }

    // MARK: Prompts

    /// T5 states and CLIP pooled of a prompt (cached per string across jobs).
    public func encode(prompt: String) throws -> DreamSRPromptEncoding { try models.encode(prompt: prompt) }

    /// Whether this pipeline releases the text encoders after a job's prompts are encoded (`release_text_encoders`;
    /// `auto` decides from the memory picture of the model set's load).
    public var releasesTextEncoders: Bool { options.releaseTextEncoders.releases(models.memory) }

    /// Call when a job's prompts are all encoded: releases the text encoders when this pipeline does (a reload
    /// happens on the next prompt not in the cache).
    public func promptsEncoded() {
        if releasesTextEncoders { models.text.release() }
    }

    /// e.g. `text encoders: released after each job's prompts (release_text_encoders: auto; MemAvailable 3.20 GiB <
    /// 25.31 GiB resident)`.
    public var textEncoderPolicy: String {
        let m = models.memory
        func gib(_ b: Int) -> String { String(format: "%.2f GiB", Double(b) / 1_073_741_824) }
        let why = m.availableBytes.map { "MemAvailable \(gib($0)) \(m.isShort ? "<" : ">=") \(gib(m.residentBytes)) resident" }
            ?? "MemAvailable unknown"
        return "text encoders: " + (releasesTextEncoders ? "released after each job's prompts" : "kept loaded")
            + " (release_text_encoders: \(options.releaseTextEncoders.rawValue); \(why), text encoders \(gib(m.textEncoderBytes)))"
    }

    /// The global encoding and one local encoding per patch of `plan` when every patch has the same prompt.
    public func encode(global: String, local: String, patches: Int) throws -> (DreamSRPromptEncoding, [DreamSRPromptEncoding]) {
        (try encode(prompt: global), Array(repeating: try encode(prompt: local), count: patches))
    }

    // MARK: Image <-> latent (FluxLatentCodec, shared with the FLUX ControlNet pipeline)

    /// The image <-> latent code of these options.
    public var codec: FluxLatentCodec { FluxLatentCodec(vae: models.vae, options: options) }

    /// Whether the VAE runs tiled on an image of this geometry (encode: pixels; decode: latent cells × 8).
    public func vaeIsTiled(_ geometry: DreamSRImageGeometry) -> Bool { codec.vaeIsTiled(geometry) }

    /// `image` as RGB at the output size (Lanczos3 when the size differs): see `FluxLatentCodec.upsized`.
    public func upsized(_ image: PlanarImage, _ geometry: DreamSRImageGeometry) throws -> PlanarImage {
        try codec.upsized(image, geometry)
    }

    /// The latent `[16, H/8, W/8]` of RGB pixels at the output size: see `FluxLatentCodec.encodeLatent`.
    public func encodeLatent(_ sized: PlanarImage, _ geometry: DreamSRImageGeometry) throws -> Tensor {
        try codec.encodeLatent(sized, geometry)
    }

    /// The VAE decode tile in latent cells, and whether a latent of this size is decoded tiled.
    public var decodeTileCells: Int { codec.decodeTileCells }
    public func decodeIsTiled(_ z: Tensor) -> Bool { codec.decodeIsTiled(z) }

    /// RGB pixels at the output size of a latent: see `FluxLatentCodec.decodeLatent`.
    public func decodeLatent(_ z: Tensor, _ geometry: DreamSRImageGeometry) throws -> PlanarImage {
        try codec.decodeLatent(z, geometry)
    }

    /// The final image: the colour fix against `reference`, clamped, grey again when the input was grey.
    public func finish(_ decoded: PlanarImage, reference: PlanarImage, grey: Bool) throws -> PlanarImage {
        try codec.finish(decoded, reference: reference, grey: grey, colorFix: colorFix)
    }

    /// A grey image as three equal channels (RGB unchanged).
    public static func rgb(_ image: PlanarImage) -> PlanarImage { FluxLatentCodec.rgb(image) }

    // MARK: Samplers

    /// The one-step restoration pass (LoRA on) on `zLQ`: z_dr.
    public func restore(zLQ: Tensor, globalPrompt: DreamSRPromptEncoding, localPrompts: [DreamSRPromptEncoding]) throws -> Tensor {
        try sampler().restore(zLQ: zLQ, globalPrompt: globalPrompt, localPrompts: localPrompts)
    }

    /// The texture stage from `start` (z_dr, z_lq, or the latent of a pixel restorer's output) with seeded noise.
    public func texture(zLQ: Tensor, start: Tensor, globalPrompt: DreamSRPromptEncoding, localPrompts: [DreamSRPromptEncoding],
                        afterPixelRestorer: Bool = false, isCancelled: () -> Bool = { false },
                        onStep: ((Int, Int) -> Void)? = nil) throws -> (zOut: Tensor, sigmas: [Double]) {
        let noise = DreamSRNoise.gaussian(shape: zLQ.shape, seed: UInt64(options.seed))
        return try sampler(afterPixelRestorer: afterPixelRestorer)
            .texture(zLQ: zLQ, start: start, noise: noise, globalPrompt: globalPrompt, localPrompts: localPrompts,
                     isCancelled: isCancelled, onStep: onStep)
    }
}
