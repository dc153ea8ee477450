import Models
import Tensor

/// Any model of the catalog (`ModelCatalog`) as a pixel-space `TileRestorer`.
///
/// RRDBNet graphs (Real-ESRGAN x4plus, x4plus-anime, RealSR) run on the specialised `RealESRGAN` engine, which is
/// faster than the general runner on them; every other graph runs on `NCNNGraph`. Networks that trim their input
/// (Real-CUGAN, waifu2x) get `networkPad` edge-replicated pixels on each side, and the right/bottom extended to
/// their `sizeMultiple`; the output is cropped back to exactly `scale` x the tile.
public final class NCNNModelRestorer: SharedStatisticsRestorer {
    public let model: CatalogModel
    public var scale: Int { model.scale }
    public var name: String { model.name }
    /// "rrdbnet" (specialised engine) or "ncnn-graph" (general runner).
    public let engine: String
    private let rrdb: RealESRGAN?
    private let graph: NCNNGraph?
    /// The graph's global average pooling stages (squeeze-excitation), nil when it has none or they cannot be shared
    /// (`NCNNGraph.sharedPooling`); `TiledUpscaler` then restores tiles independently.
    public let sharedPooling: NCNNSharedPooling?

    public init(_ located: ModelLocator.Located, threads: Int? = nil) throws {
        model = located.model
        if let m = try? RealESRGAN(paramPath: located.paramPath, binPath: located.binPath, threads: threads),
           m.scale == located.model.scale, located.model.networkPad == 0 {
            rrdb = m
            graph = nil
            engine = "rrdbnet"
            sharedPooling = nil
        } else {
            rrdb = nil
            graph = try NCNNGraph(paramPath: located.paramPath, binPath: located.binPath, threads: threads)
            engine = "ncnn-graph"
            let plan = try? graph!.sharedPooling()
            sharedPooling = plan?.stages.isEmpty == false ? plan : nil
        }
    }

    /// Loads a model by `--model` value (see `ModelLocator.resolve`).
    public convenience init(model value: String?, scale: Int? = nil, threads: Int? = nil) throws {
        try self.init(ModelLocator.resolve(value, scale: scale), threads: threads)
    }

    public func restore(_ tile: Tensor) throws -> Tensor {
        if let rrdb {
            try Self.checkTile(tile, name)
            return try rrdb.forward(tile)
        }
        return try restoreOnGraph(tile) { try graph!.forward($0) }
    }

    public var sharedStatisticsStages: Int { sharedPooling?.stages.count ?? 0 }

    /// The graph's pooling lattices and the network's size multiple, together.
    public var sharedStatisticsAlignment: Int {
        sharedPooling?.alignment(multipleOf: model.sizeMultiple) ?? max(1, model.sizeMultiple)
    }

    public func statisticsSums(_ tile: Tensor, shared: [Tensor], x: Range<Double>, y: Range<Double>) throws -> NCNNPoolingSums {
        guard let graph, let sharedPooling else {
            throw UpscalingError(.invalidInput, "\(name) has no global averages to share")
        }
        try Self.checkTile(tile, name)
        // Tile pixel (0, 0) is graph input pixel (networkPad, networkPad).
        let p = Double(model.networkPad)
        let padded = graphInput(tile)
        return try graph.poolingSums(padded.input, plan: sharedPooling, shared: shared,
                                     x: (x.lowerBound + p)..<(x.upperBound + p), y: (y.lowerBound + p)..<(y.upperBound + p))
    }

    public func restore(_ tile: Tensor, shared: [Tensor]) throws -> Tensor {
        guard let graph, let sharedPooling else {
            throw UpscalingError(.invalidInput, "\(name) has no global averages to share")
        }
        return try restoreOnGraph(tile) { try graph.forward($0, plan: sharedPooling, shared: shared) }
    }

    static func checkTile(_ tile: Tensor, _ name: String) throws {
        guard tile.rank == 4, tile.shape[0] == 1, tile.shape[1] == 3 else {
            throw UpscalingError(.invalidInput, "\(name) expects a [1, 3, H, W] tile, got \(tile.shape)")
        }
    }

    /// The graph's input for a tile: `networkPad` edge-replicated pixels around it, the right/bottom extended to the
    /// size multiple (`extraH`, `extraW`), the pro models' range mapping.
    private func graphInput(_ tile: Tensor) -> (input: Tensor, extraH: Int, extraW: Int) {
        let h = tile.shape[2], w = tile.shape[3]
        let p = model.networkPad, m = max(1, model.sizeMultiple)
        let ph = h + 2 * p, pw = w + 2 * p
        let extraH = (m - ph % m) % m, extraW = (m - pw % m) % m
        var padded = Self.replicatePadded(tile, top: p, left: p, bottom: p + extraH, right: p + extraW)
        if model.proRange {
            if padded === tile { padded = tile.copy() }
            padded.withUnsafeMutableBufferPointer { b in for i in b.indices { b[i] = b[i] * 0.7 + 0.15 } }
        }
        return (padded, extraH, extraW)
    }

    /// Pads the tile (`graphInput`), runs `forward` on it and turns the graph's output into the tile's upscaled
    /// pixels (crop, Real-CUGAN's nearest residual and range mapping).
    private func restoreOnGraph(_ tile: Tensor, _ forward: (Tensor) throws -> Tensor) throws -> Tensor {
        try Self.checkTile(tile, name)
        let h = tile.shape[2], w = tile.shape[3], s = model.scale
        let (padded, extraH, extraW) = graphInput(tile)
        let graphOut = try forward(padded)
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
