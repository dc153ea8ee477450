import Checkpoints
import Foundation
import Tensor

/// Rotary tables for one sequence (text tokens first, then image tokens): `[tokens, headDim/2]`.
public struct RopeTables: Sendable {
    public let cos: Tensor
    public let sin: Tensor
    public var tokens: Int { cos.shape[0] }

    public init(cos: Tensor, sin: Tensor) {
        self.cos = cos
        self.sin = sin
    }

    /// Tables for ids `[tokens, axes]` (text ids then image ids, as in the sequence).
    public init(ids: Tensor, config: FluxConfig) {
        (cos, sin) = TransformerOps.ropeTables(ids: ids, axesDim: config.axesDim, theta: config.theta)
    }
}

/// Shapes of one forward: batch size and token counts per item. Activations are stacked `[batch · tokens, hidden]`.
public struct FluxSequence: Sendable {
    public let batch: Int
    public let imgTokens: Int
    public let txtTokens: Int
    public var tokens: Int { imgTokens + txtTokens }

    public init(batch: Int, imgTokens: Int, txtTokens: Int) {
        self.batch = batch
        self.imgTokens = imgTokens
        self.txtTokens = txtTokens
    }
}

/// Per-head RMSNorm scales of q and k.
public struct QKNorm: Sendable {
    public let query: Tensor
    public let key: Tensor
}

/// Shared helpers for the blocks.
enum FluxMath {
    /// `y[b-th item rows] = LN(x) (1 + scale_b) + shift_b`; `mod` is `[batch, k·D]`, shift at chunk `shiftChunk`.
    static func modulatedNorm(_ x: Tensor, mod: Tensor, shiftChunk: Int, batch: Int, rowsPerItem: Int, dim: Int) -> Tensor {
        let y = Tensor(zeros: x.shape)
        let stride = mod.shape[1]
        mod.withUnsafePointer { modp in
            x.withUnsafePointer { xp in
                y.withUnsafeMutablePointer { yp in
                    for b in 0..<batch {
                        let m = modp + b * stride
                        TransformerOps.layerNormModulate(
                            x: xp + b * rowsPerItem * dim, ldx: dim, y: yp + b * rowsPerItem * dim, ldy: dim,
                            rows: rowsPerItem, dim: dim, scale: m + (shiftChunk + 1) * dim, shift: m + shiftChunk * dim)
                    }
                }
            }
        }
        return y
    }

    /// `x[b-th item rows] += gate_b ⊙ y` with the gate at chunk `gateChunk` of `mod` (`y` has row stride `ldy`).
    static func gatedResidual(_ x: Tensor, _ y: Tensor, ldy: Int, mod: Tensor, gateChunk: Int,
                              batch: Int, rowsPerItem: Int, dim: Int) {
        let stride = mod.shape[1]
        x.withUnsafeMutablePointer { xp in
            y.withUnsafePointer { yp in
                mod.withUnsafePointer { modp in
                    for b in 0..<batch {
                        TransformerOps.gatedAdd(xp + b * rowsPerItem * dim, ldy: dim, yp + b * rowsPerItem * ldy, ldx: ldy,
                                                gate: modp + b * stride + gateChunk * dim, rows: rowsPerItem, cols: dim)
                    }
                }
            }
        }
    }

    /// RMSNorm on q and k in a fused buffer with q at column 0 and k at column `dim` (row stride `ld`);
    /// `rows` rows in total.
    static func qkNorm(_ buf: Tensor, ld: Int, rows: Int, heads: Int, headDim: Int, q: Tensor, k: Tensor) {
        buf.withUnsafeMutablePointer { p in
            q.withUnsafePointer { qp in
                TransformerOps.rmsNormHeads(p, stride: ld, rows: rows, heads: heads, headDim: headDim, weight: qp)
            }
            k.withUnsafePointer { kp in
                TransformerOps.rmsNormHeads(p + heads * headDim, stride: ld, rows: rows, heads: heads, headDim: headDim, weight: kp)
            }
        }
    }

