import CKernels

/// An activation fused into a convolution's output.
public enum Activation: Sendable, Equatable {
    case none
    case relu
    case leakyReLU(slope: Float)

    /// Applies the activation in place to `n` floats.
    @inline(__always)
    func apply(_ p: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .none: break
        case .relu: ck_leaky_relu_inplace(p, 0, n)
        case .leakyReLU(let slope): ck_leaky_relu_inplace(p, slope, n)
        }
    }

    /// The `leaky, slope` pair the C kernels take for a fused activation (relu: slope 0).
    var kernelArguments: (leaky: Int32, slope: Float) {
        switch self {
        case .none: return (0, 0)
        case .relu: return (1, 0)
        case .leakyReLU(let slope): return (1, slope)
        }
    }
}

/// A 2-D convolution on NCHW float32 tensors (im2col + BLAS sgemm), with optional bias and fused activation.
///
/// Weights are `[outChannels, inChannels, kernelH, kernelW]` (PyTorch and ncnn order). The im2col buffer is filled
/// one band of output rows at a time so its size stays bounded (`columnBudgetBytes`) whatever the image size.
public final class Conv2D: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    public let kernelH: Int
    public let kernelW: Int
    public let strideH: Int
    public let strideW: Int
    public let padTop: Int
    public let padLeft: Int
    public let padBottom: Int
    public let padRight: Int
    public let dilationH: Int
    public let dilationW: Int
    public let weight: Tensor
    public let bias: Tensor?
    public let activation: Activation
    /// Upper bound on the im2col scratch per band of output rows (at least one row is always used).
    public let columnBudgetBytes: Int

    public init(weight: Tensor, bias: Tensor?,
                stride: (Int, Int) = (1, 1),
                padding: (top: Int, left: Int, bottom: Int, right: Int) = (0, 0, 0, 0),
                dilation: (Int, Int) = (1, 1),
                activation: Activation = .none,
                columnBudgetBytes: Int = 8 << 20) {
        precondition(weight.rank == 4, "conv weight must be [out, in, kh, kw], got \(weight.shape)")
        precondition(stride.0 > 0 && stride.1 > 0 && dilation.0 > 0 && dilation.1 > 0, "stride/dilation must be > 0")
        precondition(padding.top >= 0 && padding.left >= 0 && padding.bottom >= 0 && padding.right >= 0,
                     "padding must be >= 0")
        self.outChannels = weight.shape[0]
        self.inChannels = weight.shape[1]
        self.kernelH = weight.shape[2]
        self.kernelW = weight.shape[3]
        if let bias { precondition(bias.count == outChannels, "bias has \(bias.count) values for \(outChannels) outputs") }
        self.weight = weight
        self.bias = bias
        self.strideH = stride.0
        self.strideW = stride.1
        self.padTop = padding.top
        self.padLeft = padding.left
        self.padBottom = padding.bottom
        self.padRight = padding.right
        self.dilationH = dilation.0
        self.dilationW = dilation.1
        self.activation = activation
        self.columnBudgetBytes = columnBudgetBytes
    }

    /// A same-size convolution (stride 1, padding k/2 for an odd k x k kernel).
    public static func same(weight: Tensor, bias: Tensor?, activation: Activation = .none) -> Conv2D {
        let p = weight.shape[2] / 2, q = weight.shape[3] / 2
        return Conv2D(weight: weight, bias: bias, padding: (p, q, p, q), activation: activation)
    }

    public func outputSize(height h: Int, width w: Int) -> (height: Int, width: Int) {
        let oh = (h + padTop + padBottom - dilationH * (kernelH - 1) - 1) / strideH + 1
        let ow = (w + padLeft + padRight - dilationW * (kernelW - 1) - 1) / strideW + 1
        return (oh, ow)
    }

    /// Convolves an `[N, inChannels, H, W]` tensor.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == inChannels, "conv expects [N, \(inChannels), H, W], got \(x.shape)")
        let (oh, ow) = outputSize(height: x.shape[2], width: x.shape[3])
        precondition(oh > 0 && ow > 0, "conv output would be empty for input \(x.shape)")
        let out = Tensor(zeros: [x.shape[0], outChannels, oh, ow])
        let inPlane = inChannels * x.shape[2] * x.shape[3]
        let outPlane = outChannels * oh * ow
        for n in 0..<x.shape[0] {
            forward(x.data + n * inPlane, height: x.shape[2], width: x.shape[3], into: out.data + n * outPlane)
        }
        return out
    }

    /// Convolves one planar `[inChannels, h, w]` image into `output` (`[outChannels, oh, ow]`).
    public func forward(_ input: UnsafePointer<Float>, height h: Int, width w: Int,
                        into output: UnsafeMutablePointer<Float>) {
        let (oh, ow) = outputSize(height: h, width: w)
        let k = inChannels * kernelH * kernelW
        let outPlane = oh * ow
        let oneByOne = kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padTop == 0 && padLeft == 0
            && padBottom == 0 && padRight == 0
        if oneByOne {
            BLAS.sgemm(m: outChannels, n: outPlane, k: k, a: weight.data, lda: k, b: input, ldb: outPlane,
                       c: output, ldc: outPlane)
        } else {
            let rowsPerBand = max(1, min(oh, columnBudgetBytes / max(1, k * ow * 4)))
            let col = UnsafeMutablePointer<Float>.allocate(capacity: k * rowsPerBand * ow)
            defer { col.deallocate() }
            var row0 = 0
            while row0 < oh {
                let rows = min(rowsPerBand, oh - row0)
                ck_im2col(col, input, inChannels, h, w, kernelH, kernelW, strideH, strideW, padTop, padLeft,
                          dilationH, dilationW, ow, row0, rows)
                BLAS.sgemm(m: outChannels, n: rows * ow, k: k, a: weight.data, lda: k, b: col, ldb: rows * ow,
                           c: output + row0 * ow, ldc: outPlane)
                row0 += rows
            }
        }
        if let bias { ck_add_channel_bias(output, bias.data, outChannels, outPlane) }
        activation.apply(output, count: outChannels * outPlane)
    }
}

