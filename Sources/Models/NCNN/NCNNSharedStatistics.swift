import Foundation
import Tensor

/// Where the pixels of a blob lie on the graph's input, per axis: pixel `i` is centred on input coordinate
/// `offset + step * i` (the centre of its receptive field). The input blob has step 1 and offset 0; a stride-2
/// convolution doubles the step, a 2x deconvolution or pixel shuffle halves it.
public struct NCNNBlobPlacement: Sendable, Equatable {
    public var stepX: Double
    public var stepY: Double
    public var offsetX: Double
    public var offsetY: Double

    public static let input = NCNNBlobPlacement(stepX: 1, stepY: 1, offsetX: 0, offsetY: 0)

    /// After a window of `kernel` taps (dilation `dilation`), `stride` and leading padding `pad` (convolution).
    func window(kernelX: Int, kernelY: Int, strideX: Int, strideY: Int, dilationX: Int, dilationY: Int,
                padLeft: Int, padTop: Int) -> NCNNBlobPlacement {
        NCNNBlobPlacement(stepX: stepX * Double(strideX), stepY: stepY * Double(strideY),
                          offsetX: offsetX + stepX * (Double(dilationX * (kernelX - 1)) / 2 - Double(padLeft)),
                          offsetY: offsetY + stepY * (Double(dilationY * (kernelY - 1)) / 2 - Double(padTop)))
    }

    /// After an upsampling by `factorX`/`factorY` with half-pixel centres (pixel shuffle, interpolation).
    func upsampled(_ factorX: Double, _ factorY: Double) -> NCNNBlobPlacement {
        NCNNBlobPlacement(stepX: stepX / factorX, stepY: stepY / factorY,
                          offsetX: offsetX + stepX * (0.5 / factorX - 0.5), offsetY: offsetY + stepY * (0.5 / factorY - 0.5))
    }

    /// The pixel indices `0..<count` whose centres lie in `range` (graph input coordinates), along x or y.
    static func indices(count: Int, step: Double, offset: Double, in range: Range<Double>) -> Range<Int> {
        // offset + step * i >= lower  <=>  i >= (lower - offset) / step (step > 0); same for the upper bound.
        let lo = range.lowerBound == -.infinity ? 0 : Int(((range.lowerBound - offset) / step).rounded(.up))
        let hi = range.upperBound == .infinity ? count : Int(((range.upperBound - offset) / step).rounded(.up))
        let a = min(max(lo, 0), count), b = min(max(hi, 0), count)
        return a..<max(a, b)
    }
}

/// Per-channel sums of a feature map over part of its pixels, and how many pixels: tiles add theirs up and the
/// whole image's average is `sums / count`.
public struct NCNNPoolingSums: Sendable, Equatable {
    public private(set) var sums: [Double]
    public private(set) var count: Int

    public init(channels: Int) {
        sums = [Double](repeating: 0, count: channels)
        count = 0
    }

    public init(sums: [Double], count: Int) {
        self.sums = sums
        self.count = count
    }

    /// Adds another tile's sums (same channel count).
    public mutating func add(_ other: NCNNPoolingSums) throws {
        guard other.sums.count == sums.count else {
            throw NCNNGraphError(.badShape, "pooling sums of \(other.sums.count) channels added to \(sums.count)")
        }
        for c in sums.indices { sums[c] += other.sums[c] }
        count += other.count
    }

    /// The per-channel average, as the `[C]` blob a global average pooling layer outputs.
    public func mean() throws -> Tensor {
        guard count > 0 else { throw NCNNGraphError(.badShape, "no pixel was summed for a shared global average") }
        return Tensor(shape: [sums.count], values: sums.map { Float($0 / Double(count)) })
    }
}

/// Global average pooling statistics shared across tiles (what realcugan-ncnn-vulkan calls "syncgap"), our way.
///
/// Squeeze-excitation blocks (Real-CUGAN, waifu2x cunet) scale their channels by a function of the channel averages
/// over the whole feature map; run per tile, each tile would average only over itself. The graph is staged at its
/// global average pooling layers: for stage k every tile runs from its input up to pooling layer k (the earlier ones
/// given the shared averages) and sums that layer's input over the pixels the tile owns; the image's average is the
/// sum of all tiles' sums over their total count, and the next stage (finally the full run) uses it. Nothing but the
/// sums is kept between stages (each stage recomputes from the tile's input), so memory stays one tile's working set.
///
/// For the tiles' pixels to be the untiled run's pixels, tile origins (in graph input pixels) must be multiples of
/// `alignment`: then every stage's feature-map lattice of a tile is the untiled lattice shifted by whole pixels.
public struct NCNNSharedPooling: Sendable, Equatable {
    /// The placement of each global average pooling layer's input, in run order.
    public let stages: [NCNNBlobPlacement]
    /// Tile origins that are multiples of this sample every stage on the untiled lattice.
    public let alignment: Int

    /// The least common multiple of `alignment` and `m` (e.g. a network's input size multiple).
    public func alignment(multipleOf m: Int) -> Int {
        let m = max(1, m)
        return alignment / gcd(alignment, m) * m
    }
}

