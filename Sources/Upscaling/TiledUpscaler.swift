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
public struct TiledUpscaler: Sendable {
    public let restorer: any TileRestorer
    public let tileSize: Int
    public let overlap: Int
    public let contextPadding: Int

    public static let defaultTileSize = 192
    public static let defaultOverlap = 16
    public static let defaultContextPadding = 24

    public init(restorer: any TileRestorer, tileSize: Int = defaultTileSize, overlap: Int = defaultOverlap,
                contextPadding: Int = defaultContextPadding) throws {
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

    /// Upscales a 3-channel image. `progress(done, total)` is called after each tile; `isCancelled` is polled between
    /// tiles and stops the work with `UpscalingError.cancelled`.
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
        let total = grid.count
        var done = 0
        progress?(0, total)
        for tile in grid.tiles {
            if isCancelled() { throw UpscalingError(.cancelled, "cancelled after \(done) of \(total) tiles") }
            let r = tile.rect
            let x0 = max(0, r.x - contextPadding), y0 = max(0, r.y - contextPadding)
            let padded = PixelRect(x: x0, y: y0, width: min(image.width, r.maxX + contextPadding) - x0,
                                   height: min(image.height, r.maxY + contextPadding) - y0)
            let crop = image.cropped(to: padded)
            let input = Tensor(shape: [1, 3, crop.height, crop.width], values: crop.pixels)
            let output = try restorer.restore(input)
            let expected = [1, 3, crop.height * s, crop.width * s]
            guard output.shape == expected else {
                throw UpscalingError(.modelOutputShape,
                                     "\(restorer.name) returned \(output.shape) for a \(input.shape) tile, expected \(expected)")
            }
            let kept = TiledUpscaler.crop(output, channels: 3, width: crop.width * s, height: crop.height * s,
                                          to: PixelRect(x: (r.x - x0) * s, y: (r.y - y0) * s,
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
