import Checkpoints
import Foundation

/// Key layouts of FLUX transformer checkpoints.
public enum FluxLayout: String, Sendable {
    /// Black Forest Labs `flux1-dev.safetensors`: `double_blocks.N.img_attn.qkv` ... (also ComfyUI with a prefix).
    case bfl
    /// diffusers `FluxTransformer2DModel`: `transformer_blocks.N.attn.to_q` ...
    case diffusers
}

/// How one canonical (BFL-named) tensor is built from source tensors.
public struct FluxWeightRecipe: Sendable, Equatable {
    public let sources: [String]
    public let transform: WeightSource.Transform

    public init(_ sources: [String], _ transform: WeightSource.Transform = .none) {
        self.sources = sources
        self.transform = transform
    }
}

/// Maps every public FLUX key layout onto one canonical layout: BFL names with fused `qkv` / `linear1`, final layer
/// modulation in BFL order (shift | scale). The mapping is a pure function from canonical key to source keys plus a
/// named transform (`concatRows` fuses diffusers' split projections, `swapHalves` undoes diffusers' scale|shift).
public enum FluxWeightMap {
    /// The ComfyUI single-file prefix.
    public static let comfyPrefix = "model.diffusion_model."

    /// Detects the layout and key prefix from the tensor names (anchors: `img_in.weight` for BFL, `x_embedder.weight`
    /// for diffusers, with any prefix such as `model.diffusion_model.` or `transformer.`).
    public static func detect(names: [String]) throws -> (layout: FluxLayout, prefix: String) {
        let anchors: [(String, FluxLayout)] = [("img_in.weight", .bfl), ("x_embedder.weight", .diffusers)]
        for (anchor, layout) in anchors {
            let hits = names.filter { $0 == anchor || $0.hasSuffix("." + anchor) }
                .filter { !$0.contains("controlnet") }
                .sorted { $0.count < $1.count }
            if let k = hits.first { return (layout, String(k.dropLast(anchor.count))) }
        }
        throw CheckpointError(.unknownLayout,
            "not a FLUX transformer checkpoint: neither 'img_in.weight' (BFL/ComfyUI) nor 'x_embedder.weight' (diffusers) found among \(names.count) keys")
    }

    /// Canonical tensor names and shapes for a config (weights and biases of every layer, norm scales).
    public static func canonicalShapes(_ c: FluxConfig) -> [(String, [Int])] {
        let d = c.hiddenSize, m = c.mlpHidden, hd = c.headDim
        var out: [(String, [Int])] = []
        func lin(_ n: String, _ o: Int, _ i: Int) { out.append(("\(n).weight", [o, i])); out.append(("\(n).bias", [o])) }
        lin("img_in", d, c.inChannels)
        lin("txt_in", d, c.contextDim)
        lin("time_in.in_layer", d, c.timestepDim); lin("time_in.out_layer", d, d)
        if c.guidanceEmbed { lin("guidance_in.in_layer", d, c.timestepDim); lin("guidance_in.out_layer", d, d) }
        lin("vector_in.in_layer", d, c.pooledDim); lin("vector_in.out_layer", d, d)
        for i in 0..<c.depth {
            let p = "double_blocks.\(i)."
            for s in ["img", "txt"] {
                lin(p + "\(s)_mod.lin", 6 * d, d)
                lin(p + "\(s)_attn.qkv", 3 * d, d)
                out.append((p + "\(s)_attn.norm.query_norm.scale", [hd]))
                out.append((p + "\(s)_attn.norm.key_norm.scale", [hd]))
                lin(p + "\(s)_attn.proj", d, d)
                lin(p + "\(s)_mlp.0", m, d)
                lin(p + "\(s)_mlp.2", d, m)
            }
        }
        for i in 0..<c.depthSingle {
            let p = "single_blocks.\(i)."
            lin(p + "modulation.lin", 3 * d, d)
            lin(p + "linear1", 3 * d + m, d)
            out.append((p + "norm.query_norm.scale", [hd]))
            out.append((p + "norm.key_norm.scale", [hd]))
            lin(p + "linear2", d, d + m)
        }
        lin("final_layer.adaLN_modulation.1", 2 * d, d)
        lin("final_layer.linear", c.outChannels, d)
        return out
    }

