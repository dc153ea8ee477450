import Checkpoints
import Foundation
import Tensor

/// Key layout of a DreamSR checkpoint (dreamsr-architecture "Checkpoint files"): ControlNet tensors under
/// `controlnet.` in diffusers names, LoRA in diffusers/peft style (`transformer.<module>.lora_A.weight` [r, in],
/// `.lora_B.weight` [out, r], and `controlnet.transformer_blocks.{l}.<module>...`) or Kohya style for the main network
/// (`lora_unet_<bfl_name_with_underscores>.lora_down.weight` / `.lora_up.weight` / `.alpha`).
///
/// Everything is mapped onto the canonical (BFL) names the FLUX engine uses: the ControlNet's embedders become
/// `img_in`, `txt_in`, `time_in.*`, `guidance_in.*`, `vector_in.*` and its blocks `double_blocks.{l}.*`; LoRA on
/// diffusers' split q/k/v (and single blocks' proj_mlp) becomes parts of the fused `qkv` / `linear1` adapters at
/// their row offsets.
public enum DreamSRWeightMap {
    public static let controlnetPrefix = "controlnet."

    /// diffusers module → (canonical linear within the block, which row block of it: 0, 1, 2, 3 × hidden).
    public static let doubleBlockLoRA: [(String, String, Int)] = [
        ("norm1.linear", "img_mod.lin", 0), ("norm1_context.linear", "txt_mod.lin", 0),
        ("attn.to_q", "img_attn.qkv", 0), ("attn.to_k", "img_attn.qkv", 1), ("attn.to_v", "img_attn.qkv", 2),
        ("attn.add_q_proj", "txt_attn.qkv", 0), ("attn.add_k_proj", "txt_attn.qkv", 1),
        ("attn.add_v_proj", "txt_attn.qkv", 2), ("attn.to_out.0", "img_attn.proj", 0),
        ("attn.to_add_out", "txt_attn.proj", 0), ("ff.net.0.proj", "img_mlp.0", 0), ("ff.net.2", "img_mlp.2", 0),
        ("ff_context.net.0.proj", "txt_mlp.0", 0), ("ff_context.net.2", "txt_mlp.2", 0),
    ]
    public static let singleBlockLoRA: [(String, String, Int)] = [
        ("norm.linear", "modulation.lin", 0), ("attn.to_q", "linear1", 0), ("attn.to_k", "linear1", 1),
        ("attn.to_v", "linear1", 2), ("proj_mlp", "linear1", 3), ("proj_out", "linear2", 0),
    ]

    /// Canonical-name sources of the ControlNet's embedders and `depth` double blocks.
    public static func controlnetRecipes(depth: Int, guidance: Bool) -> [String: FluxWeightRecipe] {
        var r = FluxWeightMap.diffusersEmbedders(sourcePrefix: controlnetPrefix, guidance: guidance)
        for l in 0..<depth {
            r.merge(FluxWeightMap.diffusersDoubleBlock(canonicalPrefix: "double_blocks.\(l).",
                                                       sourcePrefix: controlnetPrefix + "transformer_blocks.\(l).")) { a, _ in a }
        }
        return r
    }

    /// Resolves recipes to lazy weight sources; every source key must exist.
    public static func resolve(_ recipes: [String: FluxWeightRecipe], in set: CheckpointSet,
                               used: inout Set<String>) throws -> [String: WeightSource] {
        var out: [String: WeightSource] = [:]
        var missing: [String] = []
        for (name, rec) in recipes {
            var parts: [WeightSource.Part] = []
            for s in rec.sources {
                if let (f, info) = set.locate(s) { parts.append(.init(file: f, info: info)) } else { missing.append(s) }
            }
            guard parts.count == rec.sources.count else { continue }
            rec.sources.forEach { used.insert($0) }
            out[name] = WeightSource(name: name, parts: parts, transform: rec.transform)
        }
        if !missing.isEmpty {
            throw CheckpointError(.missingKeys, "DreamSR checkpoint lacks \(missing.count) tensor(s): "
                                  + missing.sorted().prefix(30).joined(separator: ", "))
        }
        return out
    }

    /// A float32 copy of `name`, recorded as used; shape checked when given.
    static func tensor(_ set: CheckpointSet, _ name: String, shape: [Int]? = nil, used: inout Set<String>) throws -> Tensor {
        guard set[name] != nil else {
            throw CheckpointError(.missingTensor, "DreamSR checkpoint lacks '\(name)'")
        }
        let t = try set.tensor(named: name)
        if let shape, t.shape != shape {
            throw CheckpointError(.shapeMismatch, "DreamSR tensor '\(name)' has shape \(t.shape), expected \(shape)")
        }
        used.insert(name)
        return t
    }