/// A general 2-D convolution (any kernel size, stride, padding, dilation) on activations in the 16-channel-block
/// layout `[ceil(C/16), H, W, 16]` ("P16", see `Tensor.packed16`), so layers around it need no pack/unpack: the P16
/// input is unrolled into pixel-major rows (`ck_im2col_p16`, a band of output pixels at a time) and multiplied by the
/// `[kh*kw*cinPad, coutPad]` weights with the small-N GEMM (`ck_sgemm_n16_p16`), which stores each 16-channel group
/// straight into its P16 output block with the bias and ReLU / LeakyReLU fused. Padding lanes of the output are 0.
public final class PackedConv2D: Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let inBlocks: Int
    public let outBlocks: Int
    public let kernelH: Int
    public let kernelW: Int
    public let strideH: Int
    public let strideW: Int
    public let padTop: Int
    public let padLeft: Int
    public let padBottom: Int
    public let padRight: Int
    public let dilationH: Int
    public let dilationW: Int
    public let activation: Activation
    /// `[kh*kw*inBlocks*16, outBlocks*16]`, row `(ky*kw + kx)*cinPad + ci`, zero padded.
    private let weightRows: Tensor
    /// Bias padded to `outBlocks*16` (zeros without a bias).
    private let bias: Tensor
    /// Upper bound on one worker's im2col rows (at least 16 pixels are always used).
    public static let columnBudgetBytes = 256 << 10

    public init(weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1),
                padding: (top: Int, left: Int, bottom: Int, right: Int) = (0, 0, 0, 0),
                dilation: (Int, Int) = (1, 1), activation: Activation = .none) {
        precondition(weight.rank == 4, "conv weight must be [out, in, kh, kw], got \(weight.shape)")
        precondition(stride.0 > 0 && stride.1 > 0 && dilation.0 > 0 && dilation.1 > 0, "stride/dilation must be > 0")
        precondition(padding.top >= 0 && padding.left >= 0 && padding.bottom >= 0 && padding.right >= 0,
                     "padding must be >= 0")
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        kernelH = weight.shape[2]
        kernelW = weight.shape[3]
        inBlocks = (inChannels + 15) / 16
        outBlocks = (outChannels + 15) / 16
        (strideH, strideW) = stride
        (dilationH, dilationW) = dilation
        (padTop, padLeft, padBottom, padRight) = padding
        self.activation = activation
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16, kk = kernelH * kernelW
        let rows = Tensor(zeros: [kk * cinPad, coutPad])
        for co in 0..<outChannels {
            for ci in 0..<inChannels {
                for k in 0..<kk { rows.data[(k * cinPad + ci) * coutPad + co] = weight.data[(co * inChannels + ci) * kk + k] }
            }
        }
        weightRows = rows
        let b = Tensor(zeros: [coutPad])
        if let bias {
            precondition(bias.count == outChannels, "bias has \(bias.count) values for \(outChannels) outputs")
            b.data.update(from: bias.data, count: outChannels)
        }
        self.bias = b
    }

    public func outputSize(height h: Int, width w: Int) -> (height: Int, width: Int) {
        ((h + padTop + padBottom - dilationH * (kernelH - 1) - 1) / strideH + 1,
         (w + padLeft + padRight - dilationW * (kernelW - 1) - 1) / strideW + 1)
    }

    /// Convolves the first `inBlocks` blocks of the P16 `input` (`[>=inBlocks, h, w, 16]`) into the P16 `output`
    /// (`outBlocks` blocks of `outputSize`, every value written). With `workers`, bands of output pixels are shared
    /// out across its threads. Bounds-checked.
    public func forward(_ input: Tensor, height h: Int, width w: Int, into output: Tensor,
                        workers: ParallelWorkers? = nil) {
        let (oh, ow) = outputSize(height: h, width: w)
        precondition(oh > 0 && ow > 0, "conv output would be empty for a \(h)x\(w) input")
        precondition(input.count >= inBlocks * h * w * 16, "conv input \(input.shape) has fewer than \(inBlocks) blocks of \(h)x\(w)")
        precondition(output.count >= outBlocks * oh * ow * 16, "conv output \(output.shape) cannot hold \(outBlocks) blocks of \(oh)x\(ow)")
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16, k = kernelH * kernelW * cinPad
        let pixels = oh * ow, plane = pixels * 16
        let band = max(16, min(pixels, Self.columnBudgetBytes / (k * 4)))
        let chunks = (pixels + band - 1) / band
        let parts = min(workers?.count ?? 1, chunks)
        let (leaky, slope) = activation.kernelArguments
        let cols = UnsafeMutablePointer<Float>.allocate(capacity: parts * band * k)
        defer { cols.deallocate() }
        let (src, dst, wr, bp) = (input.data, output.data, weightRows.data, bias.data)
        let (kh, kw, sh, sw, pt, pl, dh, dw, cb) = (kernelH, kernelW, strideH, strideW, padTop, padLeft, dilationH,
                                                    dilationW, inBlocks)
        withExtendedLifetime((input, output, weightRows, bias)) {
            ParallelWorkers.forEachChunk(chunks, slots: parts, on: workers) { slot, c in
                let col = cols + slot * band * k
                let p0 = c * band, np = min(band, pixels - p0)
                ck_im2col_p16(col, src, cb, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ow, p0, np, k)
                ck_sgemm_n16_p16(dst + p0 * 16, col, wr, bp, np, coutPad, k, k, coutPad, 16, plane, leaky, slope)
            }
        }
    }
}

