import Checkpoints
import Foundation
import Tensor

/// Inputs of one DreamSR velocity prediction (the `dreamsr forward` contract's tensors).
public struct DreamSRInputs: Sendable {
    /// x_t tokens `[B, L, 64]`.
    public var hiddenStates: Tensor
    /// z_lq tokens `[B, L, 64]`.
    public var condLatents: Tensor
    /// Global prompt: T5 `[B, T, Dtxt]`, CLIP pooled `[B, Dpool]`.
    public var encoderHiddenStates: Tensor
    public var pooledProjections: Tensor
    /// Local prompt: T5 `[B, T2, Dtxt]`, CLIP pooled `[B, Dpool]`.
    public var localEncoderHiddenStates: Tensor
    public var localPooledProjections: Tensor
    public var timestep: [Float]
    public var guidance: [Float]?
    /// `[L, 3]`, `[T, 3]`, `[T2, 3]`.
    public var imgIds: Tensor
    public var txtIds: Tensor
    public var localTxtIds: Tensor

    public init(hiddenStates: Tensor, condLatents: Tensor, encoderHiddenStates: Tensor, pooledProjections: Tensor,
                localEncoderHiddenStates: Tensor, localPooledProjections: Tensor, timestep: [Float], guidance: [Float]?,
                imgIds: Tensor, txtIds: Tensor, localTxtIds: Tensor) {
        self.hiddenStates = hiddenStates
        self.condLatents = condLatents
        self.encoderHiddenStates = encoderHiddenStates
        self.pooledProjections = pooledProjections
        self.localEncoderHiddenStates = localEncoderHiddenStates
        self.localPooledProjections = localPooledProjections
        self.timestep = timestep
        self.guidance = guidance
        self.imgIds = imgIds
        self.txtIds = txtIds
        self.localTxtIds = localTxtIds
    }
}

/// Frozen FLUX + DreamSR ControlNet + restoration LoRA (dreamsr-architecture). The LoRA is applied unmerged and only
/// when asked (`lora: true`, the restoration pass), so no second copy of the base weights exists.
public struct DreamSRModel: Sendable {
    public let flux: FluxTransformer
    public let controlnet: DreamSRControlNet
    public let config: DreamSRConfig
    public let mainLoRA: DreamSRLoRA
    public let controlnetLoRA: DreamSRLoRA

    public init(flux: FluxTransformer, controlnet: DreamSRControlNet, config: DreamSRConfig, mainLoRA: DreamSRLoRA,
                controlnetLoRA: DreamSRLoRA) {
        self.flux = flux
        self.controlnet = controlnet
        self.config = config
        self.mainLoRA = mainLoRA
        self.controlnetLoRA = controlnetLoRA
    }

    /// Loads a DreamSR checkpoint (one safetensors or GGUF file, `dreamsr_config` metadata: a safetensors metadata
    /// entry or a GGUF string key) on top of a loaded FLUX model. Every Linear weight (ControlNet, image MLPs, Context
    /// Cross-Attention, LoRA A/B) stays in the file and is read in place in the FLUX model's precision; only biases and
    /// norm scales are copied to float32.
    /// `configOverride` replaces the file's config (e.g. pipeline options); unknown tensors are an error unless
    /// `allowUnexpected`.
    public static func load(checkpoint url: URL, flux: FluxTransformer, configOverride: DreamSRConfig? = nil,
                            allowUnexpected: Bool = false) throws -> DreamSRModel {
        let set = try CheckpointSet(url: url)
        var config: DreamSRConfig
        if let configOverride {
            config = configOverride
        } else {
            guard let json = set.metadata[DreamSRConfig.metadataKey] else {
                throw CheckpointError(.badConfig, "\(url.lastPathComponent): no `\(DreamSRConfig.metadataKey)` metadata "
                                      + "(expected a JSON object of the DreamSR config fields)")
            }
            config = try DreamSRConfig(jsonString: json)
        }
        try config.validate(mainDoubleBlocks: flux.config.depth)
        var used = Set<String>()
        let cn = try DreamSRControlNet(checkpoint: set, depth: config.controlnetDepth, flux: flux.config, used: &used,
                                       precision: flux.precision)
        let (mainLoRA, cnLoRA) = try DreamSRWeightMap.loadLoRA(set, flux: flux.config, depth: config.controlnetDepth,
                                                               scale: config.loraScale, precision: flux.precision,
                                                               used: &used)
        if !allowUnexpected {
            let unexpected = set.names.filter { !used.contains($0) }
            if !unexpected.isEmpty {
                throw CheckpointError(.unexpectedKeys, "\(url.lastPathComponent): \(unexpected.count) unexpected tensor(s): "
                                      + unexpected.sorted().prefix(30).joined(separator: ", "))
            }
        }
        return DreamSRModel(flux: flux, controlnet: cn, config: config, mainLoRA: mainLoRA, controlnetLoRA: cnLoRA)
    }

