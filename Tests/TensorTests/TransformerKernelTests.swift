import CKernels
import Foundation
import Tensor
import Testing
import DreamsrTestKit

/// Dispatched transformer kernels (every ISA this CPU has) against their scalar references, and the Swift ops
/// against direct formulas.
@Suite(.serialized, .timeLimit(.minutes(10)))
final class TransformerKernelTests {
    var rng = SeededGenerator(seed: 42)

    deinit {
        KernelISA.force(KernelISA.detected)
    }

    func random(_ n: Int, scale: Float = 3) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 * scale - scale } }

    func isas() -> [KernelISA] { [KernelISA.scalar, .avx2, .avx512].filter { $0.rawValue <= KernelISA.detected.rawValue } }

    func assertClose(_ a: [Float], _ b: [Float], rel: Float, _ msg: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.count == b.count, sourceLocation: sourceLocation)
        var worst: Float = 0
        for (x, y) in zip(a, b) { worst = max(worst, abs(x - y) / max(1, abs(y))) }
        #expect(worst <= rel, Comment(rawValue: msg), sourceLocation: sourceLocation)
    }

    @Test func activationsMatchScalar() throws {
        for isa in isas() {
            KernelISA.force(isa)
            for n in [1, 7, 16, 37, 1000] {
                let x = random(n, scale: 12) + [0, -0.0, 100, -100, 1e-30][..<min(5, n)]
                var ref = x, got = x
                ck_gelu_tanh_inplace_scalar(&ref, ref.count); ck_gelu_tanh_inplace(&got, got.count)
                assertClose(got, ref, rel: 2e-6, "gelu \(isa) n=\(n)")
                ref = x; got = x
                ck_silu_inplace_scalar(&ref, ref.count); ck_silu_inplace(&got, got.count)
                assertClose(got, ref, rel: 2e-6, "silu \(isa) n=\(n)")
                ref = x; got = x
                ck_quick_gelu_inplace_scalar(&ref, ref.count); ck_quick_gelu_inplace(&got, got.count)
                assertClose(got, ref, rel: 2e-6, "quick gelu \(isa) n=\(n)")
            }
        }
        // the reference itself against the formula
        var v: [Float] = [-3, -0.5, 0, 0.7, 2.5]
        ck_gelu_tanh_inplace_scalar(&v, v.count)
        for (i, x) in [Float(-3), -0.5, 0, 0.7, 2.5].enumerated() {
            let r = 0.5 * Double(x) * (1 + tanh(0.7978845608028654 * (Double(x) + 0.044715 * pow(Double(x), 3))))
            #expect(abs(Double(v[i]) - (r)) <= 1e-6)
        }
    }

    @Test func softmaxMatchesScalar() throws {
        for isa in isas() {
            KernelISA.force(isa)
            for cols in [1, 5, 16, 33, 300] {
                let rows = 3, stride = cols + 3
                let x = random(rows * stride, scale: 20)
                var ref = x, got = x
                ck_softmax_rows_scalar(&ref, stride, rows, cols)
                ck_softmax_rows(&got, stride, rows, cols)
                assertClose(got, ref, rel: 1e-6, "softmax \(isa) cols=\(cols)")
                for r in 0..<rows {
                    #expect(abs(got[(r * stride)..<(r * stride + cols)].reduce(0, +) - (1)) <= 1e-5)
                    #expect((Array(got[(r * stride + cols)..<(r * stride + stride)])) == (Array(x[(r * stride + cols)..<(r * stride + stride)])), "padding columns untouched")
                }
            }
        }
    }

    @Test func layerNormModulateAndGatedAddMatchScalar() throws {
        for isa in isas() {
            KernelISA.force(isa)
            for dim in [8, 19, 64, 3072] {
                let rows = 4
                let x = random(rows * dim).map { $0 + 5 }, scale = random(dim, scale: 0.5), shift = random(dim)
                var ref = [Float](repeating: 0, count: rows * dim), got = ref
                ck_layernorm_modulate_scalar(&ref, dim, x, dim, rows, dim, scale, shift, 1e-6)
                ck_layernorm_modulate(&got, dim, x, dim, rows, dim, scale, shift, 1e-6)
                assertClose(got, ref, rel: 2e-5, "layernorm \(isa) dim=\(dim)")
                ck_layernorm_modulate(&got, dim, x, dim, rows, dim, nil, nil, 1e-6)
                let m = x[0..<dim].reduce(0, +) / Float(dim)
                let v = x[0..<dim].map { ($0 - m) * ($0 - m) }.reduce(0, +) / Float(dim)
                #expect(abs(got[1] - ((x[1] - m) / (v + 1e-6).squareRoot())) <= 1e-4)

                let y = random(rows * dim), gate = random(dim)
                var yr = y, yg = y
                ck_gated_add_scalar(&yr, dim, x, dim, gate, rows, dim)
                ck_gated_add(&yg, dim, x, dim, gate, rows, dim)
                assertClose(yg, yr, rel: 1e-6, "gated add \(isa) dim=\(dim)")
            }
        }
    }

    @Test func rMSNormHeadsAndRope() throws {
        let rows = 3, heads = 2, hd = 8, stride = 20
        var x = random(rows * stride)
        let orig = x
        let w = random(hd)
        ck_rmsnorm_heads(&x, stride, rows, heads, hd, w, 1e-6)
        for r in 0..<rows { for h in 0..<heads {
            let v = orig[(r * stride + h * hd)..<(r * stride + h * hd + hd)]
            let rms = (v.map { $0 * $0 }.reduce(0, +) / Float(hd) + 1e-6).squareRoot()
            for d in 0..<hd { #expect(abs(x[r * stride + h * hd + d] - (orig[r * stride + h * hd + d] / rms * w[d])) <= 1e-5) }
        } }
        #expect((x[16..<20]) == (orig[16..<20]), "columns past the heads untouched")

        // RoPE tables: ids (0, 2, 3) with axes (2, 2, 4), theta 10000.
        let ids = Tensor(shape: [2, 3], values: [0, 2, 3, 1, 0, 5])
        let (c, s) = TransformerOps.ropeTables(ids: ids, axesDim: [2, 2, 4])
        #expect(c.shape == [2, 4])
        let (cv, sv) = (c.toArray(), s.toArray())
        let angles0: [Double] = [0, 2, 3, 3 * pow(10000, -0.5)]
        for p in 0..<4 {
            #expect(abs(Double(cv[p]) - (cos(angles0[p]))) <= 1e-6)
            #expect(abs(Double(sv[p]) - (sin(angles0[p]))) <= 1e-6)
        }
        var q = random(2 * 8)
        let q0 = q
        TransformerOps.applyRope(&q, stride: 8, rows: 2, heads: 1, headDim: 8, cos: cv, sin: sv)
        for r in 0..<2 { for p in 0..<4 {
            let (a, b) = (q0[r * 8 + 2 * p], q0[r * 8 + 2 * p + 1])
            let (cc, ss) = (cv[r * 4 + p], sv[r * 4 + p])
            #expect(abs(q[r * 8 + 2 * p] - (a * cc - b * ss)) <= 1e-6)
            #expect(abs(q[r * 8 + 2 * p + 1] - (a * ss + b * cc)) <= 1e-6)
        } }
    }

    /// Blocked attention (small score budget forces several query blocks) against a direct computation.
    @Test func attentionMatchesNaive() throws {
        let lq = 13, heads = 3, hd = 4, d = heads * hd, ld = 3 * d + 2
        let qkv = Tensor(shape: [lq, ld], values: random(lq * ld, scale: 1.5))
        let out = Tensor(zeros: [lq, d + 1])
        qkv.withUnsafePointer { q in
            out.withUnsafeMutablePointer { o in
                TransformerOps.attention(q: q, ldq: ld, k: q + d, ldk: ld, v: q + 2 * d, ldv: ld,
                                         out: o, ldo: d + 1, queries: lq, keys: lq, heads: heads, headDim: hd,
                                         maxScoreFloats: 4 * lq)
            }
        }
        let (qv, ov) = (qkv.toArray(), out.toArray())
        for h in 0..<heads { for i in 0..<lq {
            var sc = [Double](repeating: 0, count: lq)
            for j in 0..<lq {
                var dot = 0.0
                for e in 0..<hd { dot += Double(qv[i * ld + h * hd + e]) * Double(qv[j * ld + d + h * hd + e]) }
                sc[j] = dot / Double(hd).squareRoot()
            }
            let m = sc.max()!
            let ex = sc.map { exp($0 - m) }
            let z = ex.reduce(0, +)
            for e in 0..<hd {
                var o = 0.0
                for j in 0..<lq { o += ex[j] / z * Double(qv[j * ld + 2 * d + h * hd + e]) }
                #expect(abs(Double(ov[i * (d + 1) + h * hd + e]) - (o)) <= 1e-5)
            }
        } }
        #expect(((0..<lq).map { ov[$0 * (d + 1) + d] }) == [Float](repeating: 0, count: lq), "stride padding untouched")
    }

    @Test func linearWithBiasAndTimestepEmbedding() throws {
        let x = Tensor(shape: [2, 3], values: [1, 2, 3, -1, 0, 1])
        let w = Tensor(shape: [2, 3], values: [1, 0, 1, 0.5, 0.5, 0.5])
        let b = Tensor(shape: [2], values: [10, -1])
        #expect(TransformerOps.linear(x, weight: w, bias: b).toArray() == [14, 2, 10, -1])

        let e = TransformerOps.timestepEmbedding([500], dim: 8)
        for i in 0..<4 {
            let f = exp(-log(10000.0) * Double(i) / 4)
            #expect(abs(Double(e[flat: i]) - (cos(500 * f))) <= 2e-4)
            #expect(abs(Double(e[flat: 4 + i]) - (sin(500 * f))) <= 2e-4)
        }
    }
}

