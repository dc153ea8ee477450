import Checkpoints
import Foundation
import Models
import Raster
import Synchronization
import Tensor

/// Which FLUX.1 the ControlNet texture stage samples with: dev (guidance embedding, resolution-shifted schedule,
/// 20 steps by default) or schnell (timestep-distilled: no guidance embedding, no shift, 4 steps by default).
public enum FluxVariant: String, Sendable, CaseIterable {
    case dev, schnell

    /// The public repository of this variant's transformer, VAE and text encoders.
    public var repository: String { self == .dev ? "black-forest-labs/FLUX.1-dev" : "black-forest-labs/FLUX.1-schnell" }
}

/// Where the FLUX ControlNet pipeline's weights are (the pipeline file's `models:` block), each relative to the
/// daemon's `models_dir` unless absolute. Defaults: the diffusers folder layout of the variant's repository under
/// `flux1-dev/` or `flux1-schnell/`, and jasperai's upscaler ControlNet under `flux1-dev-controlnet-upscaler/`.
public struct FluxControlNetModelPaths: Sendable, Equatable, Hashable {
    public var flux: String
    public var controlnet = "flux1-dev-controlnet-upscaler"
    public var vae: String
    public var clip: String
    public var t5: String
    public var clipTokenizer: String
    public var t5Tokenizer: String

    public init(variant: FluxVariant = .dev) {
        let base = variant == .dev ? "flux1-dev" : "flux1-schnell"
        flux = base + "/transformer"
        vae = base + "/vae"
        clip = base + "/text_encoder"
        t5 = base + "/text_encoder_2"
        clipTokenizer = base + "/tokenizer"
        t5Tokenizer = base + "/tokenizer_2"
    }

    public static let keys = ["flux", "controlnet", "vae", "clip", "t5", "clip_tokenizer", "t5_tokenizer"]
}

/// The ControlNet texture stage's options (a pipeline file's `controlnet:` block), typed.
public struct FluxControlNetTextureOptions: Sendable, Equatable {
    public var variant = FluxVariant.dev
    /// Euler steps from `startSigma` to 0; nil: 20 (dev) or 4 (schnell).
    public var steps: Int?
    /// The img2img start: the restored image's latent is noised to this sigma (DreamSR's t = 0.8).
    public var startSigma = 0.8
    /// Guidance scale for models with a guidance embedder (FLUX.1-dev and its ControlNets; schnell ignores it).
    public var guidance = 3.5
    /// diffusers `controlnet_conditioning_scale`.
    public var conditioningScale: Float = 1
    /// Union ControlNets only: the `control_mode` (e.g. tile); nil for single-purpose ControlNets.
    public var controlMode: Int?
    /// diffusers `control_guidance_start` / `control_guidance_end` (fractions of the steps).
    public var guidanceStart = 0.0
    public var guidanceEnd = 1.0
    /// Patch side and overlap in output pixels (multiples of 16 and of 8; overlap < patch).
    public var patchSize = 512
    public var patchOverlap = 64
    public init() {}

    public var effectiveSteps: Int { steps ?? (variant == .dev ? 20 : 4) }
}

/// The loaded FLUX ControlNet model set, shared by every job and stage of a pipeline (read-only).
public final class FluxControlNetModelSet: @unchecked Sendable {
    public let transformer: FluxTransformer
    public let controlnet: FluxControlNet
    public let vae: AutoencoderKL
    public let text: FluxTextEncoders

    public init(transformer: FluxTransformer, controlnet: FluxControlNet, vae: AutoencoderKL, text: FluxTextEncoders) {
        self.transformer = transformer
        self.controlnet = controlnet
        self.vae = vae
        self.text = text
    }
}

/// The FLUX ControlNet pipeline's weights: checked from file headers at start-up (`check`, `validate`: every missing
/// file is named with the public repository and file a user must download) and loaded once (`load`).
public final class FluxControlNetRegistry: Sendable {
    public let paths: FluxControlNetModelPaths
    public let variant: FluxVariant
    public let components: [ModelComponent]
    private let loaded = Mutex<FluxControlNetModelSet?>(nil)
    private let loading = NSLock()

