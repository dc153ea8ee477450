import CKernels
import Foundation
import Testing
import Tensor
import DreamsrTestKit

/// Low-precision GEMM kernels (bf16, Q8_0, generic dequantize-per-panel): every SIMD variant this CPU has against
/// the scalar reference, and the kernels against float32 GEMM on the same values.
///
/// Bounds are relative to the magnitude of the sum, S = Σ_k |x_k w_k| (for Q8_0: Σ_blocks |dx dw| Σ_i |qx qw|; the
/// SIMD variants scale partial sums of 4 to 16 products, which can exceed a block's total), since float32 summation
/// order is the only difference between variants: error <= 1e-6 · S (measured ~5e-8 for bf16, <= 1e-7 for Q8_0 at
/// these sizes).
@Suite(.timeLimit(.minutes(2)))
struct LowPrecisionGemmTests {
    /// Ragged M and N (not multiples of the 4x4 / 12x32 tiles or the 16-row thread split), K not a multiple of
    /// 64 / 32, odd K; M below 16 runs the dot-product form, M from 16 the broadcast form (bf16 / Q8_0 on AVX-512).
    static let shapes: [(m: Int, n: Int, k: Int)] = [(1, 1, 1), (5, 7, 33), (4, 16, 64), (13, 21, 100), (9, 37, 250),
                                                     (3, 5, 1000), (16, 1, 3), (17, 45, 77), (40, 33, 301),
                                                     (25, 70, 1000)]
    static let q8Shapes: [(m: Int, n: Int, k: Int)] = [(1, 1, 32), (5, 7, 96), (4, 16, 64), (13, 21, 160),
                                                       (9, 37, 480), (6, 9, 1024), (16, 1, 32), (17, 45, 96),
                                                       (30, 33, 320), (25, 70, 1024)]

    func isas() -> [KernelISA] { [KernelISA.scalar, .avx2, .avx512].filter { $0.rawValue <= KernelISA.detected.rawValue } }

    func ck(_ isa: KernelISA) -> ck_isa { ck_isa(rawValue: UInt32(isa.rawValue)) }

