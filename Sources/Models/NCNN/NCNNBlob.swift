import CKernels
import Foundation
import Tensor

/// One blob of a running `NCNNGraph`, in one of two layouts:
/// - planar: `[C, H, W]` (or a `[N]` vector), as ncnn's layers define them;
/// - P16: the 16-channel-block layout `[ceil(C/16), H, W, 16]` of `WinogradConv3x3` (`Tensor.packed16`), holding
///   `channels` real channels; the padding lanes are always zero.
///
/// Winograd convolutions read and write P16, so a chain of convolutions (and the PReLU, BinaryOp, Eltwise, Scale,
/// Crop and Split layers between them) stays in P16 instead of being packed and unpacked around every convolution.
/// Layers that only run on planar blobs get `planar` (one unpack); the graph's output is always planar.
/// Every P16 operation keeps the padding lanes at zero (the zero-padded convolution weights then ignore them).
struct NCNNBlob {
    let tensor: Tensor
    /// Real channel count of a P16 blob; nil when planar.
    let p16Channels: Int?

    init(planar: Tensor) {
        tensor = planar
        p16Channels = nil
    }

    init(p16: Tensor, channels: Int) {
        precondition(p16.rank == 4 && p16.shape[3] == 16 && p16.shape[0] == (channels + 15) / 16,
                     "P16 blob of \(channels) channels expected, got \(p16.shape)")
        tensor = p16
        p16Channels = channels
    }

    var isP16: Bool { p16Channels != nil }

    /// `(C, H, W)` of a 3-D blob (either layout), nil for vectors.
    var chw: (c: Int, h: Int, w: Int)? {
        if let c = p16Channels { return (c, tensor.shape[1], tensor.shape[2]) }
        return tensor.rank == 3 ? (tensor.shape[0], tensor.shape[1], tensor.shape[2]) : nil
    }

    /// The planar tensor (unpacked when P16; channel blocks shared out across the workers).
    func planar(_ context: NCNNRunContext) -> Tensor {
        guard let c = p16Channels else { return tensor }
        return context.timed("unpack16") {
            let hw = tensor.shape[1] * tensor.shape[2]
            let out = context.uninitializedTensor([c, tensor.shape[1], tensor.shape[2]])
            tensor.withUnsafePointer { src in
                out.withUnsafeMutablePointer { dst in
                    context.parallel(tensor.shape[0]) { blocks in
                        for b in blocks { ck_unpack16(dst + b * 16 * hw, src + b * hw * 16, min(16, c - b * 16), hw) }
                    }
                }
            }
            return out
        }
    }

    /// The P16 tensor of a 3-D blob (packed when planar: a new tensor; blocks shared out across the workers).
    func p16(_ context: NCNNRunContext) -> Tensor {
        if isP16 { return tensor }
        return context.timed("pack16") {
            let (c, h, w) = (tensor.shape[0], tensor.shape[1], tensor.shape[2])
            let hw = h * w, blocks = (c + 15) / 16
            let out = context.uninitializedTensor([blocks, h, w, 16])  // pack writes the padding lanes as 0
            tensor.withUnsafePointer { src in
                out.withUnsafeMutablePointer { dst in
                    context.parallel(blocks) { range in
                        for b in range { ck_pack16(dst + b * hw * 16, src + b * 16 * hw, min(16, c - b * 16), hw) }
                    }
                }
            }
            return out
        }
    }

    /// A P16 tensor the caller may overwrite: this blob's own P16 tensor when `mayOverwrite`, else a new one.
    func p16ForWriting(_ context: NCNNRunContext, mayOverwrite: Bool) -> Tensor {
        if isP16 {
            if mayOverwrite { return tensor }
            let t = context.uninitializedTensor(tensor.shape)
            t.copyValues(from: tensor)
            return t
        }
        return p16(context)
    }
}

/// Kernels on P16 tensors `[blocks, H, W, 16]` for the layers the graph runs without unpacking.
enum NCNNPacked {
    /// Channel values padded with zeros to whole 16-lane blocks.
    static func lanes(_ v: [Float], blocks: Int) -> [Float] {
        var s = [Float](repeating: 0, count: blocks * 16)
        for i in v.indices { s[i] = v[i] }
        return s
    }

