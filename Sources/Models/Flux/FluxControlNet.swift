import Checkpoints
import Foundation
import Tensor

/// Hyper-parameters of a diffusers `FluxControlNetModel` (InstantX / jasperai / Shakker-Labs FLUX ControlNets).
public struct FluxControlNetConfig: Sendable, Equatable {
    /// Widths and blocks: `depth` = `num_layers` double blocks, `depthSingle` = `num_single_layers` single blocks,
    /// `guidanceEmbed` = `guidance_embeds` (false when the config omits it, as in diffusers). `outChannels` is unused.
    public var flux: FluxConfig
    /// Union ControlNets: the number of control modes (`num_mode`); nil for a single-purpose ControlNet.
    public var numModes: Int?

    public init(flux: FluxConfig, numModes: Int? = nil) {
        self.flux = flux
        self.numModes = numModes
    }

    public var isUnion: Bool { numModes != nil }

    /// Parses a diffusers `FluxControlNetModel` `config.json`. Refuses another class's config and the pixel-space
    /// `conditioning_embedding_channels` variant (its `input_hint_block` CNN is not implemented).
    public init(diffusersConfigJSON data: Data) throws {
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError(.badConfig, "ControlNet config.json is not a JSON object")
        }
        if let cls = obj["_class_name"] as? String, cls != "FluxControlNetModel" {
            throw CheckpointError(.badConfig, "config.json is for a \(cls), not a FluxControlNetModel")
        }
        if let ch = obj["conditioning_embedding_channels"] as? NSNumber {
            throw CheckpointError(.badConfig, "FluxControlNetModel with conditioning_embedding_channels = \(ch) "
                                  + "(pixel-space input_hint_block) is not supported; only latent-conditioned ControlNets are")
        }
        if let p = (obj["patch_size"] as? NSNumber)?.intValue, p != 1 {
            throw CheckpointError(.badConfig, "FluxControlNetModel patch_size \(p) is not supported (only 1)")
        }
        var f = try FluxConfig(diffusersConfigJSON: data)
        f.guidanceEmbed = obj["guidance_embeds"] as? Bool ?? false
        f.outChannels = f.inChannels
        flux = f
        numModes = (obj["num_mode"] as? NSNumber)?.intValue
        if let n = numModes, n <= 0 { throw CheckpointError(.badConfig, "FluxControlNetModel num_mode \(n) must be positive") }
    }

    /// The config seen in a checkpoint's tensor names and shapes: depths from block indices, widths from the
    /// embedders, guidance from `guidance_embedder`, union from `controlnet_mode_embedder`. RoPE axes: FLUX's split.
    public static func inferred(from set: CheckpointSet, prefix: String) throws -> FluxControlNetConfig {
        var shapes = FluxWeightMap.canonicalShapes(of: set, layout: .diffusers, prefix: prefix)
        // A ControlNet has no final layer; FluxConfig's detection wants one for `out_channels`.
        if let x = shapes["img_in.weight"] { shapes["final_layer.linear.weight"] = [x[1], x[0]] }
        var f = try FluxConfig(detectingFrom: shapes)
        f.outChannels = f.inChannels
        let modes = set[prefix + "controlnet_mode_embedder.weight"]?.shape.first
        return FluxControlNetConfig(flux: f, numModes: modes)
    }
}

/// The ControlNet residuals for one transformer forward, as diffusers' `controlnet_block_samples` /
/// `controlnet_single_block_samples`: image-stream tensors `[B·Li, D]`, already multiplied by the conditioning scale.
public struct FluxControlNetResiduals: @unchecked Sendable {
    public var double: [Tensor]
    public var single: [Tensor]

    public init(double: [Tensor], single: [Tensor]) {
        self.double = double
        self.single = single
    }

