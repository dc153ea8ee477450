import CKernels

/// Reusable scratch memory for `WinogradConv3x3` (transformed inputs and GEMM outputs). Not thread-safe: one per
/// forward pass / compute lane.
public final class ConvScratch: @unchecked Sendable {
    private(set) var v: UnsafeMutablePointer<Float>
    private(set) var m: UnsafeMutablePointer<Float>
    private var vCapacity: Int
    private var mCapacity: Int
    /// Upper bound on Winograd tiles transformed per GEMM batch (keeps scratch bounded for any image size).
    public let maxTilesPerBatch: Int

    public init(maxTilesPerBatch: Int = 1024) {
        self.maxTilesPerBatch = max(1, maxTilesPerBatch)
        v = .allocate(capacity: 1); m = .allocate(capacity: 1)
        vCapacity = 1; mCapacity = 1
    }

    deinit { v.deallocate(); m.deallocate() }

    func reserve(v vCount: Int, m mCount: Int) {
        if vCount > vCapacity { v.deallocate(); v = .allocate(capacity: vCount); vCapacity = vCount }
        if mCount > mCapacity { m.deallocate(); m = .allocate(capacity: mCount); mCapacity = mCount }
    }

    /// Bytes currently held.
    public var bytes: Int { (vCapacity + mCapacity) * 4 }
}

/// A 3x3, stride 1, padding 1 convolution computed with Winograd F(4x4, 3x3) on activations in the 16-channel-block
/// layout `[ceil(C/16), H, W, 16]` ("P16", see `Tensor.packed16`). Transforms run in C kernels, the 36 per-frequency
/// products are BLAS sgemm calls. Bias, activation and a residual `alpha*y + beta*res` are fused into the output
/// transform.
public final class WinogradConv3x3: Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let inBlocks: Int
    public let outBlocks: Int
    public let activation: Activation
    /// Transformed weights `[36, inBlocks*16, outBlocks*16]`.
    private let u: Tensor
    /// Bias padded to `outBlocks*16`.
    private let bias: Tensor

    public init(weight: Tensor, bias: Tensor?, activation: Activation = .none) {
        precondition(weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3,
                     "Winograd conv needs [out, in, 3, 3] weights, got \(weight.shape)")
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        inBlocks = (inChannels + 15) / 16
        outBlocks = (outChannels + 15) / 16
        self.activation = activation
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16
        u = Tensor(zeros: [36, cinPad, coutPad])
        ck_wino43_weight_transform(u.data, weight.data, outChannels, inChannels, coutPad, cinPad)
        let b = Tensor(zeros: [coutPad])
        if let bias {
            precondition(bias.count == outChannels, "bias has \(bias.count) values for \(outChannels) outputs")
            b.data.update(from: bias.data, count: outChannels)
        }
        self.bias = b
    }

    /// Convolves a P16 image (`input` holds at least `inBlocks` blocks of `h*w*16` floats) into the P16 `output`
    /// (`outBlocks` blocks). With `residual`, writes `alpha*conv + beta*residual` (residual may alias output).
    public func forward(input: UnsafePointer<Float>, height h: Int, width w: Int,
                        output: UnsafeMutablePointer<Float>,
                        residual: (pointer: UnsafePointer<Float>, alpha: Float, beta: Float)? = nil,
                        scratch: ConvScratch) {
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16
        let tilesX = (w + 3) / 4, tilesY = (h + 3) / 4
        let rowsPerBatch = max(1, min(tilesY, scratch.maxTilesPerBatch / tilesX))
        let maxTiles = rowsPerBatch * tilesX
        scratch.reserve(v: 36 * maxTiles * cinPad, m: 36 * maxTiles * coutPad)
        let v = scratch.v, m = scratch.m
        var leaky: Int32 = 0
        var slope: Float = 0
        switch activation {
        case .none: break
        case .relu: leaky = 1
        case .leakyReLU(let s): leaky = 1; slope = s
        }
        var ty0 = 0
        while ty0 < tilesY {
            let rows = min(rowsPerBatch, tilesY - ty0)
            let tiles = rows * tilesX
            let vStride = tiles * cinPad, mStride = tiles * coutPad
            ck_wino43_input_p16(v, input, h, w, ty0, rows, 0, inBlocks, cinPad, vStride)
            for xi in 0..<36 {
                BLAS.sgemm(m: tiles, n: coutPad, k: cinPad,
                           a: v + xi * vStride, lda: cinPad,
                           b: u.data + xi * cinPad * coutPad, ldb: coutPad,
                           c: m + xi * mStride, ldc: coutPad)
            }
            ck_wino43_output_p16(output, m, bias.data, h, w, ty0, rows, 0, outBlocks, coutPad, mStride,
                                 leaky, slope, residual?.pointer, residual?.alpha ?? 1, residual?.beta ?? 0)
            ty0 += rows
        }
    }

    /// Convenience: convolves a P16 tensor `[>=inBlocks, H, W, 16]` into a new P16 tensor `[outBlocks, H, W, 16]`.
    public func callAsFunction(_ x: Tensor, scratch: ConvScratch = ConvScratch()) -> Tensor {
        precondition(x.rank == 4 && x.shape[3] == 16 && x.shape[0] >= inBlocks, "P16 input expected, got \(x.shape)")
        let out = Tensor(zeros: [outBlocks, x.shape[1], x.shape[2], 16])
        forward(input: x.data, height: x.shape[1], width: x.shape[2], output: out.data, scratch: scratch)
        return out
    }
}
