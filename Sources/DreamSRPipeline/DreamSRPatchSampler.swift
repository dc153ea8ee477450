import Foundation
import Models
import Raster
import Tensor

/// Which DreamSR pass a velocity is asked for: the one-step restoration (LoRA on, t = restore_t) or a texture step.
public enum DreamSRPass: Sendable, Equatable { case restore, texture }

/// Predicts velocities for a batch of patches of one image.
public protocol DreamSRPatchDenoiser {
    /// `x`: packed tokens `[B, L, 64]` of the patches `patches` (row-major indices into the plan's grid).
    /// Returns the velocities `[B, L, 64]`.
    func velocities(x: Tensor, patches: [Int], sigma: Float, pass: DreamSRPass) throws -> Tensor
}

/// The patch layout of one latent image (dreamsr-architecture item 8), in latent cells: the image is padded by
/// reflection (bottom / right) to at least one patch per axis, then covered by the Tiled Diffusion grid of
/// `Raster.TileGrid`; velocities are aggregated with `Raster.GridBlender` (.gaussian or .uniform weights).
public struct DreamSRPatchPlan: Sendable {
    public let channels: Int
    public let latentWidth: Int
    public let latentHeight: Int
    public let paddedWidth: Int
    public let paddedHeight: Int
    public let patch: Int
    public let grid: TileGrid
    public let weighting: TileWeighting

    public init(channels: Int = 16, latentWidth: Int, latentHeight: Int, config: DreamSRConfig) throws {
        try self.init(channels: channels, latentWidth: latentWidth, latentHeight: latentHeight, patch: config.patchLatent,
                      overlap: config.overlapLatent, weighting: config.patchWeighting == .gaussian ? .gaussian : .uniform)
    }

    /// A plan with an explicit patch side and overlap (latent cells, even, overlap < patch) and blend weighting.
    public init(channels: Int = 16, latentWidth: Int, latentHeight: Int, patch: Int, overlap: Int,
                weighting: TileWeighting) throws {
        guard patch >= 2, patch % 2 == 0, overlap >= 0, overlap < patch else {
            throw DreamSRPipelineError(.invalidInput, "patch \(patch) / overlap \(overlap) latent cells: the patch must be even "
                                       + "and at least 2, the overlap in 0..<patch")
        }
        guard latentWidth > 0, latentHeight > 0, latentWidth % 2 == 0, latentHeight % 2 == 0 else {
            throw DreamSRPipelineError(.invalidInput, "latent \(latentWidth)x\(latentHeight) must have positive even sides "
                                 + "(image sides a multiple of 16 px)")
        }
        self.channels = channels
        self.latentWidth = latentWidth
        self.latentHeight = latentHeight
        self.patch = patch
        paddedWidth = max(latentWidth, patch)
        paddedHeight = max(latentHeight, patch)
        grid = try TileGrid(width: paddedWidth, height: paddedHeight, tileSize: patch, overlap: overlap)
        self.weighting = weighting
    }

    public var count: Int { grid.count }
    public var tokensPerPatch: Int { (patch / 2) * (patch / 2) }

    /// Top-left corner (y, x) of patch `index` (row-major).
    public func origin(_ index: Int) -> (y: Int, x: Int) {
        (grid.ys[index / grid.columns], grid.xs[index % grid.columns])
    }

    /// RoPE image ids `[L, 3]` of patch `index`: 0-based per patch, or offset by the patch's position ("global").
    public func imageIds(patch index: Int, ropeIds: DreamSRConfig.RopeIds) -> Tensor {
        let hh = patch / 2
        let (y, x) = origin(index)
        let (r0, c0): (Float, Float) = ropeIds == .patch ? (0, 0) : (Float(y) / 2, Float(x) / 2)
        let ids = Tensor(zeros: [hh * hh, 3])
        ids.withUnsafeMutableBufferPointer { p in
            for r in 0..<hh { for c in 0..<hh {
                p[(r * hh + c) * 3 + 1] = Float(r) + r0
                p[(r * hh + c) * 3 + 2] = Float(c) + c0
            } }
        }
        return ids
    }