    /// Which residual follows transformer block `block` of `blocks` when the ControlNet produced `samples`:
    /// diffusers' `block // ceil(blocks / samples)` (a short ControlNet's residuals each serve several blocks).
    public static func sampleIndex(block: Int, blocks: Int, samples: Int) -> Int {
        precondition(samples > 0 && blocks > 0, "sampleIndex needs blocks and samples")
        let interval = (blocks + samples - 1) / samples
        return block / interval
    }

    /// The sum of two ControlNets' residuals (diffusers `FluxMultiControlNetModel`). Both must have the same block
    /// counts and shapes (diffusers would silently drop the longer one's extra residuals; we refuse).
    public func adding(_ other: FluxControlNetResiduals) throws -> FluxControlNetResiduals {
        guard double.count == other.double.count, single.count == other.single.count else {
            throw CheckpointError(.shapeMismatch, "ControlNets with different block counts cannot be combined: "
                                  + "\(double.count) + \(single.count) vs \(other.double.count) + \(other.single.count) residuals")
        }
        func sum(_ a: Tensor, _ b: Tensor) throws -> Tensor {
            guard a.shape == b.shape else {
                throw CheckpointError(.shapeMismatch, "ControlNet residuals \(a.shape) vs \(b.shape) cannot be combined")
            }
            let s = a.copy()
            s.add(b)
            return s
        }
        return FluxControlNetResiduals(double: try zip(double, other.double).map { try sum($0, $1) },
                                       single: try zip(single, other.single).map { try sum($0, $1) })
    }

    /// `options` with the residuals added after every block, exactly where diffusers' `FluxTransformer2DModel.forward`
    /// adds them: to the image stream after each double block, to the image rows of the joint stream after each
    /// single block. Existing hooks in `options` run after the residual is added.
    public func injected(into options: FluxForwardOptions, depth: Int, depthSingle: Int) -> FluxForwardOptions {
        var o = options
        let dbl = double, sgl = single
        let afterDouble = options.afterDoubleBlock, afterSingle = options.afterSingleBlock
        if !dbl.isEmpty {
            o.afterDoubleBlock = { state in
                let r = dbl[Self.sampleIndex(block: state.block, blocks: depth, samples: dbl.count)]
                guard let img = state.img, img.shape == r.shape else {
                    throw CheckpointError(.shapeMismatch, "ControlNet residual \(r.shape) does not fit the transformer's "
                                          + "image stream \(state.img?.shape ?? [])")
                }
                img.add(r)
                try afterDouble?(state)
            }
        }
        if !sgl.isEmpty {
            o.afterSingleBlock = { state in
                let r = sgl[Self.sampleIndex(block: state.block, blocks: depthSingle, samples: sgl.count)]
                let seq = state.seq
                guard let joint = state.joint, r.rank == 2, r.shape[0] == seq.batch * seq.imgTokens,
                      r.shape[1] == joint.shape[1] else {
                    throw CheckpointError(.shapeMismatch, "ControlNet residual \(r.shape) does not fit the transformer's "
                                          + "\(seq.batch) × \(seq.imgTokens) image tokens")
                }
                let d = r.shape[1], l = seq.tokens
                joint.withUnsafeMutablePointer { j in
                    r.withUnsafePointer { rp in
                        for b in 0..<seq.batch {
                            TransformerOps.gatedAdd(j + (b * l + seq.txtTokens) * d, ldy: d, rp + b * seq.imgTokens * d,
                                                    ldx: d, gate: nil, rows: seq.imgTokens, cols: d)
                        }
                    }
                }
                try afterSingle?(state)
            }
        }
        return o
    }
}

/// A diffusers `FluxControlNetModel` (flux spec §1 blocks): FLUX embedders, `num_layers` double and
/// `num_single_layers` single blocks run on `x_embedder(hidden_states) + controlnet_x_embedder(controlnet_cond)`,
/// one zero-initialised Linear per block (`controlnet_blocks`, `controlnet_single_blocks`) giving the residuals, and
/// for union ControlNets a `controlnet_mode_embedder` token prepended to the text.
public struct FluxControlNet: Sendable {
    public let config: FluxControlNetConfig
    public let imgIn, txtIn, controlnetXEmbedder: Linear
    public let timeIn, vectorIn: MLPEmbedder
    public let guidanceIn: MLPEmbedder?
    public let doubleBlocks: [FluxDoubleBlock]
    public let singleBlocks: [FluxSingleBlock]
    public let controlnetBlocks, controlnetSingleBlocks: [Linear]
    /// `[numModes, D]` (union ControlNets).
    public let modeEmbedding: LayerWeight?