    public init(paths: FluxControlNetModelPaths, variant: FluxVariant) {
        self.paths = paths
        self.variant = variant
        let repo = variant.repository, dev = variant == .dev
        // Sizes only where a Hugging Face file listing was seen (docs/generative.md names the listings).
        let single = dev ? "flux1-dev.safetensors (23.8 GB)" : "flux1-schnell.safetensors (size unknown)"
        let ae = dev ? "ae.safetensors (335 MB)" : "ae.safetensors (size unknown)"
        let t5Shards = dev ? "model-00001-of-00002.safetensors (4.99 GB) + model-00002-of-00002.safetensors (4.53 GB)"
            : "model-*.safetensors (size unknown)"
        components = [
            ModelComponent(key: "flux", path: paths.flux, kind: .safetensors,
                           expectedLayout: "FLUX.1 transformer: a diffusers transformer/ folder, a single .safetensors file "
                           + "(bf16/f16/f32, FP8) or a .gguf file",
                           download: "\(repo): transformer/ (config.json + diffusion_pytorch_model-*.safetensors, size unknown), "
                           + "or the single file \(single)"),
            ModelComponent(key: "controlnet", path: paths.controlnet, kind: .safetensors,
                           expectedLayout: "diffusers FluxControlNetModel: a folder with config.json + diffusion_pytorch_model.safetensors",
                           download: "jasperai/Flux.1-dev-Controlnet-Upscaler: config.json + diffusion_pytorch_model.safetensors "
                           + "(3.58 GB) (or another FluxControlNetModel, e.g. InstantX/FLUX.1-dev-Controlnet-Union with control_mode)"),
            ModelComponent(key: "vae", path: paths.vae, kind: .safetensors,
                           expectedLayout: "FLUX VAE: a diffusers vae/ folder (diffusion_pytorch_model.safetensors + config.json) or BFL ae.safetensors",
                           download: "\(repo): vae/ (config.json + diffusion_pytorch_model.safetensors, size unknown), or \(ae)"),
            ModelComponent(key: "clip", path: paths.clip, kind: .safetensors,
                           expectedLayout: "CLIP-L text encoder: HF text_encoder/ folder (model.safetensors + config.json)",
                           download: "\(repo): text_encoder/ (config.json + model.safetensors, size unknown)"),
            ModelComponent(key: "t5", path: paths.t5, kind: .safetensors,
                           expectedLayout: "T5 v1.1 XXL encoder: HF text_encoder_2/ folder (model*.safetensors + config.json)",
                           download: "\(repo): text_encoder_2/ (config.json + model.safetensors.index.json + \(t5Shards))"),
            ModelComponent(key: "clip_tokenizer", path: paths.clipTokenizer, kind: .clipTokenizer,
                           expectedLayout: "CLIP tokenizer: HF tokenizer/ folder with vocab.json + merges.txt",
                           download: "\(repo): tokenizer/ (vocab.json, merges.txt)"),
            ModelComponent(key: "t5_tokenizer", path: paths.t5Tokenizer, kind: .t5Tokenizer,
                           expectedLayout: "T5 tokenizer: HF tokenizer_2/ folder with tokenizer.json",
                           download: "\(repo): tokenizer_2/ (tokenizer.json)"),
        ]
    }

    private static let registries = Mutex<[String: FluxControlNetRegistry]>([:])

    /// The process-wide registry for these (absolute) paths: pipelines naming the same files share one model set.
    public static func shared(_ paths: FluxControlNetModelPaths, variant: FluxVariant) -> FluxControlNetRegistry {
        registries.withLock { r in
            let key = "\(variant.rawValue)|\(paths.hashValue)|\(paths)"
            if let existing = r[key] { return existing }
            let made = FluxControlNetRegistry(paths: paths, variant: variant)
            r[key] = made
            return made
        }
    }

    /// Headers only: present / missing per component.
    public func check() -> [ModelCheckEntry] { components.map(ModelRegistry.check) }

    /// Throws one error naming every missing or unusable file, the layout expected there and where to download it.
    public func validate(pipelineFile: String) throws {
        let bad = check().filter { !$0.present }
        guard !bad.isEmpty else { return }
        let lines = bad.map {
            "  \($0.component.key): \($0.problem ?? "missing") — expected \($0.component.expectedLayout)\n"
                + "    download: \($0.component.download)"
        }
        throw DreamSRPipelineError(.models, "pipeline \(pipelineFile) needs the FLUX ControlNet model set; missing or unusable weights:\n"
                                   + lines.joined(separator: "\n")
                                   + "\n(set the paths in the pipeline file's `models:` block; relative paths are under models_dir)")
    }