    /// Every Linear the DreamSR checkpoint supplies: the ControlNet's (`DreamSRControlNet.linears`) and the A and B of
    /// every LoRA part, main network and ControlNet (to check how each runs: `kernelPath`, `calls`).
    public var checkpointLinears: [Linear] {
        var l = controlnet.linears
        for lora in [mainLoRA, controlnetLoRA] {
            for (_, a) in lora.adapters.sorted(by: { $0.key < $1.key }) {
                for p in a.parts { l += [p.downLayer, p.upLayer] }
            }
        }
        return l
    }

    /// How many of `checkpointLinears` run each kernel path (`Linear.kernelPath`).
    public var checkpointKernelPaths: [String: Int] {
        checkpointLinears.reduce(into: [:]) { $0[$1.kernelPath, default: 0] += 1 }
    }

    /// One velocity prediction `[B, L, 64]`: ControlNet on the local prompt, then the main network on the global
    /// prompt with image MLP and Context Cross-Attention injection after the double blocks. `lora` switches the
    /// restoration LoRA on (main + ControlNet blocks); `useControlNet: false` gives plain FLUX.
    public func velocity(_ inp: DreamSRInputs, lora: Bool, useControlNet: Bool = true) throws -> Tensor {
        let bsz = inp.hiddenStates.shape.first ?? 0
        var features: DreamSRControlNet.Features?
        if useControlNet {
            features = try controlnet.features(
                hiddenStates: inp.hiddenStates, condLatents: inp.condLatents,
                localEncoderHiddenStates: inp.localEncoderHiddenStates, localPooled: inp.localPooledProjections,
                timestep: inp.timestep, guidance: inp.guidance, imgIds: inp.imgIds, localTxtIds: inp.localTxtIds,
                lora: lora ? controlnetLoRA : nil)
        }
        let cn = controlnet, cfg = config, mainBlocks = flux.config.depth
        var options = FluxForwardOptions(lora: lora ? mainLoRA : nil)
        if let features {
            options.afterDoubleBlock = { state in
                guard let l = cfg.injectionLayer(mainBlock: state.block, mainBlocks: mainBlocks),
                      let img = state.img, let txt = state.txt else { return }
                cn.imageMLPs[l].addInto(img: img, features: features.img[l])
                cn.contextAttention[l].addInto(txt: txt, context: features.txt[l], batch: bsz)
            }
        }
        return try flux.forward(FluxInputs(
            hiddenStates: inp.hiddenStates, encoderHiddenStates: inp.encoderHiddenStates,
            pooledProjections: inp.pooledProjections, timestep: inp.timestep, guidance: inp.guidance,
            imgIds: inp.imgIds, txtIds: inp.txtIds), options: options)
    }

    /// The one-step restoration pass: x_t = z_lq at t = `restore_t` with LoRA; returns (v, z_dr = z_lq − t·v).
    public func restore(_ inp: DreamSRInputs) throws -> (velocity: Tensor, zDR: Tensor) {
        var i = inp
        i.hiddenStates = inp.condLatents
        let t = Float(config.restoreT)
        i.timestep = [Float](repeating: t, count: inp.condLatents.shape.first ?? 0)
        let v = try velocity(i, lora: true)
        let z = Tensor(zeros: v.shape)
        z.assign(inp.condLatents, v) { c, v in c - t * v }
        return (v, z)
    }

    /// This model with the zero-initialised parts of a fresh DreamSR model zeroed (image MLP fc2, context attention
    /// to_out, LoRA B): it must compute exactly what plain FLUX computes.
    public func zeroingOutputLayers() -> DreamSRModel {
        func zero(_ l: Linear) -> Linear {
            Linear(name: l.name, weight: .resident(Tensor(zeros: l.weight.shape)), bias: l.bias.map { Tensor(zeros: $0.shape) })
        }
        let mlps = controlnet.imageMLPs.map { ControlNetImageMLP(fc1: $0.fc1, fc2: zero($0.fc2)) }
        let cca = controlnet.contextAttention.map {
            ContextCrossAttention(toQ: $0.toQ, toK: $0.toK, toV: $0.toV, toOut: zero($0.toOut), normQ: $0.normQ,
                                  normK: $0.normK, heads: $0.heads, headDim: $0.headDim)
        }
        return DreamSRModel(flux: flux, controlnet: DreamSRControlNet(replacing: controlnet, imageMLPs: mlps, contextAttention: cca),
                            config: config, mainLoRA: mainLoRA.zeroingUp(), controlnetLoRA: controlnetLoRA.zeroingUp())
    }
}
