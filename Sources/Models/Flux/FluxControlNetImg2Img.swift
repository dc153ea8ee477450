import Foundation
import Tensor

/// diffusers `FluxControlNetImg2ImgPipeline`'s denoising loop at the latent level: start from the image latent noised
/// to the first sigma (`scale_noise`), then one Euler step per sigma with the ControlNet residuals injected into every
/// transformer forward. FLUX.1-dev (guidance embedder, resolution shift) and FLUX.1-schnell (neither) alike: the
/// schedule comes in as sigmas, guidance is passed to whichever model embeds it.
public struct FluxControlNetImg2Img: Sendable {
    public let transformer: FluxTransformer

    public init(transformer: FluxTransformer) {
        self.transformer = transformer
    }

    /// The pipeline's schedule: `linspace(1, 1/steps, steps)`, shifted with `mu` (dev; `shift: false` for schnell's
    /// unshifted scheduler), cut at `strength` as `get_timesteps` does, terminal 0 appended.
    public static func sigmas(steps: Int, strength: Double, mu: Double, shift: Bool) -> [Float] {
        FlowMatch.img2imgSigmas(steps: steps, strength: strength, mu: shift ? mu : 0)
    }

    /// Runs the loop. `imageLatents` and `noise` are packed `[B, Li, inChannels]` (or `[Li, inChannels]` for one
    /// item); `sigmas` decreasing with the terminal value last (`steps + 1` values). Text inputs as in `FluxInputs`;
    /// `guidance` is the guidance scale (dev models and ControlNets with a guidance embedder). Returns the packed
    /// final latent with the shape of `imageLatents`. `onStep(i, n)` runs after each step.
    public func sample(imageLatents: Tensor, noise: Tensor, sigmas: [Float], controlnets units: [FluxControlNetUnit],
                       encoderHiddenStates: Tensor, pooledProjections: Tensor, guidance: Float?, imgIds: Tensor,
                       txtIds: Tensor, lora: (any LoRAProvider)? = nil,
                       onStep: ((Int, Int) throws -> Void)? = nil) throws -> Tensor {
        guard sigmas.count >= 2 else {
            throw FluxSamplingError("img2img needs at least one step (2 sigmas), got \(sigmas)")
        }
        guard noise.count == imageLatents.count else {
            throw FluxSamplingError("noise \(noise.shape) does not match the image latent \(imageLatents.shape)")
        }
        let shape = imageLatents.shape
        let c = transformer.config.inChannels
        guard let li = shape.dropLast().last, li > 0, shape.last == c, imageLatents.count % (li * c) == 0 else {
            throw FluxSamplingError("image latent \(shape) is not packed [B, L, \(c)]")
        }
        let bsz = imageLatents.count / (li * c)
        for u in units {
            try u.controlnet.checkCompatible(with: transformer.config)
            guard u.cond.count == imageLatents.count else {
                throw FluxSamplingError("controlnet_cond \(u.cond.shape) does not match the image latent \(shape)")
            }
        }
        let x = FlowMatch.noised(imageLatents, noise: noise, sigma: sigmas[0]).reshaped([bsz, li, c])
        let n = sigmas.count - 1
        for i in 0..<n {
            let inp = FluxInputs(hiddenStates: x, encoderHiddenStates: encoderHiddenStates,
                                 pooledProjections: pooledProjections,
                                 timestep: [Float](repeating: sigmas[i], count: bsz),
                                 guidance: guidance.map { [Float](repeating: $0, count: bsz) }, imgIds: imgIds, txtIds: txtIds)
            let residuals = try FluxMultiControlNet.residuals(units, inputs: inp, step: i, of: n, lora: lora)
            let v = try transformer.forward(inp, controlnet: residuals, options: FluxForwardOptions(lora: lora))
            FlowMatch.eulerStep(x, velocity: v, sigma: sigmas[i], sigmaNext: sigmas[i + 1])
            try onStep?(i, n)
        }
        return x.reshaped(shape)
    }
}

/// A sampling call that cannot run (shapes or schedule).
public struct FluxSamplingError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "FluxSamplingError: \(message)" }
}