    public var isLoaded: Bool { loaded.withLock { $0 != nil } }

    /// Loads every component the first time (later calls return the same set). Blocking.
    public func load() throws -> FluxControlNetModelSet {
        loading.lock()
        defer { loading.unlock() }
        if let set = loaded.withLock({ $0 }) { return set }
        let components = components
        @Sendable func wrap(_ key: String, _ error: any Error) -> any Error {
            let c = components.first { $0.key == key }!
            return DreamSRPipelineError(.models, "loading \(key) from \(c.path): \(error) (expected \(c.expectedLayout))")
        }
        func step<T>(_ key: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as DreamSRPipelineError { throw e } catch { throw wrap(key, error) }
        }
        let flux = try step("flux") { try FluxTransformer.load(from: CheckpointSet(url: URL(fileURLWithPath: paths.flux))) }
        let cn = try step("controlnet") { () throws -> FluxControlNet in
            let c = try FluxControlNet.load(from: CheckpointSet(url: URL(fileURLWithPath: paths.controlnet)))
            try c.checkCompatible(with: flux.config)
            return c
        }
        let vae = try step("vae") { try AutoencoderKL.load(from: URL(fileURLWithPath: paths.vae)).model }
        let text = try FluxTextEncoders.load(clip: paths.clip, t5: paths.t5, clipTokenizer: paths.clipTokenizer,
                                             t5Tokenizer: paths.t5Tokenizer, wrap: wrap)
        try FluxTextEncoders.checkFit(flux: flux.config, fluxPath: paths.flux, text: text, t5Path: paths.t5, clipPath: paths.clip,
                                      vae: vae, vaePath: paths.vae)
        guard cn.config.flux.contextDim == flux.config.contextDim, cn.config.flux.pooledDim == flux.config.pooledDim else {
            throw DreamSRPipelineError(.models, "ControlNet \(paths.controlnet) (context \(cn.config.flux.contextDim), pooled "
                                       + "\(cn.config.flux.pooledDim)) does not take the FLUX text encoders' outputs "
                                       + "(context \(flux.config.contextDim), pooled \(flux.config.pooledDim))")
        }
        let set = FluxControlNetModelSet(transformer: flux, controlnet: cn, vae: vae, text: text)
        loaded.withLock { $0 = set }
        return set
    }
}

/// A FLUX ControlNet as a patch denoiser: per patch, diffusers' `FluxControlNetImg2ImgPipeline` transformer call
/// with the ControlNet's residuals injected. The transformer gets the global prompt, the ControlNet the patch's local
/// prompt and the patch of the control latent (the LR image's latent, packed once per patch). `step` / `steps` apply
/// the control guidance start / end.
final class FluxControlNetPatchDenoiser: DreamSRPatchDenoiser, @unchecked Sendable {
    let models: FluxControlNetModelSet
    let plan: DreamSRPatchPlan
    let options: FluxControlNetTextureOptions
    private let condTokens: Tensor
    private let global: DreamSRPromptEncoding
    private let locals: [DreamSRPromptEncoding]
    var step = 0
    var steps = 1

    init(models: FluxControlNetModelSet, plan: DreamSRPatchPlan, control: Tensor, globalPrompt: DreamSRPromptEncoding,
         localPrompts: [DreamSRPromptEncoding], options: FluxControlNetTextureOptions) throws {
        guard localPrompts.count == plan.count else {
            throw DreamSRPipelineError(.invalidInput, "\(localPrompts.count) local prompts for \(plan.count) patches")
        }
        self.models = models
        self.plan = plan
        self.options = options
        condTokens = plan.tokens(of: try plan.pad(control), patches: Array(0..<plan.count))
        global = globalPrompt
        locals = localPrompts
    }

