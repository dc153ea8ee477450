import Foundation
import Models
import Raster
import Tensor

/// FLUX's image <-> latent path at an output geometry, shared by the DreamSR pipeline and the FLUX ControlNet
/// upscale pipeline: LR resize, image -> latent (reflect pad, [-1, 1], tiled VAE encode, z = sf (z_raw - shift)),
/// latent -> image (z / sf + shift, tiled VAE decode, crop, [0, 1]) and the colour fix. Blocking.
public struct FluxLatentCodec: Sendable {
    public let vae: AutoencoderKL
    /// VAE tiling (`vaeTile`, tile states, scratch folder) comes from these.
    public let options: DreamSRPipelineOptions

    public init(vae: AutoencoderKL, options: DreamSRPipelineOptions) {
        self.vae = vae
        self.options = options
    }

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

    /// The final image: the colour fix `colorFix` against `reference` (the upsized LR), clamped to [0, 1], and back to one
    /// channel (the mean of R, G, B) when the input was grey.
    public func finish(_ decoded: PlanarImage, reference: PlanarImage, grey: Bool, colorFix: ColorFix.Method) throws -> PlanarImage {
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
}
