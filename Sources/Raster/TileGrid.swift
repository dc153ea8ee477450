/// A grid of overlapping tiles covering a `width` x `height` area (pixels or latent cells).
///
/// Positions follow the Tiled Diffusion rule: the fewest tiles whose stride is at most `tile - overlap`, spread
/// evenly, the first flush with the start and the last flush with the end; so the real overlap is never smaller than
/// the requested one. An axis shorter than the tile gets one tile of the axis' length.
public struct TileGrid: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let tileWidth: Int
    public let tileHeight: Int
    /// The requested overlap (the real overlap between neighbours may be larger).
    public let overlap: Int
    /// Left edges of the columns and top edges of the rows.
    public let xs: [Int]
    public let ys: [Int]

    public struct Tile: Sendable, Equatable {
        public let row: Int
        public let column: Int
        public let rect: PixelRect
    }

    public init(width: Int, height: Int, tileSize: Int, overlap: Int) throws {
        try self.init(width: width, height: height, tileWidth: tileSize, tileHeight: tileSize, overlap: overlap)
    }

    public init(width: Int, height: Int, tileWidth: Int, tileHeight: Int, overlap: Int) throws {
        guard width > 0, height > 0 else {
            throw RasterError(.invalidGeometry, "cannot tile an empty \(width)x\(height) area")
        }
        guard tileWidth > 0, tileHeight > 0 else {
            throw RasterError(.invalidGeometry, "tile size must be positive, got \(tileWidth)x\(tileHeight)")
        }
        guard overlap >= 0, overlap < min(tileWidth, tileHeight) else {
            throw RasterError(.invalidGeometry,
                              "overlap \(overlap) must be >= 0 and smaller than the tile size \(min(tileWidth, tileHeight))")
        }
        self.width = width
        self.height = height
        self.tileWidth = min(tileWidth, width)
        self.tileHeight = min(tileHeight, height)
        self.overlap = overlap
        self.xs = TileGrid.positions(length: width, tile: self.tileWidth, overlap: overlap)
        self.ys = TileGrid.positions(length: height, tile: self.tileHeight, overlap: overlap)
    }

    private init(width: Int, height: Int, tileWidth: Int, tileHeight: Int, overlap: Int, xs: [Int], ys: [Int]) {
        self.width = width
        self.height = height
        self.tileWidth = tileWidth
        self.tileHeight = tileHeight
        self.overlap = overlap
        self.xs = xs
        self.ys = ys
    }

    /// Evenly spread start positions of tiles of size `tile` along an axis of `length` (tile <= length).
    public static func positions(length: Int, tile: Int, overlap: Int) -> [Int] {
        if tile >= length { return [0] }  // one tile covers the axis; no overlap needed
        precondition(tile > 0 && overlap >= 0 && overlap < tile)
        let stride = tile - overlap
        let count = (length - overlap + stride - 1) / stride  // ceil((length - overlap) / stride)
        let n = max(count, 2)
        let step = Double(length - tile) / Double(n - 1)
        return (0..<n).map { min(Int(Double($0) * step), length - tile) }
    }

    public var rows: Int { ys.count }
    public var columns: Int { xs.count }
    public var count: Int { rows * columns }

    /// All tiles, row-major.
    public var tiles: [Tile] {
        ys.enumerated().flatMap { r, y in
            xs.enumerated().map { c, x in
                Tile(row: r, column: c, rect: PixelRect(x: x, y: y, width: tileWidth, height: tileHeight))
            }
        }
    }

    /// The same grid in units `factor` times finer (e.g. input pixels to output pixels of a x4 model).
    public func scaled(by factor: Int) -> TileGrid {
        TileGrid(width: width * factor, height: height * factor, tileWidth: tileWidth * factor,
                 tileHeight: tileHeight * factor, overlap: overlap * factor,
                 xs: xs.map { $0 * factor }, ys: ys.map { $0 * factor })
    }
}

/// Errors of the Raster module.
public struct RasterError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable { case invalidGeometry, incompleteBlend, shapeMismatch, outOfMemory }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
