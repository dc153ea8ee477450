import CKernels
import Testing
@testable import Tensor

/// Deterministic pseudo-random values in [-1, 1).
private func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var s = seed &* 6364136223846793005 &+ 1442695040888963407
    return Tensor(shape: shape) { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: s >> 11) % 2_000_000) / 1_000_000 - 1
    }
}

/// Direct (six nested loops) reference convolution, NCHW, batch 1.
private func naiveConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int, pad: Int, dilation: Int = 1) -> Tensor {
    let cin = x.shape[1], h = x.shape[2], wd = x.shape[3]
    let cout = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    let oh = (h + 2 * pad - dilation * (kh - 1) - 1) / stride + 1
    let ow = (wd + 2 * pad - dilation * (kw - 1) - 1) / stride + 1
    let out = Tensor(zeros: [1, cout, oh, ow])
    for co in 0..<cout {
        for oy in 0..<oh {
            for ox in 0..<ow {
                var acc: Double = Double(b?[flat: co] ?? 0)
                for ci in 0..<cin {
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            let iy = oy * stride - pad + ky * dilation, ix = ox * stride - pad + kx * dilation
                            if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                            acc += Double(x[flat: (ci * h + iy) * wd + ix]) * Double(w[flat: ((co * cin + ci) * kh + ky) * kw + kx])
                        }
                    }
                }
                out[flat: (co * oh + oy) * ow + ox] = Float(acc)
            }
        }
    }
    return out
}

@Suite("Conv2D and CNN ops", .timeLimit(.minutes(10)))
struct ConvTests {
    @Test("3x3 pad 1 matches the direct reference, with bias and LeakyReLU")
    func conv3x3() {
        let x = randomTensor([1, 5, 9, 11], seed: 1)
        let w = randomTensor([7, 5, 3, 3], seed: 2)
        let b = randomTensor([7], seed: 3)
        let ref = naiveConv(x, w, b, stride: 1, pad: 1)
        ref.leakyReLU(slope: 0.2)
        let conv = Conv2D.same(weight: w, bias: b, activation: .leakyReLU(slope: 0.2))
        let y = conv(x)
        #expect(y.shape == [1, 7, 9, 11])
        #expect(y.maxAbsDifference(ref) < 1e-4)
    }

    @Test("banded im2col (tiny column budget) gives the same result as one band")
    func banded() {
        let x = randomTensor([1, 4, 13, 6], seed: 4)
        let w = randomTensor([3, 4, 3, 3], seed: 5)
        let one = Conv2D(weight: w, bias: nil, padding: (1, 1, 1, 1))(x)
        let banded = Conv2D(weight: w, bias: nil, padding: (1, 1, 1, 1), columnBudgetBytes: 1)(x)
        // sgemm over a narrower N may take OpenBLAS's edge kernels (another summation order): rounding-level
        // differences are allowed; a wrong band (rows or padding) would differ by the size of the values
        #expect(one.maxAbsDifference(banded) <= 1e-6 * max(1, one.maxAbs()))
    }

    @Test("1x1, stride 2, dilation 2 and asymmetric sizes match the direct reference")
    func generalShapes() {
        let x = randomTensor([1, 6, 10, 7], seed: 6)
        let w1 = randomTensor([4, 6, 1, 1], seed: 7)
        #expect(Conv2D(weight: w1, bias: nil)(x).maxAbsDifference(naiveConv(x, w1, nil, stride: 1, pad: 0)) < 1e-4)
        let w3 = randomTensor([5, 6, 3, 3], seed: 8)
        let s2 = Conv2D(weight: w3, bias: nil, stride: (2, 2), padding: (1, 1, 1, 1))(x)
        #expect(s2.shape == [1, 5, 5, 4])
        #expect(s2.maxAbsDifference(naiveConv(x, w3, nil, stride: 2, pad: 1)) < 1e-4)
        let d2 = Conv2D(weight: w3, bias: nil, padding: (2, 2, 2, 2), dilation: (2, 2))(x)
        #expect(d2.maxAbsDifference(naiveConv(x, w3, nil, stride: 1, pad: 2, dilation: 2)) < 1e-4)
    }