    func velocities(x: Tensor, patches: [Int], sigma: Float, pass: DreamSRPass) throws -> Tensor {
        // One call per group of patches whose local prompts have the same length (image ids are per patch, 0-based).
        var byLen: [Int: [Int]] = [:]
        for (b, idx) in patches.enumerated() { byLen[locals[idx].states.shape[0], default: []].append(b) }
        let per = plan.tokensPerPatch * x.shape[2]
        let out = Tensor(zeros: x.shape)
        let imgIds = plan.imageIds(patch: 0, ropeIds: .patch)
        for len in byLen.keys.sorted() {
            let g = byLen[len]!, idxs = g.map { patches[$0] }, n = g.count
            let xs = Tensor(zeros: [n, plan.tokensPerPatch, x.shape[2]])
            let cs = Tensor(zeros: xs.shape)
            x.withUnsafePointer { xp in condTokens.withUnsafePointer { cp in
                xs.withUnsafeMutablePointer { xd in cs.withUnsafeMutablePointer { cd in
                    for (j, b) in g.enumerated() {
                        (xd + j * per).update(from: xp + b * per, count: per)
                        (cd + j * per).update(from: cp + idxs[j] * per, count: per)
                    }
                } }
            } }
            let timestep = [Float](repeating: sigma, count: n), guidance = [Float](repeating: Float(options.guidance), count: n)
            let main = FluxInputs(hiddenStates: xs,
                                  encoderHiddenStates: DreamSRModelDenoiser.stack(Array(repeating: global.states, count: n)),
                                  pooledProjections: DreamSRModelDenoiser.stack(Array(repeating: global.pooled, count: n)),
                                  timestep: timestep, guidance: guidance, imgIds: imgIds,
                                  txtIds: Tensor(zeros: [global.states.shape[0], 3]))
            let control = FluxInputs(hiddenStates: xs,
                                     encoderHiddenStates: DreamSRModelDenoiser.stack(idxs.map { locals[$0].states }),
                                     pooledProjections: DreamSRModelDenoiser.stack(idxs.map { locals[$0].pooled }),
                                     timestep: timestep, guidance: guidance, imgIds: imgIds, txtIds: Tensor(zeros: [len, 3]))
            let unit = FluxControlNetUnit(controlnet: models.controlnet, cond: cs, mode: options.controlMode.map { [$0] },
                                          scale: options.conditioningScale, guidanceStart: options.guidanceStart,
                                          guidanceEnd: options.guidanceEnd)
            let residuals = try FluxMultiControlNet.residuals([unit], inputs: control, step: step, of: steps)
            let v = try models.transformer.forward(main, controlnet: residuals)
            v.withUnsafePointer { vp in out.withUnsafeMutablePointer { od in
                for (j, b) in g.enumerated() { (od + b * per).update(from: vp + j * per, count: per) }
            } }
        }
        return out
    }
}

/// The texture stage with a public FLUX ControlNet (issue 18): img2img from the restored image's latent noised to
/// `startSigma`, Euler steps on the FlowMatch schedule (shifted for dev, linear for schnell), each step the
/// MultiDiffusion blend of per-patch velocities (`DreamSRPatchPlan`, the same patches, packing and blend as DreamSR's
/// texture stage), the ControlNet conditioned on the latent of the LR image resized to the output size. Image <->
/// latent, tiled VAE and colour fix are `FluxLatentCodec`'s. Blocking: run it on a compute lane.
public struct FluxControlNetUpscalePipeline: Sendable {
    public let models: FluxControlNetModelSet
    public let options: FluxControlNetTextureOptions
    /// VAE tiling, colour fix, seed and patches per call (the pipeline file's `dreamsr:` block).
    public let image: DreamSRPipelineOptions

    public init(models: FluxControlNetModelSet, options: FluxControlNetTextureOptions, image: DreamSRPipelineOptions) {
        self.models = models
        self.options = options
        self.image = image
    }

    public var codec: FluxLatentCodec { FluxLatentCodec(vae: models.vae, options: image) }
    /// The colour fix that runs (wavelet unless the pipeline file says otherwise).
    public var colorFix: ColorFix.Method { image.colorFix ?? .wavelet }

    public func geometry(lrWidth: Int, lrHeight: Int, scale: Int) throws -> DreamSRImageGeometry {
        try DreamSRImageGeometry(lrWidth: lrWidth, lrHeight: lrHeight, scale: scale)
    }

    /// The patch plan of an image's latent: `patchSize` / `patchOverlap` pixels as latent cells, Gaussian blend.
    public func plan(_ geometry: DreamSRImageGeometry) throws -> DreamSRPatchPlan {
        try plan(channels: models.vae.config.latentChannels, latentWidth: geometry.latentWidth,
                 latentHeight: geometry.latentHeight)
    }

    private func plan(channels: Int, latentWidth: Int, latentHeight: Int) throws -> DreamSRPatchPlan {
        try DreamSRPatchPlan(channels: channels, latentWidth: latentWidth, latentHeight: latentHeight,
                             patch: options.patchSize / 8, overlap: options.patchOverlap / 8, weighting: .gaussian)
    }

