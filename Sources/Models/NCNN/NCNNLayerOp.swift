import CKernels
import Checkpoints
import Foundation
import Tensor

/// A fused activation of an ncnn layer (`activation_type` 9=, parameters 10=).
enum NCNNActivation: Sendable, Equatable {
    case none, relu, leaky(Float), clip(Float, Float), sigmoid

    init(type: Int, params: [Float], refuse: (String) -> NCNNGraphError) throws {
        switch type {
        case 0: self = .none
        case 1: self = .relu
        case 2: self = .leaky(params.first ?? 0)
        case 3:
            guard params.count >= 2 else { throw refuse("activation_type 3 (clip) needs 2 parameters") }
            self = .clip(params[0], params[1])
        case 4: self = .sigmoid
        default: throw refuse("activation_type \(type) is not implemented (0 none, 1 ReLU, 2 LeakyReLU, 3 clip, 4 sigmoid)")
        }
    }

    /// The part a convolution kernel can fuse (ReLU / LeakyReLU); the rest is applied by `applyRest`.
    var fused: Activation {
        switch self {
        case .relu: return .relu
        case .leaky(let s): return .leakyReLU(slope: s)
        default: return .none
        }
    }

    /// The activation the kernels apply when fusing `fused` (equal to `self` when nothing is left for `applyRest`).
    var fusedPart: NCNNActivation {
        switch self {
        case .relu, .leaky: return self
        default: return .none
        }
    }

    /// Applies what `fused` does not cover.
    func applyRest(_ t: Tensor) {
        switch self {
        case .none, .relu, .leaky: return
        case .clip(let lo, let hi):
            t.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = min(max(p[i], lo), hi) } }
        case .sigmoid:
            t.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = 1 / (1 + expf(-p[i])) } }
        }
    }

    /// Applies the whole activation in place.
    func apply(_ t: Tensor) {
        switch self {
        case .relu: t.leakyReLU(slope: 0)
        case .leaky(let s): t.leakyReLU(slope: s)
        default: applyRest(t)
        }
    }
}

/// A convolution on P16 blobs: Winograd for 3x3 stride 1 (padding 0 or 1; F(6x6,3x3) on maps large enough for its
/// bigger tiles, F(4x4,3x3) otherwise), P16 im2col + small-N GEMM otherwise.
struct NCNNConvOp: Sendable {
    let conv: NCNNConvolution
    let winograd: WinogradConv3x3?
    /// The same convolution as F(6x6,3x3) (`winograd` is F(4x4,3x3)); see `prefersLargeTiles`.
    let winograd6: WinogradConv3x3?
    let general: PackedConv2D?
    let activation: NCNNActivation

    init(_ c: NCNNConvolution, activation: NCNNActivation) {
        conv = c
        self.activation = activation
        let pads = [c.padLeft, c.padTop, c.padRight, c.padBottom]
        if c.kernelW == 3, c.kernelH == 3, c.strideW == 1, c.strideH == 1, c.dilationW == 1, c.dilationH == 1,
           pads.allSatisfy({ $0 == pads[0] }), pads[0] <= 1 {
            winograd = WinogradConv3x3(weight: c.weight, bias: c.bias, activation: activation.fused, padding: pads[0])
            winograd6 = WinogradConv3x3(weight: c.weight, bias: c.bias, activation: activation.fused, padding: pads[0],
                                        outputTile: 6)
            general = nil
        } else {
            winograd = nil
            winograd6 = nil
            general = PackedConv2D(weight: c.weight, bias: c.bias, stride: (c.strideH, c.strideW),
                             padding: (c.padTop, c.padLeft, c.padBottom, c.padRight),
                             dilation: (c.dilationH, c.dilationW), activation: activation.fused)
        }
    }

    /// F(6x6,3x3) for an `height` x `width` output when its 8x8 tiles need at most 85% of the products of F(4x4,3x3)'s
    /// 6x6 tiles (64 vs 36 per tile, edge tiles counted whole). Measured on this project's AVX-512 kernels
    /// (1 thread): F(6,3) takes 0.79-0.87x of F(4,3)'s time where this estimate is 0.73-0.82, and the same time at
    /// 0.91 (26x26 outputs), so the margin keeps small maps on F(4,3).
    static func prefersLargeTiles(height oh: Int, width ow: Int) -> Bool {
        let small = ((oh + 3) / 4) * ((ow + 3) / 4) * 36, large = ((oh + 5) / 6) * ((ow + 5) / 6) * 64
        return Double(large) <= 0.85 * Double(small)
    }

