import Models
import Tensor

/// Any model of the catalog (`ModelCatalog`) as a pixel-space `TileRestorer`.
///
/// RRDBNet graphs (Real-ESRGAN x4plus, x4plus-anime, RealSR) run on the specialised `RealESRGAN` engine, which is
/// faster than the general runner on them; every other graph runs on `NCNNGraph`. Networks that trim their input
/// (Real-CUGAN, waifu2x) get `networkPad` edge-replicated pixels on each side, and the right/bottom extended to
/// their `sizeMultiple`; the output is cropped back to exactly `scale` x the tile.
public final class NCNNModelRestorer: TileRestorer {
    public let model: CatalogModel
    public var scale: Int { model.scale }
    public var name: String { model.name }
    /// "rrdbnet" (specialised engine) or "ncnn-graph" (general runner).
    public let engine: String
    private let rrdb: RealESRGAN?
    private let graph: NCNNGraph?

    public init(_ located: ModelLocator.Located, threads: Int? = nil) throws {
        model = located.model
        if let m = try? RealESRGAN(paramPath: located.paramPath, binPath: located.binPath, threads: threads),
           m.scale == located.model.scale, located.model.networkPad == 0 {
            rrdb = m
            graph = nil
            engine = "rrdbnet"
        } else {
            rrdb = nil
            graph = try NCNNGraph(paramPath: located.paramPath, binPath: located.binPath, threads: threads)
            engine = "ncnn-graph"
        }
    }

    /// Loads a model by `--model` value (see `ModelLocator.resolve`).
    public convenience init(model value: String?, scale: Int? = nil, threads: Int? = nil) throws {
        try self.init(ModelLocator.resolve(value, scale: scale), threads: threads)
    }

    public func restore(_ tile: Tensor) throws -> Tensor {
        guard tile.rank == 4, tile.shape[0] == 1, tile.shape[1] == 3 else {
            throw UpscalingError(.invalidInput, "\(name) expects a [1, 3, H, W] tile, got \(tile.shape)")
        }
        if let rrdb { return try rrdb.forward(tile) }
        let h = tile.shape[2], w = tile.shape[3], s = model.scale
        let p = model.networkPad, m = max(1, model.sizeMultiple)
        let ph = h + 2 * p, pw = w + 2 * p
        let extraH = (m - ph % m) % m, extraW = (m - pw % m) % m
        var padded = Self.replicatePadded(tile, top: p, left: p, bottom: p + extraH, right: p + extraW)
        if model.proRange {
            if padded === tile { padded = tile.copy() }
            padded.withUnsafeMutableBufferPointer { b in for i in b.indices { b[i] = b[i] * 0.7 + 0.15 } }
        }
        let graphOut = try graph!.forward(padded)
        let wantH = s * (h + extraH), wantW = s * (w + extraW)
        guard graphOut.rank == 4, graphOut.shape[1] == 3, graphOut.shape[2] == wantH, graphOut.shape[3] == wantW else {
            throw UpscalingError(.modelOutputShape, "\(name) returned \(graphOut.shape) for a padded \(padded.shape) tile, "
                                 + "expected [1, 3, \(wantH), \(wantW)]")
        }
        let out = extraH == 0 && extraW == 0 ? graphOut : Self.topLeft(graphOut, height: s * h, width: s * w)
        if model.nearestResidual {
            // out += nearest-neighbour s x upsampling of the tile, then the pro mapping (Real-CUGAN's order).
            let c = 3, oh = s * h, ow = s * w
            tile.withUnsafePointer { src in
                out.withUnsafeMutablePointer { dst in
                    for ch in 0..<c {
                        for y in 0..<oh {
                            let sr = src + (ch * h + y / s) * w
                            let d = dst + (ch * oh + y) * ow
                            for x in 0..<ow { d[x] += sr[x / s] }
                        }
                    }
                }
            }
        }
        if model.proRange {
            out.withUnsafeMutableBufferPointer { b in for i in b.indices { b[i] = (b[i] - 0.15) / 0.7 } }
        }
        return out
    }

    /// `[1, C, H, W]` extended by edge replication.
    static func replicatePadded(_ t: Tensor, top: Int, left: Int, bottom: Int, right: Int) -> Tensor {
        if top == 0 && left == 0 && bottom == 0 && right == 0 { return t }
        let c = t.shape[1], h = t.shape[2], w = t.shape[3]
        let oh = h + top + bottom, ow = w + left + right
        let out = Tensor(zeros: [1, c, oh, ow])
        t.withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                for ch in 0..<c {
                    for y in 0..<oh {
                        let sy = min(max(y - top, 0), h - 1)
                        let s = src + (ch * h + sy) * w
                        let d = dst + (ch * oh + y) * ow
                        for x in 0..<left { d[x] = s[0] }
                        (d + left).update(from: s, count: w)
                        for x in 0..<right { d[left + w + x] = s[w - 1] }
                    }
                }
            }
        }
        return out
    }

    /// The top-left `height` x `width` of a `[1, C, H, W]` tensor.
    static func topLeft(_ t: Tensor, height: Int, width: Int) -> Tensor {
        let c = t.shape[1], h = t.shape[2], w = t.shape[3]
        let out = Tensor(zeros: [1, c, height, width])
        t.withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                for ch in 0..<c { for y in 0..<height { (dst + (ch * height + y) * width).update(from: src + (ch * h + y) * w, count: width) } }
            }
        }
        return out
    }
}
