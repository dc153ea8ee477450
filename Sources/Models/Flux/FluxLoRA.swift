import Checkpoints
import Foundation
import Tensor

/// LoRA adapters for a FLUX transformer, applied UNMERGED (`y = W x + b + s·B(A x)`), keyed by canonical Linear name.
///
/// Reads diffusers/peft files (`<prefix><diffusers module>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r], optional
/// `.alpha`) and Kohya files with BFL names (`lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight` / `.lora_up.weight`
/// / `.alpha`). Split diffusers projections land on row blocks of the fused canonical layers (q/k/v → `qkv`,
/// q/k/v/proj_mlp → `linear1`); `norm_out.linear` gets its output halves swapped like the base weight.
/// Scale per module: `multiplier · alpha / rank` when an alpha is stored, else `multiplier` (diffusers' default
/// alpha = rank).
public struct FluxLoRA: LoRAProvider {
    public let adapters: [String: LoRAAdapter]

    public init(adapters: [String: LoRAAdapter]) { self.adapters = adapters }

    public func adapter(for linear: String) -> LoRAAdapter? { adapters[linear] }

    /// Target of one diffusers module: canonical Linear, output row offset, and whether its halves are swapped.
    struct Target {
        let linear: String
        let offset: Int
        let swapHalves: Bool
    }

    /// diffusers module name (without prefix) → canonical target, for every Linear of `config`.
    static func diffusersTargets(_ c: FluxConfig) -> [String: Target] {
        let d = c.hiddenSize
        var t: [String: Target] = [:]
        func put(_ m: String, _ l: String, _ off: Int = 0, swap: Bool = false) { t[m] = Target(linear: l, offset: off, swapHalves: swap) }
        put("x_embedder", "img_in"); put("context_embedder", "txt_in")
        put("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer")
        put("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer")
        put("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer")
        put("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer")
        put("time_text_embed.text_embedder.linear_1", "vector_in.in_layer")
        put("time_text_embed.text_embedder.linear_2", "vector_in.out_layer")
        for i in 0..<c.depth {
            let s = "transformer_blocks.\(i).", p = "double_blocks.\(i)."
            put(s + "norm1.linear", p + "img_mod.lin"); put(s + "norm1_context.linear", p + "txt_mod.lin")
            for (k, x) in ["q", "k", "v"].enumerated() {
                put(s + "attn.to_\(x)", p + "img_attn.qkv", k * d)
                put(s + "attn.add_\(x)_proj", p + "txt_attn.qkv", k * d)
            }
            put(s + "attn.to_out.0", p + "img_attn.proj"); put(s + "attn.to_add_out", p + "txt_attn.proj")
            put(s + "ff.net.0.proj", p + "img_mlp.0"); put(s + "ff.net.2", p + "img_mlp.2")
            put(s + "ff_context.net.0.proj", p + "txt_mlp.0"); put(s + "ff_context.net.2", p + "txt_mlp.2")
        }
        for i in 0..<c.depthSingle {
            let s = "single_transformer_blocks.\(i).", p = "single_blocks.\(i)."
            put(s + "norm.linear", p + "modulation.lin")
            for (k, x) in ["q", "k", "v"].enumerated() { put(s + "attn.to_\(x)", p + "linear1", k * d) }
            put(s + "proj_mlp", p + "linear1", 3 * d)
            put(s + "proj_out", p + "linear2")
        }
        put("norm_out.linear", "final_layer.adaLN_modulation.1", swap: true)
        put("proj_out", "final_layer.linear")
        return t
    }

    /// Canonical Linear names of `config` (targets of Kohya/BFL-named LoRA keys).
    static func canonicalLinears(_ c: FluxConfig) -> [String] {
        FluxWeightMap.canonicalShapes(c).compactMap { $0.0.hasSuffix(".weight") && $0.1.count == 2 ? String($0.0.dropLast(7)) : nil }
    }

    /// A LoRA matrix (`lora_A` / `lora_B`, 2-D) as a bias-free Linear over its stored tensor: read in place when
    /// stored narrower than float32, a zero-copy view when float32 (`LayerWeight.stored`).
    static func storedLayer(_ file: any TensorFile, _ info: TensorInfo, precision: ComputePrecision) -> Linear {
        let name = info.name.hasSuffix(".weight") ? String(info.name.dropLast(".weight".count)) : info.name
        let source = WeightSource(name: name, parts: [.init(file: file, info: info)], transform: .none)
        return Linear(name: name, weight: .stored(source, precision: precision), bias: nil, precision: precision)
    }