    /// `[C, H, W]` → `[C, paddedHeight, paddedWidth]` by reflection (no edge repeat) at the bottom / right.
    public func pad(_ latent: Tensor) throws -> Tensor {
        guard latent.shape == [channels, latentHeight, latentWidth] else {
            throw DreamSRPipelineError(.invalidInput, "latent \(latent.shape), expected [\(channels), \(latentHeight), \(latentWidth)]")
        }
        if paddedWidth == latentWidth, paddedHeight == latentHeight { return latent.copy() }
        let out = Tensor(zeros: [channels, paddedHeight, paddedWidth])
        let rows = (0..<paddedHeight).map { Self.reflect($0, latentHeight) }
        let cols = (0..<paddedWidth).map { Self.reflect($0, latentWidth) }
        latent.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
            for c in 0..<channels { for (y, sy) in rows.enumerated() { for (x, sx) in cols.enumerated() {
                dst[(c * paddedHeight + y) * paddedWidth + x] = src[(c * latentHeight + sy) * latentWidth + sx]
            } } }
        } }
        return out
    }

    /// Crops a padded latent back to the image.
    public func crop(_ padded: Tensor) -> Tensor {
        if paddedWidth == latentWidth, paddedHeight == latentHeight { return padded }
        let out = Tensor(zeros: [channels, latentHeight, latentWidth])
        padded.withUnsafePointer { src in out.withUnsafeMutablePointer { dst in
            for c in 0..<channels { for y in 0..<latentHeight {
                (dst + (c * latentHeight + y) * latentWidth)
                    .update(from: src + (c * paddedHeight + y) * paddedWidth, count: latentWidth)
            } }
        } }
        return out
    }

    /// Reflection index (numpy/torch "reflect", repeated for pads longer than the axis).
    public static func reflect(_ i: Int, _ n: Int) -> Int {
        guard n > 1 else { return 0 }
        let period = 2 * (n - 1)
        let m = i % period
        return m >= n ? period - m : m
    }

    /// Packed tokens `[B, L, 4C]` of the given patches of a padded latent `[C, Hp, Wp]`.
    public func tokens(of padded: Tensor, patches: [Int]) -> Tensor {
        let p = patch, hh = p / 2, c = channels, f = 4 * c
        let out = Tensor(zeros: [patches.count, hh * hh, f])
        padded.withUnsafePointer { src in out.withUnsafeMutablePointer { dst in
            for (b, idx) in patches.enumerated() {
                let (y0, x0) = origin(idx)
                let base = dst + b * hh * hh * f
                for r in 0..<hh { for col in 0..<hh { for ch in 0..<c { for ph in 0..<2 { for pw in 0..<2 {
                    base[(r * hh + col) * f + ch * 4 + ph * 2 + pw] =
                        src[(ch * paddedHeight + y0 + 2 * r + ph) * paddedWidth + x0 + 2 * col + pw]
                } } } } }
            }
        } }
        return out
    }

    /// Unpacks one patch's tokens `[L, 4C]` (at `tokens + offset`) to planar `[C, p, p]`.
    func unpackPatch(_ tokens: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        let p = patch, hh = p / 2, c = channels, f = 4 * c
        for r in 0..<hh { for col in 0..<hh { for ch in 0..<c { for ph in 0..<2 { for pw in 0..<2 {
            dst[(ch * p + 2 * r + ph) * p + 2 * col + pw] = tokens[(r * hh + col) * f + ch * 4 + ph * 2 + pw]
        } } } } }
    }
}

extension DreamSRPatchPlan {
    /// MultiDiffusion: the velocity `[C, Hp, Wp]` at `sigma` for a padded latent, each patch's prediction (in
    /// batches of `batchSize` patches) blended with the plan's weights, Σ_p w_p v_p / Σ_p w_p.
    public func velocity(of padded: Tensor, sigma: Float, pass: DreamSRPass, denoiser: any DreamSRPatchDenoiser,
                         batchSize: Int) throws -> Tensor {
        let plan = self, batchSize = max(1, batchSize)
        var blender = GridBlender(grid: plan.grid, channels: plan.channels, weighting: plan.weighting)
        let all = Array(0..<plan.count)
        let p = plan.patch, per = plan.tokensPerPatch * 4 * plan.channels
        var planar = [Float](repeating: 0, count: plan.channels * p * p)
        for start in stride(from: 0, to: all.count, by: batchSize) {
            let batch = Array(all[start..<min(start + batchSize, all.count)])
            let x = plan.tokens(of: padded, patches: batch)
            let v = try denoiser.velocities(x: x, patches: batch, sigma: sigma, pass: pass)
            guard v.count == x.count else {
                throw DreamSRPipelineError(.modelOutputShape, "denoiser returned \(v.shape) for patch tokens \(x.shape)")
            }
            for (b, idx) in batch.enumerated() {
                v.withUnsafePointer { vp in planar.withUnsafeMutableBufferPointer { plan.unpackPatch(vp + b * per, into: $0.baseAddress!) } }
                try planar.withUnsafeBufferPointer {
                    try blender.add(row: idx / plan.grid.columns, column: idx % plan.grid.columns, tile: $0)
                }
            }
        }
        let img = try blender.finish()
        return Tensor(shape: [plan.channels, plan.paddedHeight, plan.paddedWidth], values: img.pixels)
    }
}

