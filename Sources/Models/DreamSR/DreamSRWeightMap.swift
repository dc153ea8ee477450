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

    /// diffusers module of a ControlNet double block → (canonical linear, which row block of it: 0, 1, 2 × hidden).
    public static let doubleBlockLoRA: [(String, String, Int)] = [
        ("norm1.linear", "img_mod.lin", 0), ("norm1_context.linear", "txt_mod.lin", 0),
        ("attn.to_q", "img_attn.qkv", 0), ("attn.to_k", "img_attn.qkv", 1), ("attn.to_v", "img_attn.qkv", 2),
        ("attn.add_q_proj", "txt_attn.qkv", 0), ("attn.add_k_proj", "txt_attn.qkv", 1),
        ("attn.add_v_proj", "txt_attn.qkv", 2), ("attn.to_out.0", "img_attn.proj", 0),
        ("attn.to_add_out", "txt_attn.proj", 0), ("ff.net.0.proj", "img_mlp.0", 0), ("ff.net.2", "img_mlp.2", 0),
        ("ff_context.net.0.proj", "txt_mlp.0", 0), ("ff_context.net.2", "txt_mlp.2", 0),
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

    /// A DreamSR-only Linear (image MLPs, Context Cross-Attention, `controlnet_x_embedder`): the weight stays in the
    /// file (read in place in `precision` when stored narrower than float32, a view when float32; `LayerWeight.stored`),
    /// the bias is copied to float32.
    static func linear(_ set: CheckpointSet, _ name: String, out: Int, in inF: Int, canonical: String? = nil,
                       precision: ComputePrecision, used: inout Set<String>) throws -> Linear {
        let key = name + ".weight"
        guard let (file, info) = set.locate(key) else {
            throw CheckpointError(.missingTensor, "DreamSR checkpoint lacks '\(key)'")
        }
        guard info.shape == [out, inF] else {
            throw CheckpointError(.shapeMismatch, "DreamSR tensor '\(key)' has shape \(info.shape), expected \([out, inF])")
        }
        used.insert(key)
        let b = try tensor(set, name + ".bias", shape: [out], used: &used)
        let source = WeightSource(name: canonical ?? name, parts: [.init(file: file, info: info)], transform: .none)
        return Linear(name: canonical ?? name, weight: .stored(source, precision: precision), bias: b, precision: precision)
    }

    /// LoRA adapters of the main network (keyed by canonical linear name, read by `FluxLoRA` from diffusers/peft keys
    /// `transformer.*` or Kohya keys `lora_unet_*`) and of the ControlNet blocks (`controlnet.transformer_blocks.*`).
    /// peft keys without `.alpha` get `scale` = lora_alpha / lora_rank of the DreamSR config; Kohya modules carry
    /// their own `.alpha` (scale alpha / rank).
    /// A and B stay in the file, read in place in `precision` (`FluxLoRA.storedLayer`).
    public static func loadLoRA(_ set: CheckpointSet, flux c: FluxConfig, depth: Int, scale: Float,
                                precision: ComputePrecision = .fp32,
                                used: inout Set<String>) throws -> (main: DreamSRLoRA, controlnet: DreamSRLoRA) {
        let d = c.hiddenSize
        let names = set.names
        let hasKohya = names.contains { $0.hasPrefix("lora_unet_") }
        let main = try FluxLoRA.load(set, config: c, prefix: "transformer.", multiplier: hasKohya ? 1 : scale,
                                     precision: precision)
        // FluxLoRA rejects any unknown key under these prefixes, so all of them are consumed.
        for n in names where n.hasPrefix("transformer.") || n.hasPrefix("lora_unet_") { used.insert(n) }

        var cn: [String: [LoRAAdapter.Part]] = [:]
        for l in 0..<depth {
            for (m, canon, blk) in doubleBlockLoRA {
                let source = controlnetPrefix + "transformer_blocks.\(l).\(m)"
                let a = source + ".lora_A.weight", b = source + ".lora_B.weight"
                guard set[a] != nil || set[b] != nil else { continue }
                guard set[a] != nil else { throw CheckpointError(.missingTensor, "DreamSR checkpoint lacks '\(a)'") }
                guard set[b] != nil else { throw CheckpointError(.missingTensor, "DreamSR checkpoint lacks '\(b)'") }
                let part = try FluxLoRA.storedPart(set, down: a, up: b, module: "'\(source)'", offset: blk * d, scale: scale,
                                                   precision: precision)
                used.insert(a)
                used.insert(b)
                cn["double_blocks.\(l).\(canon)", default: []].append(part)
            }
        }
        return (DreamSRLoRA(adapters: main.adapters), DreamSRLoRA(adapters: cn.mapValues { LoRAAdapter(parts: $0) }))
    }
}

/// LoRA adapters by canonical linear name.
public struct DreamSRLoRA: LoRAProvider, Sendable {
    public var adapters: [String: LoRAAdapter]

    public init(adapters: [String: LoRAAdapter]) { self.adapters = adapters }

    public func adapter(for linear: String) -> LoRAAdapter? { adapters[linear] }
    public var isEmpty: Bool { adapters.isEmpty }

    /// The same adapters with every `up` (lora_B) zeroed (for the zero-initialisation check).
    public func zeroingUp() -> DreamSRLoRA {
        DreamSRLoRA(adapters: adapters.mapValues { a in
            LoRAAdapter(parts: a.parts.map {
                .init(outputOffset: $0.outputOffset, down: $0.downLayer,
                      up: Linear(name: $0.upLayer.name, weight: .resident(Tensor(zeros: $0.upLayer.weight.shape)), bias: nil),
                      scale: $0.scale)
            })
        })
    }
}