    /// Reads and writes P16 blobs (a planar input is packed); the output stays P16 unless the activation has a part
    /// the kernels do not fuse.
    func forward(_ x: NCNNBlob, context: NCNNRunContext) throws -> NCNNBlob {
        guard let d = x.chw, d.c == conv.inChannels else {
            throw NCNNGraphError(.badShape, "Convolution expects [\(conv.inChannels), H, W], got \(x.tensor.shape)")
        }
        let (c, h, w) = d
        let packed = x.p16(context)
        let y: Tensor
        if let winograd {
            let (oh, ow) = winograd.outputSize(height: h, width: w)
            guard oh > 0, ow > 0 else {
                throw NCNNGraphError(.badShape, "Convolution 3x3 without padding needs at least 3x3 input, got \([c, h, w])")
            }
            // Every value (padding lanes included) is written by the output transform.
            y = context.uninitializedTensor([winograd.outBlocks, oh, ow, 16])
            let kernel = Self.prefersLargeTiles(height: oh, width: ow) ? winograd6! : winograd
            kernel.forward(packed, height: h, width: w, into: y, scratch: context.scratch, workers: context.workers)
        } else {
            let g = general!
            let (oh, ow) = g.outputSize(height: h, width: w)
            guard oh > 0, ow > 0 else {
                throw NCNNGraphError(.badShape, "Convolution output would be empty for input \([c, h, w])")
            }
            y = context.uninitializedTensor([g.outBlocks, oh, ow, 16])
            g.forward(packed, height: h, width: w, into: y, workers: context.workers)
        }
        let out = NCNNBlob(p16: y, channels: conv.outChannels)
        guard activation != activation.fusedPart else { return out }
        let planar = out.planar(context)
        activation.applyRest(planar)
        return NCNNBlob(planar: planar)
    }
}

/// A transposed convolution (ncnn `Deconvolution`): BLAS product of the input with the `[out*kh*kw, in]` weights,
/// then the columns are scattered (col2im) onto the output; bias, activation, then the padding is cut away.
struct NCNNDeconvOp: Sendable {
    let outChannels: Int
    let inChannels: Int
    let kernelW: Int, kernelH: Int
    let strideW: Int, strideH: Int
    let dilationW: Int, dilationH: Int
    let padLeft: Int, padTop: Int, padRight: Int, padBottom: Int
    let outputPadRight: Int, outputPadBottom: Int
    /// `[out, kh, kw, in]` (the ncnn `[out, in, kh, kw]` weights transposed once at load).
    let weightT: Tensor
    let bias: Tensor?
    let activation: NCNNActivation
    /// The P16 form (one small-N GEMM per output phase, `PackedTransposedConv2D`), when there is no dilation or
    /// output padding and the activation is fusable (every deconvolution of the model zoo).
    let packed: PackedTransposedConv2D?

    init(layer: NCNNLayer, bin: inout NCNNModelBin, refuse: (String) -> NCNNGraphError) throws {
        let p = layer.params
        outChannels = p.int(0, default: 0)
        kernelW = p.int(1, default: 0)
        kernelH = p.int(11, default: kernelW)
        dilationW = p.int(2, default: 1)
        dilationH = p.int(12, default: dilationW)
        strideW = p.int(3, default: 1)
        strideH = p.int(13, default: strideW)
        padLeft = p.int(4, default: 0)
        padTop = p.int(14, default: padLeft)
        padRight = p.int(15, default: padLeft)
        padBottom = p.int(16, default: padTop)
        outputPadRight = p.int(18, default: 0)
        outputPadBottom = p.int(19, default: outputPadRight)
        let biasTerm = p.int(5, default: 0)
        let weightSize = p.int(6, default: 0)
        activation = try NCNNActivation(type: p.int(9, default: 0), params: p.floats(10) ?? [], refuse: refuse)
        if p.int(20, default: 0) != 0 || p.int(21, default: 0) != 0 { throw refuse("output_w/output_h (20=/21=) are not implemented") }
        if p.int(28, default: 0) != 0 { throw refuse("dynamic weights are not implemented") }
        guard outChannels > 0, kernelW > 0, kernelH > 0, strideW > 0, strideH > 0, dilationW > 0, dilationH > 0,
              weightSize > 0, weightSize % (outChannels * kernelW * kernelH) == 0 else {
            throw refuse("num_output, kernel, stride, dilation and weight_data_size must be > 0 and consistent")
        }
        guard [padLeft, padTop, padRight, padBottom, outputPadRight, outputPadBottom].allSatisfy({ $0 >= 0 }) else {
            throw refuse("negative (automatic) padding is not implemented")
        }
        inChannels = weightSize / (outChannels * kernelW * kernelH)
        let w = try bin.readTagged(count: weightSize, shape: [outChannels, inChannels, kernelH, kernelW],
                                   what: "\(layer.name) weight")
        bias = biasTerm != 0 ? try bin.readRaw(count: outChannels, shape: [outChannels], what: "\(layer.name) bias") : nil
        let maxk = kernelW * kernelH
        let t = Tensor(zeros: [outChannels, maxk, inChannels])
        let (o, ci) = (outChannels, inChannels)
        w.withUnsafePointer { src in
            t.withUnsafeMutablePointer { dst in
                for oc in 0..<o { for i in 0..<ci { for k in 0..<maxk { dst[(oc * maxk + k) * ci + i] = src[(oc * ci + i) * maxk + k] } } }
            }
        }
        weightT = t
        if dilationW == 1, dilationH == 1, outputPadRight == 0, outputPadBottom == 0, activation == activation.fusedPart {
            packed = PackedTransposedConv2D(weight: w, bias: bias, stride: (strideH, strideW),
                                            padding: (padTop, padLeft, padBottom, padRight), activation: activation.fused)
        } else {
            packed = nil
        }
    }

