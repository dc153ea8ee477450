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
