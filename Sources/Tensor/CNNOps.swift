import CKernels

/// Elementwise and layout ops for CNNs on NCHW tensors.
extension Tensor {
    /// Nearest-neighbour 2x upsampling of an `[N, C, H, W]` tensor to `[N, C, 2H, 2W]`.
    public func upsampledNearest2x() -> Tensor {
        precondition(rank == 4, "upsample expects [N, C, H, W], got \(shape)")
        let out = Tensor(zeros: [shape[0], shape[1], shape[2] * 2, shape[3] * 2])
        ck_upsample_nearest2x(out.data, data, shape[0] * shape[1], shape[2], shape[3], 1)
        return out
    }

    /// Concatenates `[N, Ci, H, W]` tensors along the channel axis.
    public static func concatChannels(_ parts: [Tensor]) -> Tensor {
        precondition(!parts.isEmpty, "concat of nothing")
        let n = parts[0].shape[0], h = parts[0].shape[2], w = parts[0].shape[3]
        for p in parts {
            precondition(p.rank == 4 && p.shape[0] == n && p.shape[2] == h && p.shape[3] == w,
                         "concat shapes differ: \(parts.map(\.shape))")
        }
        let c = parts.reduce(0) { $0 + $1.shape[1] }
        let out = Tensor(zeros: [n, c, h, w])
        var dst = out.data
        for b in 0..<n {
            for p in parts {
                let len = p.shape[1] * h * w
                dst.update(from: p.data + b * len, count: len)
                dst += len
            }
        }
        return out
    }

    /// `self = a*self + b*other` in place (shapes must have the same element count).
    public func axpby(_ other: Tensor, a: Float, b: Float) {
        precondition(count == other.count, "axpby: \(shape) vs \(other.shape)")
        ck_axpby(data, other.data, a, b, count)
    }

    /// `self += other` in place.
    public func add(_ other: Tensor) {
        precondition(count == other.count, "add: \(shape) vs \(other.shape)")
        ck_add_inplace(data, other.data, count)
    }

    /// `self *= a` in place.
    public func scale(by a: Float) { ck_scale_inplace(data, a, count) }

    /// LeakyReLU in place (slope 0 is ReLU).
    public func leakyReLU(slope: Float) { ck_leaky_relu_inplace(data, slope, count) }

    /// Adds a per-channel bias to an `[N, C, H, W]` tensor in place.
    public func addChannelBias(_ bias: Tensor) {
        precondition(rank == 4 && bias.count == shape[1], "bias \(bias.shape) for \(shape)")
        let plane = shape[2] * shape[3]
        for b in 0..<shape[0] { ck_add_channel_bias(data + b * shape[1] * plane, bias.data, shape[1], plane) }
    }

    /// Packs an `[C, H, W]` or `[1, C, H, W]` tensor into the 16-channel-block layout `[ceil(C/16), H, W, 16]`
    /// (padding channels are zero). See `WinogradConv3x3`.
    public func packed16() -> Tensor {
        let (c, h, w) = chw()
        let out = Tensor(zeros: [(c + 15) / 16, h, w, 16])
        ck_pack16(out.data, data, c, h * w)
        return out
    }

    /// Unpacks a `[blocks, H, W, 16]` tensor into `[1, channels, H, W]` (the first `channels` channels).
    public func unpacked16(channels: Int) -> Tensor {
        precondition(rank == 4 && shape[3] == 16 && channels <= shape[0] * 16, "unpack16 of \(shape) to \(channels)")
        let out = Tensor(zeros: [1, channels, shape[1], shape[2]])
        ck_unpack16(out.data, data, channels, shape[1] * shape[2])
        return out
    }

    private func chw() -> (Int, Int, Int) {
        if rank == 3 { return (shape[0], shape[1], shape[2]) }
        precondition(rank == 4 && shape[0] == 1, "expected [C, H, W] or [1, C, H, W], got \(shape)")
        return (shape[1], shape[2], shape[3])
    }
}

/// Ops on the 16-channel-block layout `[blocks, H, W, 16]` ("P16") used by `WinogradConv3x3`.
extension Tensor {
    /// Nearest-neighbour 2x upsampling of a P16 tensor `[blocks, H, W, 16]` to `[blocks, 2H, 2W, 16]`.
    public func upsampledNearest2xPacked16() -> Tensor {
        precondition(rank == 4 && shape[3] == 16, "P16 tensor expected, got \(shape)")
        let out = Tensor(zeros: [shape[0], shape[1] * 2, shape[2] * 2, 16])
        ck_upsample_nearest2x(out.data, data, shape[0], shape[1], shape[2], 16)
        return out
    }

    /// The first `blocks` channel blocks of a P16 tensor, as a view (no copy).
    public func packed16Prefix(blocks: Int) -> Tensor {
        precondition(rank == 4 && shape[3] == 16 && blocks <= shape[0], "P16 prefix \(blocks) of \(shape)")
        return Tensor(viewing: data, shape: [blocks, shape[1], shape[2], 16], owner: self)
    }
}

extension Tensor {
    /// Rows `outputRows` (even bounds) of the nearest-2x upsampling of this P16 tensor `[blocks, h, w, 16]`, written
    /// to `dst` (`[blocks, outputRows.count, 2w, 16]`, or larger: only the first rows of each block plane are used,
    /// block planes `outputRows.count * 2w * 16` apart).
    public func upsampleNearest2xPacked16(outputRows: Range<Int>, into dst: Tensor) {
        precondition(rank == 4 && shape[3] == 16, "P16 tensor expected, got \(shape)")
        let blocks = shape[0], h = shape[1], w = shape[2]
        precondition(outputRows.lowerBound % 2 == 0 && outputRows.upperBound % 2 == 0 && outputRows.lowerBound >= 0
                     && outputRows.upperBound <= 2 * h, "rows \(outputRows) of a \(2 * h)-row upsample")
        let srcRows = outputRows.count / 2
        precondition(dst.count >= blocks * outputRows.count * 2 * w * 16, "destination too small")
        for b in 0..<blocks {
            ck_upsample_nearest2x(dst.data + b * outputRows.count * 2 * w * 16,
                                  data + b * h * w * 16 + (outputRows.lowerBound / 2) * w * 16, 1, srcRows, w, 16)
        }
    }

    /// Copies channels `0..<channels` of rows `rows` of this P16 tensor (`[blocks, H', W, 16]`) into rows
    /// `destinationRow...` of the planar `dst` `[1, C, H, W]`.
    public func unpack16Rows(_ rows: Range<Int>, channels: Int, into dst: Tensor, destinationRow: Int) {
        precondition(rank == 4 && shape[3] == 16 && dst.rank == 4 && dst.shape[3] == shape[2], "unpack16Rows shapes")
        precondition(channels <= dst.shape[1] && destinationRow + rows.count <= dst.shape[2], "rows out of range")
        let w = shape[2], plane = shape[1] * w * 16, dstPlane = dst.shape[2] * w
        for c in 0..<channels {
            ck_unpack16(dst.data + c * dstPlane + destinationRow * w,
                        data + (c / 16) * plane + rows.lowerBound * w * 16 + (c % 16), 1, rows.count * w)
        }
    }
}