    /// diffusers recipes of one double block: canonical `canonicalPrefix` (e.g. `double_blocks.3.`) from source
    /// `sourcePrefix` (e.g. `transformer_blocks.3.` or `controlnet.transformer_blocks.3.`). Reused by ControlNets.
    public static func diffusersDoubleBlock(canonicalPrefix cp: String, sourcePrefix sp: String) -> [String: FluxWeightRecipe] {
        var r: [String: FluxWeightRecipe] = [:]
        for wb in ["weight", "bias"] {
            r[cp + "img_mod.lin.\(wb)"] = .init([sp + "norm1.linear.\(wb)"])
            r[cp + "txt_mod.lin.\(wb)"] = .init([sp + "norm1_context.linear.\(wb)"])
            r[cp + "img_attn.qkv.\(wb)"] = .init(["to_q", "to_k", "to_v"].map { sp + "attn.\($0).\(wb)" }, .concatRows)
            r[cp + "txt_attn.qkv.\(wb)"] = .init(["add_q_proj", "add_k_proj", "add_v_proj"].map { sp + "attn.\($0).\(wb)" }, .concatRows)
            r[cp + "img_attn.proj.\(wb)"] = .init([sp + "attn.to_out.0.\(wb)"])
            r[cp + "txt_attn.proj.\(wb)"] = .init([sp + "attn.to_add_out.\(wb)"])
            r[cp + "img_mlp.0.\(wb)"] = .init([sp + "ff.net.0.proj.\(wb)"])
            r[cp + "img_mlp.2.\(wb)"] = .init([sp + "ff.net.2.\(wb)"])
            r[cp + "txt_mlp.0.\(wb)"] = .init([sp + "ff_context.net.0.proj.\(wb)"])
            r[cp + "txt_mlp.2.\(wb)"] = .init([sp + "ff_context.net.2.\(wb)"])
        }
        r[cp + "img_attn.norm.query_norm.scale"] = .init([sp + "attn.norm_q.weight"])
        r[cp + "img_attn.norm.key_norm.scale"] = .init([sp + "attn.norm_k.weight"])
        r[cp + "txt_attn.norm.query_norm.scale"] = .init([sp + "attn.norm_added_q.weight"])
        r[cp + "txt_attn.norm.key_norm.scale"] = .init([sp + "attn.norm_added_k.weight"])
        return r
    }

    /// diffusers recipes of one single block.
    public static func diffusersSingleBlock(canonicalPrefix cp: String, sourcePrefix sp: String) -> [String: FluxWeightRecipe] {
        var r: [String: FluxWeightRecipe] = [:]
        for wb in ["weight", "bias"] {
            r[cp + "modulation.lin.\(wb)"] = .init([sp + "norm.linear.\(wb)"])
            r[cp + "linear1.\(wb)"] = .init(["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"].map { sp + "\($0).\(wb)" }, .concatRows)
            r[cp + "linear2.\(wb)"] = .init([sp + "proj_out.\(wb)"])
        }
        r[cp + "norm.query_norm.scale"] = .init([sp + "attn.norm_q.weight"])
        r[cp + "norm.key_norm.scale"] = .init([sp + "attn.norm_k.weight"])
        return r
    }