    public init(weights w: FluxWeights, config c: FluxControlNetConfig) throws {
        let f = c.flux
        try f.validate()
        config = c
        imgIn = try w.linear("img_in")
        txtIn = try w.linear("txt_in")
        controlnetXEmbedder = try w.linear("controlnet_x_embedder")
        timeIn = MLPEmbedder(inLayer: try w.linear("time_in.in_layer"), outLayer: try w.linear("time_in.out_layer"))
        vectorIn = MLPEmbedder(inLayer: try w.linear("vector_in.in_layer"), outLayer: try w.linear("vector_in.out_layer"))
        guidanceIn = f.guidanceEmbed
            ? MLPEmbedder(inLayer: try w.linear("guidance_in.in_layer"), outLayer: try w.linear("guidance_in.out_layer"))
            : nil
        doubleBlocks = try (0..<f.depth).map { try FluxDoubleBlock(weights: w, prefix: "double_blocks.\($0).", config: f) }
        singleBlocks = try (0..<f.depthSingle).map { try FluxSingleBlock(weights: w, prefix: "single_blocks.\($0).", config: f) }
        controlnetBlocks = try (0..<f.depth).map { try w.linear("controlnet_blocks.\($0)") }
        controlnetSingleBlocks = try (0..<f.depthSingle).map { try w.linear("controlnet_single_blocks.\($0)") }
        modeEmbedding = try c.isUnion ? w.layerWeight("controlnet_mode_embedder.weight") : nil
    }

    /// Canonical (BFL-style) names → diffusers source keys: the transformer's embedder and block recipes plus the
    /// ControlNet's own layers (kept under their diffusers names).
    public static func recipes(_ c: FluxControlNetConfig, prefix p: String) -> [String: FluxWeightRecipe] {
        var r = FluxWeightMap.diffusersEmbedders(sourcePrefix: p, guidance: c.flux.guidanceEmbed)
        for i in 0..<c.flux.depth {
            r.merge(FluxWeightMap.diffusersDoubleBlock(canonicalPrefix: "double_blocks.\(i).",
                                                       sourcePrefix: p + "transformer_blocks.\(i).")) { a, _ in a }
        }
        for i in 0..<c.flux.depthSingle {
            r.merge(FluxWeightMap.diffusersSingleBlock(canonicalPrefix: "single_blocks.\(i).",
                                                       sourcePrefix: p + "single_transformer_blocks.\(i).")) { a, _ in a }
        }
        for (k, _) in ownShapes(c) { r[k] = .init([p + k]) }
        return r
    }

    /// Shapes of the ControlNet's own tensors (diffusers names).
    static func ownShapes(_ c: FluxControlNetConfig) -> [(String, [Int])] {
        let d = c.flux.hiddenSize
        var out: [(String, [Int])] = []
        func lin(_ n: String, _ o: Int, _ i: Int) { out.append(("\(n).weight", [o, i])); out.append(("\(n).bias", [o])) }
        lin("controlnet_x_embedder", d, c.flux.inChannels)
        for i in 0..<c.flux.depth { lin("controlnet_blocks.\(i)", d, d) }
        for i in 0..<c.flux.depthSingle { lin("controlnet_single_blocks.\(i)", d, d) }
        if let m = c.numModes { out.append(("controlnet_mode_embedder.weight", [m, d])) }
        return out
    }

