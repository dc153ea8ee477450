import Foundation
import Tensor

/// DreamSR's texture-stage sigma spacing (dreamsr-architecture item 7).
public enum TextureSchedule: Sendable, Equatable {
    /// `u_0 = inverse_time_shift(mu, start)`, `u_k = u_0 (1 − k/N)`, `sigma_k = time_shift(mu, u_k)`.
    case shifted
    /// `sigma_k = start (1 − k/N)`.
    case linear
    /// The sigmas as given (a trailing 0 is appended if missing).
    case explicit([Float])

    /// Parses `"shifted"`, `"linear"` or a comma-separated list of sigmas.
    public init?(_ text: String) {
        switch text.lowercased() {
        case "shifted": self = .shifted
        case "linear": self = .linear
        default:
            let v = text.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard !v.isEmpty, v.count == text.split(separator: ",").count else { return nil }
            self = .explicit(v)
        }
    }
}

/// Flow-matching Euler sampling for FLUX (flux spec §2): resolution-dependent shift, img2img start, explicit lists.
/// All schedules are returned with the terminal 0 appended (`steps + 1` values, decreasing).
public enum FlowMatch {
    /// mu for the dynamic shift: linear in the packed token count, (256 → 0.5), (4096 → 1.15) by default.
    public static func mu(imageSeqLen: Int, baseSeqLen: Int = 256, maxSeqLen: Int = 4096,
                          baseShift: Double = 0.5, maxShift: Double = 1.15) -> Double {
        let m = (maxShift - baseShift) / Double(maxSeqLen - baseSeqLen)
        let b = baseShift - m * Double(baseSeqLen)
        return Double(imageSeqLen) * m + b
    }

    /// Packed token count of an image `width × height` pixels (latent /8, packed 2×2).
    public static func imageSeqLen(width: Int, height: Int) -> Int { (height / 16) * (width / 16) }

    /// `e^mu / (e^mu + (1/t − 1)^sigma)`; 0 at t = 0.
    public static func timeShift(mu: Double, sigma: Double = 1, _ t: Double) -> Double {
        guard t > 0 else { return 0 }
        return exp(mu) / (exp(mu) + pow(1 / t - 1, sigma))
    }

    /// Inverse of `timeShift` with sigma 1: the unshifted t whose shifted value is `s`.
    public static func inverseTimeShift(mu: Double, _ s: Double) -> Double {
        guard s > 0 else { return 0 }
        guard s < 1 else { return 1 }
        return 1 / (1 + exp(mu) * (1 / s - 1))
    }

    /// The FLUX (diffusers FluxPipeline / BFL) schedule: `linspace(1, 1/N, N)` shifted by `mu`, then 0.
    public static func fluxSigmas(steps: Int, mu: Double) -> [Float] {
        precondition(steps > 0, "steps must be positive")
        var s: [Float] = (0..<steps).map { i in
            let t = steps == 1 ? 1.0 : 1.0 + (1.0 / Double(steps) - 1.0) * Double(i) / Double(steps - 1)
            return Float(timeShift(mu: mu, Double(Float(t))))
        }
        s.append(0)
        return s
    }

    /// img2img (diffusers `get_timesteps`): the full N-step schedule from index `int(N − min(N·strength, N))` on.
    public static func img2imgSigmas(steps: Int, strength: Double, mu: Double) -> [Float] {
        let full = fluxSigmas(steps: steps, mu: mu)
        let initSteps = min(Double(steps) * strength, Double(steps))
        let start = Int(max(Double(steps) - initSteps, 0))
        return Array(full[start...])
    }

    /// DreamSR's texture schedule starting exactly at `start` with `steps` Euler steps.
    public static func textureSigmas(_ schedule: TextureSchedule, start: Double = 0.8, steps: Int = 16, mu: Double) -> [Float] {
        switch schedule {
        case .shifted:
            let u0 = inverseTimeShift(mu: mu, start)
            return (0...steps).map { k in Float(timeShift(mu: mu, u0 * (1 - Double(k) / Double(steps)))) }
        case .linear:
            return (0...steps).map { k in Float(start * (1 - Double(k) / Double(steps))) }
        case .explicit(let v):
            return v.last == 0 ? v : v + [0]
        }
    }

