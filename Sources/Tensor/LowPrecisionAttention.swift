import CKernels

extension TransformerOps {
    /// Multi-head attention `softmax(q kᵀ · scale) v` as `attention(...)` computes it (same layout and strides), with
    /// both products in bf16 (`vdpbf16ps` where the CPU has it; float32 accumulation) and the softmax in float32.
    /// q, k and v are rounded to bf16 per head, the probabilities to bf16 before the product with v. Heads are
    /// split across `workers`; each thread holds one head's bf16 keys and transposed values plus one block of
    /// `queryBlock` queries' scores.
    public static func attentionBF16(
        q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int,
        out: UnsafeMutablePointer<Float>, ldo: Int, queries: Int, keys: Int, heads: Int, headDim: Int,
        scale: Float? = nil, workers: ParallelWorkers? = nil, isa: KernelISA = .active, queryBlock: Int = 256
    ) {
        guard queries > 0, keys > 0, heads > 0, headDim > 0 else { return }
        let s = scale ?? 1 / Float(headDim).squareRoot()
        let ldd = ck_lp_bf16_ld(headDim), ldp = ck_lp_bf16_ld(keys)
        let block = max(1, min(queries, queryBlock))
        let threads = min(workers?.count ?? 1, heads)
        let ck = isa.ck
        func work(_ t: Int) {
            guard t < threads else { return }
            let kb = UnsafeMutablePointer<UInt16>.allocate(capacity: keys * ldd)
            let vt = UnsafeMutablePointer<UInt16>.allocate(capacity: headDim * ldp)
            let qb = UnsafeMutablePointer<UInt16>.allocate(capacity: block * ldd)
            let pb = UnsafeMutablePointer<UInt16>.allocate(capacity: block * ldp)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: block * keys)
            defer {
                kb.deallocate(); vt.deallocate(); qb.deallocate(); pb.deallocate(); scores.deallocate()
            }
            for h in stride(from: t, to: heads, by: threads) {
                let off = h * headDim
                ck_lp_prepare_bf16(kb, ldd, k + off, ldk, keys, headDim)
                ck_lp_prepare_bf16_transposed(vt, ldp, v + off, ldv, keys, headDim)
                var q0 = 0
                while q0 < queries {
                    let n = min(block, queries - q0)
                    ck_lp_prepare_bf16(qb, ldd, q + q0 * ldq + off, ldq, n, headDim)
                    ck_lp_attention_bf16(qb, ldd, n, kb, ldd, keys, vt, ldp, headDim, s, scores, pb,
                                         out + q0 * ldo + off, ldo, ck)
                    q0 += n
                }
            }
        }
        if let workers, threads > 1 { workers.run(work) } else { work(0) }
    }
}
