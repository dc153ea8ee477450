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
        let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        counter.initialize(to: 0)
        defer { counter.deallocate() }
        let (src, dst, wr, bp) = (input.data, output.data, weightRows.data, bias.data)
        let (kh, kw, sh, sw, pt, pl, dh, dw, cb) = (kernelH, kernelW, strideH, strideW, padTop, padLeft, dilationH,
                                                    dilationW, inBlocks)
        let body = { (i: Int) in
            guard i < parts else { return }
            let col = cols + i * band * k
            while true {
                let c = ck_atomic_fetch_add(counter, 1)
                if c >= chunks { break }
                let p0 = c * band, np = min(band, pixels - p0)
                ck_im2col_p16(col, src, cb, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ow, p0, np, k)
                ck_sgemm_n16_p16(dst + p0 * 16, col, wr, bp, np, coutPad, k, k, coutPad, 16, plane, leaky, slope)
            }
        }
        withExtendedLifetime((input, output, weightRows, bias)) {
            if let workers, parts > 1 { workers.run(body) } else { body(0) }
        }
    }
}

/// A transposed convolution whose kernel equals its stride (no padding, no dilation: every output pixel comes from
/// exactly one input pixel and one kernel tap, as in the 2x2 stride-2 upsamplers of U-Nets) on P16 activations.
/// For each input row and tap `(ky, kx)`, one small-N GEMM of the row's pixels `[w, cinPad]` (`ck_im2col_p16` with a
/// 1x1 kernel) by the tap's `[cinPad, coutPad]` weights writes P16 output pixels `(sh*y + ky, sw*x + kx)` directly,
/// bias and ReLU / LeakyReLU fused.
public final class PackedStridedTransposedConv2D: Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let inBlocks: Int
    public let outBlocks: Int
    public let strideH: Int
    public let strideW: Int
    public let activation: Activation
    /// `[sh*sw, cinPad, coutPad]`, zero padded.
    private let taps: Tensor
    private let bias: Tensor

    /// `weight`: `[out, in, kh, kw]` (ncnn Deconvolution order: output `(sh*y + ky, sw*x + kx)` of channel `co` adds
    /// `weight[co][ci][ky][kx] * input[ci][y][x]`), the kernel size being the stride.
    public init(weight: Tensor, bias: Tensor?, activation: Activation = .none) {
        precondition(weight.rank == 4, "transposed conv weight must be [out, in, kh, kw], got \(weight.shape)")
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        strideH = weight.shape[2]
        strideW = weight.shape[3]
        inBlocks = (inChannels + 15) / 16
        outBlocks = (outChannels + 15) / 16
        self.activation = activation
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16, kk = strideH * strideW
        let t = Tensor(zeros: [kk, cinPad, coutPad])
        for ci in 0..<inChannels {
            for co in 0..<outChannels {
                for k in 0..<kk { t.data[(k * cinPad + ci) * coutPad + co] = weight.data[(co * inChannels + ci) * kk + k] }
            }
        }
        taps = t
        let b = Tensor(zeros: [coutPad])
        if let bias {
            precondition(bias.count == outChannels, "bias has \(bias.count) values for \(outChannels) outputs")
            b.data.update(from: bias.data, count: outChannels)
        }
        self.bias = b
    }

    /// Upsamples the first `inBlocks` blocks of the P16 `input` (`[>=inBlocks, h, w, 16]`) into the P16 `output`
    /// (`outBlocks` blocks of `[h*sh, w*sw]`, every value written); input rows are shared out across `workers`.
    public func forward(_ input: Tensor, height h: Int, width w: Int, into output: Tensor,
                        workers: ParallelWorkers? = nil) {
        let oh = h * strideH, ow = w * strideW
        precondition(h > 0 && w > 0 && input.count >= inBlocks * h * w * 16, "transposed conv input \(input.shape) for \(h)x\(w)")
        precondition(output.count >= outBlocks * oh * ow * 16, "transposed conv output \(output.shape) cannot hold \(outBlocks) blocks of \(oh)x\(ow)")
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16, plane = oh * ow * 16
        let parts = min(workers?.count ?? 1, h)
        let (leaky, slope) = activation.kernelArguments
        let cols = UnsafeMutablePointer<Float>.allocate(capacity: parts * w * cinPad)
        defer { cols.deallocate() }
        let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        counter.initialize(to: 0)
        defer { counter.deallocate() }
        let (src, dst, tp, bp, cb, sh, sw) = (input.data, output.data, taps.data, bias.data, inBlocks, strideH, strideW)
        let body = { (i: Int) in
            guard i < parts else { return }
            let col = cols + i * w * cinPad
            while true {
                let y = ck_atomic_fetch_add(counter, 1)
                if y >= h { break }
                ck_im2col_p16(col, src, cb, h, w, 1, 1, 1, 1, 0, 0, 1, 1, w, y * w, w, cinPad)
                for ky in 0..<sh {
                    for kx in 0..<sw {
                        ck_sgemm_n16_p16(dst + ((y * sh + ky) * ow + kx) * 16, col, tp + (ky * sw + kx) * cinPad * coutPad,
                                         bp, w, coutPad, cinPad, cinPad, coutPad, sw * 16, plane, leaky, slope)
                    }
                }
            }
        }
        withExtendedLifetime((input, output, taps, bias)) {
            if let workers, parts > 1 { workers.run(body) } else { body(0) }
        }
    }
}