    func random(_ n: Int, _ rng: inout SeededGenerator, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in (rng.nextFloat() * 2 - 1) * scale }
    }

    func bf16(_ v: Float) -> Float { Float(bitPattern: UInt32(ck_f32_to_bf16_rne(v)) << 16) }

    func half(_ bits: UInt16) -> Float {
        var h = bits, f: Float = 0
        ck_f16_to_f32_scalar(&f, &h, 1)
        return f
    }

    // MARK: bf16

    @Test func bf16RoundingIsNearestEven() {
        #expect(ck_f32_to_bf16_rne(1.0) == 0x3F80)
        #expect(ck_f32_to_bf16_rne(Float(bitPattern: 0x3F80_8000)) == 0x3F80) // tie, even stays
        #expect(ck_f32_to_bf16_rne(Float(bitPattern: 0x3F81_8000)) == 0x3F82) // tie, odd rounds up
        #expect(ck_f32_to_bf16_rne(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(ck_f32_to_bf16_rne(-.infinity) == 0xFF80)
        #expect(bf16(.nan).isNaN)
        #expect(ck_f32_to_bf16_rne(Float(bitPattern: 0x7F7F_FFFF)) == 0x7F80) // max float rounds to inf
    }

    /// The dispatched activation preparations (AVX-512 here) give the scalar references' bits, on random bit
    /// patterns (NaN payloads, infinities, subnormals), rounding ties and non-finite or all-zero Q8_0 blocks.
    @Test func preparationsMatchScalarBitForBit() {
        var rng = SeededGenerator(seed: 17)
        let rows = 7, k = 1000, ld = ck_lp_bf16_ld(k)
        var x = (0..<(rows * k)).map { i -> Float in
            i % 3 == 0 ? Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) : Float(Int(rng.next() % 2001) - 1000) / 8
        }
        x[5] = .nan; x[40] = .infinity; x[77] = -.infinity; x[100] = 1e-40; x[101] = -0.0
        var a = [UInt16](repeating: 0xAAAA, count: rows * ld), b = [UInt16](repeating: 0x5555, count: rows * ld)
        ck_lp_prepare_bf16_scalar(&a, ld, x, k, rows, k)
        ck_lp_prepare_bf16(&b, ld, x, k, rows, k)
        #expect(a == b)

        let k2 = 1024, nb = k2 / 32
        var y = (0..<(rows * k2)).map { i in Float(Int(rng.next() % 1001) - 500) / 4 * ((i / 32) % 3 == 0 ? 1 : 0.37) }
        for i in stride(from: 0, to: y.count, by: 32) { y[i + 3] = 127 } // d = 1: the k/4 values hit .5 ties
        y[64 + 7] = .nan; y[160 + 2] = .infinity
        for i in 320..<352 { y[i] = 0 }
        var qa = [Int8](repeating: 1, count: rows * k2), qb = [Int8](repeating: 2, count: rows * k2)
        var da = [Float](repeating: 1, count: rows * nb), db = [Float](repeating: 2, count: rows * nb)
        ck_lp_prepare_q8_0_scalar(&qa, &da, y, k2, rows, k2)
        ck_lp_prepare_q8_0(&qb, &db, y, k2, rows, k2)
        #expect(qa == qb)
        #expect(zip(da, db).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) })
        #expect(da[2].isNaN && qa[64..<96].allSatisfy { $0 == 0 }, "a NaN block: NaN scale, zero quanta")
        #expect(da[10] == 0 && qa[320..<352].allSatisfy { $0 == 0 })
        #expect(qa[0 * 32 + 3] == 127 && da[0] == 1 && Float(qa[1]) == (y[1]).rounded(), "ties round away from zero")
    }

    @Test func bf16VariantsMatchScalar() {
        var rng = SeededGenerator(seed: 7)
        for (m, n, k) in Self.shapes {
            let x = random(m * k, &rng, scale: 2), bias = random(n, &rng)
            let w = random(n * k, &rng).map { ck_f32_to_bf16_rne($0) }
            let ld = ck_lp_bf16_ld(k)
            var xb = [UInt16](repeating: 0xFFFF, count: m * ld)
            ck_lp_prepare_bf16(&xb, ld, x, k, m, k)
            #expect(xb[0] == ck_f32_to_bf16_rne(x[0]))
            #expect((0..<m).allSatisfy { r in xb[(r * ld + k)..<(r * ld + ld)].allSatisfy { $0 == 0 } }, "padding is zero")
            var ref = [Float](repeating: 0, count: m * n)
            ck_lp_gemm_bf16(xb, ld, m, k, w, k * 2, 0, n, bias, &ref, n, CK_ISA_SCALAR)
            // the reference against a float64 sum of the same bf16 values
            var scale = [Double](repeating: 0, count: m * n)
            for i in 0..<m {
                for j in 0..<n {
                    var exact = Double(bias[j]), s = 0.0
                    for t in 0..<k {
                        let p = Double(bf16(x[i * k + t])) * Double(Float(bitPattern: UInt32(w[j * k + t]) << 16))
                        exact += p
                        s += abs(p)
                    }
                    scale[i * n + j] = s + abs(Double(bias[j]))
                    #expect(abs(Double(ref[i * n + j]) - exact) <= 1e-6 * scale[i * n + j], "scalar vs float64 \(m)x\(n)x\(k)")
                }
            }
            for isa in isas() where isa != .scalar {
                var got = [Float](repeating: .nan, count: m * n)
                // two column ranges, split off the 4-row grid: each writes only its own columns
                let cut = n / 2 + (n > 2 ? 1 : 0)
                ck_lp_gemm_bf16(xb, ld, m, k, w, k * 2, 0, cut, bias, &got, n, ck(isa))
                ck_lp_gemm_bf16(xb, ld, m, k, w, k * 2, cut, n, bias, &got, n, ck(isa))
                let worst = zip(zip(got, ref), scale).map { Double(abs($0.0 - $0.1)) / max($1, 1e-30) }.max() ?? 0
                #expect(worst <= 1e-6, "bf16 \(String(cString: ck_lp_bf16_variant(ck(isa)))) \(m)x\(n)x\(k): \(worst)")
            }
        }
    }

    /// bf16 weights and bf16-exact activations through `linear` against OpenBLAS float32 sgemm on the same values.
    @Test func bf16LinearMatchesFloat32Gemm() throws {
        var rng = SeededGenerator(seed: 11)
        let m = 37, n = 45, k = 200
        let x = Tensor(shape: [m, k], values: random(m * k, &rng, scale: 3).map(bf16))
        let wf = Tensor(shape: [n, k], values: random(n * k, &rng).map(bf16))
        let bias = Tensor(shape: [n], values: random(n, &rng))
        let w = try WeightMatrix.encoded(wf, as: .bf16, name: "proj")
        let ref = TransformerOps.linear(x, weight: wf, bias: bias)
        let workers = ParallelWorkers(count: 3)
        defer { workers.shutdown() }
        for isa in isas() {
            let got = TransformerOps.linear(x, w, bias: bias, workers: workers, isa: isa)
            #expect(got.shape == [m, n])
            let (xv, wv, bv, gv, rv) = (x.toArray(), wf.toArray(), bias.toArray(), got.toArray(), ref.toArray())
            for i in 0..<m {
                for j in 0..<n {
                    var s = abs(bv[j])
                    for t in 0..<k { s += abs(xv[i * k + t] * wv[j * k + t]) }
                    #expect(abs(gv[i * n + j] - rv[i * n + j]) <= 2e-6 * s, "\(isa) [\(i), \(j)]")
                }
            }
            // threads do not change a single bit (each column's sum runs the same way in any split)
            let single = TransformerOps.linear(x, w, bias: bias, isa: isa)
            #expect(single.toArray() == got.toArray())
        }
    }

    // MARK: Q8_0

    /// Random Q8_0 rows including the edge values: q = -128 and 127, scale 0, the largest half and a subnormal half.
    func q8Weights(rows: Int, k: Int, _ rng: inout SeededGenerator) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: rows * k / 32 * 34)
        let edgeScales: [UInt16] = [0x0000, 0x7BFF, 0x0001, 0x3C00]
        for blk in 0..<(rows * k / 32) {
            let d: UInt16 = blk < edgeScales.count ? edgeScales[blk] : UInt16(0x1C00 + rng.next() % 0x1000)
            bytes[blk * 34] = UInt8(d & 0xFF)
            bytes[blk * 34 + 1] = UInt8(d >> 8)
            for i in 0..<32 { bytes[blk * 34 + 2 + i] = UInt8(truncatingIfNeeded: rng.next()) }
            bytes[blk * 34 + 2] = 0x80 // -128
            bytes[blk * 34 + 3] = 0x7F
        }
        return bytes
    }

    @Test func q8_0VariantsMatchScalar() {
        var rng = SeededGenerator(seed: 3)
        for (m, n, k) in Self.q8Shapes {
            let nb = k / 32
            var x = random(m * k, &rng, scale: 4)
            x[0] = 0; for i in 0..<min(32, x.count) { x[i] = 0 } // an all-zero activation block (scale 0)
            let bias = random(n, &rng), w = q8Weights(rows: n, k: k, &rng)
            var xq = [Int8](repeating: 0, count: m * k), xd = [Float](repeating: 0, count: m * nb)
            ck_lp_prepare_q8_0(&xq, &xd, x, k, m, k)
            #expect(xd[0] == 0 && xq[0..<32].allSatisfy { $0 == 0 })
            // the preparation is ggml's: d = amax / 127, q = round(x / d), |q| <= 127
            for r in 0..<m {
                for b in 0..<nb where xd[r * nb + b] != 0 {
                    let d = xd[r * nb + b]
                    let amax = (0..<32).map { abs(x[r * k + b * 32 + $0]) }.max()!
                    #expect(d == amax / 127)
                    for i in 0..<32 {
                        #expect(Float(xq[r * k + b * 32 + i]) == (x[r * k + b * 32 + i] * (1 / d)).rounded())
                    }
                }
            }
            var ref = [Float](repeating: 0, count: m * n)
            ck_lp_gemm_q8_0(xq, xd, m, k, w, nb * 34, 0, n, bias, &ref, n, CK_ISA_SCALAR)
            var scale = [Double](repeating: 0, count: m * n)
            for i in 0..<m {
                for j in 0..<n {
                    var exact = Double(bias[j]), s = abs(Double(bias[j]))
                    for b in 0..<nb {
                        let o = (j * nb + b) * 34
                        let dw = half(UInt16(w[o]) | UInt16(w[o + 1]) << 8)
                        var isum = 0, iabs = 0
                        for t in 0..<32 {
                            let p = Int(xq[i * k + b * 32 + t]) * Int(Int8(bitPattern: w[o + 2 + t]))
                            isum += p
                            iabs += abs(p)
                        }
                        let scale = Double(xd[i * nb + b] * dw)
                        exact += scale * Double(isum)
                        s += abs(scale) * Double(iabs)
                    }
                    scale[i * n + j] = s
                    #expect(abs(Double(ref[i * n + j]) - exact) <= 1e-6 * max(s, 1e-30), "scalar q8_0 vs float64")
                }
            }
            for isa in isas() where isa != .scalar {
                var got = [Float](repeating: .nan, count: m * n)
                let cut = n / 2 + (n > 2 ? 1 : 0)
                ck_lp_gemm_q8_0(xq, xd, m, k, w, nb * 34, 0, cut, bias, &got, n, ck(isa))
                ck_lp_gemm_q8_0(xq, xd, m, k, w, nb * 34, cut, n, bias, &got, n, ck(isa))
                let worst = zip(zip(got, ref), scale).map { Double(abs($0.0 - $0.1)) / max($1, 1e-30) }.max() ?? 0
                #expect(worst <= 1e-6, "q8_0 \(String(cString: ck_lp_q8_0_variant(ck(isa)))) \(m)x\(n)x\(k): \(worst)")
            }
        }
    }

    /// Q8_0 `linear` against float32 GEMM on the dequantized weights. The only approximation is the activation
    /// quantization: |x - dx·q| <= dx/2 per value, so |y - y_f32| <= Σ_blocks (dx/2) Σ_i |w_i| (plus float32
    /// rounding, 1e-5 · Σ|x w|); the test asserts that bound per output, and that it is not vacuous (the error is
    /// nonzero and within 0.5 % of the output scale).
    @Test func q8_0LinearMatchesDequantizedGemmWithinActivationQuantization() throws {
        var rng = SeededGenerator(seed: 5)
        let m = 11, n = 19, k = 256, nb = k / 32
        let x = Tensor(shape: [m, k], values: random(m * k, &rng, scale: 2))
        let wf0 = Tensor(shape: [n, k], values: random(n * k, &rng, scale: 0.1))
        let w = try WeightMatrix.encoded(wf0, as: .q8_0)
        // dequantize the encoded blocks (value = d * q)
        let bytes = w.withBytes { Array($0) }
        var wv = [Float](repeating: 0, count: n * k)
        for j in 0..<n {
            for b in 0..<nb {
                let o = (j * nb + b) * 34
                let d = half(UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8)
                for t in 0..<32 { wv[j * k + b * 32 + t] = d * Float(Int8(bitPattern: bytes[o + 2 + t])) }
            }
        }
        let wf = Tensor(shape: [n, k], values: wv)
        let xv = x.toArray()
        // half a step, plus the half rounding of d (127 * 2^-11 of a step)
        #expect(wf.maxAbsDifference(wf0) <= wf0.maxAbs() / 127 * 0.57, "weight quantization error")
        let ref = TransformerOps.linear(x, weight: wf, bias: nil)
        var sawError = false
        for isa in isas() {
            let got = TransformerOps.linear(x, w, bias: nil, isa: isa)
            let (gv, rv) = (got.toArray(), ref.toArray())
            for i in 0..<m {
                for j in 0..<n {
                    var bound: Float = 0, s: Float = 0
                    for b in 0..<nb {
                        let xs = (0..<32).map { abs(xv[i * k + b * 32 + $0]) }.max()! / 127
                        var wsum: Float = 0
                        for t in 0..<32 {
                            wsum += abs(wv[j * k + b * 32 + t])
                            s += abs(xv[i * k + b * 32 + t] * wv[j * k + b * 32 + t])
                        }
                        bound += xs / 2 * wsum
                    }
                    let err = abs(gv[i * n + j] - rv[i * n + j])
                    #expect(err <= bound * 1.001 + 1e-5 * s, "\(isa) [\(i), \(j)] err \(err) bound \(bound)")
                    if err > 0 { sawError = true }
                }
            }
        }
        #expect(sawError, "activation quantization must show (else the comparison tests nothing)")
    }

    // MARK: Generic path

    /// Test format: one signed byte per value, value = byte / 64 (exact in bf16).
    static let byteDequantizer = RowDequantizer(name: "test-i8/64", blockElements: 1, blockBytes: 1) { src, dst, n in
        let s = src!.assumingMemoryBound(to: Int8.self)
        for i in 0..<Int(n) { dst![i] = Float(s[i]) / 64 }
    }

    @Test func genericPathMatchesBf16AndFloat32() throws {
        var rng = SeededGenerator(seed: 9)
        let m = 10, n = 150, k = 70 // 150 rows: three 64-row panels, the last one partial
        let raw = (0..<(n * k)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let values = Tensor(shape: [n, k], values: raw.map { Float(Int8(bitPattern: $0)) / 64 })
        let x = Tensor(shape: [m, k], values: random(m * k, &rng))
        let bias = Tensor(shape: [n], values: random(n, &rng))
        let owner = RawBytes(raw)
        let w = try WeightMatrix(name: "generic", format: .dequantized(Self.byteDequantizer), rows: n, cols: k,
                                 bytes: owner.bytes, owner: owner)
        let asBf16 = try WeightMatrix.encoded(values, as: .bf16)
        let workers = ParallelWorkers(count: 2)
        defer { workers.shutdown() }
        for isa in isas() {
            // the panel is the same bf16 matrix, so the result is the bf16 kernel's, bit for bit
            let got = TransformerOps.linear(x, w, bias: bias, workers: workers, isa: isa)
            let viaBf16 = TransformerOps.linear(x, asBf16, bias: bias, isa: isa)
            #expect(got.toArray() == viaBf16.toArray(), "\(isa)")
        }
        let f32 = TransformerOps.linear(x, w, bias: bias, panelPrecision: .float32)
        let ref = TransformerOps.linear(x, weight: values, bias: bias)
        #expect(f32.maxAbsDifference(ref) <= 1e-5 * max(1, ref.maxAbs()))
        #expect(f32.maxAbsDifference(ref) < TransformerOps.linear(x, w, bias: bias).maxAbsDifference(ref),
                "float32 panels skip the activation rounding")
    }

    /// Rows `rowStride` apart with NaN bytes between them: the kernels read only the rows' own bytes (masked tails),
    /// so the result is the packed matrix's, bit for bit, in both loop forms (M = 5 and M = 20) and every variant.
    @Test func paddedRowsAreNeverRead() throws {
        var rng = SeededGenerator(seed: 23)
        let n = 19, k = 96
        let wf = Tensor(shape: [n, k], values: random(n * k, &rng))
        for format in [WeightMatrix.Format.bf16, .q8_0] {
            let packed = try WeightMatrix.encoded(wf, as: format)
            let rowBytes = packed.withBytes { $0.count } / n
            let stride = rowBytes + 6
            var bytes = [UInt8](repeating: 0xFF, count: n * stride) // 0xFFFF: a NaN in bf16 and in half
            packed.withBytes { src in
                for r in 0..<n { for i in 0..<rowBytes { bytes[r * stride + i] = src[r * rowBytes + i] } }
            }
            let owner = RawBytes(bytes)
            let strided = try WeightMatrix(name: "strided", format: format, rows: n, cols: k, bytes: owner.bytes,
                                           owner: owner, rowStride: stride)
            for m in [5, 20] {
                let x = Tensor(shape: [m, k], values: random(m * k, &rng))
                for isa in isas() {
                    let a = TransformerOps.linear(x, packed, bias: nil, isa: isa)
                    let b = TransformerOps.linear(x, strided, bias: nil, isa: isa)
                    #expect(a.toArray() == b.toArray(), "\(format) \(isa) m=\(m)")
                    #expect(b.toArray().allSatisfy { $0.isFinite })
                }
            }
        }
    }

    // MARK: Validation

    @Test func badWeightDescriptionsThrowNamingTheWeight() throws {
        let owner = RawBytes([UInt8](repeating: 0, count: 34 * 4))
        do {
            let b = owner.bytes
            #expect(throws: WeightMatrixError.self) {
                try WeightMatrix(name: "blk.0.q", format: .q8_0, rows: 2, cols: 48, bytes: b, owner: owner)
            }
            #expect(throws: WeightMatrixError(description: "blk.0.q: q8_0 [5, 32] needs 170 bytes, have 136")) {
                try WeightMatrix(name: "blk.0.q", format: .q8_0, rows: 5, cols: 32, bytes: b, owner: owner)
            }
            #expect(throws: WeightMatrixError.self) {
                try WeightMatrix(name: "w", format: .bf16, rows: 2, cols: 30, bytes: b, owner: owner, rowStride: 40)
            }
            #expect(throws: WeightMatrixError.self) {
                try WeightMatrix(name: "w", format: .bf16, rows: 2, cols: 8, bytes: UnsafeRawBufferPointer(rebasing: b[1...]),
                                 owner: owner)
            }
            #expect(throws: WeightMatrixError.self) {
                try WeightMatrix(name: "w", format: .bf16, rows: Int.max / 2, cols: 8, bytes: b, owner: owner)
            }
            let ok = try WeightMatrix(name: "w", format: .q8_0, rows: 4, cols: 32, bytes: b, owner: owner)
            #expect(ok.rowStride == 34)
        }
        #expect(throws: WeightMatrixError.self) { try WeightMatrix.encoded(Tensor(zeros: [2, 33]), as: .q8_0) }
        let nanRow = Tensor(zeros: [2, 64])
        nanRow[flat: 70] = .nan
        #expect(throws: WeightMatrixError(description: "w: row 1, block 0: non-finite value for q8_0")) {
            try WeightMatrix.encoded(nanRow, as: .q8_0, name: "w")
        }
        nanRow[flat: 70] = 1e10 // scale 7.9e7 > 65504
        #expect(throws: WeightMatrixError.self) { try WeightMatrix.encoded(nanRow, as: .q8_0, name: "w") }
    }

    /// A NaN or inf activation makes its own output row non-finite (as float32 does), never a crash, and leaves the
    /// other rows as they were.
    @Test func nonFiniteActivationsStayInTheirRow() throws {
        var rng = SeededGenerator(seed: 13)
        let m = 6, n = 10, k = 96
        let wf = Tensor(shape: [n, k], values: random(n * k, &rng))
        let clean = Tensor(shape: [m, k], values: random(m * k, &rng))
        let dirty = clean.copy()
        dirty[flat: 1 * k + 40] = .nan
        dirty[flat: 4 * k + 3] = -.infinity
        for format in [WeightMatrix.Format.bf16, .q8_0] {
            let w = try WeightMatrix.encoded(wf, as: format)
            for isa in isas() {
                let a = TransformerOps.linear(clean, w, bias: nil, isa: isa)
                let b = TransformerOps.linear(dirty, w, bias: nil, isa: isa)
                for r in 0..<m {
                    let rowA = a.view(offset: r * n, shape: [n]).toArray(), rowB = b.view(offset: r * n, shape: [n]).toArray()
                    if r == 1 || r == 4 {
                        #expect(rowB.allSatisfy { !$0.isFinite }, "\(format) \(isa) row \(r)")
                    } else {
                        #expect(rowA == rowB, "\(format) \(isa) row \(r)")
                    }
                }
            }
        }
    }

    @Test func variantsNameTheInstructionsUsed() throws {
        let w = try WeightMatrix.encoded(Tensor(zeros: [1, 32]), as: .q8_0)
        #expect(w.kernelVariant(.scalar) == "scalar")
        if KernelISA.detected == .avx512, ck_cpu_has_avx512_vnni() == 1 { #expect(w.kernelVariant(.avx512) == "avx512-vnni") }
        if KernelISA.detected.rawValue >= KernelISA.avx2.rawValue { #expect(w.kernelVariant(.avx2) == "avx2") }
    }
}

/// A byte buffer that owns its memory, as a weight owner (stands in for a mapped file).
final class RawBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    init(_ values: [UInt8]) {
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: max(values.count, 1), alignment: 64)
        p.copyBytes(from: values)
        bytes = UnsafeRawBufferPointer(start: p.baseAddress, count: values.count)
    }
    deinit { UnsafeMutableRawPointer(mutating: bytes.baseAddress!).deallocate() }
}