    /// Every tensor a checkpoint of config `c` must hold, with its canonical name and shape.
    public static func expectedShapes(_ c: FluxControlNetConfig) -> [(String, [Int])] {
        FluxWeightMap.canonicalShapes(c.flux).filter { !$0.0.hasPrefix("final_layer.") } + ownShapes(c)
    }

    /// Loads a diffusers `FluxControlNetModel` checkpoint (a folder with `config.json` and safetensors shards, or one
    /// file, in any dtype the checkpoint readers take). Config: `config` if given, else `config.json` beside the
    /// weights, else inferred from the tensors. Missing or extra tensors and shape mismatches are one clear error.
    public static func load(from set: CheckpointSet, config explicitConfig: FluxControlNetConfig? = nil,
                            residentWeights: Bool? = nil) throws -> FluxControlNet {
        let names = set.names
        guard let anchor = names.filter({ $0 == "controlnet_x_embedder.weight" || $0.hasSuffix(".controlnet_x_embedder.weight") })
                .min(by: { $0.count < $1.count }) else {
            if names.contains(where: { $0.contains("input_hint_block") || $0.hasPrefix("double_blocks.") }) {
                throw CheckpointError(.unknownLayout, "not a diffusers FluxControlNetModel checkpoint (XLabs / BFL-style "
                                      + "ControlNets with an input_hint_block are not supported)")
            }
            throw CheckpointError(.unknownLayout, "not a diffusers FluxControlNetModel checkpoint: no 'controlnet_x_embedder.weight' "
                                  + "among \(names.count) tensors")
        }
        let prefix = String(anchor.dropLast("controlnet_x_embedder.weight".count))
        if names.contains(where: { $0.hasPrefix(prefix + "input_hint_block.") }) {
            throw CheckpointError(.unknownLayout, "FluxControlNetModel with an input_hint_block (pixel-space conditioning) is not supported")
        }
        var config = explicitConfig
        if config == nil {
            let beside = set.directory.appendingPathComponent("config.json")
            if let data = FileManager.default.contents(atPath: beside.path) {
                config = try FluxControlNetConfig(diffusersConfigJSON: data)
            } else {
                config = try FluxControlNetConfig.inferred(from: set, prefix: prefix)
            }
        }
        let c = config!
        let sources = try FluxWeightMap.resolve(set, recipes: recipes(c, prefix: prefix), expected: expectedShapes(c),
                                                what: "FLUX ControlNet checkpoint", unexpectedUnder: prefix)
        let halfPrecision = sources.values.contains { !$0.dtypes.isSubset(of: [.f32]) }
        return try FluxControlNet(weights: FluxWeights(sources: sources, residentWeights: residentWeights ?? !halfPrecision),
                                  config: c)
    }

    /// Checks that this ControlNet's residuals fit `transformer` (same hidden size and latent channels).
    public func checkCompatible(with transformer: FluxConfig) throws {
        let f = config.flux
        guard f.hiddenSize == transformer.hiddenSize, f.inChannels == transformer.inChannels else {
            throw CheckpointError(.badConfig, "ControlNet (hidden \(f.hiddenSize), \(f.inChannels) latent channels) does not fit "
                                  + "the FLUX transformer (hidden \(transformer.hiddenSize), \(transformer.inChannels) channels)")
        }
    }