    static func rope(_ buf: Tensor, ld: Int, seq: FluxSequence, heads: Int, headDim: Int, rope: RopeTables) {
        precondition(rope.tokens == seq.tokens, "RoPE tables for \(rope.tokens) tokens, sequence has \(seq.tokens)")
        buf.withUnsafeMutablePointer { p in
            rope.cos.withUnsafePointer { cosp in
                rope.sin.withUnsafePointer { sinp in
                    for b in 0..<seq.batch {
                        let base = p + b * seq.tokens * ld
                        for off in [0, heads * headDim] {
                            TransformerOps.applyRope(base + off, stride: ld, rows: seq.tokens, heads: heads, headDim: headDim,
                                                     cos: cosp, sin: sinp)
                        }
                    }
                }
            }
        }
    }

    /// Joint attention per item over a fused `[q | k | v | ...]` buffer (row stride `ld`), output `[rows, dim]`
    /// written with row stride `ldo`; in bf16 (`attentionBF16`, float32 softmax and sums) when `precision` is bf16.
    static func attention(_ qkv: Tensor, ld: Int, out: Tensor, ldo: Int, seq: FluxSequence, heads: Int, headDim: Int,
                          precision: ComputePrecision = .fp32) {
        let d = heads * headDim
        qkv.withUnsafePointer { qkvp in
            out.withUnsafeMutablePointer { outp in
                for b in 0..<seq.batch {
                    let base = qkvp + b * seq.tokens * ld
                    if precision == .bf16 {
                        ComputeWorkers.shared.run { workers in
                            TransformerOps.attentionBF16(q: base, ldq: ld, k: base + d, ldk: ld, v: base + 2 * d, ldv: ld,
                                                         out: outp + b * seq.tokens * ldo, ldo: ldo, queries: seq.tokens,
                                                         keys: seq.tokens, heads: heads, headDim: headDim, workers: workers)
                        }
                        continue
                    }
                    TransformerOps.attention(q: base, ldq: ld, k: base + d, ldk: ld, v: base + 2 * d, ldv: ld,
                                             out: outp + b * seq.tokens * ldo, ldo: ldo, queries: seq.tokens,
                                             keys: seq.tokens, heads: heads, headDim: headDim)
                }
            }
        }
    }
}

/// MM-DiT double-stream block (BFL `DoubleStreamBlock`, diffusers `FluxTransformerBlock`), flux spec §1.4.
/// Also the building block of FLUX ControlNets.
public struct FluxDoubleBlock: Sendable {
    public let prefix: String
    public let imgMod, txtMod, imgQKV, txtQKV, imgProj, txtProj, imgMLP0, imgMLP2, txtMLP0, txtMLP2: Linear
    public let imgNorm, txtNorm: QKNorm
    public let heads: Int
    public let headDim: Int
    /// Attention precision (the Linears carry their own).
    public let precision: ComputePrecision

    public init(weights w: FluxWeights, prefix p: String, config c: FluxConfig) throws {
        prefix = p
        precision = w.precision
        imgMod = try w.linear(p + "img_mod.lin"); txtMod = try w.linear(p + "txt_mod.lin")
        imgQKV = try w.linear(p + "img_attn.qkv"); txtQKV = try w.linear(p + "txt_attn.qkv")
        imgProj = try w.linear(p + "img_attn.proj"); txtProj = try w.linear(p + "txt_attn.proj")
        imgMLP0 = try w.linear(p + "img_mlp.0"); imgMLP2 = try w.linear(p + "img_mlp.2")
        txtMLP0 = try w.linear(p + "txt_mlp.0"); txtMLP2 = try w.linear(p + "txt_mlp.2")
        imgNorm = QKNorm(query: try w.resident(p + "img_attn.norm.query_norm.scale"), key: try w.resident(p + "img_attn.norm.key_norm.scale"))
        txtNorm = QKNorm(query: try w.resident(p + "txt_attn.norm.query_norm.scale"), key: try w.resident(p + "txt_attn.norm.key_norm.scale"))
        heads = c.numHeads
        headDim = c.headDim
    }