    /// The schedule: `effectiveSteps` steps from `startSigma` to 0, shifted with the patch's mu (dev) or linear
    /// (schnell: no resolution shift). Terminal 0 included.
    public func sigmas(_ plan: DreamSRPatchPlan) -> [Float] {
        let mu = FlowMatch.mu(imageSeqLen: plan.tokensPerPatch)
        return FlowMatch.textureSigmas(options.variant == .dev ? .shifted : .linear, start: options.startSigma,
                                       steps: options.effectiveSteps, mu: mu)
    }

    public func encode(prompt: String) throws -> DreamSRPromptEncoding { try models.text.encode(prompt: prompt) }

    /// The texture stage on latents `[C, H/8, W/8]`: `start` (the restored image's latent) noised to the first sigma
    /// with seeded noise, then the Euler steps with the ControlNet conditioned on `control` (the LR latent).
    public func texture(control: Tensor, start: Tensor, globalPrompt: DreamSRPromptEncoding,
                        localPrompts: [DreamSRPromptEncoding], isCancelled: () -> Bool = { false },
                        onStep: ((Int, Int) -> Void)? = nil) throws -> (zOut: Tensor, sigmas: [Float]) {
        guard control.rank == 3, start.shape == control.shape else {
            throw DreamSRPipelineError(.invalidInput, "control latent \(control.shape) and start latent \(start.shape) must be one [C, H, W]")
        }
        let plan = try plan(channels: control.shape[0], latentWidth: control.shape[2], latentHeight: control.shape[1])
        let denoiser = try FluxControlNetPatchDenoiser(models: models, plan: plan, control: control, globalPrompt: globalPrompt,
                                                       localPrompts: localPrompts, options: options)
        let sigmas = sigmas(plan)
        let noise = DreamSRNoise.gaussian(shape: control.shape, seed: UInt64(image.seed))
        let x = DreamSRLatentSteps.noised(try plan.pad(start), noise: try plan.pad(noise), sigma: sigmas[0])
        let n = sigmas.count - 1
        denoiser.steps = n
        for k in 0..<n {
            if isCancelled() { throw DreamSRPipelineError(.cancelled, "texture stage cancelled at step \(k)") }
            denoiser.step = k
            let v = try plan.velocity(of: x, sigma: sigmas[k], pass: .texture, denoiser: denoiser, batchSize: image.batch)
            DreamSRLatentSteps.euler(x, velocity: v, dt: sigmas[k + 1] - sigmas[k])
            onStep?(k + 1, n)
        }
        return (plan.crop(x), sigmas)
    }

    /// The whole image path: `lr` resized to the output size (control latent + colour-fix reference), `restored`
    /// (a restorer's output, any size; nil: the resized LR) encoded as the start, the texture stage, tiled decode and
    /// colour fix. `localPrompts`: one per patch of `plan(geometry)`, row-major. Returns the image and the final latent.
    public func upscale(lr: PlanarImage, restored: PlanarImage?, scale: Int, globalPrompt: DreamSRPromptEncoding,
                        localPrompts: [DreamSRPromptEncoding]) throws -> (image: PlanarImage, zOut: Tensor) {
        let geometry = try geometry(lrWidth: lr.width, lrHeight: lr.height, scale: scale)
        let codec = codec
        let reference = try codec.upsized(lr, geometry)
        let control = try codec.encodeLatent(reference, geometry)
        let start = try restored.map { try codec.encodeLatent(try codec.upsized($0, geometry), geometry) } ?? control
        let z = try texture(control: control, start: start, globalPrompt: globalPrompt, localPrompts: localPrompts).zOut
        let image = try codec.finish(try codec.decodeLatent(z, geometry), reference: reference, grey: lr.channels == 1,
                                     colorFix: colorFix)
        return (image, z)
    }

    /// `upscale` with prompt texts (encoded with the model set's text encoders, cached).
    public func upscale(lr: PlanarImage, restored: PlanarImage?, scale: Int, globalPrompt: String,
                        localPrompts: [String]) throws -> PlanarImage {
        try upscale(lr: lr, restored: restored, scale: scale, globalPrompt: try encode(prompt: globalPrompt),
                    localPrompts: try localPrompts.map { try encode(prompt: $0) }).image
    }
}