    /// The P16 form (`packed` must exist): a P16 blob of `[outChannels, outH, outW]`.
    func forwardP16(_ blob: NCNNBlob, context: NCNNRunContext) throws -> NCNNBlob {
        guard let p = packed, let d = blob.chw, d.c == inChannels else {
            throw NCNNGraphError(.badShape, "Deconvolution expects [\(inChannels), H, W], got \(blob.tensor.shape)")
        }
        let (oh, ow) = p.outputSize(height: d.h, width: d.w)
        guard oh > 0, ow > 0 else { throw NCNNGraphError(.badShape, "Deconvolution output would be empty for \(blob.tensor.shape)") }
        let x = blob.p16(context)
        let y = context.uninitializedTensor([p.outBlocks, oh, ow, 16])
        p.forward(x, height: d.h, width: d.w, into: y, workers: context.workers)
        return NCNNBlob(p16: y, channels: outChannels)
    }

    /// Upper bound on the column buffer (`out*kh*kw` x a band of input rows); at least one row is always used.
    static let columnBudgetBytes = 2 << 20

    func forward(_ x: Tensor) throws -> Tensor { try forward(NCNNBlob(planar: x), workers: nil) }

    /// A P16 input is read in place: the product is summed over its 16-channel blocks (each block `[H*W, 16]` is the
    /// transposed `[16, H*W]` operand).
    func forward(_ blob: NCNNBlob, workers: ParallelWorkers?) throws -> Tensor {
        guard let d = blob.chw, d.c == inChannels else {
            throw NCNNGraphError(.badShape, "Deconvolution expects [\(inChannels), H, W], got \(blob.tensor.shape)")
        }
        let x = blob.tensor
        let h = d.h, w = d.w
        let kextW = dilationW * (kernelW - 1) + 1, kextH = dilationH * (kernelH - 1) + 1
        let fullW = (w - 1) * strideW + kextW + outputPadRight, fullH = (h - 1) * strideH + kextH + outputPadBottom
        let outW = fullW - padLeft - padRight, outH = fullH - padTop - padBottom
        guard outW > 0, outH > 0 else { throw NCNNGraphError(.badShape, "Deconvolution output would be empty for \(x.shape)") }
        let maxk = kernelW * kernelH
        let m = outChannels * maxk, n = h * w
        // Bands of input rows keep the column buffer small (`columnBudgetBytes`) instead of `m x H*W` floats.
        let bandRows = max(1, min(h, Self.columnBudgetBytes / max(1, m * w * 4)))
        let cols = Tensor(zeros: [m, bandRows * w])
        let out = Tensor(zeros: [outChannels, outH, outW])
        let ci = inChannels
        let (kw, kh, sw, sh, dw, dh, pl, pt) = (kernelW, kernelH, strideW, strideH, dilationW, dilationH, padLeft, padTop)
        // Scatters the columns of input rows `rows` (column j = (y - rows.lowerBound) * w + x) for output channels
        // `ocs`; output channels are independent, so they are shared out across the workers.
        let scatter = { (ocs: Range<Int>, rows: Range<Int>, col: UnsafePointer<Float>, dst: UnsafeMutablePointer<Float>) in
            let nb = rows.count * w
            for oc in ocs {
                let plane = dst + oc * outH * outW
                for ky in 0..<kh {
                    for kx in 0..<kw {
                        let src = col + ((oc * kh + ky) * kw + kx) * nb
                        let ox0 = kx * dw - pl
                        for y in rows {
                            let oy = y * sh + ky * dh - pt
                            if oy < 0 || oy >= outH { continue }
                            let row = plane + oy * outW
                            let s = src + (y - rows.lowerBound) * w
                            for xx in 0..<w {
                                let ox = xx * sw + ox0
                                if ox >= 0 && ox < outW { row[ox] += s[xx] }
                            }
                        }
                    }
                }
            }
        }
        weightT.withUnsafePointer { a in
            x.withUnsafePointer { b in
                cols.withUnsafeMutablePointer { c in
                    out.withUnsafeMutablePointer { dst in
                        var y0 = 0
                        while y0 < h {
                            let rows = y0..<min(h, y0 + bandRows), nb = rows.count * w
                            if blob.isP16 {
                                for block in 0..<((ci + 15) / 16) {
                                    let k = min(16, ci - block * 16)
                                    BLAS.sgemm(transB: true, m: m, n: nb, k: k, a: a + block * 16, lda: ci,
                                               b: b + (block * n + y0 * w) * 16, ldb: 16, beta: block == 0 ? 0 : 1,
                                               c: c, ldc: nb)
                                }
                            } else {
                                BLAS.sgemm(m: m, n: nb, k: ci, a: a, lda: ci, b: b + y0 * w, ldb: n, c: c, ldc: nb)
                            }
                            let parts = min(workers?.count ?? 1, outChannels)
                            if let workers, parts > 1 {
                                workers.run { i in
                                    if i < parts {
                                        scatter((i * outChannels / parts)..<((i + 1) * outChannels / parts), rows, c, dst)
                                    }
                                }
                            } else {
                                scatter(0..<outChannels, rows, c, dst)
                            }
                            y0 = rows.upperBound
                        }
                    }
                }
            }
        }
        if let bias { out.reshaped([1, outChannels, outH, outW]).addChannelBias(bias) }
        activation.apply(out)
        return out
    }
}

