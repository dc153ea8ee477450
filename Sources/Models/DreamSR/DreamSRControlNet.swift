import Checkpoints
import Foundation
import Tensor

/// DreamSR's MM-ControlNet (dreamsr-architecture items 1-4): copies of the main embedders, `controlnet_x_embedder`
/// (zero-init) on the LR latent tokens, `depth` double-stream blocks run on the LOCAL prompt, and the injection
/// modules (image MLPs, Context Cross-Attention), one per ControlNet layer.
public struct DreamSRControlNet: Sendable {
    public let depth: Int
    public let imgIn, txtIn, controlnetXEmbedder: Linear
    public let timeIn, vectorIn: MLPEmbedder
    public let guidanceIn: MLPEmbedder?
    public let blocks: [FluxDoubleBlock]
    public let imageMLPs: [ControlNetImageMLP]
    public let contextAttention: [ContextCrossAttention]
    public let flux: FluxConfig

    /// Per-layer features: image stream `[B·L, D]` and text stream `[B·T2, D]` after each block.
    public struct Features: Sendable {
        public let img: [Tensor]
        public let txt: [Tensor]
    }

    /// Reads the ControlNet tensors (`controlnet.*`) of a DreamSR checkpoint; `used` collects consumed keys.
    public init(checkpoint set: CheckpointSet, depth: Int, flux c: FluxConfig, used: inout Set<String>,
                precision: ComputePrecision = .fp32) throws {
        let d = c.hiddenSize
        let sources = try DreamSRWeightMap.resolve(DreamSRWeightMap.controlnetRecipes(depth: depth, guidance: c.guidanceEmbed),
                                                   in: set, used: &used)
        // Shape check against the main network's canonical shapes (ControlNet blocks are copies of main blocks).
        var expected: [String: [Int]] = [:]
        for (k, s) in FluxWeightMap.canonicalShapes(c) { expected[k] = s }
        for (k, w) in sources {
            let key = k.hasPrefix("double_blocks.") ? "double_blocks.0." + k.split(separator: ".", maxSplits: 2)[2] : k
            if let e = expected[key], e != w.shape {
                throw CheckpointError(.shapeMismatch, "DreamSR ControlNet tensor \(w.parts.map(\.info.name)) has shape "
                                      + "\(w.shape), expected \(e) for this FLUX model")
            }
        }
        let halfPrecision = sources.values.contains { !$0.dtypes.isSubset(of: [.f32]) }
        let weights = FluxWeights(sources: sources, residentWeights: !halfPrecision, precision: precision)
        self.depth = depth
        self.flux = c
        imgIn = try weights.linear("img_in")
        txtIn = try weights.linear("txt_in")
        timeIn = MLPEmbedder(inLayer: try weights.linear("time_in.in_layer"), outLayer: try weights.linear("time_in.out_layer"))
        vectorIn = MLPEmbedder(inLayer: try weights.linear("vector_in.in_layer"), outLayer: try weights.linear("vector_in.out_layer"))
        guidanceIn = c.guidanceEmbed
            ? MLPEmbedder(inLayer: try weights.linear("guidance_in.in_layer"), outLayer: try weights.linear("guidance_in.out_layer"))
            : nil
        blocks = try (0..<depth).map { try FluxDoubleBlock(weights: weights, prefix: "double_blocks.\($0).", config: c) }
        let p = DreamSRWeightMap.controlnetPrefix
        func linear(_ name: String, in inF: Int = d) throws -> Linear {
            try DreamSRWeightMap.linear(set, p + name, out: d, in: inF, precision: precision, used: &used)
        }
        controlnetXEmbedder = try linear("controlnet_x_embedder", in: c.inChannels)
        imageMLPs = try (0..<depth).map { l in
            ControlNetImageMLP(
                fc1: try linear("controlnet_img_mlps.\(l).fc1"), fc2: try linear("controlnet_img_mlps.\(l).fc2"))
        }
        contextAttention = try (0..<depth).map { l in
            let q = p + "context_attn.\(l)."
            return ContextCrossAttention(
                toQ: try linear("context_attn.\(l).to_q"), toK: try linear("context_attn.\(l).to_k"),
                toV: try linear("context_attn.\(l).to_v"), toOut: try linear("context_attn.\(l).to_out"),
                normQ: try DreamSRWeightMap.tensor(set, q + "norm_q.weight", shape: [c.headDim], used: &used),
                normK: try DreamSRWeightMap.tensor(set, q + "norm_k.weight", shape: [c.headDim], used: &used),
                heads: c.numHeads, headDim: c.headDim)
        }
    }

