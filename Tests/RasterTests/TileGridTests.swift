import Foundation
import Testing
@testable import Raster

@Suite(.serialized, .timeLimit(.minutes(10)))
final class TileGridTests {
    @Test func positionsAreEvenFlushAndOverlapAtLeastRequested() throws {
        for (length, tile, overlap) in [(1000, 192, 16), (193, 192, 16), (4096, 512, 128), (640, 64, 16), (100, 37, 5)] {
            let xs = TileGrid.positions(length: length, tile: tile, overlap: overlap)
            #expect(xs.first == 0)
            #expect(xs.last == length - tile, "last tile flush with the border")
            for (a, b) in zip(xs, xs.dropFirst()) {
                #expect(b > a)
                #expect(a + tile - b >= overlap, "overlap shrank below the request")
            }
            // Fewest tiles: one fewer would need a stride above tile - overlap.
            if xs.count > 2 {
                #expect(Double(length - tile) / Double(xs.count - 2) > Double(tile - overlap))
            }
        }
    }

    @Test func smallAreaGetsOneTileOfItsOwnSize() throws {
        let g = try TileGrid(width: 50, height: 300, tileSize: 192, overlap: 16)
        #expect(g.tileWidth == 50)
        #expect(g.xs == [0])
        #expect(g.ys.count == 2)
        #expect(g.ys.last == 300 - 192)
    }

    @Test func axisShorterThanTheOverlapGetsOneTile() throws {
        // An 8x8 image with the default 192 px tiles and 16 px overlap: one 8x8 tile, no crash.
        let g = try TileGrid(width: 8, height: 8, tileSize: 192, overlap: 16)
        #expect(g.tiles.map(\.rect) == [PixelRect(x: 0, y: 0, width: 8, height: 8)])
        #expect(TileWeighting.feather(ramp: 64).profile(start: 0, size: 8, length: 8) == [Float](repeating: 1, count: 8))
    }

    @Test func tilesCoverEveryPixel() throws {
        let g = try TileGrid(width: 777, height: 333, tileSize: 128, overlap: 24)
        var covered = [Int](repeating: 0, count: g.width * g.height)
        for t in g.tiles {
            for y in t.rect.y..<t.rect.maxY { for x in t.rect.x..<t.rect.maxX { covered[y * g.width + x] += 1 } }
        }
        #expect(!covered.contains(0))
        #expect(g.tiles.count == g.rows * g.columns)
    }

    @Test func scaledGridMapsInputTilesToOutputTiles() throws {
        let g = try TileGrid(width: 300, height: 200, tileSize: 96, overlap: 8)
        let s = g.scaled(by: 4)
        #expect(s.width == 1200)
        #expect(s.tileWidth == 384)
        #expect(s.xs == g.xs.map { $0 * 4 })
        #expect((s.tiles.last?.rect.maxX) == 1200)
    }

    @Test func invalidGeometryIsAClearError() throws {
        if let error = #expect(throws: (any Error).self, performing: { _ = try TileGrid(width: 100, height: 100, tileSize: 32, overlap: 32) }) {
            #expect(((error as? RasterError)?.code) == .invalidGeometry)
            #expect("\(error)".contains("overlap"))
        }
        #expect(throws: (any Error).self) { _ = try TileGrid(width: 0, height: 100, tileSize: 32, overlap: 4) }
    }
}