/// The result of a DreamSR latent run.
public struct DreamSRSampleResult: Sendable {
    /// The restored latent z_dr `[C, H, W]` (z_lq when the restoration pass is off).
    public let zDR: Tensor
    /// The final latent `[C, H, W]`.
    public let zOut: Tensor
    public let sigmas: [Double]
}

/// DreamSR's 1 + N sampler over patches (dreamsr-architecture items 6-8): one restoration pass (LoRA on) giving
/// z_dr = z_lq − restore_t · V, then z_t = (1 − σ0) z_dr + σ0 ε and N Euler steps x ← x + (σ_{k+1} − σ_k) V. At every
/// pass V is the MultiDiffusion aggregate Σ_p w_p v_p / Σ_p w_p of the patches' velocities over the whole latent.
public struct DreamSRPatchSampler: Sendable {
    public let config: DreamSRConfig
    public let plan: DreamSRPatchPlan
    /// Patches per denoiser call.
    public let batchSize: Int

    public init(config: DreamSRConfig, plan: DreamSRPatchPlan, batchSize: Int = 4) {
        self.config = config
        self.plan = plan
        self.batchSize = max(1, batchSize)
    }

    /// The aggregated velocity `[C, Hp, Wp]` at `sigma` for a padded latent.
    public func velocity(of padded: Tensor, sigma: Float, pass: DreamSRPass, denoiser: any DreamSRPatchDenoiser) throws -> Tensor {
        try plan.velocity(of: padded, sigma: sigma, pass: pass, denoiser: denoiser, batchSize: batchSize)
    }

    /// Runs the restoration pass (when `restore`) and the texture stage on `zLQ` `[C, H, W]` with `noise` of the
    /// same shape. `onStep(k, total)` is called after every pass (k = 0 is the restoration pass). After each pass the
    /// heap's free pages go back to the system (`HeapMemory`): a full-size pass frees about a gigabyte of activations.
    public func run(zLQ: Tensor, noise: Tensor, denoiser: any DreamSRPatchDenoiser, restore: Bool = true,
                    onStep: ((Int, Int) -> Void)? = nil) throws -> DreamSRSampleResult {
        let zl = try plan.pad(zLQ)
        let nz = try plan.pad(noise)
        let sigmas = config.textureSigmas()
        let total = sigmas.count - 1 + (restore ? 1 : 0)
        var zdr = zl
        if restore {
            let t = Float(config.restoreT)
            let v = try velocity(of: zl, sigma: t, pass: .restore, denoiser: denoiser)
            zdr = DreamSRLatentSteps.restored(zl, velocity: v, t: t)
            HeapMemory.returnFreedPages()
            onStep?(0, total)
        }
        let x = DreamSRLatentSteps.noised(zdr, noise: nz, sigma: Float(sigmas[0]))
        for k in 0..<(sigmas.count - 1) {
            let v = try velocity(of: x, sigma: Float(sigmas[k]), pass: .texture, denoiser: denoiser)
            DreamSRLatentSteps.euler(x, velocity: v, dt: Float(sigmas[k + 1]) - Float(sigmas[k]))
            HeapMemory.returnFreedPages()
            onStep?(k + (restore ? 1 : 0) + 1, total)
        }
        return DreamSRSampleResult(zDR: plan.crop(zdr), zOut: plan.crop(x), sigmas: sigmas)
    }
}

extension DreamSRPatchSampler {
    /// Plans the patches of `zLQ` `[16, H, W]`, runs `mode` (restoration pass when it has one, then the texture stage)
    /// and returns the latents. `localPrompts`: one per patch of `DreamSRPatchPlan(...).count`, row-major.
    public static func run(model: DreamSRModel, zLQ: Tensor, noise: Tensor, globalPrompt: DreamSRPromptEncoding,
                           localPrompts: [DreamSRPromptEncoding], mode: DreamSRMode = .dualBranch, steps: Int? = nil,
                           batchSize: Int = 4, onStep: ((Int, Int) -> Void)? = nil) throws -> DreamSRSampleResult {
        guard zLQ.rank == 3 else { throw DreamSRPipelineError(.invalidInput, "z_lq must be [C, H, W], got \(zLQ.shape)") }
        let cfg = mode.samplerConfig(model.config, steps: steps)
        let plan = try DreamSRPatchPlan(channels: zLQ.shape[0], latentWidth: zLQ.shape[2], latentHeight: zLQ.shape[1], config: cfg)
        let denoiser = try DreamSRModelDenoiser(model: model, plan: plan, zLQ: zLQ, globalPrompt: globalPrompt,
                                                localPrompts: localPrompts, mode: mode)
        return try DreamSRPatchSampler(config: cfg, plan: plan, batchSize: batchSize)
            .run(zLQ: zLQ, noise: noise, denoiser: denoiser, restore: mode.restores, onStep: onStep)
    }
}

