import Checkpoints
import Foundation
import Tensor

/// A Linear weight from a checkpoint: zero-copy F32 views and `residentWeights` become resident float32; bf16/f16
/// weights otherwise stay in the mapping and are widened per call (a T5-XXL never has a whole f32 copy in memory).
func textEncoderLayerWeight(_ checkpoint: CheckpointSet, _ name: String, residentWeights: Bool) throws -> LayerWeight {
    guard let (file, info) = checkpoint.locate(name) else {
        throw CheckpointError(.missingTensor, "no tensor '\(name)' in \(checkpoint.files.map(\.url.lastPathComponent))")
    }
    let s = WeightSource(name: name, parts: [WeightSource.Part(file: file, info: info)], transform: .none)
    return residentWeights || s.isZeroCopy ? .resident(s.materialize()) : .lazy(s)
}

/// Hyper-parameters of a CLIP text transformer (HF `CLIPTextConfig`). Defaults are openai/clip-vit-large-patch14,
/// FLUX's `text_encoder/` (flux-and-tiling-spec §7.1).
public struct CLIPTextConfig: Sendable, Equatable {
    public var vocabSize = 49408
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var numLayers = 12
    public var numHeads = 12
    public var maxPositions = 77
    public var layerNormEps: Float = 1e-5
    /// `quick_gelu` (openai) or `gelu` (exact erf GELU is not implemented: rejected by `validate`).
    public var hiddenAct = "quick_gelu"
    /// 2 is HF's legacy marker: the pooled output is taken at argmax(input_ids) (the first `<|endoftext|>` for openai
    /// vocabularies); any other value pools at the first occurrence of that id.
    public var eosTokenID = 2

    public init() {}

    public static let clipL = CLIPTextConfig()

    public var headDim: Int { hiddenSize / numHeads }

    public func validate() throws {
        guard vocabSize > 0, hiddenSize > 0, intermediateSize > 0, numLayers >= 0, numHeads > 0, maxPositions > 0,
              hiddenSize % numHeads == 0 else {
            throw CheckpointError(.badConfig, "CLIP text config sizes inconsistent: \(self)")
        }
        guard hiddenAct == "quick_gelu" else {
            throw CheckpointError(.badConfig, "CLIP text hidden_act '\(hiddenAct)' is not implemented (quick_gelu only)")
        }
    }

    /// Parses a HF `config.json` of a `CLIPTextModel` (or the `text_config` of a `CLIPModel`); absent fields keep the
    /// CLIP-L defaults.
    public init(configJSON data: Data) throws {
        guard var obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError(.badConfig, "CLIP text config.json is not a JSON object")
        }
        if let text = obj["text_config"] as? [String: Any] { obj = text }
        self.init()
        func int(_ k: String) -> Int? { (obj[k] as? NSNumber)?.intValue }
        if let v = int("vocab_size") { vocabSize = v }
        if let v = int("hidden_size") { hiddenSize = v }
        if let v = int("intermediate_size") { intermediateSize = v }
        if let v = int("num_hidden_layers") { numLayers = v }
        if let v = int("num_attention_heads") { numHeads = v }
        if let v = int("max_position_embeddings") { maxPositions = v }
        if let v = (obj["layer_norm_eps"] as? NSNumber)?.floatValue { layerNormEps = v }
        if let v = obj["hidden_act"] as? String { hiddenAct = v }
        if let v = int("eos_token_id") { eosTokenID = v }
        try validate()
    }
}

/// CLIP text transformer (HF `CLIPTextModel`): token + learned position embeddings, pre-LN blocks with causal
/// self-attention and quick-GELU MLP, final LayerNorm. `pooler_output` is the final hidden state at the EOS position
/// (what FLUX feeds `vector_in`; no projection).
///
/// Keys: `text_model.` prefix optional (HF 4.x checkpoints have it); bf16/f16/f32 tensors widen to f32 on load.
public final class CLIPTextEncoder: Sendable {
    public let config: CLIPTextConfig

    struct Norm {
        /// LayerNorm as `LN(x)·(1 + scale) + shift` with scale = weight − 1, shift = bias.
        let scale: Tensor
        let shift: Tensor
    }

    struct Layer {
        let norm1: Norm, norm2: Norm
        let q: Linear, k: Linear, v: Linear, out: Linear
        let fc1: Linear, fc2: Linear
    }

    private let tokenEmbedding: Tensor
    private let positionEmbedding: Tensor
    private let layers: [Layer]
    private let finalNorm: Norm

    /// Loads from safetensors in HF layout (`text_model.` prefix optional).
    public convenience init(checkpoint: CheckpointSet, config: CLIPTextConfig = .clipL, residentWeights: Bool = false) throws {
        try self.init(config: config, shape: { checkpoint[$0]?.shape }, load: { try checkpoint.tensor(named: $0) },
                      weight: { try textEncoderLayerWeight(checkpoint, $0, residentWeights: residentWeights) })
    }

    /// Builds from float32 tensors by HF name (benchmarks, tests).
    public convenience init(tensors: [String: Tensor], config: CLIPTextConfig = .clipL) throws {
        try self.init(config: config, shape: { tensors[$0]?.shape }, load: { tensors[$0]! },
                      weight: { .resident(tensors[$0]!) })
    }