/// A transposed convolution (no dilation, no output padding) on P16 activations, as `stride.h * stride.w` ordinary
/// convolutions, one per output phase `(ry, rx)`: with `T = ceil(k / s)` per axis and the kernel zero-extended to
/// `T*s` taps, output pixel `(s*y + ry - pad, s*x + rx - pad)` is a `T x T` correlation of the input (padded by
/// `T - 1`) at `(y, x)` with the taps `(T - 1 - a)*s + r`. For each row `y` of that `(h + T - 1) x (w + T - 1)`
/// domain, one P16 im2col (`ck_im2col_p16`) feeds one small-N GEMM per phase (`ck_sgemm_n16_p16`, bias and
/// ReLU / LeakyReLU fused) that stores its pixels straight into every `s`-th output pixel; the padding crops whole
/// pixels away, so nothing outside the output is computed beyond the domain's border. Kernel = stride (the 2x2
/// stride-2 U-Net upsamplers) is the case `T = 1`; DreamSR-style 4x4 stride-2 and 5x5 stride-3 upsamplers are `T = 2`.
/// Few output channels (the RGB output layers of waifu2x and Real-CUGAN): the phases are stacked into one GEMM of
/// `ceil16(s*s*out)` columns (instead of `s*s` GEMMs of 16 columns each, mostly padding) into a row buffer, whose
/// values are then scattered to their pixels.
public final class PackedTransposedConv2D: Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let inBlocks: Int
    public let outBlocks: Int
    public let kernelH: Int
    public let kernelW: Int
    public let strideH: Int
    public let strideW: Int
    public let padTop: Int
    public let padLeft: Int
    public let padBottom: Int
    public let padRight: Int
    public let activation: Activation
    /// Taps per phase and axis: `ceil(kernel / stride)`.
    let tapsH: Int, tapsW: Int
    /// `[sh*sw, tapsH*tapsW*cinPad, coutPad]`: phase `ry*sw + rx`, row `(a*tapsW + b)*cinPad + ci`, zero padded;
    /// stacked: `[tapsH*tapsW*cinPad, stackedColumns]`, column `(ry*sw + rx)*out + co`.
    private let phases: Tensor
    /// `coutPad` values, or `stackedColumns` when stacked (the bias repeated per phase).
    private let bias: Tensor
    /// `ceil16(sh*sw*out)` when the phases are stacked into one GEMM, nil otherwise.
    let stackedColumns: Int?

    /// `weight`: `[out, in, kh, kw]` (ncnn Deconvolution order: full-output pixel `(sh*y + ky, sw*x + kx)` of channel
    /// `co` adds `weight[co][ci][ky][kx] * input[ci][y][x]`; the output is the full output less the padding).
    public init(weight: Tensor, bias: Tensor?, stride: (Int, Int),
                padding: (top: Int, left: Int, bottom: Int, right: Int) = (0, 0, 0, 0), activation: Activation = .none) {
        precondition(weight.rank == 4, "transposed conv weight must be [out, in, kh, kw], got \(weight.shape)")
        precondition(stride.0 > 0 && stride.1 > 0, "stride must be > 0")
        precondition(padding.top >= 0 && padding.left >= 0 && padding.bottom >= 0 && padding.right >= 0,
                     "padding must be >= 0")
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        kernelH = weight.shape[2]
        kernelW = weight.shape[3]
        (strideH, strideW) = stride
        (padTop, padLeft, padBottom, padRight) = padding
        inBlocks = (inChannels + 15) / 16
        outBlocks = (outChannels + 15) / 16
        tapsH = (kernelH + strideH - 1) / strideH
        tapsW = (kernelW + strideW - 1) / strideW
        self.activation = activation
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16, rows = tapsH * tapsW * cinPad
        let (kh, kw, sh, sw, th, tw, ci, co) = (kernelH, kernelW, strideH, strideW, tapsH, tapsW, inChannels, outChannels)
        let stacked = (sh * sw * co + 15) / 16 * 16
        stackedColumns = stacked < sh * sw * coutPad ? stacked : nil
        // Element (phase, row, column) of the weights: phase-major blocks, or phase columns side by side.
        let (phaseStride, rowStride, phaseColumn) = stackedColumns.map { (0, $0, co) } ?? (rows * coutPad, coutPad, 0)
        let t = Tensor(zeros: stackedColumns.map { [rows, $0] } ?? [sh * sw, rows, coutPad])
        for ry in 0..<sh { for rx in 0..<sw { for a in 0..<th { for b in 0..<tw {
            let ky = (th - 1 - a) * sh + ry, kx = (tw - 1 - b) * sw + rx
            guard ky < kh, kx < kw else { continue }
            let phase = ry * sw + rx
            let base = phase * phaseStride + (a * tw + b) * cinPad * rowStride + phase * phaseColumn
            for i in 0..<ci { for o in 0..<co { t.data[base + i * rowStride + o] = weight.data[((o * ci + i) * kh + ky) * kw + kx] } }
        } } } }
        phases = t
        let bp = Tensor(zeros: [stackedColumns ?? coutPad])
        if let bias {
            precondition(bias.count == outChannels, "bias has \(bias.count) values for \(outChannels) outputs")
            for phase in 0..<(stackedColumns == nil ? 1 : sh * sw) { (bp.data + phase * co).update(from: bias.data, count: co) }
        }
        self.bias = bp
    }

    /// Kernel = stride, no padding.
    public convenience init(weight: Tensor, bias: Tensor?, activation: Activation = .none) {
        self.init(weight: weight, bias: bias, stride: (weight.shape[2], weight.shape[3]), activation: activation)
    }

    public func outputSize(height h: Int, width w: Int) -> (height: Int, width: Int) {
        ((h - 1) * strideH + kernelH - padTop - padBottom, (w - 1) * strideW + kernelW - padLeft - padRight)
    }

    /// Upsamples the first `inBlocks` blocks of the P16 `input` (`[>=inBlocks, h, w, 16]`) into the P16 `output`
    /// (`outBlocks` blocks of `outputSize`, every value written); rows of the phase domain are shared out across
    /// `workers`. Bounds-checked.
    public func forward(_ input: Tensor, height h: Int, width w: Int, into output: Tensor,
                        workers: ParallelWorkers? = nil) {
        let (oh, ow) = outputSize(height: h, width: w)
        precondition(h > 0 && w > 0 && oh > 0 && ow > 0 && input.count >= inBlocks * h * w * 16,
                     "transposed conv input \(input.shape) for \(h)x\(w) (output \(oh)x\(ow))")
        precondition(output.count >= outBlocks * oh * ow * 16, "transposed conv output \(output.shape) cannot hold \(outBlocks) blocks of \(oh)x\(ow)")
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16, plane = oh * ow * 16
        let (th, tw, sh, sw, pt, pl, cb) = (tapsH, tapsW, strideH, strideW, padTop, padLeft, inBlocks)
        let dh = h + th - 1, dw = w + tw - 1, k = th * tw * cinPad
        // Per phase column rx: the domain columns whose output column lies inside the output.
        let columns: [Range<Int>] = (0..<sw).map { rx in
            let lo = pl > rx ? (pl - rx + sw - 1) / sw : 0
            let hi = ow - 1 + pl - rx < 0 ? 0 : min(dw, (ow - 1 + pl - rx) / sw + 1)
            return lo..<max(lo, hi)
        }
        let parts = min(workers?.count ?? 1, dh)
        let (leaky, slope) = activation.kernelArguments
        let stacked = stackedColumns ?? 0, co = outChannels
        // Per worker: the im2col rows, then (stacked) the GEMM's row of all phases.
        let perWorker = dw * k + dw * stacked
        let cols = UnsafeMutablePointer<Float>.allocate(capacity: parts * perWorker)
        defer { cols.deallocate() }
        let (src, dst, ph, bp) = (input.data, output.data, phases.data, bias.data)
        // One chunk per phase-domain row.
        let row = { (slot: Int, y: Int) in
            let rys = (0..<sh).filter { ry in y * sh + ry - pt >= 0 && y * sh + ry - pt < oh }
            if rys.isEmpty { return }
            let col = cols + slot * perWorker, gemmRow = col + dw * k
            ck_im2col_p16(col, src, cb, h, w, th, tw, 1, 1, th - 1, tw - 1, 1, 1, dw, y * dw, dw, k)
            if stacked > 0 {
                ck_sgemm_n16_p16(gemmRow, col, ph, bp, dw, stacked, k, k, stacked, stacked, 16, leaky, slope)
                for ry in rys {
                    let oy = y * sh + ry - pt
                    for rx in 0..<sw {
                        for x in columns[rx] {
                            let pixel = dst + (oy * ow + x * sw + rx - pl) * 16, values = gemmRow + x * stacked + (ry * sw + rx) * co
                            for c0 in stride(from: 0, to: co, by: 16) {
                                let lanes = min(16, co - c0), p = pixel + (c0 / 16) * plane
                                p.update(from: values + c0, count: lanes)
                                if lanes < 16 { (p + lanes).update(repeating: 0, count: 16 - lanes) }
                            }
                        }
                    }
                }
                return
            }
            for ry in rys {
                let oy = y * sh + ry - pt
                for rx in 0..<sw where !columns[rx].isEmpty {
                    let xs = columns[rx], ox = xs.lowerBound * sw + rx - pl
                    ck_sgemm_n16_p16(dst + (oy * ow + ox) * 16, col + xs.lowerBound * k, ph + (ry * sw + rx) * k * coutPad,
                                     bp, xs.count, coutPad, k, k, coutPad, sw * 16, plane, leaky, slope)
                }
            }
        }
        withExtendedLifetime((input, output, phases, bias)) {
            ParallelWorkers.forEachChunk(dh, slots: parts, on: workers, row)
        }
    }
}