    /// Rows `h` and columns `w` of every block (all channels).
    static func cropped(_ t: Tensor, h: Range<Int>, w: Range<Int>, context: NCNNRunContext) -> Tensor {
        let blocks = t.shape[0], H = t.shape[1], W = t.shape[2]
        let out = context.uninitializedTensor([blocks, h.count, w.count, 16])
        let rowLen = w.count * 16
        t.withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                context.parallel(blocks) { range in
                    for b in range {
                        var d = dst + b * h.count * rowLen
                        for y in h {
                            d.update(from: src + ((b * H + y) * W + w.lowerBound) * 16, count: rowLen)
                            d += rowLen
                        }
                    }
                }
            }
        }
        return out
    }

    /// Channel concatenation into one P16 tensor: the blocks of each input one after the other, so every input
    /// but the last must hold a whole number of blocks; nil otherwise (or for sizes that differ: the planar path
    /// handles and reports those).
    static func concat(_ ins: [NCNNBlob], context: NCNNRunContext) -> NCNNBlob? {
        guard let d0 = ins[0].chw else { return nil }
        var channels = 0
        for (i, b) in ins.enumerated() {
            guard let d = b.chw, d.h == d0.h, d.w == d0.w, i == ins.count - 1 || d.c % 16 == 0 else { return nil }
            channels += d.c
        }
        let parts = ins.map { $0.p16(context) }
        let plane = d0.h * d0.w * 16
        let out = context.uninitializedTensor([parts.reduce(0) { $0 + $1.shape[0] }, d0.h, d0.w, 16])
        var block = 0
        for t in parts {
            out.copyValues(from: t, count: t.count, to: block * plane)
            block += t.shape[0]
        }
        return NCNNBlob(p16: out, channels: channels)
    }

    /// Global average or max pooling of a P16 tensor to a `[channels]` vector (16 lanes at a time, blocks shared
    /// out across the workers).
    static func globalPooling(_ t: Tensor, channels: Int, average: Bool, context: NCNNRunContext) -> Tensor {
        let blocks = t.shape[0], hw = t.shape[1] * t.shape[2]
        let lanes = Tensor(uninitialized: [blocks * 16])
        t.withUnsafePointer { src in
            lanes.withUnsafeMutablePointer { dst in
                context.parallel(blocks) { range in
                    for b in range {
                        let q = UnsafeRawPointer(src + b * hw * 16)
                        var acc = average ? SIMD16<Float>(repeating: 0) : SIMD16<Float>(repeating: -.infinity)
                        for i in 0..<hw {
                            let v = q.loadUnaligned(fromByteOffset: i * 64, as: SIMD16<Float>.self)
                            acc = average ? acc + v : pointwiseMax(acc, v)
                        }
                        if average { acc /= SIMD16<Float>(repeating: Float(hw)) }
                        UnsafeMutableRawPointer(dst + b * 16).storeBytes(of: acc, as: SIMD16<Float>.self)
                    }
                }
            }
        }
        return Tensor(shape: [channels], values: Array(lanes.toArray()[0..<channels]))
    }

    /// ncnn nearest resize of a P16 tensor (source index `min(Int(dst * (1/scale)), size - 1)`, as the planar
    /// `NCNNLayerOp.nearest`); exact 2x uses the upsampling kernel.
    static func nearest(_ t: Tensor, outH: Int, outW: Int, hs: Float, ws: Float, context: NCNNRunContext) -> Tensor {
        let blocks = t.shape[0], h = t.shape[1], w = t.shape[2]
        let xofs = (0..<outW).map { min(Int(Float($0) * (1 / ws)), w - 1) }
        let yofs = (0..<outH).map { min(Int(Float($0) * (1 / hs)), h - 1) }
        if outH == 2 * h, outW == 2 * w, xofs == (0..<outW).map({ $0 / 2 }), yofs == (0..<outH).map({ $0 / 2 }) {
            return t.upsampledNearest2xPacked16()
        }
        let out = context.uninitializedTensor([blocks, outH, outW, 16])
        t.withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                context.parallel(blocks) { range in
                    for b in range {
                        for oy in 0..<outH {
                            let s = src + (b * h + yofs[oy]) * w * 16
                            let d = dst + (b * outH + oy) * outW * 16
                            for ox in 0..<outW { (d + ox * 16).update(from: s + xofs[ox] * 16, count: 16) }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `x = x >= 0 ? x : slope[c] * x` in place, per channel (`slopes` holds whole blocks, zero padded).
    static func prelu(_ t: Tensor, slopes: [Float], context: NCNNRunContext) {
        let blocks = t.shape[0], hw = t.shape[1] * t.shape[2]
        t.withUnsafeMutablePointer { p in
            slopes.withUnsafeBufferPointer { s in
                context.parallel(blocks) { range in for b in range {
                    let q = p + b * hw * 16, sb = s.baseAddress! + b * 16
                    for i in 0..<hw {
                        let r = q + i * 16
                        for l in 0..<16 { let v = r[l]; r[l] = v >= 0 ? v : v * sb[l] }
                    }
                } }
            }
        }
    }

    /// BinaryOp ops that keep zero padding lanes at zero (0 op 0 == 0): add, sub, mul, max, min, rsub.
    static func keepsZero(_ op: Int) -> Bool { [0, 1, 2, 4, 5, 7].contains(op) }

    /// `f(a[i], b[i])` into `a`, in slices shared out across the workers.
    @inline(__always)
    static func map(_ t: Tensor, _ other: Tensor, context: NCNNRunContext,
                    _ f: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void) {
        precondition(t.count == other.count, "elementwise op of \(t.shape) and \(other.shape)")
        let n = t.count, slice = 1 << 16
        t.withUnsafeMutablePointer { a in
            other.withUnsafePointer { b in
                context.parallel((n + slice - 1) / slice) { range in
                    for k in range { f(a + k * slice, b + k * slice, min(slice, n - k * slice)) }
                }
            }
        }
    }

    /// `a = a op b` in place, elementwise (same shape; `keepsZero(op)`).
    static func binary(op: Int, _ a: Tensor, _ b: Tensor, context: NCNNRunContext) {
        switch op {
        case 0: map(a, b, context: context) { ck_add_inplace($0, $1, $2) }
        case 1: map(a, b, context: context) { ck_axpby($0, $1, 1, -1, $2) }
        case 2: map(a, b, context: context) { p, q, n in for i in 0..<n { p[i] *= q[i] } }
        case 4: map(a, b, context: context) { p, q, n in for i in 0..<n { p[i] = max(p[i], q[i]) } }
        case 5: map(a, b, context: context) { p, q, n in for i in 0..<n { p[i] = min(p[i], q[i]) } }
        default: map(a, b, context: context) { ck_axpby($0, $1, -1, 1, $2) }  // 7: b - a
        }
    }

    @inline(__always)
    static func perChannelMap(_ t: Tensor, _ s: [Float], context: NCNNRunContext, _ f: (Float, Float) -> Float) {
        let blocks = t.shape[0], hw = t.shape[1] * t.shape[2]
        t.withUnsafeMutablePointer { p in
            s.withUnsafeBufferPointer { sp in
                context.parallel(blocks) { range in
                    for b in range {
                        let q = p + b * hw * 16, sb = sp.baseAddress! + b * 16
                        for i in 0..<hw {
                            let r = q + i * 16
                            for l in 0..<16 { r[l] = f(r[l], sb[l]) }
                        }
                    }
                }
            }
        }
    }

    /// `t = t op s[c]` (or `s[c] op t` when `vectorFirst`) in place; `s` holds whole blocks, zero padded;
    /// `keepsZero(op)`.
    static func perChannel(op: Int, _ t: Tensor, _ s: [Float], vectorFirst: Bool, context: NCNNRunContext) {
        switch (op, vectorFirst) {
        case (0, _): perChannelMap(t, s, context: context) { $0 + $1 }
        case (2, _): perChannelMap(t, s, context: context) { $0 * $1 }
        case (4, _): perChannelMap(t, s, context: context) { max($0, $1) }
        case (5, _): perChannelMap(t, s, context: context) { min($0, $1) }
        case (1, false), (7, true): perChannelMap(t, s, context: context) { $0 - $1 }
        default: perChannelMap(t, s, context: context) { $1 - $0 }  // (1, true), (7, false)
        }
    }
}

extension NCNNLayerOp {
    /// The layer type, for profiles (convolutions split by kernel: Winograd or im2col + BLAS).
    var typeName: String {
        switch self {
        case .input: return "Input"
        case .convolution(let c): return c.winograd != nil ? "Convolution(winograd)" : "Convolution(im2col)"
        case .deconvolution: return "Deconvolution"
        case .split: return "Split"
        case .concat: return "Concat"
        case .eltwise: return "Eltwise"
        case .binary: return "BinaryOp"
        case .cropLike, .cropRanges: return "Crop"
        case .globalPooling: return "Pooling"
        case .innerProduct: return "InnerProduct"
        case .prelu: return "PReLU"
        case .pixelShuffle: return "PixelShuffle"
        case .interp: return "Interp"
        case .scale: return "Scale"
        }
    }

    /// Runs the layer on blobs, keeping P16 where the layer has a P16 form (see `NCNNBlob`); other layers get planar
    /// inputs and run through `forward(_:outputs:context:)`. `mayOverwrite`: the first input's buffer has no other
    /// reader after this layer (the graph proved it at load), so the layer may write its result into it.
    func forward(blobs ins: [NCNNBlob], outputs: Int, mayOverwrite: Bool, context: NCNNRunContext) throws -> [NCNNBlob] {
        switch self {
        case .input:
            return ins
        case .split:
            return Array(repeating: ins[0], count: outputs)
        case .convolution(let c):
            return [try c.forward(ins[0], context: context)]
        case .deconvolution(let d) where d.packed != nil:
            return [try d.forwardP16(ins[0], context: context)]
        case .deconvolution(let d):
            return [NCNNBlob(planar: try d.forward(ins[0], workers: context.workers))]
        case .globalPooling(let average) where ins[0].isP16:
            return [NCNNBlob(planar: NCNNPacked.globalPooling(ins[0].tensor, channels: ins[0].p16Channels!,
                                                              average: average, context: context))]
        case .concat where ins.contains(where: \.isP16):
            if let r = NCNNPacked.concat(ins, context: context) { return [r] }
        case .interp(1, let hs, let ws, let outH0, let outW0) where ins[0].isP16:
            let (c, h, w) = ins[0].chw!
            let outH = outH0 > 0 ? outH0 : Int(Float(h) * hs), outW = outW0 > 0 ? outW0 : Int(Float(w) * ws)
            guard outH > 0, outW > 0 else { break }
            return [NCNNBlob(p16: NCNNPacked.nearest(ins[0].tensor, outH: outH, outW: outW,
                                                     hs: outH0 > 0 ? Float(outH) / Float(h) : hs,
                                                     ws: outW0 > 0 ? Float(outW) / Float(w) : ws, context: context),
                             channels: c)]
        case .prelu(let slopes) where ins[0].isP16:
            let c = ins[0].p16Channels!
            guard slopes.count == 1 || slopes.count == c else {
                throw Self.bad("PReLU has \(slopes.count) slopes for \(c) channels")
            }
            let t = ins[0].p16ForWriting(context, mayOverwrite: mayOverwrite)
            let s = slopes.count == 1 ? [Float](repeating: slopes[0], count: c) : slopes
            NCNNPacked.prelu(t, slopes: NCNNPacked.lanes(s, blocks: t.shape[0]), context: context)
            return [NCNNBlob(p16: t, channels: c)]
        case .binary(let op, nil) where NCNNPacked.keepsZero(op) && ins.contains(where: \.isP16):
            if let r = try Self.binaryP16(op: op, ins[0], ins[1], mayOverwrite: mayOverwrite, context: context) { return [r] }
        case .eltwise(let op, let coeffs) where ins.contains(where: \.isP16):
            // Every Eltwise op (product, weighted sum, max) keeps zero lanes at zero: run it on P16.
            guard let d = ins[0].chw, ins.allSatisfy({ $0.chw.map { $0 == d } ?? false }) else { break }
            let out = ins[0].p16ForWriting(context, mayOverwrite: mayOverwrite)
            let rest = ins.dropFirst().map { $0.p16(context) }
            if op == 1, !coeffs.isEmpty { out.scale(by: coeffs[0]) }
            for (k, t) in rest.enumerated() {
                switch op {
                case 1:
                    if coeffs.isEmpty { NCNNPacked.binary(op: 0, out, t, context: context) } else {
                        let c = coeffs[k + 1]
                        NCNNPacked.map(out, t, context: context) { ck_axpby($0, $1, 1, c, $2) }
                    }
                case 0: NCNNPacked.binary(op: 2, out, t, context: context)
                default: NCNNPacked.binary(op: 4, out, t, context: context)
                }
            }
            return [NCNNBlob(p16: out, channels: d.c)]
        case .scale(nil, nil) where ins[0].isP16:
            // Per-channel scale by a blob: a per-channel product.
            let c = ins[0].p16Channels!
            guard ins[1].p16Channels == nil, ins[1].tensor.count == c else { break }
            let out = ins[0].p16ForWriting(context, mayOverwrite: mayOverwrite)
            NCNNPacked.perChannel(op: 2, out, NCNNPacked.lanes(ins[1].tensor.toArray(), blocks: out.shape[0]),
                                  vectorFirst: false, context: context)
            return [NCNNBlob(p16: out, channels: c)]
        case .cropLike(let wo, let ho, let co) where ins[0].isP16 && co == 0:
            let (c, h, w) = ins[0].chw!
            guard let r = ins[1].chw, r.c == c, ho >= 0, wo >= 0, ho + r.h <= h, wo + r.w <= w else { break }
            return [NCNNBlob(p16: NCNNPacked.cropped(ins[0].tensor, h: ho..<(ho + r.h), w: wo..<(wo + r.w), context: context),
                             channels: c)]
        case .cropRanges(let starts, let ends) where ins[0].isP16:
            let (c, h, w) = ins[0].chw!
            guard let r = Self.cropRanges(starts: starts, ends: ends, dims: [c, h, w]), r[0] == 0..<c else { break }
            return [NCNNBlob(p16: NCNNPacked.cropped(ins[0].tensor, h: r[1], w: r[2], context: context), channels: c)]
        default:
            break
        }
        let planar = ins.map { $0.planar(context) }
        return try forward(planar, outputs: outputs, context: context).map { NCNNBlob(planar: $0) }
    }

    /// BinaryOp with at least one P16 input: same-shape blobs (the result in P16) or a `[C]` vector against a 3-D
    /// blob; nil for the shapes this does not cover (the planar path handles them).
    static func binaryP16(op: Int, _ a: NCNNBlob, _ b: NCNNBlob, mayOverwrite: Bool,
                          context: NCNNRunContext) throws -> NCNNBlob? {
        if let da = a.chw, let db = b.chw, da == db {
            let out = a.p16ForWriting(context, mayOverwrite: mayOverwrite)
            NCNNPacked.binary(op: op, out, b.p16(context), context: context)
            return NCNNBlob(p16: out, channels: da.c)
        }
        // A per-channel vector ([C] or one value per channel) against a P16 blob.
        func isVector(_ x: NCNNBlob, _ c: Int) -> Bool {
            !x.isP16 && x.tensor.count == c && (x.tensor.rank < 3 || (x.tensor.shape[1] == 1 && x.tensor.shape[2] == 1))
        }
        if a.isP16, let d = a.chw, isVector(b, d.c), d.c > 1 {
            let out = a.p16ForWriting(context, mayOverwrite: mayOverwrite)
            NCNNPacked.perChannel(op: op, out, NCNNPacked.lanes(b.tensor.toArray(), blocks: out.shape[0]), vectorFirst: false,
                                  context: context)
            return NCNNBlob(p16: out, channels: d.c)
        }
        if b.isP16, let d = b.chw, isVector(a, d.c), d.c > 1 {
            let out = b.tensor.copy()
            NCNNPacked.perChannel(op: op, out, NCNNPacked.lanes(a.tensor.toArray(), blocks: out.shape[0]), vectorFirst: true,
                                  context: context)
            return NCNNBlob(p16: out, channels: d.c)
        }
        return nil
    }
}
