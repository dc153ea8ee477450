import Raster
import Tensor

/// Runs a `TileRestorer` over overlapping tiles of an image and blends the upscaled tiles with feathered weights.
///
/// Memory is the output canvas plus one tile's working set, whatever the image size. Tiles overlap by at least
/// `overlap` input pixels; each tile's contribution fades out linearly over the overlap at edges it shares with a
/// neighbour, so the model's border effects (zero padding) are blended away and no seam appears.
public struct TiledUpscaler: Sendable {
    public let restorer: any TileRestorer
    public let tileSize: Int
    public let overlap: Int

    public init(restorer: any TileRestorer, tileSize: Int = 192, overlap: Int = 16) throws {
        guard tileSize >= 8 else { throw UpscalingError(.invalidInput, "tile size \(tileSize) is below the minimum of 8 px") }
        guard overlap >= 0, overlap * 2 < tileSize else {
            throw UpscalingError(.invalidInput, "overlap \(overlap) must be >= 0 and less than half the tile size \(tileSize)")
        }
        self.restorer = restorer
        self.tileSize = tileSize
        self.overlap = overlap
    }

    public var scale: Int { restorer.scale }

    /// The number of tiles `upscale` will run for a `width` x `height` input.
    public func tileCount(width: Int, height: Int) throws -> Int {
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
        for tile in grid.tiles {
            if isCancelled() { throw UpscalingError(.cancelled, "cancelled after \(done) of \(total) tiles") }
            let crop = image.cropped(to: tile.rect)
            let input = Tensor(shape: [1, 3, crop.height, crop.width], values: crop.pixels)
            let output = try restorer.restore(input)
            let expected = [1, 3, crop.height * s, crop.width * s]
            guard output.shape == expected else {
                throw UpscalingError(.modelOutputShape,
                                     "\(restorer.name) returned \(output.shape) for a \(input.shape) tile, expected \(expected)")
            }
            try blender.add(row: tile.row, column: tile.column,
                            tile: UnsafeBufferPointer(start: output.data, count: output.count))
            done += 1
            progress?(done, total)
        }
        var result = try blender.finish()
        result.pixels.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = min(max(p[i], 0), 1) }
        }
        return result
    }
}
