import Foundation
import CKernels

/// How a tile's contribution falls off towards its edges.
public enum TileWeighting: Sendable, Equatable {
    /// Every pixel of every tile weighs the same (MultiDiffusion's average).
    case uniform
    /// At edges shared with a neighbour: zero weight over the outer quarter of `ramp` units (where a model's padding
    /// effects live), then a linear ramp up to full weight at `ramp` units from the edge. Full weight at the image
    /// border. Requires neighbours to overlap by at least `ramp` units (TileGrid guarantees its requested overlap).
    case feather(ramp: Int)
    /// Gaussian profile (Mixture of Diffusers: exp(-(i - mid)^2 / size^2 / 0.02)), positive everywhere.
    case gaussian

    /// The 1-D weight profile of a tile at `start` with `size` units on an axis of `length` units.
    public func profile(start: Int, size: Int, length: Int) -> [Float] {
        switch self {
        case .uniform:
            return [Float](repeating: 1, count: size)
        case .feather(let ramp):
            let margin = Float(max(ramp, 1) / 4)
            let r = Float(max(ramp, 1)) - margin
            let leftInterior = start > 0
            let rightInterior = start + size < length
            func edge(_ d: Int) -> Float { max(0, min(1, (Float(d) + 0.5 - margin) / r)) }
            return (0..<size).map { i in
                var w: Float = 1
                if leftInterior { w = min(w, edge(i)) }
                if rightInterior { w = min(w, edge(size - 1 - i)) }
                return w
            }
        case .gaussian:
            let mid = Double(size - 1) / 2
            let var2 = 2 * 0.01 * Double(size) * Double(size)
            return (0..<size).map { i in
                let d = Double(i) - mid
                return Float(max(exp(-d * d / var2), 1e-30))
            }
        }
    }
}

/// Reassembles the tiles of a `TileGrid` into one planar image: a weighted sum divided by the summed weights.
///
/// Tile weights are separable (w(x, y) = wx(x) * wy(y), one profile per column and per row), so the per-pixel weight
/// sum over a full grid is Sx(x) * Sy(y): only two 1-D arrays are kept besides the canvas. Blending identical tiles
/// therefore reproduces the source exactly (up to float rounding), with any weighting.
public struct GridBlender: Sendable {
    public let grid: TileGrid
    public let channels: Int
    public let weighting: TileWeighting
    private var canvas: [Float]
    private let columnProfiles: [[Float]]
    private let rowProfiles: [[Float]]
    private var added: [Bool]
    private var finished = false

    public init(grid: TileGrid, channels: Int, weighting: TileWeighting) {
        self.grid = grid
        self.channels = channels
        self.weighting = weighting
        self.canvas = [Float](repeating: 0, count: channels * grid.width * grid.height)
        self.columnProfiles = grid.xs.map { weighting.profile(start: $0, size: grid.tileWidth, length: grid.width) }
        self.rowProfiles = grid.ys.map { weighting.profile(start: $0, size: grid.tileHeight, length: grid.height) }
        self.added = [Bool](repeating: false, count: grid.count)
    }

    /// Adds tile (row, column); `tile` holds `channels * tileHeight * tileWidth` planar values.
    public mutating func add(row: Int, column: Int, tile: UnsafeBufferPointer<Float>) throws {
        guard !finished else { throw RasterError(.incompleteBlend, "tile added after the blend was finished") }
        guard row >= 0, row < grid.rows, column >= 0, column < grid.columns else {
            throw RasterError(.shapeMismatch, "tile (\(row), \(column)) outside a \(grid.rows)x\(grid.columns) grid")
        }
        guard tile.count == channels * grid.tileWidth * grid.tileHeight else {
            throw RasterError(.shapeMismatch,
                              "tile has \(tile.count) values, expected \(channels)x\(grid.tileHeight)x\(grid.tileWidth)")
        }
        let index = row * grid.columns + column
        guard !added[index] else {
            throw RasterError(.shapeMismatch, "tile (\(row), \(column)) added twice")
        }
        added[index] = true
        let x0 = grid.xs[column], y0 = grid.ys[row]
        let (w, h, tw, th, c) = (grid.width, grid.height, grid.tileWidth, grid.tileHeight, channels)
        columnProfiles[column].withUnsafeBufferPointer { wx in
            rowProfiles[row].withUnsafeBufferPointer { wy in
                canvas.withUnsafeMutableBufferPointer { dst in
                    ck_blend_accumulate(dst.baseAddress, w, h, tile.baseAddress, tw, th, c, x0, y0,
                                        wx.baseAddress, wy.baseAddress)
                }
            }
        }
    }

    /// Adds a tile given as a planar image of the tile's size.
    public mutating func add(row: Int, column: Int, image: PlanarImage) throws {
        guard image.channels == channels, image.width == grid.tileWidth, image.height == grid.tileHeight else {
            throw RasterError(.shapeMismatch,
                              "tile image \(image.width)x\(image.height)x\(image.channels), expected "
                              + "\(grid.tileWidth)x\(grid.tileHeight)x\(channels)")
        }
        try image.pixels.withUnsafeBufferPointer { try add(row: row, column: column, tile: $0) }
    }

    /// Whether every tile of the grid has been added.
    public var isComplete: Bool { added.allSatisfy { $0 } }

    /// The normalised result. Every tile must have been added exactly once. The canvas is moved out (normalised in
    /// place, never copied: at 8000x6000 a copy would be another 576 MB); the blender is empty afterwards.
    public mutating func finish() throws -> PlanarImage {
        guard !finished else { throw RasterError(.incompleteBlend, "the blend was already finished") }
        guard isComplete else {
            let missing = added.enumerated().filter { !$0.element }.count
            throw RasterError(.incompleteBlend, "\(missing) of \(grid.count) tiles were never added")
        }
        let sx = GridBlender.sum(profiles: columnProfiles, starts: grid.xs, length: grid.width)
        let sy = GridBlender.sum(profiles: rowProfiles, starts: grid.ys, length: grid.height)
        let (w, h, c) = (grid.width, grid.height, channels)
        var out: [Float] = []
        swap(&out, &canvas)
        finished = true
        sx.withUnsafeBufferPointer { px in
            sy.withUnsafeBufferPointer { py in
                out.withUnsafeMutableBufferPointer { dst in
                    ck_blend_normalize(dst.baseAddress, w, h, c, px.baseAddress, py.baseAddress)
                }
            }
        }
        return PlanarImage(width: w, height: h, channels: c, pixels: out)
    }

    private static func sum(profiles: [[Float]], starts: [Int], length: Int) -> [Float] {
        var s = [Float](repeating: 0, count: length)
        for (p, start) in zip(profiles, starts) {
            for (i, w) in p.enumerated() { s[start + i] += w }
        }
        return s
    }
}