    @Test("Winograd F(4,3) on P16 matches im2col conv, including ragged tiles and padded channels")
    func winograd() {
        for (h, w) in [(9, 11), (8, 8), (1, 5), (17, 4)] {
            let x = randomTensor([1, 20, h, w], seed: UInt64(h * 100 + w))
            let wt = randomTensor([35, 20, 3, 3], seed: 9)
            let b = randomTensor([35], seed: 10)
            let ref = Conv2D.same(weight: wt, bias: b, activation: .leakyReLU(slope: 0.2))(x)
            let wino = WinogradConv3x3(weight: wt, bias: b, activation: .leakyReLU(slope: 0.2))
            // tiny batches force several GEMM batches
            let y = wino(x.packed16(), scratch: ConvScratch(maxTilesPerBatch: 3)).unpacked16(channels: 35)
            #expect(y.maxAbsDifference(ref) < 2e-4, "h=\(h) w=\(w)")
        }
    }

    @Test("Winograd F(4,3) with padding 0 matches the direct reference (output 2 smaller), threads and tiny batches")
    func winogradPadding0() {
        let workers = ParallelWorkers(count: 2)
        defer { workers.shutdown() }
        for (h, w) in [(9, 11), (6, 6), (3, 7), (14, 5)] {
            let x = randomTensor([1, 19, h, w], seed: UInt64(h * 31 + w))
            let wt = randomTensor([21, 19, 3, 3], seed: 41)
            let b = randomTensor([21], seed: 42)
            let ref = naiveConv(x, wt, b, stride: 1, pad: 0)
            ref.leakyReLU(slope: 0.1)
            let wino = WinogradConv3x3(weight: wt, bias: b, activation: .leakyReLU(slope: 0.1), padding: 0)
            let size = wino.outputSize(height: h, width: w)
            #expect(size.height == h - 2 && size.width == w - 2)
            let y = wino(x.packed16(), scratch: ConvScratch(maxTilesPerBatch: 2))
            #expect(y.shape == [2, h - 2, w - 2, 16])
            #expect(y.unpacked16(channels: 21).maxAbsDifference(ref) < 2e-4, "h=\(h) w=\(w)")
            let multi = Tensor(zeros: y.shape)
            wino.forward(x.packed16(), height: h, width: w, into: multi, scratch: ConvScratch(maxTilesPerBatch: 2),
                         workers: workers)
            #expect(multi.maxAbsDifference(y) == 0, "threads h=\(h) w=\(w)")
        }
    }

    @Test("Winograd F(6,3) (6x6 output tiles) matches the direct reference: padding 0 and 1, ragged tiles, padded channels, threads")
    func winogradF63() {
        let workers = ParallelWorkers(count: 2)
        defer { workers.shutdown() }
        for (h, w, pad) in [(9, 11, 1), (14, 13, 0), (3, 8, 0), (1, 6, 1), (20, 7, 1)] {
            let x = randomTensor([1, 19, h, w], seed: UInt64(h * 53 + w + pad))
            let wt = randomTensor([21, 19, 3, 3], seed: 71)
            let b = randomTensor([21], seed: 72)
            let ref = naiveConv(x, wt, b, stride: 1, pad: pad)
            ref.leakyReLU(slope: 0.1)
            let wino = WinogradConv3x3(weight: wt, bias: b, activation: .leakyReLU(slope: 0.1), padding: pad,
                                       outputTile: 6)
            let y = wino(x.packed16(), scratch: ConvScratch(maxTilesPerBatch: 2))
            #expect(y.shape == [2, h + 2 * pad - 2, w + 2 * pad - 2, 16])
            // F(6,3) rounds more than F(4,3) (transform entries up to 32 and 5.25); values here are about 1-10
            let err = y.unpacked16(channels: 21).maxAbsDifference(ref)
            print("Winograd F(6,3) h=\(h) w=\(w) pad=\(pad): max abs error \(err) (output max abs \(ref.maxAbs()))")
            #expect(err < 5e-4, "h=\(h) w=\(w) pad=\(pad)")
            let multi = Tensor(zeros: y.shape)
            wino.forward(x.packed16(), height: h, width: w, into: multi, scratch: ConvScratch(maxTilesPerBatch: 2),
                         workers: workers)
            #expect(multi.maxAbsDifference(y) == 0, "threads h=\(h) w=\(w)")
        }
    }

    @Test("Winograd conv split across worker threads equals the single-threaded result")
    func winogradThreads() {
        let x = randomTensor([1, 32, 23, 9], seed: 31)
        let wt = randomTensor([48, 32, 3, 3], seed: 32)
        let conv = WinogradConv3x3(weight: wt, bias: nil, activation: .leakyReLU(slope: 0.2))
        let workers = ParallelWorkers(count: 3)
        defer { workers.shutdown() }
        let (single, multi) = KernelISATestLock.withLock { () -> (Tensor, Tensor) in
            let single = conv(x.packed16(), scratch: ConvScratch(maxTilesPerBatch: 5))
            let p = x.packed16()
            let multi = Tensor(zeros: single.shape)
            conv.forward(input: p.data, height: 23, width: 9, output: multi.data,
                         scratch: ConvScratch(maxTilesPerBatch: 5), workers: workers)
            return (single, multi)
        }
        #expect(multi.maxAbsDifference(single) == 0)
    }

