import XCTest
@testable import Raster

final class TileGridTests: XCTestCase {
    func testPositionsAreEvenFlushAndOverlapAtLeastRequested() throws {
        for (length, tile, overlap) in [(1000, 192, 16), (193, 192, 16), (4096, 512, 128), (640, 64, 16), (100, 37, 5)] {
            let xs = TileGrid.positions(length: length, tile: tile, overlap: overlap)
            XCTAssertEqual(xs.first, 0)
            XCTAssertEqual(xs.last, length - tile, "last tile flush with the border")
            for (a, b) in zip(xs, xs.dropFirst()) {
                XCTAssertGreaterThan(b, a)
                XCTAssertGreaterThanOrEqual(a + tile - b, overlap, "overlap shrank below the request")
            }
            // Fewest tiles: one fewer would need a stride above tile - overlap.
            if xs.count > 2 {
                XCTAssertGreaterThan(Double(length - tile) / Double(xs.count - 2), Double(tile - overlap))
            }
        }
    }

    func testSmallAreaGetsOneTileOfItsOwnSize() throws {
        let g = try TileGrid(width: 50, height: 300, tileSize: 192, overlap: 16)
        XCTAssertEqual(g.tileWidth, 50)
        XCTAssertEqual(g.xs, [0])
        XCTAssertEqual(g.ys.count, 2)
        XCTAssertEqual(g.ys.last, 300 - 192)
    }

    func testAxisShorterThanTheOverlapGetsOneTile() throws {
        // An 8x8 image with the default 192 px tiles and 16 px overlap: one 8x8 tile, no crash.
        let g = try TileGrid(width: 8, height: 8, tileSize: 192, overlap: 16)
        XCTAssertEqual(g.tiles.map(\.rect), [PixelRect(x: 0, y: 0, width: 8, height: 8)])
        XCTAssertEqual(TileWeighting.feather(ramp: 64).profile(start: 0, size: 8, length: 8), [Float](repeating: 1, count: 8))
    }

    func testTilesCoverEveryPixel() throws {
        let g = try TileGrid(width: 777, height: 333, tileSize: 128, overlap: 24)
        var covered = [Int](repeating: 0, count: g.width * g.height)
        for t in g.tiles {
            for y in t.rect.y..<t.rect.maxY { for x in t.rect.x..<t.rect.maxX { covered[y * g.width + x] += 1 } }
        }
        XCTAssertFalse(covered.contains(0))
        XCTAssertEqual(g.tiles.count, g.rows * g.columns)
    }

    func testScaledGridMapsInputTilesToOutputTiles() throws {
        let g = try TileGrid(width: 300, height: 200, tileSize: 96, overlap: 8)
        let s = g.scaled(by: 4)
        XCTAssertEqual(s.width, 1200)
        XCTAssertEqual(s.tileWidth, 384)
        XCTAssertEqual(s.xs, g.xs.map { $0 * 4 })
        XCTAssertEqual(s.tiles.last?.rect.maxX, 1200)
    }

    func testInvalidGeometryIsAClearError() {
        XCTAssertThrowsError(try TileGrid(width: 100, height: 100, tileSize: 32, overlap: 32)) { error in
            XCTAssertEqual((error as? RasterError)?.code, .invalidGeometry)
            XCTAssertTrue("\(error)".contains("overlap"))
        }
        XCTAssertThrowsError(try TileGrid(width: 0, height: 100, tileSize: 32, overlap: 4))
    }
}
