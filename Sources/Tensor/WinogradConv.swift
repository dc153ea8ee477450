import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// Reusable scratch memory for `WinogradConv3x3` (transformed inputs and products), one slot per worker thread.
/// Not thread-safe itself: one per forward pass / compute lane.
public final class ConvScratch: @unchecked Sendable {
    private var v: [UnsafeMutablePointer<Float>] = []
    private var m: [UnsafeMutablePointer<Float>] = []
    private var vCapacity: [Int] = []
    private var mCapacity: [Int] = []
    /// Upper bound on Winograd tiles transformed per batch (keeps scratch small and cache resident); nil: by the
    /// convolution's channels (`tilesPerBatch`).
    public let maxTilesPerBatch: Int?

    /// `DREAMSR_WINOGRAD_TILES` (for tuning): one batch size for every convolution.
    static let tilesOverride: Int? = {
        if let v = getenv("DREAMSR_WINOGRAD_TILES"), let n = Int(String(cString: v)), n > 0 { return n }
        return nil
    }()

    public init(maxTilesPerBatch: Int? = nil) {
        self.maxTilesPerBatch = maxTilesPerBatch.map { max(1, $0) } ?? Self.tilesOverride
    }

    /// Tiles per batch for a convolution of `cinPad` x `coutPad` channels: 64, or 128 when both products reach
    /// 128 x 128 (each batch streams all the transformed weights, `products * cinPad * coutPad` floats, through the
    /// cache once, so wide layers amortise them over more tiles; measured on the AVX2 machine, BENCHMARKS.md).
    func tilesPerBatch(cinPad: Int, coutPad: Int) -> Int {
        maxTilesPerBatch ?? (cinPad * coutPad >= 128 * 128 ? 128 : 64)
    }

    deinit {
        v.forEach { $0.deallocate() }
        m.forEach { $0.deallocate() }
    }

    /// Ensures `slots` slots of at least the given sizes; returns their buffers.
    func reserve(slots: Int, v vCount: Int, m mCount: Int) -> [(v: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>)] {
        while v.count < slots {
            v.append(.allocate(capacity: 1)); m.append(.allocate(capacity: 1))
            vCapacity.append(1); mCapacity.append(1)
        }
        for i in 0..<slots {
            if vCount > vCapacity[i] { v[i].deallocate(); v[i] = .allocate(capacity: vCount); vCapacity[i] = vCount }
            if mCount > mCapacity[i] { m[i].deallocate(); m[i] = .allocate(capacity: mCount); mCapacity[i] = mCount }
        }
        return (0..<slots).map { (v[$0], m[$0]) }
    }

    /// Bytes currently held.
    public var bytes: Int { (vCapacity.reduce(0, +) + mCapacity.reduce(0, +)) * 4 }
}