    @Test("Winograd residual fusion: alpha*conv + beta*res, in place")
    func winogradResidual() {
        let x = randomTensor([1, 16, 6, 7], seed: 11)
        let wt = randomTensor([16, 16, 3, 3], seed: 12)
        let ref = Conv2D.same(weight: wt, bias: nil)(x)
        ref.axpby(x, a: 0.2, b: 1.0)
        let p = x.packed16()
        let out = p.copy()
        WinogradConv3x3(weight: wt, bias: nil).forward(
            input: p.data, height: 6, width: 7, output: out.data,
            residual: (UnsafePointer(out.data), 0.2, 1.0), scratch: ConvScratch())
        #expect(out.unpacked16(channels: 16).maxAbsDifference(ref) < 2e-4)
    }

    @Test("P16 im2col conv (2x2 stride 2, 3x3 dilation 2 asymmetric padding, 1x1) matches the direct reference, threads")
    func packedConv() {
        let workers = ParallelWorkers(count: 3)
        defer { workers.shutdown() }
        let x = randomTensor([1, 17, 11, 9], seed: 51)
        let b = randomTensor([20], seed: 52)
        // (kernel, stride, padding t/l/b/r, dilation); the reference pads symmetrically, so asymmetric cases crop it
        for (k, s, pad, dil) in [(2, 2, 0, 1), (3, 1, 2, 2), (1, 1, 0, 1), (3, 2, 1, 1)] {
            let w = randomTensor([20, 17, k, k], seed: UInt64(53 + k * 10 + s))
            let ref = naiveConv(x, w, b, stride: s, pad: pad, dilation: dil)
            ref.leakyReLU(slope: 0.1)
            let conv = PackedConv2D(weight: w, bias: b, stride: (s, s), padding: (pad, pad, pad, pad),
                                    dilation: (dil, dil), activation: .leakyReLU(slope: 0.1))
            let (oh, ow) = conv.outputSize(height: 11, width: 9)
            #expect([1, 20, oh, ow] == ref.shape)
            for threads in [nil, workers] {
                let y = Tensor(uninitialized: [2, oh, ow, 16])
                conv.forward(x.packed16(), height: 11, width: 9, into: y, workers: threads)
                #expect(y.unpacked16(channels: 20).maxAbsDifference(ref) < 1e-4, "k=\(k) s=\(s) threads \(threads != nil)")
                // padding lanes of the last block are written as 0
                #expect((0..<(oh * ow)).allSatisfy { p in (4..<16).allSatisfy { y[flat: (oh * ow + p) * 16 + $0] == 0 } })
            }
        }
        // asymmetric padding (0 top/left, 1 bottom/right), against a direct sum
        let w = randomTensor([20, 17, 3, 3], seed: 60)
        let conv = PackedConv2D(weight: w, bias: nil, stride: (2, 2), padding: (0, 0, 1, 1))
        let (oh, ow) = conv.outputSize(height: 11, width: 9)
        let y = Tensor(uninitialized: [2, oh, ow, 16])
        conv.forward(x.packed16(), height: 11, width: 9, into: y)
        let got = y.unpacked16(channels: 20)
        var err: Float = 0
        for c in 0..<20 { for yy in 0..<oh { for xx in 0..<ow {
            var acc: Float = 0
            for ci in 0..<17 { for ky in 0..<3 { for kx in 0..<3 {
                let iy = 2 * yy + ky, ix = 2 * xx + kx
                if iy < 11, ix < 9 { acc += x[flat: (ci * 11 + iy) * 9 + ix] * w[flat: ((c * 17 + ci) * 3 + ky) * 3 + kx] }
            } } }
            err = max(err, abs(acc - got[flat: (c * oh + yy) * ow + xx]))
        } } }
        #expect(oh == 5 && ow == 4)
        #expect(err < 1e-4, "asymmetric padding: max abs error \(err)")
    }