/// One ncnn layer, ready to run. Parameter ids follow ncnn's layer documentation; values this runner does not
/// implement are refused at load naming the layer.
enum NCNNLayerOp: Sendable {
    case input
    case convolution(NCNNConvOp)
    case deconvolution(NCNNDeconvOp)
    case split
    /// Channel concatenation of 3-D blobs.
    case concat
    /// 0 product, 1 (weighted) sum, 2 max.
    case eltwise(op: Int, coefficients: [Float])
    /// ncnn op_type (0 add 1 sub 2 mul 3 div 4 max 5 min 6 pow 7 rsub 8 rdiv); `scalar` for the one-input form.
    case binary(op: Int, scalar: Float?)
    /// Two-input form: offsets (w, h, c) into the first blob, size of the second.
    case cropLike(woffset: Int, hoffset: Int, coffset: Int)
    /// One-input form: per axis (c, h, w) a start and an end (negative ends count from the end).
    case cropRanges(starts: [Int], ends: [Int])
    /// Global pooling of `[C, H, W]` to `[C]`: average or max.
    case globalPooling(average: Bool)
    case innerProduct(weight: Tensor, bias: Tensor?, activation: NCNNActivation)
    case prelu(slopes: [Float])
    case pixelShuffle(factor: Int)
    /// 1 nearest, 3 bicubic; output size from scales or an explicit size.
    case interp(type: Int, heightScale: Float, widthScale: Float, outH: Int, outW: Int)
    /// Per-channel scale: from the second blob (`weights == nil`) or from the .bin.
    case scale(weights: [Float]?, bias: [Float]?)

