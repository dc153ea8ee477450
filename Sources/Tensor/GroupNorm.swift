import CKernels

/// Per-channel sums for GroupNorm, split from the normalisation itself so that statistics can be collected over
/// several tiles of one image, combined, and then applied identically to every tile (seam-free tiled VAE).
///
/// Sums are kept per channel in double precision; `GroupNormStatistics.affine` folds them into per-channel
/// `scale`/`shift` (mean, biased variance, eps, gamma, beta) for `GroupNorm.apply`.
public struct GroupNormStatistics: Sendable, Equatable {
    public private(set) var sum: [Double]
    public private(set) var sumOfSquares: [Double]
    /// Number of pixels (per channel) accumulated so far.
    public private(set) var count: Int

    public init(channels: Int) {
        sum = [Double](repeating: 0, count: channels)
        sumOfSquares = [Double](repeating: 0, count: channels)
        count = 0
    }

    public var channels: Int { sum.count }

    /// Adds the pixels of `region` (rows `y0..<y0+rows`, cols `x0..<x0+cols`) of a planar `[C, H, W]` tensor
    /// (a batch-1 NCHW tensor is accepted too).
    public mutating func accumulate(_ x: Tensor, y0: Int, rows: Int, x0: Int, cols: Int) {
        let (c, h, w) = GroupNorm.planarDims(x)
        precondition(c == channels, "GroupNorm statistics for \(channels) channels, tensor has \(c)")
        precondition(y0 >= 0 && x0 >= 0 && y0 + rows <= h && x0 + cols <= w && rows >= 0 && cols >= 0,
                     "region \(y0)+\(rows), \(x0)+\(cols) outside \(h)x\(w)")
        if rows == 0 || cols == 0 { return }
        sum.withUnsafeMutableBufferPointer { s in
            sumOfSquares.withUnsafeMutableBufferPointer { q in
                ck_gn_channel_sums(x.data, c, h, w, y0, rows, x0, cols, s.baseAddress!, q.baseAddress!)
            }
        }
        count += rows * cols
    }

    /// Adds the whole tensor.
    public mutating func accumulate(_ x: Tensor) {
        let (_, h, w) = GroupNorm.planarDims(x)
        accumulate(x, y0: 0, rows: h, x0: 0, cols: w)
    }

    /// Adds another tile's statistics.
    public mutating func combine(_ other: GroupNormStatistics) {
        precondition(other.channels == channels, "combining statistics of \(other.channels) and \(channels) channels")
        for i in 0..<channels {
            sum[i] += other.sum[i]
            sumOfSquares[i] += other.sumOfSquares[i]
        }
        count += other.count
    }

    /// Per-channel `scale`, `shift` such that `x * scale + shift == (x - mean_g) / sqrt(var_g + eps) * gamma + beta`,
    /// with the biased (population) variance of each group, as PyTorch's GroupNorm.
    public func affine(groups: Int, eps: Float, gamma: Tensor?, beta: Tensor?) -> (scale: [Float], shift: [Float]) {
        precondition(groups > 0 && channels % groups == 0, "\(channels) channels not divisible into \(groups) groups")
        precondition(count > 0, "GroupNorm statistics are empty")
        let per = channels / groups
        var scale = [Float](repeating: 0, count: channels)
        var shift = [Float](repeating: 0, count: channels)
        let n = Double(count * per)
        for g in 0..<groups {
            var s = 0.0, q = 0.0
            for c in g * per..<(g + 1) * per { s += sum[c]; q += sumOfSquares[c] }
            let mean = s / n
            let variance = max(q / n - mean * mean, 0)
            let rstd = 1.0 / (variance + Double(eps)).squareRoot()
            for c in g * per..<(g + 1) * per {
                let gm = Double(gamma.map { $0.data[c] } ?? 1)
                let bt = Double(beta.map { $0.data[c] } ?? 0)
                scale[c] = Float(rstd * gm)
                shift[c] = Float(bt - mean * rstd * gm)
            }
        }
        return (scale, shift)
    }
}

/// GroupNorm on planar activations (`[C, H, W]` or batch-1 `[1, C, H, W]`), optionally fused with SiLU.
public enum GroupNorm {
    static func planarDims(_ x: Tensor) -> (Int, Int, Int) {
        switch x.rank {
        case 3: return (x.shape[0], x.shape[1], x.shape[2])
        case 4:
            precondition(x.shape[0] == 1, "GroupNorm kernels take one image at a time, got batch \(x.shape[0])")
            return (x.shape[1], x.shape[2], x.shape[3])
        default: preconditionFailure("GroupNorm expects [C,H,W] or [1,C,H,W], got \(x.shape)")
        }
    }

    /// `dst = src * scale[c] + shift[c]` (then SiLU if `silu`); `dst` may be `src`.
    public static func apply(_ src: Tensor, into dst: Tensor, scale: [Float], shift: [Float], silu: Bool) {
        let (c, h, w) = planarDims(src)
        precondition(dst.count == src.count, "GroupNorm output \(dst.shape) for input \(src.shape)")
        precondition(scale.count == c && shift.count == c, "GroupNorm affine for \(scale.count) channels, input has \(c)")
        ck_gn_apply(dst.data, src.data, c, h * w, scale, shift, silu ? 1 : 0)
    }

    /// Plain (untiled) GroupNorm: statistics of `x` itself, returns a new tensor.
    public static func forward(_ x: Tensor, groups: Int, eps: Float, gamma: Tensor?, beta: Tensor?,
                               silu: Bool = false) -> Tensor {
        var stats = GroupNormStatistics(channels: planarDims(x).0)
        stats.accumulate(x)
        let (scale, shift) = stats.affine(groups: groups, eps: eps, gamma: gamma, beta: beta)
        let y = Tensor(zeros: x.shape)
        apply(x, into: y, scale: scale, shift: shift, silu: silu)
        return y
    }
}