    @Test("P16 transposed conv (kernel = stride, 4x4/2 pad 3, 5x5/3 pad 2, asymmetric; phases stacked or not) matches a direct scatter, threads")
    func packedTransposedConv() {
        let workers = ParallelWorkers(count: 2)
        defer { workers.shutdown() }
        let (cin, h, w) = (18, 5, 7)
        let x = randomTensor([1, cin, h, w], seed: 61)
        // (kh, kw, sh, sw, top, left, bottom, right)
        let cases = [(2, 2, 2, 2, 0, 0, 0, 0), (3, 2, 3, 2, 0, 0, 0, 0), (4, 4, 2, 2, 3, 3, 3, 3), (5, 5, 3, 3, 2, 2, 2, 2),
                     (4, 3, 2, 1, 1, 0, 2, 1), (3, 5, 2, 2, 0, 4, 1, 0)]
        // 32 outputs: phases as separate GEMMs (stacking saves no columns); 33 and 3: stacked.
        for cout in [32, 33, 3] {
            let b = randomTensor([cout], seed: 62)
            let blocks = (cout + 15) / 16
            for (n, (kh, kw, sh, sw, pt, pl, pb, pr)) in cases.enumerated() {
                let wt = randomTensor([cout, cin, kh, kw], seed: UInt64(63 + n))
                let fh = (h - 1) * sh + kh, fw = (w - 1) * sw + kw
                let oh = fh - pt - pb, ow = fw - pl - pr
                let full = Tensor(zeros: [1, cout, fh, fw])
                for o in 0..<cout { for c in 0..<cin { for y in 0..<h { for xx in 0..<w { for ky in 0..<kh { for kx in 0..<kw {
                    full[flat: (o * fh + y * sh + ky) * fw + xx * sw + kx] +=
                        x[flat: (c * h + y) * w + xx] * wt[flat: ((o * cin + c) * kh + ky) * kw + kx]
                } } } } } }
                let ref = Tensor(zeros: [1, cout, oh, ow])
                for o in 0..<cout { for y in 0..<oh { for xx in 0..<ow {
                    ref[flat: (o * oh + y) * ow + xx] = full[flat: (o * fh + y + pt) * fw + xx + pl]
                } } }
                ref.addChannelBias(b)
                ref.leakyReLU(slope: 0.1)
                let deconv = PackedTransposedConv2D(weight: wt, bias: b, stride: (sh, sw), padding: (pt, pl, pb, pr),
                                                    activation: .leakyReLU(slope: 0.1))
                #expect(deconv.outputSize(height: h, width: w) == (oh, ow))
                #expect((deconv.stackedColumns != nil) == (cout != 32))
                let what = "\(cout) outputs, \(kh)x\(kw)/\(sh)x\(sw) pad \(pt),\(pl),\(pb),\(pr)"
                for threads in [nil, workers] {
                    // NaN-filled output: every value must be written
                    let y = Tensor(zeros: [blocks, oh, ow, 16])
                    y.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = .nan } }
                    deconv.forward(x.packed16(), height: h, width: w, into: y, workers: threads)
                    let got = y.unpacked16(channels: cout)
                    #expect(!y.toArray().contains { $0.isNaN }, "every value written: \(what)")
                    let err = got.maxAbsDifference(ref)
                    #expect(err < 1e-4, "\(what) threads \(threads != nil): \(err)")
                    var lanesZero = true
                    y.withUnsafeBufferPointer { p in
                        for px in 0..<(oh * ow) { for lane in (cout - 16 * (blocks - 1))..<16 where p[((blocks - 1) * oh * ow + px) * 16 + lane] != 0 { lanesZero = false } }
                    }
                    #expect(lanesZero, "padding lanes stay 0: \(what)")
                }
            }
        }
    }

    @Test("nearest 2x upsample, concat, pack/unpack")
    func layoutOps() {
        let x = randomTensor([1, 3, 2, 3], seed: 13)
        let up = x.upsampledNearest2x()
        #expect(up.shape == [1, 3, 4, 6])
        for c in 0..<3 { for y in 0..<4 { for xx in 0..<6 {
            #expect(up[flat: (c * 4 + y) * 6 + xx] == x[flat: (c * 2 + y / 2) * 3 + xx / 2])
        } } }
        let y = randomTensor([1, 2, 2, 3], seed: 14)
        let cat = Tensor.concatChannels([x, y])
        #expect(cat.shape == [1, 5, 2, 3])
        #expect(Array(cat.toArray()[0..<18]) == x.toArray())
        #expect(Array(cat.toArray()[18...]) == y.toArray())
        let z = randomTensor([1, 19, 3, 5], seed: 15)
        let p = z.packed16()
        #expect(p.shape == [2, 3, 5, 16])
        #expect(p.unpacked16(channels: 19).toArray() == z.toArray())
        // P16 upsample equals NCHW upsample after unpacking
        let pu = Tensor(zeros: [2, 6, 10, 16])
        ck_upsample_nearest2x(pu.data, p.data, 2, 3, 5, 16)
        #expect(pu.unpacked16(channels: 19).toArray() == z.upsampledNearest2x().toArray())
    }
}