    init(config: CLIPTextConfig, shape: (String) -> [Int]?, load: (String) throws -> Tensor,
         weight: (String) throws -> LayerWeight) throws {
        try config.validate()
        self.config = config
        let prefix = shape("text_model.embeddings.token_embedding.weight") != nil ? "text_model." : ""
        func check(_ key: String, _ want: [Int]) throws {
            let name = prefix + key
            guard let found = shape(name) else {
                throw CheckpointError(.missingTensor, "CLIP text encoder: no tensor '\(name)'")
            }
            guard found == want else {
                throw CheckpointError(.badConfig, "CLIP text encoder: '\(name)' has shape \(found), config wants \(want)")
            }
        }
        func tensor(_ key: String, _ want: [Int]) throws -> Tensor {
            try check(key, want)
            return try load(prefix + key)
        }
        func norm(_ key: String) throws -> Norm {
            let w = try tensor(key + ".weight", [config.hiddenSize]).copy()
            w.withUnsafeMutableBufferPointer { v in for i in v.indices { v[i] -= 1 } }
            return Norm(scale: w, shift: try tensor(key + ".bias", [config.hiddenSize]))
        }
        func linear(_ key: String, out: Int, in inF: Int) throws -> Linear {
            try check(key + ".weight", [out, inF])
            return Linear(name: key, weight: try weight(prefix + key + ".weight"), bias: try tensor(key + ".bias", [out]))
        }
        let d = config.hiddenSize, f = config.intermediateSize
        tokenEmbedding = try tensor("embeddings.token_embedding.weight", [config.vocabSize, d])
        positionEmbedding = try tensor("embeddings.position_embedding.weight", [config.maxPositions, d])
        layers = try (0..<config.numLayers).map { i in
            let p = "encoder.layers.\(i)."
            return Layer(
                norm1: try norm(p + "layer_norm1"), norm2: try norm(p + "layer_norm2"),
                q: try linear(p + "self_attn.q_proj", out: d, in: d), k: try linear(p + "self_attn.k_proj", out: d, in: d),
                v: try linear(p + "self_attn.v_proj", out: d, in: d),
                out: try linear(p + "self_attn.out_proj", out: d, in: d),
                fc1: try linear(p + "mlp.fc1", out: f, in: d), fc2: try linear(p + "mlp.fc2", out: d, in: f))
        }
        finalNorm = try norm("final_layer_norm")
    }

    /// Where HF takes the pooled output.
    public func poolIndex(_ ids: [Int]) -> Int {
        if config.eosTokenID == 2 {
            var best = 0
            for (i, v) in ids.enumerated() where v > ids[best] { best = i }
            return best
        }
        return ids.firstIndex(of: config.eosTokenID) ?? ids.count - 1
    }

    /// One sequence: `last_hidden_state [L, D]` and `pooler_output [D]`.
    public func encode(_ ids: [Int]) -> (lastHiddenState: Tensor, pooled: Tensor) {
        let d = config.hiddenSize, l = ids.count
        precondition(l > 0 && l <= config.maxPositions, "CLIP text: \(l) tokens, at most \(config.maxPositions)")
        precondition(ids.allSatisfy { $0 >= 0 && $0 < config.vocabSize }, "CLIP text: token id outside the vocab")
        let h = Tensor(zeros: [l, d])
        h.withUnsafeMutableBufferPointer { hb in
            tokenEmbedding.withUnsafeBufferPointer { tok in
                positionEmbedding.withUnsafeBufferPointer { pos in
                    for (t, id) in ids.enumerated() {
                        for c in 0..<d { hb[t * d + c] = tok[id * d + c] + pos[t * d + c] }
                    }
                }
            }
        }
        let attn = Tensor(zeros: [l, d])
        for layer in layers {
            let x = layerNorm(h, layer.norm1)
            let q = layer.q(x), k = layer.k(x), v = layer.v(x)
            // Causal: query t attends to keys 0...t.
            q.withUnsafePointer { qp in
                k.withUnsafePointer { kp in
                    v.withUnsafePointer { vp in
                        attn.withUnsafeMutablePointer { ap in
                            for t in 0..<l {
                                TransformerOps.attention(q: qp + t * d, ldq: d, k: kp, ldk: d, v: vp, ldv: d,
                                                         out: ap + t * d, ldo: d, queries: 1, keys: t + 1,
                                                         heads: config.numHeads, headDim: config.headDim)
                            }
                        }
                    }
                }
            }
            h.add(layer.out(attn))
            let m = layer.fc1(layerNorm(h, layer.norm2))
            TransformerOps.quickGelu(m)
            h.add(layer.fc2(m))
        }
        let last = layerNorm(h, finalNorm)
        return (last, last.view(offset: poolIndex(ids) * d, shape: [d]).copy())
    }

    /// A batch of equal-length sequences: `[B, L, D]` and `[B, D]`.
    public func encode(batch: [[Int]]) -> (lastHiddenState: Tensor, pooled: Tensor) {
        let b = batch.count, l = batch.first?.count ?? 0, d = config.hiddenSize
        precondition(batch.allSatisfy { $0.count == l }, "CLIP text: batch sequences differ in length")
        let last = Tensor(zeros: [b, l, d]), pooled = Tensor(zeros: [b, d])
        for (i, ids) in batch.enumerated() {
            let (h, p) = encode(ids)
            last.copyValues(from: h, count: l * d, to: i * l * d)
            pooled.copyValues(from: p, count: d, to: i * d)
        }
        return (last, pooled)
    }

    private func layerNorm(_ x: Tensor, _ n: Norm) -> Tensor {
        n.scale.withUnsafePointer { scale in
            n.shift.withUnsafePointer { shift in
                TransformerOps.layerNormModulate(x, scale: scale, shift: shift, eps: config.layerNormEps)
            }
        }
    }
}
