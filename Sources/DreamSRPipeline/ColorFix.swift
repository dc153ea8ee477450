import CKernels
import Foundation
import Models
import Raster

/// Colour correction of a generated image against the (upscaled) LR image (dreamsr-architecture item 11).
///
/// - `adain`: per channel, the output's mean and standard deviation are replaced by the reference's
///   (x − μ_out) / σ_out · σ_ref + μ_ref.
/// - `wavelet`: the output keeps its high frequencies and takes the reference's low frequencies: each image is split
///   by 5 levels of a dilated 3×3 binomial blur (dilation 1, 2, 4, 8, 16, replicate borders, the à-trous wavelet of
///   StableSR's colour fix); result = (output − low(output)) + low(reference).
///
/// Pure functions on float CHW images of the same size; values are not clamped (the encoder clamps).
public enum ColorFix {
    /// The checkpoint config's `color_fix` values (wavelet, adain, none): one enum for config and pipeline options.
    public typealias Method = DreamSRConfig.ColorFix

    public static let waveletLevels = 5

    public static func apply(_ method: Method, output: PlanarImage, reference: PlanarImage) throws -> PlanarImage {
        switch method {
        case .none: return output
        case .adain: return try adain(output: output, reference: reference)
        case .wavelet: return try wavelet(output: output, reference: reference)
        }
    }

    private static func check(_ a: PlanarImage, _ b: PlanarImage) throws {
        guard a.width == b.width, a.height == b.height, a.channels == b.channels else {
            throw DreamSRPipelineError(.invalidInput, "colour fix: output \(a.width)x\(a.height)x\(a.channels) and reference "
                                 + "\(b.width)x\(b.height)x\(b.channels) differ in size")
        }
    }

    /// Mean and (population) standard deviation of each channel.
    public static func channelStatistics(_ image: PlanarImage) -> [(mean: Double, std: Double)] {
        let n = image.planeSize
        return (0..<image.channels).map { c in
            image.pixels.withUnsafeBufferPointer { p in
                var s = 0.0, s2 = 0.0
                for i in (c * n)..<((c + 1) * n) { let v = Double(p[i]); s += v; s2 += v * v }
                let m = s / Double(max(n, 1))
                return (m, max(0, s2 / Double(max(n, 1)) - m * m).squareRoot())
            }
        }
    }

    public static func adain(output: PlanarImage, reference: PlanarImage) throws -> PlanarImage {
        try check(output, reference)
        let so = channelStatistics(output), sr = channelStatistics(reference)
        var out = output
        let n = output.planeSize
        out.pixels.withUnsafeMutableBufferPointer { p in
            for c in 0..<output.channels {
                let gain = so[c].std > 1e-6 ? sr[c].std / so[c].std : 0
                let a = Float(gain), b = Float(sr[c].mean - so[c].mean * gain)
                for i in (c * n)..<((c + 1) * n) { p[i] = p[i] * a + b }
            }
        }
        return out
    }

    /// The low-frequency part after `levels` dilated binomial blurs (C kernel `ck_blur121_dilated`).
    public static func lowFrequency(_ image: PlanarImage, levels: Int = waveletLevels) -> PlanarImage {
        var cur = image.pixels
        var next = [Float](repeating: 0, count: cur.count)
        var tmp = [Float](repeating: 0, count: image.planeSize)
        for level in 0..<levels {
            cur.withUnsafeBufferPointer { src in next.withUnsafeMutableBufferPointer { dst in tmp.withUnsafeMutableBufferPointer { t in
                ck_blur121_dilated(dst.baseAddress!, src.baseAddress!, t.baseAddress!, image.channels, image.height,
                                   image.width, 1 << level)
            } } }
            swap(&cur, &next)
        }
        return PlanarImage(width: image.width, height: image.height, channels: image.channels, pixels: cur)
    }

    public static func wavelet(output: PlanarImage, reference: PlanarImage, levels: Int = waveletLevels) throws -> PlanarImage {
        try check(output, reference)
        let lo = lowFrequency(output, levels: levels), lr = lowFrequency(reference, levels: levels)
        var out = output
        for i in 0..<out.pixels.count { out.pixels[i] = out.pixels[i] - lo.pixels[i] + lr.pixels[i] }
        return out
    }
}
