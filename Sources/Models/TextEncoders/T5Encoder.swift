import Checkpoints
import Foundation
import Tensor

/// Hyper-parameters of a T5 v1.1 encoder (HF `T5Config`). Defaults are google/t5-v1_1-xxl, FLUX's `text_encoder_2/`
/// (flux-and-tiling-spec §7.2).
public struct T5EncoderConfig: Sendable, Equatable {
    public var vocabSize = 32128
    public var dModel = 4096
    public var dKV = 64
    public var numHeads = 64
    public var dFF = 10240
    public var numLayers = 24
    public var relativeAttentionNumBuckets = 32
    public var relativeAttentionMaxDistance = 128
    public var layerNormEpsilon: Float = 1e-6
    /// Only `gated-gelu` (v1.1: wo(gelu_tanh(wi_0 x) ⊙ wi_1 x)) is implemented.
    public var feedForwardProj = "gated-gelu"

    public init() {}

    public static let xxl = T5EncoderConfig()

    public var inner: Int { numHeads * dKV }

    public func validate() throws {
        guard vocabSize > 0, dModel > 0, dKV > 0, numHeads > 0, dFF > 0, numLayers >= 0,
              relativeAttentionNumBuckets >= 2, relativeAttentionMaxDistance > relativeAttentionNumBuckets / 4 else {
            throw CheckpointError(.badConfig, "T5 config sizes inconsistent: \(self)")
        }
        guard feedForwardProj == "gated-gelu" else {
            throw CheckpointError(.badConfig, "T5 feed_forward_proj '\(feedForwardProj)' is not implemented (gated-gelu only)")
        }
    }

    /// Parses a HF `config.json`; absent fields keep the XXL defaults.
    public init(configJSON data: Data) throws {
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError(.badConfig, "T5 config.json is not a JSON object")
        }
        self.init()
        func int(_ k: String) -> Int? { (obj[k] as? NSNumber)?.intValue }
        if let v = int("vocab_size") { vocabSize = v }
        if let v = int("d_model") { dModel = v }
        if let v = int("d_kv") { dKV = v }
        if let v = int("num_heads") { numHeads = v }
        if let v = int("d_ff") { dFF = v }
        if let v = int("num_layers") { numLayers = v }
        if let v = int("relative_attention_num_buckets") { relativeAttentionNumBuckets = v }
        if let v = int("relative_attention_max_distance") { relativeAttentionMaxDistance = v }
        if let v = (obj["layer_norm_epsilon"] as? NSNumber)?.floatValue { layerNormEpsilon = v }
        if let v = obj["feed_forward_proj"] as? String { feedForwardProj = v }
        try validate()
    }
}

/// T5 v1.1 encoder stack (HF `T5EncoderModel`): RMSNorm pre-norm blocks, attention WITHOUT 1/√d scaling plus a
/// relative position bias computed once from block 0's table and added in every layer, gated-GELU FFN, final
/// RMSNorm. No attention mask (FLUX attends to padding). Returns `last_hidden_state`.
public final class T5Encoder: Sendable {
    public let config: T5EncoderConfig

    struct Layer {
        let attentionNorm: Tensor
        let q: Linear, k: Linear, v: Linear, o: Linear
        let ffNorm: Tensor
        let wi0: Linear, wi1: Linear, wo: Linear
    }

    private let embedding: Tensor
    private let relativeBias: Tensor  // [buckets, heads]
    private let layers: [Layer]
    private let finalNorm: Tensor

    /// Loads from safetensors in HF layout (`shared.weight`, or `encoder.embed_tokens.weight`, for the embedding).
    public convenience init(checkpoint: CheckpointSet, config: T5EncoderConfig = .xxl, residentWeights: Bool = false) throws {
        try self.init(config: config, shape: { checkpoint[$0]?.shape }, load: { try checkpoint.tensor(named: $0) },
                      weight: { try textEncoderLayerWeight(checkpoint, $0, residentWeights: residentWeights) })
    }

    /// Builds from float32 tensors by HF name (benchmarks, tests).
    public convenience init(tensors: [String: Tensor], config: T5EncoderConfig = .xxl) throws {
        try self.init(config: config, shape: { tensors[$0]?.shape }, load: { tensors[$0]! },
                      weight: { .resident(tensors[$0]!) })
    }

