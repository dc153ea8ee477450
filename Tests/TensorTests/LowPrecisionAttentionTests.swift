import CKernels
import Foundation
import Testing
import Tensor
import DreamsrTestKit

/// bf16 attention against the float32 attention on bf16-exact inputs. The one rounding left is the probabilities'
/// (to bf16, relative 2⁻⁹), so |out - out_f32| <= 2⁻⁹ · Σ p |v| <= 2⁻⁹ · max|v|; asserted as 2.2e-3 · max|v|
/// (the bound plus float32 summation), per output and per kernel variant.
@Suite(.timeLimit(.minutes(1)))
struct LowPrecisionAttentionTests {
    @Test func bf16AttentionMatchesFloat32WithinProbabilityRounding() {
        var rng = SeededGenerator(seed: 21)
        let heads = 3, headDim = 40, queries = 37, keys = 53, ld = heads * headDim + 5
        func input(_ rows: Int, _ scale: Float) -> [Float] {
            (0..<(rows * ld)).map { _ in
                Float(bitPattern: UInt32(ck_f32_to_bf16_rne((rng.nextFloat() * 2 - 1) * scale)) << 16)
            }
        }
        let q = input(queries, 2), k = input(keys, 2), v = input(keys, 3)
        let vmax = v.map(abs).max()!
        var ref = [Float](repeating: 0, count: queries * ld)
        TransformerOps.attention(q: q, ldq: ld, k: k, ldk: ld, v: v, ldv: ld, out: &ref, ldo: ld, queries: queries,
                                 keys: keys, heads: heads, headDim: headDim)
        let workers = ParallelWorkers(count: 2)
        defer { workers.shutdown() }
        let isas = [KernelISA.scalar, .avx2, .avx512].filter { $0.rawValue <= KernelISA.detected.rawValue }
        // the softmax is the dispatched float32 kernel: keep the ISA fixed while comparing bits
        KernelISATestLock.withLock {
            for isa in isas {
                var got = [Float](repeating: -7, count: queries * ld)
                TransformerOps.attentionBF16(q: q, ldq: ld, k: k, ldk: ld, v: v, ldv: ld, out: &got, ldo: ld,
                                             queries: queries, keys: keys, heads: heads, headDim: headDim,
                                             workers: workers, isa: isa, queryBlock: 16)
                var worst: Float = 0
                for r in 0..<queries {
                    for c in 0..<(heads * headDim) { worst = max(worst, abs(got[r * ld + c] - ref[r * ld + c])) }
                    #expect(got[(r * ld + heads * headDim)..<((r + 1) * ld)].allSatisfy { $0 == -7 }, "stride gap untouched")
                }
                #expect(worst <= 2.2e-3 * vmax, "\(isa): \(worst) vs max|v| \(vmax)")
                #expect(worst > 0, "the probabilities' rounding shows (else the comparison tests nothing)")
                // one thread: the same bits (heads are independent)
                var single = [Float](repeating: -7, count: queries * ld)
                TransformerOps.attentionBF16(q: q, ldq: ld, k: k, ldk: ld, v: v, ldv: ld, out: &single, ldo: ld,
                                             queries: queries, keys: keys, heads: heads, headDim: headDim, isa: isa,
                                             queryBlock: 16)
                #expect(single == got, "\(isa)")
            }
        }
    }
}
