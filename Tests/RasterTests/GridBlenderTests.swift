import CKernels
import Foundation
import Testing
@testable import Raster

@Suite(.serialized, .timeLimit(.minutes(10)))
final class GridBlenderTests {
    /// A deterministic, non-trivial source image.
    private func source(width: Int, height: Int, channels: Int) -> PlanarImage {
        var img = PlanarImage(width: width, height: height, channels: channels)
        for c in 0..<channels { for y in 0..<height { for x in 0..<width {
            img[c, y, x] = Float((x * 7 + y * 13 + c * 101) % 97) / 97 + 0.25 * sin(Float(x + 2 * y) * 0.1)
        } } }
        return img
    }

    private func blendIdenticalTiles(weighting: TileWeighting) throws -> (PlanarImage, PlanarImage) {
        let src = source(width: 211, height: 157, channels: 3)
        let grid = try TileGrid(width: src.width, height: src.height, tileSize: 64, overlap: 12)
        var blender = GridBlender(grid: grid, channels: 3, weighting: weighting)
        for t in grid.tiles.reversed() {  // order must not matter
            try blender.add(row: t.row, column: t.column, image: src.cropped(to: t.rect))
        }
        return (src, try blender.finish())
    }

    @Test func identicalTilesReproduceTheSourceForEveryWeighting() throws {
        for weighting in [TileWeighting.uniform, .feather(ramp: 12), .gaussian] {
            let (src, out) = try blendIdenticalTiles(weighting: weighting)
            #expect(out.width == src.width)
            let maxErr = zip(src.pixels, out.pixels).map { abs($0 - $1) }.max() ?? 0
            #expect(maxErr < 1e-5, "\(weighting)")
        }
    }

    @Test func featherWeightsFadeAtSharedEdgesOnly() throws {
        let p = TileWeighting.feather(ramp: 8).profile(start: 0, size: 32, length: 100)
        #expect(p[0] == 1, "image border keeps full weight")
        #expect(p[31] == 0, "the outer quarter of the ramp at a shared edge is ignored")
        #expect(p[30] == 0)
        #expect(p[29] > 0)
        #expect(p[29] < 0.2, "then the weight ramps up")
        #expect(p[20] == 1)
        let g = TileWeighting.gaussian.profile(start: 10, size: 64, length: 100)
        #expect(g.allSatisfy { $0 > 0 })
        #expect(g[32] > g[0])
    }

    @Test func blendingDifferentTilesAveragesInOverlaps() throws {
        // Two tiles side by side, constant 0 and constant 1: uniform weighting averages the overlap to 0.5.
        let grid = try TileGrid(width: 10, height: 4, tileSize: 6, overlap: 2)
        #expect(grid.xs == [0, 4])
        var b = GridBlender(grid: grid, channels: 1, weighting: .uniform)
        try b.add(row: 0, column: 0, image: PlanarImage(width: 6, height: 4, channels: 1, fill: 0))
        try b.add(row: 0, column: 1, image: PlanarImage(width: 6, height: 4, channels: 1, fill: 1))
        let out = try b.finish()
        #expect(out[0, 0, 3] == 0)
        #expect(out[0, 0, 4] == 0.5)
        #expect(out[0, 0, 5] == 0.5)
        #expect(out[0, 0, 6] == 1)
    }

    @Test func finishMovesTheCanvasOutAndTheBlenderCannotBeReused() throws {
        let grid = try TileGrid(width: 30, height: 20, tileSize: 20, overlap: 4)
        var b = GridBlender(grid: grid, channels: 1, weighting: .uniform)
        for t in grid.tiles { try b.add(row: t.row, column: t.column, image: PlanarImage(width: 20, height: 20, channels: 1, fill: 2)) }
        let out = try b.finish()
        #expect(out.pixels == [Float](repeating: 2, count: 600))
        #expect(throws: (any Error).self) { _ = try b.finish() }
        #expect(throws: (any Error).self) { _ = try b.add(row: 0, column: 0, image: PlanarImage(width: 20, height: 20, channels: 1)) }
    }

    @Test func missingOrDuplicateTilesAreErrors() throws {
        let grid = try TileGrid(width: 100, height: 40, tileSize: 40, overlap: 8)
        var b = GridBlender(grid: grid, channels: 1, weighting: .uniform)
        let tile = PlanarImage(width: 40, height: 40, channels: 1, fill: 1)
        try b.add(row: 0, column: 0, image: tile)
        #expect(throws: (any Error).self) { _ = try b.add(row: 0, column: 0, image: tile) }
        #expect(throws: (any Error).self) { _ = try b.add(row: 0, column: 1, image: PlanarImage(width: 39, height: 40, channels: 1)) }
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try b.finish() }) { #expect(((thrown as? RasterError)?.code) == .incompleteBlend) }
    }

    @Test func sIMDAccumulateMatchesScalarReference() throws {
        let (cw, ch, tw, th, c) = (70, 50, 37, 29, 3)
        let tile = (0..<(c * tw * th)).map { Float(($0 * 31) % 17) / 17 }
        let wx = (0..<tw).map { Float($0 + 1) / Float(tw) }
        let wy = (0..<th).map { Float(th - $0) / Float(th) }
        var a = [Float](repeating: 0.5, count: c * cw * ch)
        var b = a
        a.withUnsafeMutableBufferPointer { ck_blend_accumulate($0.baseAddress, cw, ch, tile, tw, th, c, 5, 9, wx, wy) }
        b.withUnsafeMutableBufferPointer { ck_blend_accumulate_scalar($0.baseAddress, cw, ch, tile, tw, th, c, 5, 9, wx, wy) }
        let maxErr = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        #expect(maxErr < 1e-6)
        #expect(a != [Float](repeating: 0.5, count: a.count))
    }
}
