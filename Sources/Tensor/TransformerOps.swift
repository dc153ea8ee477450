import CKernels
import Foundation

/// Transformer building blocks over row-major `[rows, features]` tensors. Heavy lifting goes to BLAS (GEMMs) and the
/// C kernels (norms, activations, softmax, RoPE); these functions only check shapes and orchestrate.
public enum TransformerOps {
    // MARK: Linear

    /// `y[m, out] = x[m, in] · W[out, in]ᵀ + b` (PyTorch Linear layout).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(weight.rank == 2, "linear weight must be 2-D, got \(weight.shape)")
        let outF = weight.shape[0], inF = weight.shape[1]
        let m = x.count / max(inF, 1)
        precondition(x.shape.last == inF && m * inF == x.count, "linear input \(x.shape) vs weight \(weight.shape)")
        let y = Tensor(zeros: [m, outF])
        linear(x: x.data, ldx: inF, rows: m, weight: weight.data, inFeatures: inF, outFeatures: outF,
               bias: bias?.data, y: y.data, ldy: outF)
        return y
    }

    /// `y (+)= x · Wᵀ + b` into an existing `y [m, out]` for `x [m, in]` (`accumulate` adds into y).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, into y: Tensor, accumulate: Bool = false) {
        precondition(weight.rank == 2, "linear weight must be 2-D, got \(weight.shape)")
        let outF = weight.shape[0], inF = weight.shape[1]
        let m = x.count / max(inF, 1)
        precondition(m * inF == x.count && y.count == m * outF, "linear \(x.shape) → \(y.shape) vs weight \(weight.shape)")
        if let bias { precondition(bias.count == outF, "linear bias \(bias.shape) vs weight \(weight.shape)") }
        withExtendedLifetime((x, weight, bias, y)) {
            linear(x: x.data, ldx: inF, rows: m, weight: weight.data, inFeatures: inF, outFeatures: outF,
                   bias: bias?.data, y: y.data, ldy: outF, accumulate: accumulate)
        }
    }

    /// Pointer form: `y[r, 0..<out] = x[r, 0..<in] · Wᵀ + b`, with explicit row strides (`accumulate` adds into y).
    public static func linear(
        x: UnsafePointer<Float>, ldx: Int, rows: Int, weight: UnsafePointer<Float>, inFeatures: Int,
        outFeatures: Int, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, ldy: Int,
        accumulate: Bool = false
    ) {
        guard rows > 0, outFeatures > 0 else { return }
        var beta: Float = accumulate ? 1 : 0
        if let bias {
            if accumulate {
                ck_gated_add(y, ldy, bias, 0, nil, rows, outFeatures)
            } else {
                ck_broadcast_rows(y, ldy, bias, rows, outFeatures)
            }
            beta = 1
        }
        BLAS.sgemm(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures, alpha: 1,
                   a: x, lda: ldx, b: weight, ldb: inFeatures, beta: beta, c: y, ldc: ldy)
    }

    // MARK: Norms and activations

    /// `LN(x) · (1 + scale) + shift` per row; LN has no affine parameters. `scale`/`shift` are `[dim]` or nil.
    public static func layerNormModulate(
        _ x: Tensor, scale: UnsafePointer<Float>? = nil, shift: UnsafePointer<Float>? = nil, eps: Float = 1e-6
    ) -> Tensor {
        let dim = x.shape.last ?? 0
        let rows = dim == 0 ? 0 : x.count / dim
        let y = Tensor(zeros: x.shape)
        ck_layernorm_modulate(y.data, dim, x.data, dim, rows, dim, scale, shift, eps)
        return y
    }

    /// Pointer form of `layerNormModulate` over `rows` rows (y may alias x).
    public static func layerNormModulate(
        x: UnsafePointer<Float>, ldx: Int, y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int, dim: Int,
        scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?, eps: Float = 1e-6
    ) {
        ck_layernorm_modulate(y, ldy, x, ldx, rows, dim, scale, shift, eps)
    }

    /// In-place RMSNorm of each `headDim` vector of `heads` heads per row, times `weight[headDim]`.
    public static func rmsNormHeads(
        _ x: UnsafeMutablePointer<Float>, stride: Int, rows: Int, heads: Int, headDim: Int,
        weight: UnsafePointer<Float>?, eps: Float = 1e-6
    ) {
        ck_rmsnorm_heads(x, stride, rows, heads, headDim, weight, eps)
    }

    public static func geluTanh(_ x: Tensor) { ck_gelu_tanh_inplace(x.data, x.count) }
    public static func silu(_ x: Tensor) { ck_silu_inplace(x.data, x.count) }
    public static func quickGelu(_ x: Tensor) { ck_quick_gelu_inplace(x.data, x.count) }

    /// `y[r, c] += gate[c] · x[r, c]` (gate nil ⇒ plain add).
    public static func gatedAdd(
        _ y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, ldx: Int,
        gate: UnsafePointer<Float>?, rows: Int, cols: Int
    ) {
        ck_gated_add(y, ldy, x, ldx, gate, rows, cols)
    }

    // MARK: Rotary embedding

    /// cos / sin tables `[tokens, Σaxes/2]` for FLUX's multi-axis RoPE: for token ids `[tokens, axes.count]`, axis a
    /// with dim dₐ contributes pairs with angle `id_a · theta^(−2k/dₐ)`, k < dₐ/2, axes in order. Computed in Double
    /// (as diffusers does) and rounded to Float.
    public static func ropeTables(ids: Tensor, axesDim: [Int], theta: Double = 10000) -> (cos: Tensor, sin: Tensor) {
        let tokens = ids.shape[0]
        precondition(ids.rank == 2 && ids.shape[1] == axesDim.count, "ids \(ids.shape) vs axes \(axesDim)")
        let pairs = axesDim.reduce(0, +) / 2
        let cosT = Tensor(zeros: [tokens, pairs]), sinT = Tensor(zeros: [tokens, pairs])
        var freqs: [[Double]] = []
        for d in axesDim {
            freqs.append((0..<(d / 2)).map { k in 1.0 / pow(theta, Double(2 * k) / Double(d)) })
        }
        for t in 0..<tokens {
            var p = 0
            for (a, f) in freqs.enumerated() {
                let pos = Double(ids.data[t * axesDim.count + a])
                for w in f {
                    let angle = pos * w
                    cosT.data[t * pairs + p] = Float(Foundation.cos(angle))
                    sinT.data[t * pairs + p] = Float(Foundation.sin(angle))
                    p += 1
                }
            }
        }
        return (cosT, sinT)
    }

    /// Applies RoPE in place to `heads` head vectors per row (interleaved pairs); tables are `[rows, headDim/2]`.
    public static func applyRope(
        _ x: UnsafeMutablePointer<Float>, stride: Int, rows: Int, heads: Int, headDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        ck_rope_interleaved(x, stride, rows, heads, headDim, cos, sin)
    }

    // MARK: Attention

    /// Multi-head attention `softmax(q kᵀ · scale) v` for one sequence, written to `out[queries, heads·headDim]`.
    /// q/k/v are row-major with their own row strides; head h uses columns `h·headDim ..< (h+1)·headDim`.
    /// Scores are materialised for one head and one block of queries at a time (at most `maxScoreFloats` floats),
    /// never for all heads at once.
    public static func attention(
        q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int,
        out: UnsafeMutablePointer<Float>, ldo: Int, queries: Int, keys: Int, heads: Int, headDim: Int,
        scale: Float? = nil, maxScoreFloats: Int = 4 << 20
    ) {
        guard queries > 0, keys > 0 else { return }
        let s = scale ?? 1 / Float(headDim).squareRoot()
        let block = max(1, min(queries, maxScoreFloats / keys))
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: block * keys)
        defer { scores.deallocate() }
        for h in 0..<heads {
            let off = h * headDim
            var q0 = 0
            while q0 < queries {
                let n = min(block, queries - q0)
                BLAS.sgemm(transA: false, transB: true, m: n, n: keys, k: headDim, alpha: s,
                           a: q + q0 * ldq + off, lda: ldq, b: k + off, ldb: ldk, beta: 0, c: scores, ldc: keys)
                ck_softmax_rows(scores, keys, n, keys)
                BLAS.sgemm(transA: false, transB: false, m: n, n: headDim, k: keys, alpha: 1,
                           a: scores, lda: keys, b: v + off, ldb: ldv, beta: 0, c: out + q0 * ldo + off, ldc: ldo)
                q0 += n
            }
        }
    }

    // MARK: Timestep embedding

    /// Sinusoidal embedding `[values.count, dim]`: freqs_i = exp(−ln(maxPeriod)·i/(half − shift)), output
    /// `[cos(x·f), sin(x·f)]` when `flipSinToCos` (FLUX / diffusers `Timesteps(flip_sin_to_cos=True)`), else sin first.
    /// The caller applies any time factor (FLUX multiplies sigma by 1000 first).
    public static func timestepEmbedding(
        _ values: [Float], dim: Int, maxPeriod: Float = 10000, flipSinToCos: Bool = true,
        downscaleFreqShift: Float = 0
    ) -> Tensor {
        let half = dim / 2
        let out = Tensor(zeros: [values.count, dim])
        var freqs = [Float](repeating: 0, count: half)
        for i in 0..<half {
            // diffusers computes the exponent in float32: -ln(maxPeriod) * i / (half - shift), then exp.
            let e = -Foundation.log(maxPeriod) * Float(i) / (Float(half) - downscaleFreqShift)
            freqs[i] = Foundation.exp(e)
        }
        for (r, x) in values.enumerated() {
            let row = out.data + r * dim
            for i in 0..<half {
                let a = x * freqs[i]
                let (c, s) = (Foundation.cos(a), Foundation.sin(a))
                if flipSinToCos { row[i] = c; row[half + i] = s } else { row[i] = s; row[half + i] = c }
            }
        }
        return out
    }
}
