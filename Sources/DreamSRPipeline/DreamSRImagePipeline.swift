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

    /// The global encoding and one local encoding per patch of `plan` when every patch has the same prompt.
    public func encode(global: String, local: String, patches: Int) throws -> (DreamSRPromptEncoding, [DreamSRPromptEncoding]) {
        (try encode(prompt: global), Array(repeating: try encode(prompt: local), count: patches))
    }

    // MARK: Image <-> latent

    /// Whether the VAE runs tiled on an image of this geometry (encode: pixels; decode: latent cells × 8).
    public func vaeIsTiled(_ geometry: DreamSRImageGeometry) -> Bool { max(geometry.padWidth, geometry.padHeight) > options.vaeTile }

    /// `image` (grey or RGB, any size) as RGB at the output size: Lanczos3 when the size differs. The LR image so
    /// resized is both the VAE's input and the colour fix's reference.
    public func upsized(_ image: PlanarImage, _ geometry: DreamSRImageGeometry) throws -> PlanarImage {
        let rgb = Self.rgb(image)
        if rgb.width == geometry.outWidth && rgb.height == geometry.outHeight { return rgb }
        do { return try rgb.resizedLanczos3(width: geometry.outWidth, height: geometry.outHeight) } catch {
            throw DreamSRPipelineError(.invalidInput, "LR resize: \(error)")
        }
    }

    /// The latent `[16, H/8, W/8]` of RGB pixels at the output size: reflect-padded (bottom / right) to the padded
    /// size, mapped to [-1, 1], VAE-encoded (tiled beyond `vaeTile` px), then z = scaling_factor · (z_raw − shift).
    public func encodeLatent(_ sized: PlanarImage, _ geometry: DreamSRImageGeometry) throws -> Tensor {
        let (w, h, pw, ph) = (geometry.outWidth, geometry.outHeight, geometry.padWidth, geometry.padHeight)
        guard sized.channels == 3, sized.width == w, sized.height == h else {
            throw DreamSRPipelineError(.invalidInput, "VAE input is \(sized.width)x\(sized.height)x\(sized.channels), "
                                       + "expected \(w)x\(h)x3")
        }
        let x = Tensor(zeros: [1, 3, ph, pw])
        let rows = (0..<ph).map { DreamSRPatchPlan.reflect($0, h) }, cols = (0..<pw).map { DreamSRPatchPlan.reflect($0, w) }
        sized.pixels.withUnsafeBufferPointer { src in
            x.withUnsafeMutableBufferPointer { dst in
                for c in 0..<3 { for (y, sy) in rows.enumerated() { for (xx, sx) in cols.enumerated() {
                    dst[(c * ph + y) * pw + xx] = src[(c * h + sy) * w + sx] * 2 - 1
                } } }
            }
        }
        let vae = models.vae
        let raw = try vae.encode(x, tiling: vaeIsTiled(geometry) ? options.vaeTiling(tile: options.vaeTile) : .untiled)
        let z = Tensor(zeros: Array(raw.shape.dropFirst()))
        let sf = vae.config.scalingFactor, sh = vae.config.shiftFactor
        raw.withUnsafeBufferPointer { r in z.withUnsafeMutableBufferPointer { o in
            for i in 0..<o.count { o[i] = sf * (r[i] - sh) }
        } }
        return z
    }

    /// The VAE decode tile in latent cells, and whether a latent of this size is decoded tiled.
    public var decodeTileCells: Int { options.vaeTile / 8 }
    public func decodeIsTiled(_ z: Tensor) -> Bool { max(z.shape[1], z.shape[2]) > decodeTileCells }

    /// RGB pixels at the output size of a latent `[16, H/8, W/8]`: z / scaling_factor + shift, VAE-decoded (tiled
    /// beyond `vaeTile / 8` cells), cropped to the output size and mapped from [-1, 1] to [0, 1] (not clamped).
    public func decodeLatent(_ z: Tensor, _ geometry: DreamSRImageGeometry) throws -> PlanarImage {
        guard z.rank == 3, z.shape[1] * 8 >= geometry.outHeight, z.shape[2] * 8 >= geometry.outWidth else {
            throw DreamSRPipelineError(.invalidInput, "latent \(z.shape) does not cover a \(geometry.outWidth)x\(geometry.outHeight) image")
        }
        let vae = models.vae
        let raw = Tensor(zeros: [1] + z.shape)
        let sf = vae.config.scalingFactor, sh = vae.config.shiftFactor
        z.withUnsafeBufferPointer { s in raw.withUnsafeMutableBufferPointer { o in
            for i in 0..<o.count { o[i] = s[i] / sf + sh }
        } }
        let px = try vae.decode(raw, tiling: decodeIsTiled(z) ? options.vaeTiling(tile: decodeTileCells) : .untiled)
        let (ph, pw, w, h) = (px.shape[2], px.shape[3], geometry.outWidth, geometry.outHeight)
        var out = PlanarImage(width: w, height: h, channels: 3)
        px.withUnsafeBufferPointer { p in out.pixels.withUnsafeMutableBufferPointer { o in
            for c in 0..<3 { for y in 0..<h { for x in 0..<w {
                o[(c * h + y) * w + x] = (p[(c * ph + y) * pw + x] + 1) / 2
            } } }
        } }
        return out
    }

    /// The final image: the colour fix against `reference` (the upsized LR), clamped to [0, 1], and back to one
    /// channel (the mean of R, G, B) when the input was grey.
    public func finish(_ decoded: PlanarImage, reference: PlanarImage, grey: Bool) throws -> PlanarImage {
        var out = try ColorFix.apply(colorFix, output: decoded, reference: reference)
        for i in 0..<out.pixels.count { out.pixels[i] = min(1, max(0, out.pixels[i])) }
        guard grey else { return out }
        let n = out.planeSize
        return PlanarImage(width: out.width, height: out.height, channels: 1, pixels: (0..<n).map {
            (out.pixels[$0] + out.pixels[n + $0] + out.pixels[2 * n + $0]) / 3
        })
    }

    /// A grey image as three equal channels (RGB unchanged).
    public static func rgb(_ image: PlanarImage) -> PlanarImage {
        guard image.channels == 1 else { return image }
        return PlanarImage(width: image.width, height: image.height, channels: 3, pixels: image.pixels + image.pixels + image.pixels)
    }

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