    /// Updates `img [B·Li, D]` and `txt [B·Lt, D]` in place. `siluVec` is `SiLU(vec)` `[B, D]`.
    public func forward(img: Tensor, txt: Tensor, siluVec: Tensor, rope: RopeTables, seq: FluxSequence,
                        lora: (any LoRAProvider)? = nil) {
        let d = heads * headDim, bsz = seq.batch, li = seq.imgTokens, lt = seq.txtTokens, l = seq.tokens
        func ad(_ x: Linear) -> LoRAAdapter? { lora?.adapter(for: x.name) }
        let im = imgMod(siluVec, lora: ad(imgMod)), tm = txtMod(siluVec, lora: ad(txtMod))

        // Attention inputs: fused q|k|v per stream, then one joint buffer per item (text rows first).
        let joint = Tensor(zeros: [bsz * l, 3 * d])
        do {
            let xi = FluxMath.modulatedNorm(img, mod: im, shiftChunk: 0, batch: bsz, rowsPerItem: li, dim: d)
            let qi = imgQKV(xi, lora: ad(imgQKV))
            let xt = FluxMath.modulatedNorm(txt, mod: tm, shiftChunk: 0, batch: bsz, rowsPerItem: lt, dim: d)
            let qt = txtQKV(xt, lora: ad(txtQKV))
            FluxMath.qkNorm(qi, ld: 3 * d, rows: bsz * li, heads: heads, headDim: headDim, q: imgNorm.query, k: imgNorm.key)
            FluxMath.qkNorm(qt, ld: 3 * d, rows: bsz * lt, heads: heads, headDim: headDim, q: txtNorm.query, k: txtNorm.key)
            for b in 0..<bsz {
                joint.copyValues(from: qt, at: b * lt * 3 * d, count: lt * 3 * d, to: b * l * 3 * d)
                joint.copyValues(from: qi, at: b * li * 3 * d, count: li * 3 * d, to: (b * l + lt) * 3 * d)
            }
        }
        FluxMath.rope(joint, ld: 3 * d, seq: seq, heads: heads, headDim: headDim, rope: rope)
        let attn = Tensor(zeros: [bsz * l, d])
        FluxMath.attention(joint, ld: 3 * d, out: attn, ldo: d, seq: seq, heads: heads, headDim: headDim,
                           precision: precision)

        let attnT = Tensor(zeros: [bsz * lt, d]), attnI = Tensor(zeros: [bsz * li, d])
        for b in 0..<bsz {
            attnT.copyValues(from: attn, at: b * l * d, count: lt * d, to: b * lt * d)
            attnI.copyValues(from: attn, at: (b * l + lt) * d, count: li * d, to: b * li * d)
        }
        stream(img, attnI, mod: im, proj: imgProj, mlp0: imgMLP0, mlp2: imgMLP2, rows: li, bsz: bsz, d: d, lora: lora)
        stream(txt, attnT, mod: tm, proj: txtProj, mlp0: txtMLP0, mlp2: txtMLP2, rows: lt, bsz: bsz, d: d, lora: lora)
    }

    private func stream(_ x: Tensor, _ attn: Tensor, mod: Tensor, proj: Linear, mlp0: Linear, mlp2: Linear,
                        rows: Int, bsz: Int, d: Int, lora: (any LoRAProvider)?) {
        let o = proj(attn, lora: lora?.adapter(for: proj.name))
        FluxMath.gatedResidual(x, o, ldy: d, mod: mod, gateChunk: 2, batch: bsz, rowsPerItem: rows, dim: d)
        let xm = FluxMath.modulatedNorm(x, mod: mod, shiftChunk: 3, batch: bsz, rowsPerItem: rows, dim: d)
        let h = mlp0(xm, lora: lora?.adapter(for: mlp0.name))
        TransformerOps.geluTanh(h)
        let f = mlp2(h, lora: lora?.adapter(for: mlp2.name))
        FluxMath.gatedResidual(x, f, ldy: d, mod: mod, gateChunk: 5, batch: bsz, rowsPerItem: rows, dim: d)
    }
}