    init(config: T5EncoderConfig, shape: (String) -> [Int]?, load: (String) throws -> Tensor,
         weight: (String) throws -> LayerWeight) throws {
        try config.validate()
        self.config = config
        func check(_ name: String, _ want: [Int]) throws {
            guard let found = shape(name) else { throw CheckpointError(.missingTensor, "T5 encoder: no tensor '\(name)'") }
            guard found == want else {
                throw CheckpointError(.badConfig, "T5 encoder: '\(name)' has shape \(found), config wants \(want)")
            }
        }
        func tensor(_ name: String, _ want: [Int]) throws -> Tensor {
            try check(name, want)
            return try load(name)
        }
        func linear(_ name: String, out: Int, in inF: Int) throws -> Linear {
            try check(name + ".weight", [out, inF])
            return Linear(name: name, weight: try weight(name + ".weight"), bias: nil)
        }
        let d = config.dModel, inner = config.inner, ff = config.dFF
        let embeddingKey = shape("shared.weight") != nil ? "shared.weight" : "encoder.embed_tokens.weight"
        embedding = try tensor(embeddingKey, [config.vocabSize, d])
        relativeBias = try tensor("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                  [config.relativeAttentionNumBuckets, config.numHeads])
        layers = try (0..<config.numLayers).map { i in
            let a = "encoder.block.\(i).layer.0.", f = "encoder.block.\(i).layer.1."
            return Layer(
                attentionNorm: try tensor(a + "layer_norm.weight", [d]),
                q: try linear(a + "SelfAttention.q", out: inner, in: d), k: try linear(a + "SelfAttention.k", out: inner, in: d),
                v: try linear(a + "SelfAttention.v", out: inner, in: d), o: try linear(a + "SelfAttention.o", out: d, in: inner),
                ffNorm: try tensor(f + "layer_norm.weight", [d]),
                wi0: try linear(f + "DenseReluDense.wi_0", out: ff, in: d),
                wi1: try linear(f + "DenseReluDense.wi_1", out: ff, in: d),
                wo: try linear(f + "DenseReluDense.wo", out: d, in: ff))
        }
        finalNorm = try tensor("encoder.final_layer_norm.weight", [d])
    }

    /// HF `_relative_position_bucket(bidirectional=True)`, in float32 as torch computes it.
    public static func bucket(relativePosition rel: Int, numBuckets: Int = 32, maxDistance: Int = 128) -> Int {
        let half = numBuckets / 2
        var bucket = rel > 0 ? half : 0
        let n = abs(rel)
        let maxExact = half / 2
        if n < maxExact { return bucket + n }
        let scaled = logf(Float(n) / Float(maxExact)) / Float(log(Double(maxDistance) / Double(maxExact)))
            * Float(half - maxExact)
        bucket += min(half - 1, maxExact + Int(scaled))
        return bucket
    }

    /// Position bias `[heads, L, L]` for one length.
    func positionBias(length l: Int) -> [Float] {
        let h = config.numHeads
        var bias = [Float](repeating: 0, count: h * l * l)
        relativeBias.withUnsafeBufferPointer { table in
            for i in 0..<l {
                for j in 0..<l {
                    let b = Self.bucket(relativePosition: j - i, numBuckets: config.relativeAttentionNumBuckets,
                                        maxDistance: config.relativeAttentionMaxDistance)
                    for head in 0..<h { bias[(head * l + i) * l + j] = table[b * h + head] }
                }
            }
        }
        return bias
    }

    /// One sequence `[L]` → `last_hidden_state [L, d_model]`.
    public func encode(_ ids: [Int]) -> Tensor {
        let d = config.dModel, l = ids.count, heads = config.numHeads, dk = config.dKV, inner = config.inner
        precondition(l > 0 && ids.allSatisfy { $0 >= 0 && $0 < config.vocabSize }, "T5: empty input or id outside the vocab")
        let h = Tensor(zeros: [l, d])
        for (t, id) in ids.enumerated() { h.copyValues(from: embedding, at: id * d, count: d, to: t * d) }
        let bias = positionBias(length: l)
        let scores = Tensor(zeros: [l, l])
        let attn = Tensor(zeros: [l, inner])
        for layer in layers {
            let x = rmsNorm(h, layer.attentionNorm)
            let q = layer.q(x), k = layer.k(x), v = layer.v(x)
            q.withUnsafePointer { qp in
                k.withUnsafePointer { kp in
                    v.withUnsafePointer { vp in
                        scores.withUnsafeMutablePointer { sp in
                            attn.withUnsafeMutablePointer { ap in
                                for head in 0..<heads {
                                    let off = head * dk
                                    // scores = q_h k_hᵀ + bias_h (no 1/√d), softmax per row, then · v_h.
                                    bias.withUnsafeBufferPointer { sp.update(from: $0.baseAddress! + head * l * l, count: l * l) }
                                    BLAS.sgemm(transA: false, transB: true, m: l, n: l, k: dk, alpha: 1, a: qp + off,
                                               lda: inner, b: kp + off, ldb: inner, beta: 1, c: sp, ldc: l)
                                    Self.softmaxRows(sp, rows: l, cols: l)
                                    BLAS.sgemm(transA: false, transB: false, m: l, n: dk, k: l, alpha: 1, a: sp, lda: l,
                                               b: vp + off, ldb: inner, beta: 0, c: ap + off, ldc: inner)
                                }
                            }
                        }
                    }
                }
            }
            h.add(layer.o(attn))
            let y = rmsNorm(h, layer.ffNorm)
            let g = layer.wi0(y)
            TransformerOps.geluTanh(g)
            g.assign(g, layer.wi1(y)) { $0 * $1 }
            h.add(layer.wo(g))
        }
        return rmsNorm(h, finalNorm)
    }

    /// A batch of equal-length sequences → `[B, L, d_model]`.
    public func encode(batch: [[Int]]) -> Tensor {
        let b = batch.count, l = batch.first?.count ?? 0, d = config.dModel
        precondition(batch.allSatisfy { $0.count == l }, "T5: batch sequences differ in length")
        let out = Tensor(zeros: [b, l, d])
        for (i, ids) in batch.enumerated() {
            out.copyValues(from: encode(ids), count: l * d, to: i * l * d)
        }
        return out
    }

    private func rmsNorm(_ x: Tensor, _ weight: Tensor) -> Tensor {
        let y = x.copy()
        let d = config.dModel
        y.withUnsafeMutablePointer { yp in
            weight.withUnsafePointer { wp in
                TransformerOps.rmsNormHeads(yp, stride: d, rows: y.count / d, heads: 1, headDim: d, weight: wp,
                                            eps: config.layerNormEpsilon)
            }
        }
        return y
    }

    static func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let row = p + r * cols
            var m = -Float.infinity
            for c in 0..<cols { m = max(m, row[c]) }
            var s: Float = 0
            for c in 0..<cols {
                let e = expf(row[c] - m)
                row[c] = e
                s += e
            }
            let inv = 1 / s
            for c in 0..<cols { row[c] *= inv }
        }
    }
}