    /// One Euler step in place: `x ← x + (sigmaNext − sigma) · v`.
    public static func eulerStep(_ x: Tensor, velocity v: Tensor, sigma: Float, sigmaNext: Float) {
        precondition(x.count == v.count, "euler step: x \(x.shape) vs v \(v.shape)")
        let dt = sigmaNext - sigma
        x.assign(x, v) { x, v in x + dt * v }
    }

    /// `x = sigma·noise + (1 − sigma)·z0` (img2img / texture-stage start).
    public static func noised(_ z0: Tensor, noise: Tensor, sigma: Float) -> Tensor {
        precondition(z0.count == noise.count, "noised: z0 \(z0.shape) vs noise \(noise.shape)")
        let out = Tensor(zeros: z0.shape)
        out.assign(noise, z0) { n, z in sigma * n + (1 - sigma) * z }
        return out
    }
}

/// FLUX latent packing (flux spec §2.4): `[16, H, W]` ↔ tokens `[(H/2)(W/2), 64]`, feature `ch·4 + ph·2 + pw`.
public enum FluxPacking {
    public static func pack(_ latent: Tensor) -> Tensor {
        precondition(latent.rank == 3 && latent.shape[1] % 2 == 0 && latent.shape[2] % 2 == 0,
                     "pack needs [C, H, W] with even H, W; got \(latent.shape)")
        let c = latent.shape[0], h = latent.shape[1], w = latent.shape[2]
        let hh = h / 2, ww = w / 2
        let out = Tensor(zeros: [hh * ww, c * 4])
        out.withUnsafeMutableBufferPointer { dst in
            latent.withUnsafeBufferPointer { src in
                for r in 0..<hh { for col in 0..<ww { for ch in 0..<c { for ph in 0..<2 { for pw in 0..<2 {
                    dst[(r * ww + col) * c * 4 + ch * 4 + ph * 2 + pw] = src[(ch * h + 2 * r + ph) * w + 2 * col + pw]
                } } } } }
            }
        }
        return out
    }

    public static func unpack(_ tokens: Tensor, channels c: Int, height h: Int, width w: Int) -> Tensor {
        precondition(tokens.count == c * h * w && h % 2 == 0 && w % 2 == 0, "unpack: \(tokens.shape) vs [\(c), \(h), \(w)]")
        let hh = h / 2, ww = w / 2
        let out = Tensor(zeros: [c, h, w])
        out.withUnsafeMutableBufferPointer { dst in
            tokens.withUnsafeBufferPointer { src in
                for r in 0..<hh { for col in 0..<ww { for ch in 0..<c { for ph in 0..<2 { for pw in 0..<2 {
                    dst[(ch * h + 2 * r + ph) * w + 2 * col + pw] = src[(r * ww + col) * c * 4 + ch * 4 + ph * 2 + pw]
                } } } } }
            }
        }
        return out
    }

    /// Image ids `[(H/2)(W/2), 3]` = (0, row + rowOffset, col + colOffset) for a latent of `H × W`.
    public static func imageIds(latentHeight h: Int, latentWidth w: Int, rowOffset: Int = 0, colOffset: Int = 0) -> Tensor {
        let hh = h / 2, ww = w / 2
        let ids = Tensor(zeros: [hh * ww, 3])
        ids.withUnsafeMutableBufferPointer { dst in
            for r in 0..<hh { for c in 0..<ww {
                dst[(r * ww + c) * 3 + 1] = Float(r + rowOffset)
                dst[(r * ww + c) * 3 + 2] = Float(c + colOffset)
            } }
        }
        return ids
    }

    /// Text ids: all zeros `[tokens, 3]`.
    public static func textIds(tokens: Int) -> Tensor { Tensor(zeros: [tokens, 3]) }
}