/// Single-stream block (BFL `SingleStreamBlock`, diffusers `FluxSingleTransformerBlock`), flux spec §1.5.
public struct FluxSingleBlock: Sendable {
    public let prefix: String
    public let modulation, linear1, linear2: Linear
    public let norm: QKNorm
    public let heads: Int
    public let headDim: Int
    public let mlpHidden: Int
    /// Attention precision (the Linears carry their own).
    public let precision: ComputePrecision

    public init(weights w: FluxWeights, prefix p: String, config c: FluxConfig) throws {
        prefix = p
        precision = w.precision
        modulation = try w.linear(p + "modulation.lin")
        linear1 = try w.linear(p + "linear1")
        linear2 = try w.linear(p + "linear2")
        norm = QKNorm(query: try w.resident(p + "norm.query_norm.scale"), key: try w.resident(p + "norm.key_norm.scale"))
        heads = c.numHeads
        headDim = c.headDim
        mlpHidden = c.mlpHidden
    }

    /// Updates `x [B·(Lt+Li), D]` (text rows first per item) in place.
    public func forward(_ x: Tensor, siluVec: Tensor, rope: RopeTables, seq: FluxSequence, lora: (any LoRAProvider)? = nil) {
        let d = heads * headDim, m = mlpHidden, l = seq.tokens, bsz = seq.batch
        let mod = modulation(siluVec, lora: lora?.adapter(for: modulation.name))
        let xm = FluxMath.modulatedNorm(x, mod: mod, shiftChunk: 0, batch: bsz, rowsPerItem: l, dim: d)
        let h = linear1(xm, lora: lora?.adapter(for: linear1.name))
        let ld = 3 * d + m
        FluxMath.qkNorm(h, ld: ld, rows: bsz * l, heads: heads, headDim: headDim, q: norm.query, k: norm.key)
        FluxMath.rope(h, ld: ld, seq: seq, heads: heads, headDim: headDim, rope: rope)
        let cat = Tensor(zeros: [bsz * l, d + m])
        FluxMath.attention(h, ld: ld, out: cat, ldo: d + m, seq: seq, heads: heads, headDim: headDim,
                           precision: precision)
        for r in 0..<(bsz * l) {
            cat.copyValues(from: h, at: r * ld + 3 * d, count: m, to: r * (d + m) + d)
        }
        // GELU on the MLP half of every row (rows are contiguous segments of m floats).
        for r in 0..<(bsz * l) {
            TransformerOps.geluTanh(cat.view(offset: r * (d + m) + d, shape: [m]))
        }
        let o = linear2(cat, lora: lora?.adapter(for: linear2.name))
        FluxMath.gatedResidual(x, o, ldy: d, mod: mod, gateChunk: 2, batch: bsz, rowsPerItem: l, dim: d)
    }
}

/// Canonical (BFL-named) weights of a FLUX model: lazily resolved from checkpoint files, or tensors in memory
/// (benchmarks, generated models).
public struct FluxWeights: Sendable {
    public let sources: [String: WeightSource]
    public let tensors: [String: Tensor]
    /// Convert every weight to resident float32 at load (small models, f32 files) instead of per call.
    public let residentWeights: Bool
    /// Activation precision of the Linears (low-precision weights) and of attention.
    public let precision: ComputePrecision

    public init(sources: [String: WeightSource], residentWeights: Bool, precision: ComputePrecision = .fp32) {
        self.sources = sources
        self.tensors = [:]
        self.residentWeights = residentWeights
        self.precision = precision
    }

    /// In-memory float32 tensors by canonical name.
    public init(tensors: [String: Tensor], precision: ComputePrecision = .fp32) {
        self.sources = [:]
        self.tensors = tensors
        self.residentWeights = true
        self.precision = precision
    }

    func layerWeight(_ name: String) throws -> LayerWeight {
        if let t = tensors[name] { return .resident(t) }
        guard let s = sources[name] else { throw CheckpointError(.missingTensor, "FLUX weight '\(name)' not resolved") }
        return residentWeights || s.isZeroCopy ? .resident(s.materialize()) : .lazy(s)
    }

    /// A small tensor (bias, norm scale), always converted to float32 now.
    public func resident(_ name: String) throws -> Tensor {
        if let t = tensors[name] { return t }
        guard let s = sources[name] else { throw CheckpointError(.missingTensor, "FLUX weight '\(name)' not resolved") }
        return s.materialize().copy()
    }