    init(layer l: NCNNLayer, bin: inout NCNNModelBin, source: String) throws {
        let p = l.params
        func refuse(_ why: String) -> NCNNGraphError {
            NCNNGraphError(.unsupportedLayer, "\(source): line \(l.line): layer '\(l.name)' (\(l.type)): \(why)")
        }
        func arity(_ ins: ClosedRange<Int>, _ outs: ClosedRange<Int> = 1...1) throws {
            guard ins.contains(l.inputs.count), outs.contains(l.outputs.count) else {
                throw refuse("\(l.inputs.count) inputs and \(l.outputs.count) outputs are not what this layer takes")
            }
        }
        switch l.type {
        case "Input":
            try arity(0...0)
            self = .input
        case "Convolution":
            try arity(1...1)
            if p.int(7, default: 1) != 1 { throw refuse("grouped convolution (7=group) is not implemented") }
            let c: NCNNConvolution
            do { c = try NCNNConvolution(layer: l, bin: &bin) } catch let e as NCNNFormatError where e.code == .malformedParam {
                throw refuse(e.message)
            }
            let act = try NCNNActivation(type: c.activationType, params: c.activationParams, refuse: refuse)
            self = .convolution(NCNNConvOp(c, activation: act))
        case "Deconvolution":
            try arity(1...1)
            if p.int(7, default: 1) != 1 { throw refuse("grouped deconvolution (7=group) is not implemented") }
            self = .deconvolution(try NCNNDeconvOp(layer: l, bin: &bin, refuse: refuse))
        case "Split":
            try arity(1...1, 1...Int.max)
            self = .split
        case "Concat":
            try arity(1...Int.max)
            guard p.int(0, default: 0) == 0 else { throw refuse("only channel concatenation (0=0) is implemented") }
            self = .concat
        case "Eltwise":
            try arity(2...Int.max)
            let op = p.int(0, default: 1)
            guard (0...2).contains(op) else { throw refuse("op_type \(op) is not 0 (prod), 1 (sum) or 2 (max)") }
            let coeffs = p.floats(1) ?? []
            guard coeffs.isEmpty || coeffs.count == l.inputs.count else { throw refuse("one coefficient per input expected") }
            self = .eltwise(op: op, coefficients: coeffs)
        case "BinaryOp":
            let op = p.int(0, default: 0)
            guard (0...8).contains(op) else { throw refuse("op_type \(op) is not implemented (0...8)") }
            if p.int(1, default: 0) != 0 {
                try arity(1...1)
                self = .binary(op: op, scalar: p.float(2, default: 0))
            } else {
                try arity(2...2)
                self = .binary(op: op, scalar: nil)
            }
        case "Crop":
            if l.inputs.count == 2 {
                try arity(2...2)
                self = .cropLike(woffset: p.int(0, default: 0), hoffset: p.int(1, default: 0), coffset: p.int(2, default: 0))
            } else {
                try arity(1...1)
                if let starts = p.values[9].map({ _ in p.floats(9) ?? [] }) {
                    let ends = p.floats(10) ?? [], axes = p.floats(11) ?? (0..<starts.count).map(Float.init)
                    guard starts.count == ends.count, starts.count == axes.count else {
                        throw refuse("starts (-23309), ends (-23310) and axes (-23311) differ in length")
                    }
                    var s = [0, 0, 0], e = [Int.max, Int.max, Int.max]
                    for (i, a) in axes.enumerated() {
                        let axis = Int(a) < 0 ? Int(a) + 3 : Int(a)
                        guard (0...2).contains(axis) else { throw refuse("axis \(Int(a)) is not one of c, h, w") }
                        s[axis] = Int(starts[i])
                        e[axis] = Int(ends[i])
                    }
                    self = .cropRanges(starts: s, ends: e)
                } else {
                    let wo = p.int(0, default: 0), ho = p.int(1, default: 0), co = p.int(2, default: 0)
                    let ow = p.int(3, default: 0), oh = p.int(4, default: 0), oc = p.int(5, default: 0)
                    let wo2 = p.int(6, default: 0), ho2 = p.int(7, default: 0), co2 = p.int(8, default: 0)
                    func end(_ o: Int, _ size: Int, _ o2: Int) -> Int { size > 0 ? o + size : -o2 == 0 ? Int.max : -o2 }
                    self = .cropRanges(starts: [co, ho, wo], ends: [end(co, oc, co2), end(ho, oh, ho2), end(wo, ow, wo2)])
                }
            }
        case "Pooling":
            try arity(1...1)
            let type = p.int(0, default: 0)
            guard p.int(4, default: 0) == 1 else { throw refuse("only global pooling (4=1) is implemented") }
            guard type == 0 || type == 1 else { throw refuse("pooling_type \(type) is not 0 (max) or 1 (average)") }
            self = .globalPooling(average: type == 1)
        case "InnerProduct":
            try arity(1...1)
            let outN = p.int(0, default: 0), size = p.int(2, default: 0)
            guard outN > 0, size > 0, size % outN == 0 else { throw refuse("num_output and weight_data_size must be consistent") }
            if p.int(8, default: 0) != 0 { throw refuse("int8 weights are not implemented") }
            let act = try NCNNActivation(type: p.int(9, default: 0), params: p.floats(10) ?? [], refuse: refuse)
            let w = try bin.readTagged(count: size, shape: [outN, size / outN], what: "\(l.name) weight")
            let b = p.int(1, default: 0) != 0 ? try bin.readRaw(count: outN, shape: [outN], what: "\(l.name) bias") : nil
            self = .innerProduct(weight: w, bias: b, activation: act)
        case "PReLU":
            try arity(1...1)
            let n = p.int(0, default: 0)
            guard n > 0 else { throw refuse("num_slope must be > 0") }
            self = .prelu(slopes: try bin.readRaw(count: n, shape: [n], what: "\(l.name) slope").toArray())
        case "PixelShuffle":
            try arity(1...1)
            let r = p.int(0, default: 1)
            guard r >= 1, p.int(1, default: 0) == 0 else { throw refuse("only mode 0 (PyTorch order) with factor >= 1") }
            self = .pixelShuffle(factor: r)
        case "Interp":
            try arity(1...1)
            let type = p.int(0, default: 0)
            guard type == 1 || type == 3 else { throw refuse("resize_type \(type) is not implemented (1 nearest, 3 bicubic)") }
            guard p.int(6, default: 0) == 0 else { throw refuse("align_corner (6=1) is not implemented") }
            self = .interp(type: type, heightScale: p.float(1, default: 1), widthScale: p.float(2, default: 1),
                           outH: p.int(3, default: 0), outW: p.int(4, default: 0))
        case "Scale":
            let n = p.int(0, default: 0)
            if n == -233 {
                try arity(2...2)
                guard p.int(1, default: 0) == 0 else { throw refuse("a bias with the scale from a blob is not implemented") }
                self = .scale(weights: nil, bias: nil)
            } else {
                try arity(1...1)
                guard n > 0 else { throw refuse("scale_data_size must be > 0 or -233") }
                let w = try bin.readRaw(count: n, shape: [n], what: "\(l.name) scale").toArray()
                let b = p.int(1, default: 0) != 0 ? try bin.readRaw(count: n, shape: [n], what: "\(l.name) bias").toArray() : nil
                self = .scale(weights: w, bias: b)
            }
        default:
            throw refuse("type '\(l.type)' is not implemented")
        }
    }

    static func bad(_ msg: String) -> NCNNGraphError { NCNNGraphError(.badShape, msg) }

    /// `[C, H, W]` dimensions of a 3-D blob.
    static func chw(_ t: Tensor, _ what: String) throws -> (Int, Int, Int) {
        guard t.rank == 3 else { throw bad("\(what) expects a [C, H, W] blob, got \(t.shape)") }
        return (t.shape[0], t.shape[1], t.shape[2])
    }

    /// The (c, h, w) ranges of a one-input Crop on a blob of `dims`; nil when one is empty or out of bounds.
    static func cropRanges(starts: [Int], ends: [Int], dims: [Int]) -> [Range<Int>]? {
        var r: [Range<Int>] = []
        for a in 0..<3 {
            let s = starts[a] < 0 ? starts[a] + dims[a] : starts[a]
            let e = ends[a] == Int.max ? dims[a] : (ends[a] < 0 ? ends[a] + dims[a] : min(ends[a], dims[a]))
            guard s >= 0, s < e, e <= dims[a] else { return nil }
            r.append(s..<e)
        }
        return r
    }