extension NCNNGraph {
    /// The stages of `NCNNSharedPooling` for this graph (empty stages when it has no global pooling). Throws
    /// `unsupportedLayer` when the statistics cannot be shared: a global max pooling, or a layer whose placement
    /// depends on the input size (explicit output sizes, crops from the end).
    public func sharedPooling() throws -> NCNNSharedPooling {
        var placement = [NCNNBlobPlacement?](repeating: nil, count: blobCount)
        placement[inputIndex] = .input
        var stages: [NCNNBlobPlacement] = []
        func refuse(_ step: Step, _ why: String) -> NCNNGraphError {
            NCNNGraphError(.unsupportedLayer, "\(source): layer '\(step.layer)': global statistics cannot be shared "
                           + "across tiles: \(why)")
        }
        for step in steps {
            let first = step.inputs.lazy.compactMap { placement[$0] }.first
            var out: NCNNBlobPlacement?
            switch step.op {
            case .input:
                continue
            case .globalPooling(let average):
                guard average else { throw refuse(step, "global max pooling is not shared (only average)") }
                guard let first else { throw refuse(step, "its input is not a feature map") }
                stages.append(first)
                out = nil
            case .innerProduct:
                out = nil
            case .convolution(let c):
                let v = c.conv
                out = first?.window(kernelX: v.kernelW, kernelY: v.kernelH, strideX: v.strideW, strideY: v.strideH,
                                    dilationX: v.dilationW, dilationY: v.dilationH, padLeft: v.padLeft, padTop: v.padTop)
            case .deconvolution(let d):
                // Output o gathers input (o + pad - dilation * (kernel - 1) / 2) / stride at its centre.
                out = first.map { p in
                    NCNNBlobPlacement(
                        stepX: p.stepX / Double(d.strideW), stepY: p.stepY / Double(d.strideH),
                        offsetX: p.offsetX + p.stepX * (Double(d.padLeft) - Double(d.dilationW * (d.kernelW - 1)) / 2) / Double(d.strideW),
                        offsetY: p.offsetY + p.stepY * (Double(d.padTop) - Double(d.dilationH * (d.kernelH - 1)) / 2) / Double(d.strideH))
                }
            case .cropLike(let wo, let ho, _):
                out = first.map { p in
                    NCNNBlobPlacement(stepX: p.stepX, stepY: p.stepY, offsetX: p.offsetX + p.stepX * Double(wo),
                                      offsetY: p.offsetY + p.stepY * Double(ho))
                }
            case .cropRanges(let starts, _):
                guard starts[1] >= 0, starts[2] >= 0 else { throw refuse(step, "a crop counted from the end") }
                out = first.map { p in
                    NCNNBlobPlacement(stepX: p.stepX, stepY: p.stepY, offsetX: p.offsetX + p.stepX * Double(starts[2]),
                                      offsetY: p.offsetY + p.stepY * Double(starts[1]))
                }
            case .pixelShuffle(let r):
                out = first?.upsampled(Double(r), Double(r))
            case .interp(_, let hs, let ws, let oh, let ow):
                guard oh <= 0, ow <= 0 else { throw refuse(step, "an interpolation to a fixed size") }
                out = first?.upsampled(Double(ws), Double(hs))
            case .split, .concat, .eltwise, .binary, .prelu, .scale:
                out = first
            }
            for b in step.outputs { placement[b] = out }
        }
        // The smallest whole shift that moves each lattice by whole pixels: a multiple of every step's numerator.
        var alignment = 1
        for p in stages {
            for step in [p.stepX, p.stepY] {
                guard step > 0, let a = (1...256).first(where: { abs((Double($0) / step).rounded() - Double($0) / step) < 1e-9 }) else {
                    throw NCNNGraphError(.unsupportedLayer, "\(source): a global pooling layer's feature map has a pixel "
                                         + "step of \(step) input pixels, which no whole tile shift keeps on its lattice")
                }
                alignment = alignment / gcd(alignment, a) * a
            }
        }
        return NCNNSharedPooling(stages: stages, alignment: alignment)
    }

    /// Runs `input` (`[1, C, H, W]`) up to global average pooling layer `shared.count` — the earlier ones output
    /// `shared` — and sums that layer's input over the pixels centred in `x` x `y` (graph input coordinates).
    public func poolingSums(_ input: Tensor, plan: NCNNSharedPooling, shared: [Tensor],
                            x: Range<Double>, y: Range<Double>) throws -> NCNNPoolingSums {
        guard shared.count < plan.stages.count else {
            throw NCNNGraphError(.badInput, "\(source): stage \(shared.count) asked of a graph with \(plan.stages.count) "
                                 + "global pooling layers")
        }
        let feature = try run(try Self.chwInput(input), replacingPooling: shared, stopAtNextPooling: true)
        guard feature.rank == 3 else { throw NCNNGraphError(.badShape, "\(source): a global pooling input of \(feature.shape)") }
        let p = plan.stages[shared.count]
        let c = feature.shape[0], h = feature.shape[1], w = feature.shape[2]
        let cols = NCNNBlobPlacement.indices(count: w, step: p.stepX, offset: p.offsetX, in: x)
        let rows = NCNNBlobPlacement.indices(count: h, step: p.stepY, offset: p.offsetY, in: y)
        var sums = [Double](repeating: 0, count: c)
        feature.withUnsafePointer { src in
            for ch in 0..<c {
                var s = 0.0
                for r in rows {
                    let row = src + (ch * h + r) * w
                    var rs: Float = 0
                    for i in cols { rs += row[i] }
                    s += Double(rs)
                }
                sums[ch] = s
            }
        }
        return NCNNPoolingSums(sums: sums, count: rows.count * cols.count)
    }

    /// `forward` with every global average pooling layer outputting the shared average of its stage.
    public func forward(_ input: Tensor, plan: NCNNSharedPooling, shared: [Tensor]) throws -> Tensor {
        guard shared.count == plan.stages.count else {
            throw NCNNGraphError(.badInput, "\(source): \(shared.count) shared averages for \(plan.stages.count) global "
                                 + "pooling layers")
        }
        let out = try run(try Self.chwInput(input), replacingPooling: shared, stopAtNextPooling: false)
        return out.rank == 3 ? out.reshaped([1] + out.shape) : out
    }
}


private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
