import Foundation
import Models
import Tensor

/// DreamSR's sampler split into the pipeline's stages (restore, then texture), computing exactly what
/// `DreamSRPatchSampler.run` computes in one call: the restoration pass z_dr = z_lq − restore_t · V (LoRA on), then
/// z_t = (1 − σ0) z_dr + σ0 ε and Euler steps. Both passes aggregate patch velocities with MultiDiffusion.
public struct DreamSRStagedSampler: Sendable {
    public let model: DreamSRModel
    public let mode: DreamSRMode
    /// The sampler config of `mode` (e.g. sigma 1 and N steps without LoRA).
    public let config: DreamSRConfig
    public let batchSize: Int

    public init(model: DreamSRModel, mode: DreamSRMode, steps: Int? = nil, batchSize: Int = 4) {
        self.model = model
        self.mode = mode
        config = mode.samplerConfig(model.config, steps: steps)
        self.batchSize = batchSize
    }

    /// The patch plan of a latent `[16, H, W]`.
    public func plan(latentWidth: Int, latentHeight: Int, channels: Int = 16) throws -> DreamSRPatchPlan {
        try DreamSRPatchPlan(channels: channels, latentWidth: latentWidth, latentHeight: latentHeight, config: config)
    }

    private func sampler(_ zLQ: Tensor) throws -> (DreamSRPatchSampler, DreamSRPatchPlan) {
        guard zLQ.rank == 3 else { throw DreamSRPipelineError(.invalidInput, "z_lq must be [C, H, W], got \(zLQ.shape)") }
        let plan = try plan(latentWidth: zLQ.shape[2], latentHeight: zLQ.shape[1], channels: zLQ.shape[0])
        return (DreamSRPatchSampler(config: config, plan: plan, batchSize: batchSize), plan)
    }

    /// The one-step restoration pass (LoRA on); returns z_dr `[C, H, W]`. `isCancelled` is polled between passes.
    public func restore(zLQ: Tensor, globalPrompt: DreamSRPromptEncoding, localPrompts: [DreamSRPromptEncoding]) throws -> Tensor {
        let (sampler, plan) = try sampler(zLQ)
        let denoiser = try DreamSRModelDenoiser(model: model, plan: plan, zLQ: zLQ, globalPrompt: globalPrompt,
                                                localPrompts: localPrompts, mode: mode)
        let zl = try plan.pad(zLQ)
        let t = Float(config.restoreT)
        let v = try sampler.velocity(of: zl, sigma: t, pass: .restore, denoiser: denoiser)
        return plan.crop(DreamSRLatentSteps.restored(zl, velocity: v, t: t))
    }

    /// The texture stage from `start` (z_dr, or z_lq without the restoration pass), conditioned on `zLQ`.
    public func texture(zLQ: Tensor, start: Tensor, noise: Tensor, globalPrompt: DreamSRPromptEncoding,
                        localPrompts: [DreamSRPromptEncoding], isCancelled: () -> Bool = { false },
                        onStep: ((Int, Int) -> Void)? = nil) throws -> (zOut: Tensor, sigmas: [Double]) {
        let (sampler, plan) = try sampler(zLQ)
        let denoiser = try DreamSRModelDenoiser(model: model, plan: plan, zLQ: zLQ, globalPrompt: globalPrompt,
                                                localPrompts: localPrompts, mode: mode)
        let zs = try plan.pad(start), nz = try plan.pad(noise)
        let sigmas = config.textureSigmas()
        let x = DreamSRLatentSteps.noised(zs, noise: nz, sigma: Float(sigmas[0]))
        for k in 0..<(sigmas.count - 1) {
            if isCancelled() { throw DreamSRPipelineError(.cancelled, "texture stage cancelled at step \(k)") }
            let v = try sampler.velocity(of: x, sigma: Float(sigmas[k]), pass: .texture, denoiser: denoiser)
            DreamSRLatentSteps.euler(x, velocity: v, dt: Float(sigmas[k + 1]) - Float(sigmas[k]))
            onStep?(k + 1, sigmas.count - 1)
        }
        return (plan.crop(x), sigmas)
    }
}