    /// Every Linear of the ControlNet: embedders, `controlnet_x_embedder`, the blocks, image MLPs and Context
    /// Cross-Attention (to check how each runs: `kernelPath`, `calls`).
    public var linears: [Linear] {
        var l = [imgIn, txtIn, controlnetXEmbedder, timeIn.inLayer, timeIn.outLayer, vectorIn.inLayer, vectorIn.outLayer]
        if let guidanceIn { l += [guidanceIn.inLayer, guidanceIn.outLayer] }
        for b in blocks {
            l += [b.imgMod, b.txtMod, b.imgQKV, b.txtQKV, b.imgProj, b.txtProj, b.imgMLP0, b.imgMLP2, b.txtMLP0, b.txtMLP2]
        }
        for m in imageMLPs { l += [m.fc1, m.fc2] }
        for a in contextAttention { l += [a.toQ, a.toK, a.toV, a.toOut] }
        return l
    }

    /// A copy with replaced injection modules (tests: zeroed output layers).
    public init(replacing base: DreamSRControlNet, imageMLPs: [ControlNetImageMLP], contextAttention: [ContextCrossAttention]) {
        depth = base.depth; imgIn = base.imgIn; txtIn = base.txtIn; controlnetXEmbedder = base.controlnetXEmbedder
        timeIn = base.timeIn; vectorIn = base.vectorIn; guidanceIn = base.guidanceIn; blocks = base.blocks
        flux = base.flux
        self.imageMLPs = imageMLPs
        self.contextAttention = contextAttention
    }

    /// `vec = time_in(emb(1000 t)) + guidance_in(emb(1000 g)) + vector_in(local pooled)`, `[B, D]`, then SiLU.
    func siluVector(timestep: [Float], guidance: [Float]?, pooled: Tensor, lora: (any LoRAProvider)?) throws -> Tensor {
        let vec = try FluxTransformer.conditioningVector(
            timeIn: timeIn, guidanceIn: guidanceIn, vectorIn: vectorIn, config: flux, timestep: timestep,
            guidance: guidance, pooled: pooled, lora: lora, pooledName: "local_pooled_projections", owner: "the ControlNet")
        TransformerOps.silu(vec)
        return vec
    }

    /// Runs the ControlNet: `hidden = img_in(x) + controlnet_x_embedder(cond)`, text = `txt_in(local T5)`,
    /// vec from the local pooled prompt; same RoPE ids layout as the main network (local text ids, then image ids).
    public func features(hiddenStates x: Tensor, condLatents cond: Tensor, localEncoderHiddenStates lehs: Tensor,
                         localPooled: Tensor, timestep: [Float], guidance: [Float]?, imgIds: Tensor,
                         localTxtIds: Tensor, lora: (any LoRAProvider)?) throws -> Features {
        let c = flux
        guard x.rank == 3, x.shape[2] == c.inChannels, cond.shape == x.shape else {
            throw CheckpointError(.shapeMismatch, "hidden_states \(x.shape) / cond_latents \(cond.shape), expected equal [B, L, \(c.inChannels)]")
        }
        let bsz = x.shape[0], li = x.shape[1]
        guard lehs.rank == 3, lehs.shape[0] == bsz, lehs.shape[2] == c.contextDim else {
            throw CheckpointError(.shapeMismatch, "local_encoder_hidden_states \(lehs.shape), expected [\(bsz), T2, \(c.contextDim)]")
        }
        let lt = lehs.shape[1]
        guard imgIds.shape == [li, 3], localTxtIds.shape == [lt, 3] else {
            throw CheckpointError(.shapeMismatch, "img_ids \(imgIds.shape) / local_txt_ids \(localTxtIds.shape), expected [\(li), 3] / [\(lt), 3]")
        }
        let seq = FluxSequence(batch: bsz, imgTokens: li, txtTokens: lt)
        let siluVec = try siluVector(timestep: timestep, guidance: guidance, pooled: localPooled, lora: lora)
        let ids = Tensor(zeros: [lt + li, 3])
        ids.copyValues(from: localTxtIds, count: lt * 3, to: 0)
        ids.copyValues(from: imgIds, count: li * 3, to: lt * 3)
        let rope = RopeTables(ids: ids, config: c)

        let img = imgIn(x.reshaped([bsz * li, c.inChannels]))
        controlnetXEmbedder.accumulate(cond.reshaped([bsz * li, c.inChannels]), into: img)
        let txt = txtIn(lehs.reshaped([bsz * lt, c.contextDim]))
        var fi: [Tensor] = [], ft: [Tensor] = []
        for blk in blocks {
            blk.forward(img: img, txt: txt, siluVec: siluVec, rope: rope, seq: seq, lora: lora)
            fi.append(img.copy())
            ft.append(txt.copy())
        }
        return Features(img: fi, txt: ft)
    }
}