    /// diffusers recipes of the embedders (`x_embedder`, `context_embedder`, `time_text_embed.*`), reused by
    /// ControlNets with their own prefix.
    public static func diffusersEmbedders(sourcePrefix sp: String, guidance: Bool) -> [String: FluxWeightRecipe] {
        var r: [String: FluxWeightRecipe] = [:]
        for wb in ["weight", "bias"] {
            r["img_in.\(wb)"] = .init([sp + "x_embedder.\(wb)"])
            r["txt_in.\(wb)"] = .init([sp + "context_embedder.\(wb)"])
            r["time_in.in_layer.\(wb)"] = .init([sp + "time_text_embed.timestep_embedder.linear_1.\(wb)"])
            r["time_in.out_layer.\(wb)"] = .init([sp + "time_text_embed.timestep_embedder.linear_2.\(wb)"])
            if guidance {
                r["guidance_in.in_layer.\(wb)"] = .init([sp + "time_text_embed.guidance_embedder.linear_1.\(wb)"])
                r["guidance_in.out_layer.\(wb)"] = .init([sp + "time_text_embed.guidance_embedder.linear_2.\(wb)"])
            }
            r["vector_in.in_layer.\(wb)"] = .init([sp + "time_text_embed.text_embedder.linear_1.\(wb)"])
            r["vector_in.out_layer.\(wb)"] = .init([sp + "time_text_embed.text_embedder.linear_2.\(wb)"])
        }
        return r
    }

    /// Recipes for every canonical key of `config` in `layout`, source keys carrying `prefix`.
    public static func recipes(_ c: FluxConfig, layout: FluxLayout, prefix: String) -> [String: FluxWeightRecipe] {
        var r: [String: FluxWeightRecipe] = [:]
        switch layout {
        case .bfl:
            for (k, _) in canonicalShapes(c) { r[k] = .init([prefix + k]) }
        case .diffusers:
            r.merge(diffusersEmbedders(sourcePrefix: prefix, guidance: c.guidanceEmbed)) { a, _ in a }
            for i in 0..<c.depth {
                r.merge(diffusersDoubleBlock(canonicalPrefix: "double_blocks.\(i).", sourcePrefix: prefix + "transformer_blocks.\(i).")) { a, _ in a }
            }
            for i in 0..<c.depthSingle {
                r.merge(diffusersSingleBlock(canonicalPrefix: "single_blocks.\(i).", sourcePrefix: prefix + "single_transformer_blocks.\(i).")) { a, _ in a }
            }
            for wb in ["weight", "bias"] {
                r["final_layer.adaLN_modulation.1.\(wb)"] = .init([prefix + "norm_out.linear.\(wb)"], .swapHalves)
                r["final_layer.linear.\(wb)"] = .init([prefix + "proj_out.\(wb)"])
            }
        }
        return r
    }