    public func linear(_ name: String) throws -> Linear {
        Linear(name: name, weight: try layerWeight(name + ".weight"), bias: try resident(name + ".bias"), precision: precision)
    }
}

/// Inputs of one FLUX forward, named like diffusers' `FluxTransformer2DModel.forward` arguments.
public struct FluxInputs: Sendable {
    /// Packed latent tokens `[B, Li, inChannels]`.
    public var hiddenStates: Tensor
    /// T5 states `[B, Lt, contextDim]`.
    public var encoderHiddenStates: Tensor
    /// CLIP pooled `[B, pooledDim]`.
    public var pooledProjections: Tensor
    /// Sigma in [0, 1] per item (embedded as 1000·sigma).
    public var timestep: [Float]
    /// Guidance scale per item (required when the model has a guidance embedder).
    public var guidance: [Float]?
    /// `[Li, 3]` and `[Lt, 3]` position ids.
    public var imgIds: Tensor
    public var txtIds: Tensor

    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, pooledProjections: Tensor, timestep: [Float],
                guidance: [Float]?, imgIds: Tensor, txtIds: Tensor) {
        self.hiddenStates = hiddenStates
        self.encoderHiddenStates = encoderHiddenStates
        self.pooledProjections = pooledProjections
        self.timestep = timestep
        self.guidance = guidance
        self.imgIds = imgIds
        self.txtIds = txtIds
    }
}

/// The streams after a block, handed to hooks, which may modify `img` / `txt` in place (ControlNet residuals,
/// DreamSR's image MLPs and context cross-attention).
public struct FluxBlockState: Sendable {
    public let block: Int
    public let seq: FluxSequence
    /// `[B·Li, D]` image stream (for single blocks: nil, use `joint`).
    public let img: Tensor?
    /// `[B·Lt, D]` text stream (double blocks).
    public let txt: Tensor?
    /// `[B·(Lt+Li), D]` joint stream (single blocks; text rows first per item).
    public let joint: Tensor?
    /// `SiLU(vec)` `[B, D]`.
    public let siluVec: Tensor
}

/// Per-forward options: LoRA adapters and hooks after blocks.
public struct FluxForwardOptions: Sendable {
    public var lora: (any LoRAProvider)?
    public var afterDoubleBlock: (@Sendable (FluxBlockState) throws -> Void)?
    public var afterSingleBlock: (@Sendable (FluxBlockState) throws -> Void)?

    public init(lora: (any LoRAProvider)? = nil,
                afterDoubleBlock: (@Sendable (FluxBlockState) throws -> Void)? = nil,
                afterSingleBlock: (@Sendable (FluxBlockState) throws -> Void)? = nil) {
        self.lora = lora
        self.afterDoubleBlock = afterDoubleBlock
        self.afterSingleBlock = afterSingleBlock
    }
}

/// The FLUX.1 transformer (flux spec §1): embedders, double blocks, single blocks, final layer.
public struct FluxTransformer: Sendable {
    public let config: FluxConfig
    public let imgIn, txtIn: Linear
    public let timeIn, vectorIn: MLPEmbedder
    public let guidanceIn: MLPEmbedder?
    public let doubleBlocks: [FluxDoubleBlock]
    public let singleBlocks: [FluxSingleBlock]
    public let finalModulation, finalLinear: Linear
    /// Activation precision of the Linears on low-precision weights and of attention.
    public let precision: ComputePrecision