@Suite("conv kernels: SIMD vs scalar reference", .serialized, .timeLimit(.minutes(10)))
struct ConvKernelDispatchTests {
    @Test("Winograd input/output transforms and upsample agree with *_scalar on every ISA")
    func transforms() {
        let h = 10, w = 13, blocks = 2
        let src = randomTensor([blocks, h, w, 16], seed: 21)
        let tilesX = (w + 3) / 4, tilesY = (h + 3) / 4, tiles = tilesX * tilesY
        let ld = blocks * 16
        let refV = Tensor(zeros: [36, tiles, ld])
        ck_wino43_input_p16_scalar(refV.data, src.data, h, w, 0, tilesY, 0, blocks, ld, tiles * ld, 1)
        // padding 0: an (h-2) x (w-2) output, tiles read from row/column 0
        let tiles0X = (w - 2 + 3) / 4, tiles0Y = (h - 2 + 3) / 4, tiles0 = tiles0X * tiles0Y
        let refV0 = Tensor(zeros: [36, tiles0, ld])
        ck_wino43_input_p16_scalar(refV0.data, src.data, h, w, 0, tiles0Y, 0, blocks, ld, tiles0 * ld, 0)
        let mIn = randomTensor([36, tiles, ld], seed: 22)
        let bias = randomTensor([ld], seed: 23)
        let res = randomTensor([blocks, h, w, 16], seed: 24)
        let refOut = Tensor(zeros: [blocks, h, w, 16])
        ck_wino43_output_p16_scalar(refOut.data, mIn.data, bias.data, h, w, 0, tilesY, 0, blocks, ld, tiles * ld,
                                    1, 0.2, res.data, 0.2, 1.0)
        // small-N GEMM: n = 16, 32, 48, 64, 80 with m leaving every remainder (1-5 rows) of the 6-row AVX2 kernel
        // (and of the AVX-512 ones)
        let gk = 19
        var gemmRefs: [(Int, Tensor, Tensor, Tensor)] = []
        for (gn, gm) in [(16, 13), (32, 16), (48, 9), (64, 8), (80, 11)] {
            let a = randomTensor([gm, gk + 3], seed: UInt64(gn))
            let b = randomTensor([gk, gn], seed: UInt64(gn + 1))
            let c = Tensor(zeros: [gm, gn])
            ck_sgemm_n16_scalar(c.data, a.data, b.data, gm, gn, gk, gk + 3, gn, gn)
            gemmRefs.append((gn, a, b, c))
        }
        // F(6,3) transforms (8x8 input tiles, 6x6 output tiles), padding 1 and 0
        let t6X = (w + 5) / 6, t6Y = (h + 5) / 6, tiles6 = t6X * t6Y
        let ref6V = Tensor(zeros: [64, tiles6, ld])
        ck_wino63_input_p16_scalar(ref6V.data, src.data, h, w, 0, t6Y, 0, blocks, ld, tiles6 * ld, 1)
        let t60X = (w - 2 + 5) / 6, t60Y = (h - 2 + 5) / 6, tiles60 = t60X * t60Y
        let ref6V0 = Tensor(zeros: [64, tiles60, ld])
        ck_wino63_input_p16_scalar(ref6V0.data, src.data, h, w, 0, t60Y, 0, blocks, ld, tiles60 * ld, 0)
        let m6In = randomTensor([64, tiles6, ld], seed: 25)
        let ref6Out = Tensor(zeros: [blocks, h, w, 16])
        ck_wino63_output_p16_scalar(ref6Out.data, m6In.data, bias.data, h, w, 0, t6Y, 0, blocks, ld, tiles6 * ld,
                                    1, 0.2, res.data, 0.2, 1.0)
        // the P16-output GEMM: column groups `ldq` apart, bias and LeakyReLU fused
        let pm = 23, pk = 21, ldq = 23 * 16 + 5  // 23 rows: remainder tiles of 8, 4, 2 and 1 rows
        var p16Refs: [(Int, Tensor, Tensor, Tensor, Tensor)] = []
        for gn in [16, 32, 48, 64, 80] {
            let a = randomTensor([pm, pk + 2], seed: UInt64(100 + gn))
            let b = randomTensor([pk, gn + 16], seed: UInt64(101 + gn))
            let bias = randomTensor([gn], seed: UInt64(102 + gn))
            let c = Tensor(zeros: [gn / 16, ldq])
            ck_sgemm_n16_p16_scalar(c.data, a.data, b.data, bias.data, pm, gn, pk, pk + 2, gn + 16, 16, ldq, 1, 0.1)
            p16Refs.append((gn, a, b, bias, c))
        }
        let refUp = Tensor(zeros: [blocks, 2 * h, 2 * w, 16])
        ck_upsample_nearest2x_scalar(refUp.data, src.data, blocks, h, w, 16)
        KernelISATestLock.withLock {
            let previous = KernelISA.active
            defer { KernelISA.force(previous) }
            for isa in [KernelISA.scalar, .avx2, .avx512] where isa.rawValue <= KernelISA.detected.rawValue {
                KernelISA.force(isa)
                let v = Tensor(zeros: [36, tiles, ld])
                ck_wino43_input_p16(v.data, src.data, h, w, 0, tilesY, 0, blocks, ld, tiles * ld, 1)
                #expect(v.maxAbsDifference(refV) < 1e-4, "input transform \(isa)")
                let v0 = Tensor(zeros: [36, tiles0, ld])
                ck_wino43_input_p16(v0.data, src.data, h, w, 0, tiles0Y, 0, blocks, ld, tiles0 * ld, 0)
                #expect(v0.maxAbsDifference(refV0) < 1e-4, "input transform, padding 0, \(isa)")
                let out = Tensor(zeros: [blocks, h, w, 16])
                ck_wino43_output_p16(out.data, mIn.data, bias.data, h, w, 0, tilesY, 0, blocks, ld, tiles * ld,
                                     1, 0.2, res.data, 0.2, 1.0)
                #expect(out.maxAbsDifference(refOut) < 1e-4, "output transform \(isa)")
                let v6 = Tensor(zeros: [64, tiles6, ld])
                ck_wino63_input_p16(v6.data, src.data, h, w, 0, t6Y, 0, blocks, ld, tiles6 * ld, 1)
                #expect(v6.maxAbsDifference(ref6V) < 1e-4, "F(6,3) input transform \(isa)")
                let v60 = Tensor(zeros: [64, tiles60, ld])
                ck_wino63_input_p16(v60.data, src.data, h, w, 0, t60Y, 0, blocks, ld, tiles60 * ld, 0)
                #expect(v60.maxAbsDifference(ref6V0) < 1e-4, "F(6,3) input transform, padding 0, \(isa)")
                let out6 = Tensor(zeros: [blocks, h, w, 16])
                ck_wino63_output_p16(out6.data, m6In.data, bias.data, h, w, 0, t6Y, 0, blocks, ld, tiles6 * ld,
                                     1, 0.2, res.data, 0.2, 1.0)
                // outputs reach ~1e3 here (A^T entries up to 32, random products): rounding-level bound, relative
                #expect(out6.maxAbsDifference(ref6Out) <= 1e-6 * max(1, ref6Out.maxAbs()), "F(6,3) output transform \(isa)")
                let up = Tensor(zeros: [blocks, 2 * h, 2 * w, 16])
                ck_upsample_nearest2x(up.data, src.data, blocks, h, w, 16)
                #expect(up.maxAbsDifference(refUp) == 0, "upsample \(isa)")
                for (gn, a, b, ref) in gemmRefs {
                    let gm = ref.shape[0]
                    let c = Tensor(zeros: [gm, gn])
                    ck_sgemm_n16(c.data, a.data, b.data, gm, gn, gk, gk + 3, gn, gn)
                    #expect(c.maxAbsDifference(ref) < 1e-4, "sgemm_n16 n=\(gn) \(isa)")
                }
                for (gn, a, b, bias, ref) in p16Refs {
                    let c = Tensor(zeros: [gn / 16, ldq])
                    ck_sgemm_n16_p16(c.data, a.data, b.data, bias.data, pm, gn, pk, pk + 2, gn + 16, 16, ldq, 1, 0.1)
                    #expect(c.maxAbsDifference(ref) < 1e-4, "sgemm_n16_p16 n=\(gn) \(isa)")
                    #expect(ref.toArray().contains { $0 < 0 } && ref.toArray().contains { $0 > 0.5 })
                }
            }
        }
    }
}