/// A 3x3, stride 1, padding 1 (or 0) convolution computed with Winograd F(4x4, 3x3) (or F(6x6, 3x3):
/// `outputTile` 6) on activations in the
/// 16-channel-block layout `[ceil(C/16), H, W, 16]` ("P16", see `Tensor.packed16`). With padding 0 an h x w input
/// gives an (h-2) x (w-2) output. Transforms and the 36 per-frequency products run
/// in C kernels (an AVX-512 small-N GEMM, no BLAS), in cache-sized batches of tiles. Bias, activation and a residual `alpha*y + beta*res` are fused into the output
/// transform.
public final class WinogradConv3x3: Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let inBlocks: Int
    public let outBlocks: Int
    public let activation: Activation
    /// Zero padding on each side: 1 (same size) or 0 (the output loses a 1-pixel border).
    public let padding: Int
    /// Output tile side: 4 (F(4x4,3x3), 36 products per tile) or 6 (F(6x6,3x3), 64 products: fewer multiply-adds
    /// per output on large maps, more rounding error and more edge waste on small ones).
    public let outputTile: Int
    /// Transformed weights `[(outputTile+2)^2, inBlocks*16, outBlocks*16]`.
    private let u: Tensor
    /// Bias padded to `outBlocks*16`.
    private let bias: Tensor

    public init(weight: Tensor, bias: Tensor?, activation: Activation = .none, padding: Int = 1, outputTile: Int = 4) {
        precondition(weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3,
                     "Winograd conv needs [out, in, 3, 3] weights, got \(weight.shape)")
        precondition(padding == 0 || padding == 1, "Winograd conv padding must be 0 or 1, got \(padding)")
        precondition(outputTile == 4 || outputTile == 6, "Winograd output tile must be 4 or 6, got \(outputTile)")
        self.padding = padding
        self.outputTile = outputTile
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        inBlocks = (inChannels + 15) / 16
        outBlocks = (outChannels + 15) / 16
        self.activation = activation
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16
        let products = (outputTile + 2) * (outputTile + 2)
        u = Tensor(zeros: [products, cinPad, coutPad])
        if outputTile == 6 {
            ck_wino63_weight_transform(u.data, weight.data, outChannels, inChannels, coutPad, cinPad)
        } else {
            ck_wino43_weight_transform(u.data, weight.data, outChannels, inChannels, coutPad, cinPad)
        }
        let b = Tensor(zeros: [coutPad])
        if let bias {
            precondition(bias.count == outChannels, "bias has \(bias.count) values for \(outChannels) outputs")
            b.data.update(from: bias.data, count: outChannels)
        }
        self.bias = b
    }

    /// Output size for an `h` x `w` input.
    public func outputSize(height h: Int, width w: Int) -> (height: Int, width: Int) {
        (h + 2 * padding - 2, w + 2 * padding - 2)
    }

    /// Convolves a P16 image (`input` holds at least `inBlocks` blocks of `h*w*16` floats) into the P16 `output`
    /// (`outBlocks` blocks of the output size, `outputSize`). With `residual`, writes `alpha*conv + beta*residual` (residual may alias output).
    /// With `workers`, batches of tile rows are shared out across its threads.
    public func forward(input: UnsafePointer<Float>, height h: Int, width w: Int,
                        output: UnsafeMutablePointer<Float>,
                        residual: (pointer: UnsafePointer<Float>, alpha: Float, beta: Float)? = nil,
                        scratch: ConvScratch, workers: ParallelWorkers? = nil) {
        let cinPad = inBlocks * 16, coutPad = outBlocks * 16
        let (oh, ow) = outputSize(height: h, width: w)
        precondition(oh > 0 && ow > 0, "Winograd conv output would be empty for a \(h)x\(w) input")
        let t = outputTile, products = (t + 2) * (t + 2)
        let tilesX = (ow + t - 1) / t, tilesY = (oh + t - 1) / t
        // Small images (a few tile rows): batches of at most tilesY / threads rows, so every thread gets work.
        let threads = workers?.count ?? 1
        let rowsPerBatch = max(1, min(tilesY, scratch.tilesPerBatch(cinPad: cinPad, coutPad: coutPad) / tilesX,
                                      (tilesY + threads - 1) / threads))
        let batchTiles = rowsPerBatch * tilesX
        let parts = min(workers?.count ?? 1, (tilesY + rowsPerBatch - 1) / rowsPerBatch)
        let buffers = scratch.reserve(slots: parts, v: products * (batchTiles * cinPad + 16),
                                      m: products * (batchTiles * coutPad + 16))
        let (leaky, slope) = activation.kernelArguments
        let u = self.u.data, bias = self.bias.data, pad = padding
        let res = residual?.pointer, alpha = residual?.alpha ?? 1, beta = residual?.beta ?? 0
        // Work is handed out in batches of tile rows from a shared counter, so a thread that gets descheduled
        // (busy machine) does not hold the others back; each thread uses its own scratch slot.
        let chunks = (tilesY + rowsPerBatch - 1) / rowsPerBatch
        ParallelWorkers.forEachChunk(chunks, slots: parts, on: workers) { slot, c in
            let ty0 = c * rowsPerBatch, ty1 = min(tilesY, ty0 + rowsPerBatch)
            if t == 6 {
                ck_wino63_conv_p16(output, input, u, bias, h, w, pad, cinPad, coutPad, ty0, ty1, batchTiles,
                                   buffers[slot].v, buffers[slot].m, leaky, slope, res, alpha, beta)
            } else {
                ck_wino43_conv_p16(output, input, u, bias, h, w, pad, cinPad, coutPad, ty0, ty1, batchTiles,
                                   buffers[slot].v, buffers[slot].m, leaky, slope, res, alpha, beta)
            }
        }
    }

    /// Tensor form of `forward`: reads the first `inBlocks` blocks of the P16 `input` (`[>=inBlocks, H, W, 16]`) and
    /// writes `outBlocks` blocks into `output` starting at block `outputBlock` (output may be the input tensor when
    /// the blocks do not overlap). With `residual`, writes `alpha*conv + beta*residual` (its first `outBlocks` blocks;
    /// it may be the output tensor). Bounds-checked.
    public func forward(_ input: Tensor, height h: Int, width w: Int, into output: Tensor, outputBlock: Int = 0,
                        residual: (tensor: Tensor, alpha: Float, beta: Float)? = nil,
                        scratch: ConvScratch, workers: ParallelWorkers? = nil) {
        let (oh, ow) = outputSize(height: h, width: w)
        let inPlane = h * w * 16, plane = oh * ow * 16
        precondition(input.count >= inBlocks * inPlane, "conv input \(input.shape) has fewer than \(inBlocks) blocks of \(h)×\(w)")
        precondition(outputBlock >= 0 && output.count >= (outputBlock + outBlocks) * plane,
                     "conv output \(output.shape) cannot hold \(outBlocks) blocks of \(oh)×\(ow) at block \(outputBlock)")
        if let r = residual {
            precondition(r.tensor.count >= outBlocks * plane, "conv residual \(r.tensor.shape) smaller than the output")
        }
        withExtendedLifetime((input, output, residual?.tensor)) {
            forward(input: input.data, height: h, width: w, output: output.data + outputBlock * plane,
                    residual: residual.map { (UnsafePointer($0.tensor.data), $0.alpha, $0.beta) },
                    scratch: scratch, workers: workers)
        }
    }

    /// Convenience: convolves a P16 tensor `[>=inBlocks, H, W, 16]` into a new P16 tensor `[outBlocks, H, W, 16]`.
    public func callAsFunction(_ x: Tensor, scratch: ConvScratch = ConvScratch()) -> Tensor {
        precondition(x.rank == 4 && x.shape[3] == 16 && x.shape[0] >= inBlocks, "P16 input expected, got \(x.shape)")
        let (oh, ow) = outputSize(height: x.shape[1], width: x.shape[2])
        let out = Tensor(zeros: [outBlocks, oh, ow, 16])
        forward(input: x.data, height: x.shape[1], width: x.shape[2], output: out.data, scratch: scratch)
        return out
    }
}