    /// Canonical shapes of a checkpoint's tensors, for `FluxConfig(detectingFrom:)` (shapes of fused tensors are
    /// summed from their parts).
    public static func canonicalShapes(of set: CheckpointSet, layout: FluxLayout, prefix: String) -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        let names = set.names
        switch layout {
        case .bfl:
            for n in names where n.hasPrefix(prefix) { shapes[String(n.dropFirst(prefix.count))] = set[n]!.shape }
        case .diffusers:
            // Depth from indices, then build recipes for the widest plausible config and keep those present.
            func count(_ p: String) -> Int {
                var m = -1
                for n in names where n.hasPrefix(p) {
                    let rest = n.dropFirst(p.count)
                    if let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) { m = max(m, i) }
                }
                return m + 1
            }
            var c = FluxConfig()
            c.depth = count(prefix + "transformer_blocks.")
            c.depthSingle = count(prefix + "single_transformer_blocks.")
            c.guidanceEmbed = true
            for (k, rec) in recipes(c, layout: .diffusers, prefix: prefix) {
                let infos = rec.sources.compactMap { set[$0] }
                guard infos.count == rec.sources.count else { continue }
                var s = infos[0].shape
                if rec.transform == .concatRows, !s.isEmpty { s[0] = infos.reduce(0) { $0 + ($1.shape.first ?? 1) } }
                shapes[k] = s
            }
        }
        return shapes
    }

    /// Resolves every canonical tensor of `config` to a lazy `WeightSource`, checking that all source keys exist with
    /// the expected shapes and (unless `allowUnexpected`) that no key under `prefix` is left unused.
    public static func resolve(_ set: CheckpointSet, config: FluxConfig, layout: FluxLayout, prefix: String,
                               allowUnexpected: Bool = false) throws -> [String: WeightSource] {
        try resolve(set, recipes: recipes(config, layout: layout, prefix: prefix), expected: canonicalShapes(config),
                    what: "FLUX \(layout.rawValue) checkpoint", unexpectedUnder: allowUnexpected ? nil : prefix)
    }

    /// ComfyUI "scaled FP8" companions that belong to tensors in `used` and are consumed with them rather than mapped:
    /// the `<prefix>scaled_fp8` marker, each used weight's `scale_weight` (applied by the reader when it dequantizes)
    /// and `scale_input` (the activation scale of ComfyUI's FP8 matmul; float32 compute does not need it).
    public static func consumedCompanions(of used: Set<String>, prefix: String) -> Set<String> {
        var out: Set<String> = [prefix + "scaled_fp8"]
        for name in used where name.hasSuffix(".weight") {
            let stem = name.dropLast("weight".count)
            out.insert(stem + "scale_weight")
            out.insert(stem + "scale_input")
        }
        return out
    }

    /// Generic form (ControlNets and other FLUX-derived modules reuse it with their own recipes): builds a
    /// `WeightSource` for each `(canonical name, expected shape)`, listing missing source keys and shape mismatches in
    /// one error; with `unexpectedUnder` set, keys under that prefix that no recipe uses are an error too.
    public static func resolve(_ set: CheckpointSet, recipes recs: [String: FluxWeightRecipe], expected: [(String, [Int])],
                               what: String, unexpectedUnder: String?) throws -> [String: WeightSource] {
        var used = Set<String>()
        var missing: [String] = []
        var mismatched: [String] = []
        var out: [String: WeightSource] = [:]
        for (name, shape) in expected {
            guard let rec = recs[name] else { missing.append(name); continue }
            var parts: [WeightSource.Part] = []
            for s in rec.sources {
                if let (f, info) = set.locate(s) { parts.append(.init(file: f, info: info)) } else { missing.append(s) }
            }
            guard parts.count == rec.sources.count else { continue }
            rec.sources.forEach { used.insert($0) }
            let w = WeightSource(name: name, parts: parts, transform: rec.transform)
            let partsOK = rec.transform != .concatRows || parts.allSatisfy { Array($0.info.shape.dropFirst()) == Array(shape.dropFirst()) }
            if w.shape != shape || !partsOK {
                mismatched.append("\(rec.sources.joined(separator: "+")): \(parts.map(\.info.shape)) vs expected \(shape)")
                continue
            }
            out[name] = w
        }
        if !missing.isEmpty {
            throw CheckpointError(.missingKeys,
                "\(what) lacks \(missing.count) tensor(s): \(missing.sorted().prefix(40).joined(separator: ", "))")
        }
        if !mismatched.isEmpty {
            throw CheckpointError(.shapeMismatch,
                "\(what) has \(mismatched.count) tensor(s) with unexpected shapes: \(mismatched.sorted().prefix(20).joined(separator: "; "))")
        }
        if let prefix = unexpectedUnder {
            let consumed = consumedCompanions(of: used, prefix: prefix)
            let unexpected = set.names.filter { $0.hasPrefix(prefix) && !used.contains($0) && !consumed.contains($0) }
            if !unexpected.isEmpty {
                throw CheckpointError(.unexpectedKeys,
                    "\(what) has \(unexpected.count) unexpected tensor(s): \(unexpected.sorted().prefix(40).joined(separator: ", "))")
            }
        }
        return out
    }
}
