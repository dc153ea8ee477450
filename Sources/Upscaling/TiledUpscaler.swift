import Models
import Raster
import Tensor

/// Runs a `TileRestorer` over overlapping tiles of an image and blends the upscaled tiles with feathered weights.
///
/// Memory is the output canvas plus one tile's working set, whatever the image size.
///
/// Two mechanisms keep tiles seamless. Each tile is run with `contextPadding` extra input pixels of real image
/// around it (clamped at the image border) and only its own rectangle is kept, as Real-ESRGAN's `tile_pad`: deep CNNs
/// like RRDBNet see far, and zero padding at a tile edge changes outputs tens of pixels inside. Then neighbouring
/// tiles overlap by at least `overlap` input pixels and each tile's contribution fades out over the overlap at edges
/// it shares with a neighbour, so what difference remains is blended, not cut.
///
/// A network that averages feature maps over its whole input (a `SharedStatisticsRestorer` with stages:
/// Real-CUGAN's and waifu2x cunet's squeeze-excitation blocks) would see only its tile's averages; with
/// `sharedStatistics` (the default) the tiles share the whole image's instead, so tiled output is untiled output as
/// for any local network. Each stage is one more pass over the tiles, run up to that stage's average: for stage k
/// every tile runs to global average k (given averages 0..<k) and sums that feature map over the pixels it owns
/// (the overlaps split at their middle, the image border's padding to the border tiles); the sums over all tiles
/// give the image's average. Nothing but the sums is kept between passes, so memory is still one tile's working set;
/// the time is that of the partial runs on top. Tile crops start at multiples of the
/// restorer's `sharedStatisticsAlignment` (a few more context pixels) so their feature maps lie on the untiled ones.
public struct TiledUpscaler: Sendable {
    public let restorer: any TileRestorer
    public let tileSize: Int
    public let overlap: Int
    public let contextPadding: Int
    /// Share a `SharedStatisticsRestorer`'s global averages across tiles (off: each tile uses its own; faster).
    public let sharedStatistics: Bool

    public static let defaultTileSize = 192
    public static let defaultOverlap = 16
    public static let defaultContextPadding = 24

    public init(restorer: any TileRestorer, tileSize: Int = defaultTileSize, overlap: Int = defaultOverlap,
                contextPadding: Int = defaultContextPadding, sharedStatistics: Bool = true) throws {
        guard tileSize >= 8 else { throw UpscalingError(.invalidInput, "tile size \(tileSize) is below the minimum of 8 px") }
        guard overlap >= 0, overlap * 2 < tileSize else {
            throw UpscalingError(.invalidInput, "overlap \(overlap) must be >= 0 and less than half the tile size \(tileSize)")
        }
        guard contextPadding >= 0 else {
            throw UpscalingError(.invalidInput, "tile padding \(contextPadding) must be >= 0")
        }
        self.restorer = restorer
        self.tileSize = tileSize
        self.overlap = overlap
        self.contextPadding = contextPadding
        self.sharedStatistics = sharedStatistics
    }

    public var scale: Int { restorer.scale }

    /// The number of tiles `upscale` will run for a `width` x `height` input.
    public func tileCount(width: Int, height: Int) throws -> Int {
        try Self.tileCount(width: width, height: height, tileSize: tileSize, overlap: overlap)
    }

    /// The number of tiles of a `width` x `height` input with this geometry.
    public static func tileCount(width: Int, height: Int, tileSize: Int, overlap: Int) throws -> Int {
        try TileGrid(width: width, height: height, tileSize: tileSize, overlap: overlap).count
    }