    static func linear(_ set: CheckpointSet, _ name: String, out: Int, in inF: Int, canonical: String? = nil,
                       used: inout Set<String>) throws -> Linear {
        let w = try tensor(set, name + ".weight", shape: [out, inF], used: &used)
        let b = try tensor(set, name + ".bias", shape: [out], used: &used)
        return Linear(name: canonical ?? name, weight: .resident(w), bias: b)
    }

    /// LoRA adapters of the main network (keyed by canonical linear name) and of the ControlNet blocks, from
    /// diffusers/peft keys or (main network only) Kohya keys. `scale` = lora_alpha / lora_rank for peft keys; Kohya
    /// modules use their own `.alpha` / rank.
    public static func loadLoRA(_ set: CheckpointSet, flux c: FluxConfig, depth: Int, scale: Float,
                                used: inout Set<String>) throws -> (main: DreamSRLoRA, controlnet: DreamSRLoRA) {
        let d = c.hiddenSize
        var main: [String: [LoRAAdapter.Part]] = [:]
        var cn: [String: [LoRAAdapter.Part]] = [:]
        func peft(_ source: String, canonical: String, block: Int, into dict: inout [String: [LoRAAdapter.Part]]) throws {
            let a = source + ".lora_A.weight", b = source + ".lora_B.weight"
            guard set[a] != nil || set[b] != nil else { return }
            let down = try tensor(set, a, used: &used), up = try tensor(set, b, used: &used)
            guard down.rank == 2, up.rank == 2, down.shape[0] == up.shape[1] else {
                throw CheckpointError(.shapeMismatch, "LoRA '\(source)': lora_A \(down.shape) / lora_B \(up.shape) do not chain")
            }
            dict[canonical, default: []].append(.init(outputOffset: block * d, down: down, up: up, scale: scale))
        }
        for i in 0..<c.depth {
            for (m, canon, blk) in doubleBlockLoRA {
                try peft("transformer.transformer_blocks.\(i).\(m)", canonical: "double_blocks.\(i).\(canon)", block: blk, into: &main)
            }
        }
        for i in 0..<c.depthSingle {
            for (m, canon, blk) in singleBlockLoRA {
                try peft("transformer.single_transformer_blocks.\(i).\(m)", canonical: "single_blocks.\(i).\(canon)", block: blk, into: &main)
            }
        }
        for l in 0..<depth {
            for (m, canon, blk) in doubleBlockLoRA {
                try peft("controlnet.transformer_blocks.\(l).\(m)", canonical: "double_blocks.\(l).\(canon)", block: blk, into: &cn)
            }
        }
        // Kohya (BFL names): lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight, fused layers as a whole.
        var canonicalLinears: [String] = []
        for i in 0..<c.depth {
            for s in ["img", "txt"] {
                for n in ["mod.lin", "attn.qkv", "attn.proj", "mlp.0", "mlp.2"] { canonicalLinears.append("double_blocks.\(i).\(s)_\(n)") }
            }
        }
        for i in 0..<c.depthSingle {
            for n in ["modulation.lin", "linear1", "linear2"] { canonicalLinears.append("single_blocks.\(i).\(n)") }
        }
        for canon in canonicalLinears {
            let k = "lora_unet_" + canon.replacingOccurrences(of: ".", with: "_")
            guard set[k + ".lora_down.weight"] != nil else { continue }
            let down = try tensor(set, k + ".lora_down.weight", used: &used)
            let up = try tensor(set, k + ".lora_up.weight", used: &used)
            guard down.rank == 2, up.rank == 2, down.shape[0] == up.shape[1] else {
                throw CheckpointError(.shapeMismatch, "Kohya LoRA '\(k)': down \(down.shape) / up \(up.shape) do not chain")
            }
            var s = Float(1)
            if set[k + ".alpha"] != nil {
                s = try tensor(set, k + ".alpha", used: &used).data[0] / Float(down.shape[0])
            }
            main[canon, default: []].append(.init(outputOffset: 0, down: down, up: up, scale: s))
        }
        return (DreamSRLoRA(adapters: main.mapValues { LoRAAdapter(parts: $0) }),
                DreamSRLoRA(adapters: cn.mapValues { LoRAAdapter(parts: $0) }))
    }
}

/// LoRA adapters by canonical linear name.
public struct DreamSRLoRA: LoRAProvider, @unchecked Sendable {
    public var adapters: [String: LoRAAdapter]

    public init(adapters: [String: LoRAAdapter]) { self.adapters = adapters }

    public func adapter(for linear: String) -> LoRAAdapter? { adapters[linear] }
    public var isEmpty: Bool { adapters.isEmpty }

    /// The same adapters with every `up` (lora_B) zeroed (for the zero-initialisation check).
    public func zeroingUp() -> DreamSRLoRA {
        DreamSRLoRA(adapters: adapters.mapValues { a in
            LoRAAdapter(parts: a.parts.map { .init(outputOffset: $0.outputOffset, down: $0.down, up: Tensor(zeros: $0.up.shape), scale: $0.scale) })
        })
    }
}