/// One prompt's encodings: T5 states `[T, Dtxt]` and CLIP pooled `[Dpool]`.
public struct DreamSRPromptEncoding: Sendable {
    public let states: Tensor
    public let pooled: Tensor

    public init(states: Tensor, pooled: Tensor) {
        self.states = states
        self.pooled = pooled
    }
}

/// The paper's dual-branch model and its ablations (dreamsr-architecture "Ablation modes").
public enum DreamSRMode: String, Sendable, CaseIterable {
    /// ControlNet on with each patch's local prompt, main network on the global prompt, restoration pass + texture.
    case dualBranch = "dual-branch"
    /// ControlNet off, main network on the global prompt.
    case singleBranchGlobal = "single-branch-global"
    /// ControlNet off, main network on each patch's local prompt.
    case singleBranchLocal = "single-branch-local"
    /// No restoration pass (no LoRA): the texture stage starts from z_lq at sigma 1 (pure noise) with N steps.
    case withoutLoRA = "without-lora"

    public var usesControlNet: Bool { self == .dualBranch || self == .withoutLoRA }
    public var restores: Bool { self != .withoutLoRA }

    /// The sampler config of this mode: `withoutLoRA` starts at sigma 1 with `steps` steps (default 20).
    public func samplerConfig(_ base: DreamSRConfig, steps: Int? = nil) -> DreamSRConfig {
        var c = base
        if self == .withoutLoRA {
            c.textureT = 1
            c.textureSteps = steps ?? 20
            if case .explicit = c.schedule { c.schedule = .shifted }
        } else if let steps {
            c.textureSteps = steps
        }
        return c
    }
}

/// The DreamSR model as a patch denoiser: the main network gets the global prompt, the ControlNet each patch's local
/// prompt and LR latent tokens (packed once per patch: they do not change across steps; prompt encodings are
/// computed once per prompt by the caller). The ControlNet's input embedders are recomputed per step on purpose:
/// they are ~0.03 % of a step and caching them would cost ~19 MB per 512 px patch.
public final class DreamSRModelDenoiser: DreamSRPatchDenoiser, Sendable {
    public let model: DreamSRModel
    public let plan: DreamSRPatchPlan
    public let mode: DreamSRMode
    private let condTokens: Tensor
    private let global: DreamSRPromptEncoding
    private let locals: [DreamSRPromptEncoding]

    /// `zLQ` `[C, H, W]` (unpadded); `localPrompts` one per patch, row-major.
    public init(model: DreamSRModel, plan: DreamSRPatchPlan, zLQ: Tensor, globalPrompt: DreamSRPromptEncoding,
                localPrompts: [DreamSRPromptEncoding], mode: DreamSRMode = .dualBranch) throws {
        guard localPrompts.count == plan.count else {
            throw DreamSRPipelineError(.invalidInput, "\(localPrompts.count) local prompts for \(plan.count) patches")
        }
        self.model = model
        self.plan = plan
        self.mode = mode
        condTokens = plan.tokens(of: try plan.pad(zLQ), patches: Array(0..<plan.count))
        global = globalPrompt
        locals = localPrompts
    }

    /// `[N] + shape` from N tensors of one shape (a batch of per-patch inputs).
    static func stack(_ ts: [Tensor]) -> Tensor {
        let n = ts[0].count
        let out = Tensor(zeros: [ts.count] + ts[0].shape)
        out.withUnsafeMutablePointer { dst in
            for (i, t) in ts.enumerated() { t.withUnsafePointer { (dst + i * n).update(from: $0, count: n) } }
        }
        return out
    }