    /// Upscales a 3-channel image. `progress(done, total)` is called after each tile run (total: tiles x passes, one
    /// pass plus one per shared average); `isCancelled` is polled between tile runs and stops the work with
    /// `UpscalingError.cancelled`.
    public func upscale(
        _ image: PlanarImage,
        progress: ((Int, Int) -> Void)? = nil,
        isCancelled: () -> Bool = { false }
    ) throws -> PlanarImage {
        guard image.channels == 3 else {
            throw UpscalingError(.invalidInput, "expected an RGB image, got \(image.channels) channels")
        }
        let grid: TileGrid
        do {
            grid = try TileGrid(width: image.width, height: image.height, tileSize: tileSize, overlap: overlap)
        } catch {
            throw UpscalingError(.invalidInput, "\(error)")
        }
        let s = restorer.scale
        let outGrid = grid.scaled(by: s)
        var blender = GridBlender(grid: outGrid, channels: 3, weighting: .feather(ramp: max(1, overlap * s)))
        let sharing = grid.count > 1 && sharedStatistics ? restorer as? SharedStatisticsRestorer : nil
        let stages = sharing?.sharedStatisticsStages ?? 0
        let alignment = stages > 0 ? max(1, sharing!.sharedStatisticsAlignment) : 1
        let tiles = grid.tiles
        let total = tiles.count * (stages + 1)
        var done = 0
        progress?(0, total)
        func input(_ tile: TileGrid.Tile) -> (Tensor, PixelRect) {
            let padded = inputRect(tile.rect, width: image.width, height: image.height, alignment: alignment)
            let crop = image.cropped(to: padded)
            return (Tensor(shape: [1, 3, crop.height, crop.width], values: crop.pixels), padded)
        }
        // The image's global averages, stage by stage (see the type's comment).
        var shared: [Tensor] = []
        for _ in 0..<stages {
            var sums: NCNNPoolingSums?
            for tile in tiles {
                if isCancelled() { throw UpscalingError(.cancelled, "cancelled after \(done) of \(total) tile runs") }
                let (x, rect) = input(tile)
                let ownX = Self.owned(grid.xs, size: grid.tileWidth, index: tile.column, origin: rect.x)
                let ownY = Self.owned(grid.ys, size: grid.tileHeight, index: tile.row, origin: rect.y)
                let part = try sharing!.statisticsSums(x, shared: shared, x: ownX, y: ownY)
                if sums == nil { sums = NCNNPoolingSums(channels: part.sums.count) }
                do { try sums!.add(part) } catch { throw UpscalingError(.modelOutputShape, "\(restorer.name): \(error)") }
                done += 1
                progress?(done, total)
            }
            do { shared.append(try sums!.mean()) } catch { throw UpscalingError(.modelOutputShape, "\(restorer.name): \(error)") }
        }
        for tile in tiles {
            if isCancelled() { throw UpscalingError(.cancelled, "cancelled after \(done) of \(total) tile runs") }
            let r = tile.rect
            let (input, padded) = input(tile)
            let output = stages > 0 ? try sharing!.restore(input, shared: shared) : try restorer.restore(input)
            let expected = [1, 3, padded.height * s, padded.width * s]
            guard output.shape == expected else {
                throw UpscalingError(.modelOutputShape,
                                     "\(restorer.name) returned \(output.shape) for a \(input.shape) tile, expected \(expected)")
            }
            let kept = TiledUpscaler.crop(output, channels: 3, width: padded.width * s, height: padded.height * s,
                                          to: PixelRect(x: (r.x - padded.x) * s, y: (r.y - padded.y) * s,
                                                        width: r.width * s, height: r.height * s))
            try kept.withUnsafeBufferPointer { try blender.add(row: tile.row, column: tile.column, tile: $0) }
            done += 1
            progress?(done, total)
        }
        var result = try blender.finish()
        result.pixels.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = min(max(p[i], 0), 1) }
        }
        return result
    }

    /// The input a tile is run on: its rectangle plus `contextPadding` on each side (within the image), the start
    /// moved back to a multiple of `alignment`.
    func inputRect(_ r: PixelRect, width: Int, height: Int, alignment: Int) -> PixelRect {
        let x0 = max(0, r.x - contextPadding) / alignment * alignment
        let y0 = max(0, r.y - contextPadding) / alignment * alignment
        return PixelRect(x: x0, y: y0, width: min(width, r.maxX + contextPadding) - x0,
                         height: min(height, r.maxY + contextPadding) - y0)
    }

    /// The part of an axis tile `index` owns for the shared averages, in the coordinates of its input (which starts at
    /// `origin`): overlaps split at their middle; the first and last tile also own the network's padding beyond the
    /// image border.
    static func owned(_ starts: [Int], size: Int, index: Int, origin: Int) -> Range<Double> {
        func split(_ i: Int) -> Double { Double((starts[i - 1] + size + starts[i]) / 2 - origin) }
        let lo = index == 0 ? -Double.infinity : split(index)
        let hi = index == starts.count - 1 ? Double.infinity : split(index + 1)
        return lo..<hi
    }

    /// The `rect` part of a planar [1, channels, height, width] tensor.
    static func crop(_ t: Tensor, channels: Int, width: Int, height: Int, to rect: PixelRect) -> [Float] {
        var out = [Float](repeating: 0, count: channels * rect.width * rect.height)
        precondition(t.count >= channels * width * height && rect.x >= 0 && rect.y >= 0
                     && rect.x + rect.width <= width && rect.y + rect.height <= height, "crop \(rect) of \(t.shape)")
        out.withUnsafeMutableBufferPointer { dst in
            t.withUnsafePointer { tp in
                for c in 0..<channels {
                    for y in 0..<rect.height {
                        let src = tp + (c * height + rect.y + y) * width + rect.x
                        let d = dst.baseAddress! + (c * rect.height + y) * rect.width
                        d.update(from: src, count: rect.width)
                    }
                }
            }
        }
        return out
    }
}