    public init(weights w: FluxWeights, config c: FluxConfig) throws {
        try c.validate()
        config = c
        precision = w.precision
        imgIn = try w.linear("img_in")
        txtIn = try w.linear("txt_in")
        timeIn = MLPEmbedder(inLayer: try w.linear("time_in.in_layer"), outLayer: try w.linear("time_in.out_layer"))
        vectorIn = MLPEmbedder(inLayer: try w.linear("vector_in.in_layer"), outLayer: try w.linear("vector_in.out_layer"))
        guidanceIn = c.guidanceEmbed
            ? MLPEmbedder(inLayer: try w.linear("guidance_in.in_layer"), outLayer: try w.linear("guidance_in.out_layer"))
            : nil
        doubleBlocks = try (0..<c.depth).map { try FluxDoubleBlock(weights: w, prefix: "double_blocks.\($0).", config: c) }
        singleBlocks = try (0..<c.depthSingle).map { try FluxSingleBlock(weights: w, prefix: "single_blocks.\($0).", config: c) }
        finalModulation = try w.linear("final_layer.adaLN_modulation.1")
        finalLinear = try w.linear("final_layer.linear")
    }

    /// Loads a checkpoint in any supported layout (BFL, ComfyUI, diffusers; one file or a folder of shards).
    /// Config: `config` if given, else `config.json` beside the weights, else `flux_config` / `config` JSON in the
    /// safetensors metadata, else detected from the tensor shapes.
    public static func load(from set: CheckpointSet, config explicitConfig: FluxConfig? = nil,
                            residentWeights: Bool? = nil, allowUnexpected: Bool = false,
                            precision: ComputePrecision = .fp32) throws -> FluxTransformer {
        let (layout, prefix) = try FluxWeightMap.detect(names: set.names)
        var config = explicitConfig
        if config == nil {
            let beside = set.directory.appendingPathComponent("config.json")
            if let data = FileManager.default.contents(atPath: beside.path) {
                config = try FluxConfig(diffusersConfigJSON: data)
            } else if let json = set.metadata["flux_config"] ?? set.metadata["config"], let data = json.data(using: .utf8),
                      let c = try? FluxConfig(diffusersConfigJSON: data) {
                config = c
            }
        }
        if config == nil {
            config = try FluxConfig.inferred(from: set)
        }
        let sources = try FluxWeightMap.resolve(set, config: config!, layout: layout, prefix: prefix,
                                                allowUnexpected: allowUnexpected)
        // Lazy (per-call conversion) only pays off for weights narrower than float32 (bf16/f16, FP8, GGUF blocks).
        let halfPrecision = sources.values.contains { !$0.dtypes.isSubset(of: [.f32]) }
        let weights = FluxWeights(sources: sources, residentWeights: residentWeights ?? !halfPrecision,
                                  precision: precision)
        return try FluxTransformer(weights: weights, config: config!)
    }

    /// `vec = time_in(emb(1000 t)) + guidance_in(emb(1000 g)) + vector_in(pooled)`, `[B, D]`.
    public func conditioningVector(timestep: [Float], guidance: [Float]?, pooled: Tensor, lora: (any LoRAProvider)? = nil) throws -> Tensor {
        try Self.conditioningVector(timeIn: timeIn, guidanceIn: guidanceIn, vectorIn: vectorIn, config: config,
                                    timestep: timestep, guidance: guidance, pooled: pooled, lora: lora,
                                    pooledName: "pooled_projections", owner: "this FLUX model")
    }

    /// The conditioning vector from a set of FLUX embedders (the transformer's own, or the DreamSR ControlNet's);
    /// `pooledName` and `owner` name the input and the model in errors.
    static func conditioningVector(timeIn: MLPEmbedder, guidanceIn: MLPEmbedder?, vectorIn: MLPEmbedder, config: FluxConfig,
                                   timestep: [Float], guidance: [Float]?, pooled: Tensor, lora: (any LoRAProvider)?,
                                   pooledName: String, owner: String) throws -> Tensor {
        let bsz = timestep.count
        guard pooled.count == bsz * config.pooledDim else {
            throw CheckpointError(.shapeMismatch, "\(pooledName) \(pooled.shape) vs batch \(bsz) × \(config.pooledDim)")
        }
        let vec = timeIn(TransformerOps.timestepEmbedding(timestep.map { $0 * 1000 }, dim: config.timestepDim), lora: lora)
        if let guidanceIn {
            guard let g = guidance, g.count == bsz else {
                throw CheckpointError(.shapeMismatch, "\(owner) embeds guidance: pass one guidance value per batch item")
            }
            let gv = guidanceIn(TransformerOps.timestepEmbedding(g.map { $0 * 1000 }, dim: config.timestepDim), lora: lora)
            vec.add(gv)
        }
        let pv = vectorIn(pooled.reshaped([bsz, config.pooledDim]), lora: lora)
        vec.add(pv)
        return vec
    }