    /// diffusers `FluxControlNetModel.forward`: the residuals for `inputs` (the transformer's own inputs: latents,
    /// prompt, timestep, guidance, ids) with `controlnetCond` (packed latent `[B, Li, inChannels]`), union `mode`
    /// (one per batch item, or one for all) and `conditioningScale`.
    public func residuals(_ inp: FluxInputs, controlnetCond cond: Tensor, mode: [Int]? = nil,
                          conditioningScale scale: Float = 1, lora: (any LoRAProvider)? = nil) throws -> FluxControlNetResiduals {
        let c = config.flux, d = c.hiddenSize
        let hs = inp.hiddenStates, ehs = inp.encoderHiddenStates
        guard hs.rank == 3, hs.shape[2] == c.inChannels else {
            throw CheckpointError(.shapeMismatch, "hidden_states \(hs.shape), expected [B, L, \(c.inChannels)]")
        }
        let bsz = hs.shape[0], li = hs.shape[1]
        guard cond.count == hs.count, cond.shape.last == c.inChannels else {
            throw CheckpointError(.shapeMismatch, "controlnet_cond \(cond.shape) must match hidden_states \(hs.shape) (packed latent)")
        }
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
        var modes: [Int] = []
        if let n = config.numModes {
            guard let m = mode, m.count == bsz || m.count == 1 else {
                throw CheckpointError(.shapeMismatch, "this union ControlNet needs controlnet_mode: one mode (0..<\(n)) per batch item "
                                      + "or one for all, got \(mode.map { "\($0.count) values" } ?? "none")")
            }
            guard m.allSatisfy({ (0..<n).contains($0) }) else {
                throw CheckpointError(.shapeMismatch, "controlnet_mode \(m) out of range: this union ControlNet has \(n) modes")
            }
            modes = m.count == bsz ? m : [Int](repeating: m[0], count: bsz)
        }

        let vec = try FluxTransformer.conditioningVector(
            timeIn: timeIn, guidanceIn: guidanceIn, vectorIn: vectorIn, config: c, timestep: inp.timestep,
            guidance: inp.guidance, pooled: inp.pooledProjections, lora: lora, pooledName: "pooled_projections",
            owner: "the ControlNet")
        TransformerOps.silu(vec)

        let img = imgIn(hs.reshaped([bsz * li, c.inChannels]), lora: lora?.adapter(for: imgIn.name))
        img.add(controlnetXEmbedder(cond.reshaped([bsz * li, c.inChannels])))
        let txt0 = txtIn(ehs.reshaped([bsz * lt, c.contextDim]), lora: lora?.adapter(for: txtIn.name))
        // Union: the mode embedding becomes an extra first text token (its position id copies the first text id).
        let extra = modes.isEmpty ? 0 : 1, ltc = lt + extra
        let txt: Tensor
        if let table = modeEmbedding {
            txt = Tensor(zeros: [bsz * ltc, d])
            let emb = table.materialize()
            for b in 0..<bsz {
                copyRows(emb, from: modes[b], into: txt, at: b * ltc, rows: 1)
                copyRows(txt0, from: b * lt, into: txt, at: b * ltc + 1, rows: lt)
            }
        } else {
            txt = txt0
        }
        let ids = Tensor(zeros: [ltc + li, 3])
        if extra == 1 { copyRows(inp.txtIds, from: 0, into: ids, at: 0, rows: 1) }
        copyRows(inp.txtIds, from: 0, into: ids, at: extra, rows: lt)
        copyRows(inp.imgIds, from: 0, into: ids, at: ltc, rows: li)
        let rope = RopeTables(ids: ids, config: c)
        let seq = FluxSequence(batch: bsz, imgTokens: li, txtTokens: ltc)

        func residual(_ layer: Linear, _ x: Tensor) -> Tensor {
            let r = layer(x, lora: lora?.adapter(for: layer.name))
            if scale != 1 { r.scale(by: scale) }
            return r
        }
        var dbl: [Tensor] = []
        for (blk, proj) in zip(doubleBlocks, controlnetBlocks) {
            blk.forward(img: img, txt: txt, siluVec: vec, rope: rope, seq: seq, lora: lora)
            dbl.append(residual(proj, img))
        }
        var sgl: [Tensor] = []
        if !singleBlocks.isEmpty {
            let l = seq.tokens
            let joint = Tensor(zeros: [bsz * l, d])
            for b in 0..<bsz {
                copyRows(txt, from: b * ltc, into: joint, at: b * l, rows: ltc)
                copyRows(img, from: b * li, into: joint, at: b * l + ltc, rows: li)
            }
            let imgRows = Tensor(zeros: [bsz * li, d])
            for (blk, proj) in zip(singleBlocks, controlnetSingleBlocks) {
                blk.forward(joint, siluVec: vec, rope: rope, seq: seq, lora: lora)
                for b in 0..<bsz { copyRows(joint, from: b * l + ltc, into: imgRows, at: b * li, rows: li) }
                sgl.append(residual(proj, imgRows))
            }
        }
        return FluxControlNetResiduals(double: dbl, single: sgl)
    }
}