    static func cropped(_ t: Tensor, c: Range<Int>, h: Range<Int>, w: Range<Int>) -> Tensor {
        let (H, W) = (t.shape[1], t.shape[2])
        let out = Tensor(zeros: [c.count, h.count, w.count])
        t.withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                var d = dst
                for ch in c {
                    for y in h {
                        d.update(from: src + (ch * H + y) * W + w.lowerBound, count: w.count)
                        d += w.count
                    }
                }
            }
        }
        return out
    }

    func forward(_ ins: [Tensor], outputs: Int, context: NCNNRunContext) throws -> [Tensor] {
        switch self {
        case .input:
            return ins
        case .split:
            return Array(repeating: ins[0], count: outputs)
        case .convolution(let c):
            return [try c.forward(NCNNBlob(planar: ins[0]), context: context).planar(context)]
        case .deconvolution(let d):
            return [try d.forward(ins[0])]
        case .concat:
            let dims = try ins.map { try Self.chw($0, "Concat") }
            guard dims.allSatisfy({ $0.1 == dims[0].1 && $0.2 == dims[0].2 }) else {
                throw Self.bad("Concat of blobs with different sizes \(ins.map(\.shape))")
            }
            let out = Tensor(zeros: [dims.map(\.0).reduce(0, +), dims[0].1, dims[0].2])
            out.withUnsafeMutablePointer { dst in
                var d = dst
                for t in ins { t.withUnsafePointer { d.update(from: $0, count: t.count) }; d += t.count }
            }
            return [out]
        case .eltwise(let op, let coeffs):
            guard ins.allSatisfy({ $0.shape == ins[0].shape }) else {
                throw Self.bad("Eltwise of blobs with different shapes \(ins.map(\.shape))")
            }
            let out = ins[0].copy()
            if op == 1, !coeffs.isEmpty { out.scale(by: coeffs[0]) }
            for (k, t) in ins.enumerated().dropFirst() {
                switch op {
                case 1:
                    if coeffs.isEmpty { out.add(t) } else { out.axpby(t, a: 1, b: coeffs[k]) }
                default:
                    t.withUnsafeBufferPointer { b in
                        out.withUnsafeMutableBufferPointer { a in
                            if op == 0 { for i in a.indices { a[i] *= b[i] } } else { for i in a.indices { a[i] = max(a[i], b[i]) } }
                        }
                    }
                }
            }
            return [out]
        case .binary(let op, let scalar):
            return [try Self.binary(op: op, ins[0], scalar == nil ? ins[1] : nil, scalar: scalar ?? 0)]
        case .cropLike(let wo, let ho, let co):
            let (c, h, w) = try Self.chw(ins[0], "Crop")
            let ref = ins[1]
            let (rc, rh, rw) = ref.rank == 3 ? (ref.shape[0], ref.shape[1], ref.shape[2]) : (c - co, h - ho, ref.shape.last!)
            guard co >= 0, ho >= 0, wo >= 0, co + rc <= c, ho + rh <= h, wo + rw <= w else {
                throw Self.bad("Crop of \(ins[0].shape) at (c \(co), h \(ho), w \(wo)) to the size of \(ref.shape) is out of bounds")
            }
            return [Self.cropped(ins[0], c: co..<(co + rc), h: ho..<(ho + rh), w: wo..<(wo + rw))]
        case .cropRanges(let starts, let ends):
            let (c, h, w) = try Self.chw(ins[0], "Crop")
            guard let r = Self.cropRanges(starts: starts, ends: ends, dims: [c, h, w]) else {
                throw Self.bad("Crop of \(ins[0].shape) from \(starts) to \(ends) is empty or out of bounds")
            }
            return [Self.cropped(ins[0], c: r[0], h: r[1], w: r[2])]
        case .globalPooling(let average):
            let (c, h, w) = try Self.chw(ins[0], "Pooling")
            let out = Tensor(zeros: [c])
            let plane = h * w
            ins[0].withUnsafePointer { src in
                out.withUnsafeMutablePointer { dst in
                    for ch in 0..<c {
                        let p = src + ch * plane
                        if average {
                            var s: Float = 0
                            for i in 0..<plane { s += p[i] }
                            dst[ch] = s / Float(plane)
                        } else {
                            var m = -Float.infinity
                            for i in 0..<plane { m = max(m, p[i]) }
                            dst[ch] = m
                        }
                    }
                }
            }
            return [out]
        case .innerProduct(let weight, let bias, let act):
            let k = weight.shape[1], n = weight.shape[0]
            guard ins[0].count == k else { throw Self.bad("InnerProduct expects \(k) values, got \(ins[0].shape)") }
            let out = Tensor(zeros: [n])
            weight.withUnsafePointer { a in
                ins[0].withUnsafePointer { b in
                    out.withUnsafeMutablePointer { c in BLAS.sgemm(m: n, n: 1, k: k, a: a, lda: k, b: b, ldb: 1, c: c, ldc: 1) }
                }
            }
            if let bias { out.add(bias) }
            act.apply(out)
            return [out]
        case .prelu(let slopes):
            let (c, h, w) = try Self.chw(ins[0], "PReLU")
            guard slopes.count == 1 || slopes.count == c else { throw Self.bad("PReLU has \(slopes.count) slopes for \(c) channels") }
            let out = ins[0].copy()
            let plane = h * w
            out.withUnsafeMutablePointer { p in
                for ch in 0..<c { ck_leaky_relu_inplace(p + ch * plane, slopes.count == 1 ? slopes[0] : slopes[ch], plane) }
            }
            return [out]
        case .pixelShuffle(let r):
            let (c, h, w) = try Self.chw(ins[0], "PixelShuffle")
            guard c % (r * r) == 0 else { throw Self.bad("PixelShuffle \(r) of \(c) channels") }
            let oc = c / (r * r), ow = w * r
            let out = Tensor(zeros: [oc, h * r, ow])
            ins[0].withUnsafePointer { src in
                out.withUnsafeMutablePointer { dst in
                    for p in 0..<oc {
                        for sh in 0..<r {
                            for sw in 0..<r {
                                let s = src + ((p * r + sh) * r + sw) * h * w
                                for y in 0..<h {
                                    let d = dst + (p * h * r + y * r + sh) * ow + sw
                                    let sr = s + y * w
                                    for x in 0..<w { d[x * r] = sr[x] }
                                }
                            }
                        }
                    }
                }
            }
            return [out]
        case .interp(let type, let hs, let ws, let outH0, let outW0):
            let (c, h, w) = try Self.chw(ins[0], "Interp")
            let outH = outH0 > 0 ? outH0 : Int(Float(h) * hs), outW = outW0 > 0 ? outW0 : Int(Float(w) * ws)
            guard outH > 0, outW > 0 else { throw Self.bad("Interp output would be empty for \(ins[0].shape)") }
            return [type == 1 ? Self.nearest(ins[0], c: c, h: h, w: w, outH: outH, outW: outW,
                                             hs: outH0 > 0 ? Float(outH) / Float(h) : hs,
                                             ws: outW0 > 0 ? Float(outW) / Float(w) : ws)
                    : Self.bicubic(ins[0], c: c, h: h, w: w, outH: outH, outW: outW)]
        case .scale(let weights, let bias):
            let (c, h, w) = try Self.chw(ins[0], "Scale")
            let s: [Float]
            if let weights { s = weights } else {
                guard ins[1].count == c else { throw Self.bad("Scale of \(ins[0].shape) by a blob of \(ins[1].shape)") }
                s = ins[1].toArray()
            }
            guard s.count == c || s.count == 1 else { throw Self.bad("Scale has \(s.count) values for \(c) channels") }
            let out = ins[0].copy()
            let plane = h * w
            out.withUnsafeMutablePointer { p in
                for ch in 0..<c {
                    let a = s.count == 1 ? s[0] : s[ch], b = bias.map { $0.count == 1 ? $0[0] : $0[ch] } ?? 0
                    let q = p + ch * plane
                    for i in 0..<plane { q[i] = q[i] * a + b }
                }
            }
            return [out]
        }
    }

    @inline(__always)
    static func apply(_ op: Int, _ a: Float, _ b: Float) -> Float {
        switch op {
        case 0: return a + b
        case 1: return a - b
        case 2: return a * b
        case 3: return a / b
        case 4: return max(a, b)
        case 5: return min(a, b)
        case 6: return powf(a, b)
        case 7: return b - a
        default: return b / a
        }
    }

    /// BinaryOp with the broadcasts these models use: same shape, a `[C]` vector against `[C, H, W]` (per channel,
    /// either side), a one-element blob, or a scalar.
    static func binary(op: Int, _ a: Tensor, _ b: Tensor?, scalar: Float) throws -> Tensor {
        guard let b else {
            let out = a.copy()
            out.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = apply(op, p[i], scalar) } }
            return out
        }
        if a.shape == b.shape {
            let out = a.copy()
            out.withUnsafeMutableBufferPointer { p in
                b.withUnsafeBufferPointer { q in for i in p.indices { p[i] = apply(op, p[i], q[i]) } }
            }
            return out
        }
        if b.count == 1 { return try binary(op: op, a, nil, scalar: b[flat: 0]) }
        if a.count == 1 {
            // a (scalar) op b == the swapped op of b and a.
            let swapped = [0: 0, 1: 7, 2: 2, 3: 8, 4: 4, 5: 5, 7: 1, 8: 3][op]
            guard let swapped else { throw bad("BinaryOp \(op) of a scalar by a tensor is not implemented") }
            return try binary(op: swapped, b, nil, scalar: a[flat: 0])
        }
        // Per-channel: [C, H, W] with [C] (or [C, 1, 1]).
        func perChannel(_ big: Tensor, _ vec: Tensor, vecFirst: Bool) throws -> Tensor {
            let (c, h, w) = try chw(big, "BinaryOp")
            guard vec.count == c else { throw bad("BinaryOp of \(a.shape) and \(b.shape): shapes do not broadcast") }
            let out = big.copy()
            let plane = h * w
            out.withUnsafeMutablePointer { p in
                vec.withUnsafePointer { v in
                    for ch in 0..<c {
                        let q = p + ch * plane, s = v[ch]
                        if vecFirst { for i in 0..<plane { q[i] = apply(op, s, q[i]) } } else {
                            for i in 0..<plane { q[i] = apply(op, q[i], s) }
                        }
                    }
                }
            }
            return out
        }
        if a.rank == 3, b.rank < 3 || (b.rank == 3 && b.shape[1] == 1 && b.shape[2] == 1) { return try perChannel(a, b, vecFirst: false) }
        if b.rank == 3, a.rank < 3 || (a.rank == 3 && a.shape[1] == 1 && a.shape[2] == 1) { return try perChannel(b, a, vecFirst: true) }
        throw bad("BinaryOp of \(a.shape) and \(b.shape): shapes do not broadcast")
    }

    /// ncnn nearest: source index `min(Int(dst * (1/scale)), size - 1)`.
    static func nearest(_ x: Tensor, c: Int, h: Int, w: Int, outH: Int, outW: Int, hs: Float, ws: Float) -> Tensor {
        let out = Tensor(zeros: [c, outH, outW])
        let xofs = (0..<outW).map { min(Int(Float($0) * (1 / ws)), w - 1) }
        let yofs = (0..<outH).map { min(Int(Float($0) * (1 / hs)), h - 1) }
        x.withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                for ch in 0..<c {
                    for oy in 0..<outH {
                        let s = src + (ch * h + yofs[oy]) * w
                        let d = dst + (ch * outH + oy) * outW
                        for ox in 0..<outW { d[ox] = s[xofs[ox]] }
                    }
                }
            }
        }
        return out
    }

    /// ncnn's bicubic coefficients (A = -0.75, half-pixel centres, the border folded onto the edge taps).
    static func cubicCoefficients(size w: Int, outSize outw: Int) -> (ofs: [Int], alpha: [Float]) {
        let scale = Double(w) / Double(outw)
        var ofs = [Int](repeating: 0, count: outw)
        var alpha = [Float](repeating: 0, count: outw * 4)
        for dx in 0..<outw {
            var fx = Float((Double(dx) + 0.5) * scale - 0.5)
            var sx = Int(floorf(fx))
            fx -= Float(sx)
            let A: Float = -0.75
            let fx0 = fx + 1, fx1 = fx, fx2 = 1 - fx
            var a0 = A * fx0 * fx0 * fx0 - 5 * A * fx0 * fx0 + 8 * A * fx0 - 4 * A
            var a1 = (A + 2) * fx1 * fx1 * fx1 - (A + 3) * fx1 * fx1 + 1
            var a2 = (A + 2) * fx2 * fx2 * fx2 - (A + 3) * fx2 * fx2 + 1
            var a3 = 1 - a0 - a1 - a2
            if sx <= -1 { sx = 1; (a0, a1, a2, a3) = (1 - a3, a3, 0, 0) }
            if sx == 0 { sx = 1; (a0, a1, a2, a3) = (a0 + a1, a2, a3, 0) }
            if sx == w - 2 { sx = w - 3; (a0, a1, a2, a3) = (0, a0, a1, a2 + a3) }
            if sx >= w - 1 { sx = w - 3; (a0, a1, a2, a3) = (0, 0, a0, 1 - a0) }
            ofs[dx] = sx
            alpha[dx * 4] = a0; alpha[dx * 4 + 1] = a1; alpha[dx * 4 + 2] = a2; alpha[dx * 4 + 3] = a3
        }
        return (ofs, alpha)
    }

    static func bicubic(_ x: Tensor, c: Int, h: Int, w: Int, outH: Int, outW: Int) -> Tensor {
        let out = Tensor(zeros: [c, outH, outW])
        let (xofs, xa) = cubicCoefficients(size: w, outSize: outW)
        let (yofs, ya) = cubicCoefficients(size: h, outSize: outH)
        func clampX(_ i: Int) -> Int { min(max(i, 0), w - 1) }
        func clampY(_ i: Int) -> Int { min(max(i, 0), h - 1) }
        var rows = [Float](repeating: 0, count: h * outW)
        x.withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                rows.withUnsafeMutableBufferPointer { r in
                    for ch in 0..<c {
                        // Horizontal pass over every source row, then vertical.
                        for y in 0..<h {
                            let s = src + (ch * h + y) * w
                            for ox in 0..<outW {
                                let sx = xofs[ox]
                                r[y * outW + ox] = s[clampX(sx - 1)] * xa[ox * 4] + s[clampX(sx)] * xa[ox * 4 + 1]
                                    + s[clampX(sx + 1)] * xa[ox * 4 + 2] + s[clampX(sx + 2)] * xa[ox * 4 + 3]
                            }
                        }
                        for oy in 0..<outH {
                            let sy = yofs[oy]
                            let r0 = clampY(sy - 1) * outW, r1 = clampY(sy) * outW, r2 = clampY(sy + 1) * outW
                            let r3 = clampY(sy + 2) * outW
                            let (b0, b1, b2, b3) = (ya[oy * 4], ya[oy * 4 + 1], ya[oy * 4 + 2], ya[oy * 4 + 3])
                            let d = dst + (ch * outH + oy) * outW
                            for ox in 0..<outW { d[ox] = r[r0 + ox] * b0 + r[r1 + ox] * b1 + r[r2 + ox] * b2 + r[r3 + ox] * b3 }
                        }
                    }
                }
            }
        }
        return out
    }
}