    /// One LoRA pair of `set` as a part writing output rows from `offset`; the shapes must chain.
    static func storedPart(_ set: CheckpointSet, down downKey: String, up upKey: String, module: String, offset: Int,
                           scale: Float, precision: ComputePrecision) throws -> LoRAAdapter.Part {
        guard let (df, di) = set.locate(downKey) else { throw CheckpointError(.missingTensor, "LoRA \(module) lacks '\(downKey)'") }
        guard let (uf, ui) = set.locate(upKey) else { throw CheckpointError(.missingTensor, "LoRA \(module) lacks '\(upKey)'") }
        guard di.shape.count == 2, ui.shape.count == 2, di.shape[0] == ui.shape[1] else {
            throw CheckpointError(.shapeMismatch, "LoRA \(module): down \(di.shape) / up \(ui.shape) do not chain")
        }
        return LoRAAdapter.Part(outputOffset: offset, down: storedLayer(df, di, precision: precision),
                                up: storedLayer(uf, ui, precision: precision), scale: scale)
    }

    /// Loads every LoRA pair in `set` whose keys start with `prefix` (diffusers, default `transformer.`) or
    /// `lora_unet_` (Kohya). Any LoRA key that maps to no Linear of `config` is an error listing it. A and B stay in
    /// the file (read in place in `precision`, see `storedLayer`).
    public static func load(_ set: CheckpointSet, config: FluxConfig, prefix: String = "transformer.",
                            multiplier: Float = 1, precision: ComputePrecision = .fp32) throws -> FluxLoRA {
        let targets = diffusersTargets(config)
        var kohya: [String: String] = [:]
        for l in canonicalLinears(config) { kohya["lora_unet_" + l.replacingOccurrences(of: ".", with: "_")] = l }
        var adapters: [String: LoRAAdapter] = [:]
        var unknown: [String] = []
        var used = Set<String>()
        func alpha(_ key: String) throws -> Float? {
            guard set[key] != nil else { return nil }
            used.insert(key)
            return try set.tensor(named: key).toArray().first
        }
        for name in set.names.sorted() {
            let module: String, downKey: String, upKey: String, isKohya: Bool
            if name.hasPrefix(prefix), name.hasSuffix(".lora_A.weight") {
                module = String(name.dropFirst(prefix.count).dropLast(".lora_A.weight".count))
                downKey = name; upKey = prefix + module + ".lora_B.weight"; isKohya = false
            } else if name.hasPrefix("lora_unet_"), name.hasSuffix(".lora_down.weight") {
                module = String(name.dropLast(".lora_down.weight".count))
                downKey = name; upKey = module + ".lora_up.weight"; isKohya = true
            } else {
                continue
            }
            used.insert(downKey)
            guard set[upKey] != nil else { unknown.append("\(upKey) (missing pair of \(downKey))"); continue }
            used.insert(upKey)
            let stored = try storedPart(set, down: downKey, up: upKey, module: module, offset: 0, scale: 1, precision: precision)
            let rank = Float(stored.rank)
            let a = try alpha(isKohya ? module + ".alpha" : prefix + module + ".alpha")
            let scale = multiplier * (a.map { $0 / rank } ?? 1)
            let target: Target
            if isKohya {
                guard let l = kohya[module] else { unknown.append(name); continue }
                target = Target(linear: l, offset: 0, swapHalves: false) // BFL names: already shift|scale
            } else {
                guard let t = targets[module] else { unknown.append(name); continue }
                target = t
            }
            var parts: [LoRAAdapter.Part] = []
            if target.swapHalves {
                // A small [2·D, r] B whose halves are exchanged: held as two resident float32 halves.
                let up = stored.up
                let half = up.shape[0] / 2, r = up.shape[1]
                let hi = Tensor(zeros: [half, r]), lo = Tensor(zeros: [half, r])
                lo.copyValues(from: up, at: 0, count: half * r)
                hi.copyValues(from: up, at: half * r, count: half * r)
                func layer(_ t: Tensor) -> Linear { Linear(name: stored.upLayer.name, weight: .resident(t), bias: nil, precision: precision) }
                parts = [.init(outputOffset: 0, down: stored.downLayer, up: layer(hi), scale: scale),
                         .init(outputOffset: half, down: stored.downLayer, up: layer(lo), scale: scale)]
            } else {
                parts = [.init(outputOffset: target.offset, down: stored.downLayer, up: stored.upLayer, scale: scale)]
            }
            adapters[target.linear, default: LoRAAdapter(parts: [])].parts += parts
        }
        let leftovers = set.names.filter { ($0.hasPrefix(prefix) || $0.hasPrefix("lora_unet_")) && !used.contains($0) }
        unknown += leftovers.filter { !unknown.contains($0) }
        if !unknown.isEmpty {
            throw CheckpointError(.unexpectedKeys, "LoRA keys that match no FLUX Linear: \(unknown.sorted().prefix(40).joined(separator: ", "))")
        }
        return FluxLoRA(adapters: adapters)
    }
}