/// Copies `rows` rows of `src` (starting at row `from`) into `dst` at row `at`; both are row-major with the same
/// row width (the last dimension).
private func copyRows(_ src: Tensor, from: Int, into dst: Tensor, at: Int, rows: Int) {
    let w = src.shape.last ?? 1
    precondition(dst.shape.last == w && (from + rows) * w <= src.count && (at + rows) * w <= dst.count,
                 "copyRows: \(rows) rows from \(src.shape)@\(from) into \(dst.shape)@\(at)")
    src.withUnsafePointer { s in
        dst.withUnsafeMutablePointer { d in (d + at * w).update(from: s + from * w, count: rows * w) }
    }
}

/// One ControlNet applied to one control input: an entry of diffusers' `FluxMultiControlNetModel` (the same
/// ControlNet may appear several times with different inputs, as union ControlNets are used).
public struct FluxControlNetUnit: @unchecked Sendable {
    public let controlnet: FluxControlNet
    /// Packed control latent `[B, Li, inChannels]` (`controlnet_cond`).
    public var cond: Tensor
    /// Union mode per batch item (or one for all); nil for single-purpose ControlNets.
    public var mode: [Int]?
    public var scale: Float
    /// The fraction of the denoising steps where the ControlNet acts (diffusers `control_guidance_start` / `_end`).
    public var guidanceStart: Double
    public var guidanceEnd: Double

    public init(controlnet: FluxControlNet, cond: Tensor, mode: [Int]? = nil, scale: Float = 1,
                guidanceStart: Double = 0, guidanceEnd: Double = 1) {
        self.controlnet = controlnet
        self.cond = cond
        self.mode = mode
        self.scale = scale
        self.guidanceStart = guidanceStart
        self.guidanceEnd = guidanceEnd
    }

    /// diffusers' `controlnet_keep`: 0 for step `i` of `n` outside [start, end], else 1.
    public func keep(step i: Int, of n: Int) -> Float {
        Double(i) / Double(n) < guidanceStart || Double(i + 1) / Double(n) > guidanceEnd ? 0 : 1
    }
}

/// diffusers `FluxMultiControlNetModel`: the residuals of several ControlNets, summed block by block.
public enum FluxMultiControlNet {
    /// Summed residuals of `units` for `inputs`; `step`/`of` apply each unit's guidance start/end (a unit outside
    /// its range contributes exactly zero, so it is not run). nil when no unit contributes.
    public static func residuals(_ units: [FluxControlNetUnit], inputs: FluxInputs, step: Int = 0, of steps: Int = 1,
                                 lora: (any LoRAProvider)? = nil) throws -> FluxControlNetResiduals? {
        var total: FluxControlNetResiduals?
        for u in units {
            let s = u.scale * u.keep(step: step, of: steps)
            guard s != 0 else { continue }
            let r = try u.controlnet.residuals(inputs, controlnetCond: u.cond, mode: u.mode, conditioningScale: s, lora: lora)
            total = try total.map { try $0.adding(r) } ?? r
        }
        return total
    }
}

extension FluxTransformer {
    /// One velocity prediction with ControlNet residuals injected after the blocks (diffusers
    /// `FluxTransformer2DModel.forward(controlnet_block_samples:, controlnet_single_block_samples:)`).
    public func forward(_ inp: FluxInputs, controlnet: FluxControlNetResiduals?, options: FluxForwardOptions = .init()) throws -> Tensor {
        guard let controlnet else { return try forward(inp, options: options) }
        return try forward(inp, options: controlnet.injected(into: options, depth: config.depth, depthSingle: config.depthSingle))
    }
}