    public func velocities(x: Tensor, patches: [Int], sigma: Float, pass: DreamSRPass) throws -> Tensor {
        let cfg = model.config
        let mainPrompt: (Int) -> DreamSRPromptEncoding = mode == .singleBranchLocal ? { self.locals[$0] } : { _ in self.global }
        // One call per group of patches sharing image ids and prompt lengths.
        var groups: [[Int]] = []
        if cfg.ropeIds == .patch {
            var byLen: [[Int]: [Int]] = [:]
            for (b, idx) in patches.enumerated() {
                byLen[[locals[idx].states.shape[0], mainPrompt(idx).states.shape[0]], default: []].append(b)
            }
            groups = byLen.keys.sorted { $0.lexicographicallyPrecedes($1) }.map { byLen[$0]! }
        } else {
            groups = patches.indices.map { [$0] }
        }
        let per = plan.tokensPerPatch * x.shape[2]
        let out = Tensor(zeros: x.shape)
        for g in groups {
            let idxs = g.map { patches[$0] }
            let xs = Tensor(zeros: [g.count, plan.tokensPerPatch, x.shape[2]])
            let cs = Tensor(zeros: xs.shape)
            x.withUnsafePointer { xp in condTokens.withUnsafePointer { cp in
                xs.withUnsafeMutablePointer { xd in cs.withUnsafeMutablePointer { cd in
                    for (j, b) in g.enumerated() {
                        (xd + j * per).update(from: xp + b * per, count: per)
                        (cd + j * per).update(from: cp + idxs[j] * per, count: per)
                    }
                } }
            } }
            let t = mainPrompt(idxs[0]).states.shape[0], t2 = locals[idxs[0]].states.shape[0]
            let inp = DreamSRInputs(
                hiddenStates: xs, condLatents: cs,
                encoderHiddenStates: Self.stack(idxs.map { mainPrompt($0).states }),
                pooledProjections: Self.stack(idxs.map { mainPrompt($0).pooled }),
                localEncoderHiddenStates: Self.stack(idxs.map { locals[$0].states }),
                localPooledProjections: Self.stack(idxs.map { locals[$0].pooled }),
                timestep: [Float](repeating: sigma, count: g.count),
                guidance: [Float](repeating: Float(cfg.guidance), count: g.count),
                imgIds: plan.imageIds(patch: idxs[0], ropeIds: cfg.ropeIds),
                txtIds: Tensor(zeros: [t, 3]), localTxtIds: Tensor(zeros: [t2, 3]))
            let v = try model.velocity(inp, lora: pass == .restore, useControlNet: mode.usesControlNet)
            v.withUnsafePointer { vp in out.withUnsafeMutablePointer { od in
                for (j, b) in g.enumerated() { (od + b * per).update(from: vp + j * per, count: per) }
            } }
        }
        return out
    }
}

/// Seeded standard-normal noise (SplitMix64 + Box-Muller), reproducible across runs and platforms.
public struct DreamSRNoise {
    public static func gaussian(shape: [Int], seed: UInt64) -> Tensor {
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }
        let t = Tensor(zeros: shape)
        t.withUnsafeMutableBufferPointer { p in
            var i = 0
            while i < p.count {
                let r = (-2 * log(uniform())).squareRoot(), a = 2 * Double.pi * uniform()
                p[i] = Float(r * cos(a))
                if i + 1 < p.count { p[i + 1] = Float(r * sin(a)) }
                i += 2
            }
        }
        return t
    }
}

/// The latent updates of DreamSR's sampler (dreamsr-architecture items 6-7), elementwise over `[C, H, W]` latents.
enum DreamSRLatentSteps {
    /// z_dr = z_lq − t · v (the one-step restoration).
    static func restored(_ zLQ: Tensor, velocity v: Tensor, t: Float) -> Tensor {
        let out = Tensor(zeros: zLQ.shape)
        zLQ.withUnsafeBufferPointer { z in v.withUnsafeBufferPointer { vp in out.withUnsafeMutableBufferPointer { o in
            for i in 0..<o.count { o[i] = z[i] - t * vp[i] }
        } } }
        return out
    }

    /// z_t = (1 − σ) z + σ ε (the texture stage's start).
    static func noised(_ z: Tensor, noise: Tensor, sigma s0: Float) -> Tensor {
        let out = Tensor(zeros: z.shape)
        z.withUnsafeBufferPointer { zp in noise.withUnsafeBufferPointer { n in out.withUnsafeMutableBufferPointer { o in
            for i in 0..<o.count { o[i] = (1 - s0) * zp[i] + s0 * n[i] }
        } } }
        return out
    }

    /// x ← x + dt · v (one Euler step), in place.
    static func euler(_ x: Tensor, velocity v: Tensor, dt: Float) {
        v.withUnsafeBufferPointer { vp in x.withUnsafeMutableBufferPointer { o in
            for i in 0..<o.count { o[i] += dt * vp[i] }
        } }
    }
}
