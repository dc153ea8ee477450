import Checkpoints
import Tensor

/// A lazy Linear weight the low-precision kernels read in place: one stored tensor, or several stored tensors stacked
/// along rows (diffusers' separate to_q / to_k / to_v fused into a canonical `qkv` / `linear1`), each multiplied in
/// place into its own block of output columns, so no float32 copy of the fused matrix is ever made.
struct InPlaceWeight: @unchecked Sendable {
    /// Each stored row block and the first output feature it writes.
    let blocks: [(rowOffset: Int, weight: LowPrecisionWeight)]
    let rows: Int

    /// nil when some part is not a supported narrow type (float32, or a transform other than stacking rows): the
    /// Linear then converts the weight per call.
    init?(_ source: WeightSource, precision: ComputePrecision) {
        switch source.transform {
        case .none:
            guard let w = LowPrecisionWeight(source, precision: precision) else { return nil }
            blocks = [(0, w)]
        case .concatRows:
            var b: [(Int, LowPrecisionWeight)] = []
            var offset = 0
            for p in source.parts {
                guard p.info.shape.count == 2, p.info.shape[1] == source.shape[1],
                      let w = LowPrecisionWeight(WeightSource(name: p.info.name, parts: [p], transform: .none),
                                                 precision: precision) else { return nil }
                b.append((offset, w))
                offset += p.info.shape[0]
            }
            guard offset == source.shape[0] else { return nil }
            blocks = b
        case .swapHalves:
            return nil
        }
        rows = source.shape[0]
    }

    /// `x [m, cols] → [m, rows]` (+ bias).
    func linear(_ x: Tensor, bias: Tensor?) -> Tensor {
        if blocks.count == 1 { return blocks[0].weight.linear(x, bias: bias) }
        let cols = blocks[0].weight.matrix.cols
        let m = x.count / cols, n = rows
        let y = Tensor(zeros: [m, n])
        for (offset, w) in blocks {
            let width = w.matrix.rows
            let blockBias = bias.map { b in
                let t = Tensor(zeros: [width])
                t.copyValues(from: b, at: offset, count: width, to: 0)
                return t
            }
            let part = w.linear(x, bias: blockBias)
            y.withUnsafeMutablePointer { yp in
                part.withUnsafePointer { pp in
                    for r in 0..<m { (yp + r * n + offset).update(from: pp + r * width, count: width) }
                }
            }
        }
        return y
    }

    /// How the product runs (see `LowPrecisionWeight.kernelPath`); stacked blocks say how many.
    var kernelPath: String {
        let paths = Array(Set(blocks.map(\.weight.kernelPath))).sorted().joined(separator: " / ")
        return blocks.count == 1 ? paths : "\(paths) (\(blocks.count) stored row blocks)"
    }
}

extension LayerWeight {
    /// How a layer holds a stored weight: a zero-copy float32 view where the file allows it, the stored bytes read in
    /// place where the low-precision kernels can (bf16, f16, FP8, GGUF blocks, also stacked row blocks), else a
    /// resident float32 copy.
    public static func stored(_ source: WeightSource, precision: ComputePrecision) -> LayerWeight {
        if !source.isZeroCopy, InPlaceWeight(source, precision: precision) != nil { return .lazy(source) }
        return .resident(source.materialize())
    }
}