    /// One velocity prediction: returns `[B, Li, outChannels]`.
    public func forward(_ inp: FluxInputs, options: FluxForwardOptions = .init()) throws -> Tensor {
        let c = config, d = c.hiddenSize
        let hs = inp.hiddenStates, ehs = inp.encoderHiddenStates
        guard hs.rank == 3, hs.shape[2] == c.inChannels else {
            throw CheckpointError(.shapeMismatch, "hidden_states \(hs.shape), expected [B, L, \(c.inChannels)]")
        }
        let bsz = hs.shape[0], li = hs.shape[1]
        guard ehs.rank == 3, ehs.shape[0] == bsz, ehs.shape[2] == c.contextDim else {
            throw CheckpointError(.shapeMismatch, "encoder_hidden_states \(ehs.shape), expected [\(bsz), T, \(c.contextDim)]")
        }
        let lt = ehs.shape[1]
        guard inp.timestep.count == bsz else {
            throw CheckpointError(.shapeMismatch, "timestep has \(inp.timestep.count) values for batch \(bsz)")
        }
        guard inp.imgIds.shape == [li, 3], inp.txtIds.shape == [lt, 3] else {
            throw CheckpointError(.shapeMismatch, "img_ids \(inp.imgIds.shape) / txt_ids \(inp.txtIds.shape), expected [\(li), 3] / [\(lt), 3]")
        }
        let seq = FluxSequence(batch: bsz, imgTokens: li, txtTokens: lt)
        let lora = options.lora

        let vec = try conditioningVector(timestep: inp.timestep, guidance: inp.guidance, pooled: inp.pooledProjections, lora: lora)
        TransformerOps.silu(vec)
        let siluVec = vec

        let ids = Tensor(zeros: [lt + li, 3])
        ids.copyValues(from: inp.txtIds, count: lt * 3, to: 0)
        ids.copyValues(from: inp.imgIds, count: li * 3, to: lt * 3)
        let rope = RopeTables(ids: ids, config: c)

        let img = imgIn(hs.reshaped([bsz * li, c.inChannels]), lora: lora?.adapter(for: imgIn.name))
        let txt = txtIn(ehs.reshaped([bsz * lt, c.contextDim]), lora: lora?.adapter(for: txtIn.name))
        for (i, blk) in doubleBlocks.enumerated() {
            blk.forward(img: img, txt: txt, siluVec: siluVec, rope: rope, seq: seq, lora: lora)
            try options.afterDoubleBlock?(FluxBlockState(block: i, seq: seq, img: img, txt: txt, joint: nil, siluVec: siluVec))
        }
        let l = seq.tokens
        let joint = Tensor(zeros: [bsz * l, d])
        for b in 0..<bsz {
            joint.copyValues(from: txt, at: b * lt * d, count: lt * d, to: b * l * d)
            joint.copyValues(from: img, at: b * li * d, count: li * d, to: (b * l + lt) * d)
        }
        for (i, blk) in singleBlocks.enumerated() {
            blk.forward(joint, siluVec: siluVec, rope: rope, seq: seq, lora: lora)
            try options.afterSingleBlock?(FluxBlockState(block: i, seq: seq, img: nil, txt: nil, joint: joint, siluVec: siluVec))
        }
        let imgOut = Tensor(zeros: [bsz * li, d])
        for b in 0..<bsz {
            imgOut.copyValues(from: joint, at: (b * l + lt) * d, count: li * d, to: b * li * d)
        }
        let mod = finalModulation(siluVec, lora: lora?.adapter(for: finalModulation.name))
        let xm = FluxMath.modulatedNorm(imgOut, mod: mod, shiftChunk: 0, batch: bsz, rowsPerItem: li, dim: d)
        let out = finalLinear(xm, lora: lora?.adapter(for: finalLinear.name))
        return out.reshaped([bsz, li, c.outChannels])
    }
}
