import Foundation
import Raster
import Tensor
import Testing
@testable import Upscaling

/// Tiling with the real Real-ESRGAN x4plus weights (fetched by scripts/fetch-models.sh; the tests fail, never skip,
/// when they are missing).
@Suite(.serialized, .timeLimit(.minutes(10)))
final class RealESRGANTilingTests {
    private static let restorer: Result<RealESRGANRestorer, Error> = Result {
        // Run from the package root (swift test does); DREAMSR_MODELS_DIR overrides.
        try RealESRGANRestorer()
    }

    private func model() throws -> RealESRGANRestorer {
        switch Self.restorer {
        case .success(let r): return r
        case .failure(let e): Issue.record("Real-ESRGAN weights missing: \(e)"); throw e
        }
    }

    /// Photo-like deterministic content: smooth shading plus edges and fine texture.
    private func scene(width: Int, height: Int) -> PlanarImage {
        var img = PlanarImage(width: width, height: height, channels: 3)
        for c in 0..<3 { for y in 0..<height { for x in 0..<width {
            let fx = Float(x), fy = Float(y)
            var v = 0.35 + 0.25 * sin(fx * 0.11 + Float(c)) * cos(fy * 0.07)
            if (x / 12 + y / 9) % 2 == 0 { v += 0.2 }
            v += 0.05 * sin(fx * 1.3 + fy * 0.9)
            img[c, y, x] = min(max(v, 0), 1)
        } } }
        return img
    }

    /// Away from tile seams (further than the overlap from any shared tile edge) tiled output equals untiled output
    /// within 0.5/255 (measured 0.16/255). In the seams the difference is the network's own long-range border effect (RRDBNet sees
    /// further than any practical overlap; ncnn's output shows the same numbers), kept small by context padding and
    /// feathering: bounded here as well so a regression shows (p99.9 <= 2/255, measured 1.3/255; README states both).
    @Test func tiledMatchesUntiledAwayFromTileSeams() throws {
        let r = try model()
        let img = scene(width: 120, height: 88)
        let untiled = try TiledUpscaler(restorer: r, tileSize: 512, overlap: 16).upscale(img)
        let up = try TiledUpscaler(restorer: r, tileSize: 64, overlap: 16, contextPadding: 24)
        let tiled = try up.upscale(img)
        let grid = try TileGrid(width: 120, height: 88, tileSize: 64, overlap: 16).scaled(by: 4)
        #expect(grid.count == 3 * 2)
        let xEdges = grid.xs.dropFirst() + grid.xs.dropLast().map { $0 + grid.tileWidth }
        let yEdges = grid.ys.dropFirst() + grid.ys.dropLast().map { $0 + grid.tileHeight }
        let seam = 16 * 4
        var interiorMax: Float = 0
        var diffs: [Float] = []
        let border = 8
        for c in 0..<3 { for y in border..<(tiled.height - border) { for x in border..<(tiled.width - border) {
            let d = abs(tiled[c, y, x] - untiled[c, y, x])
            diffs.append(d)
            let nearSeam = xEdges.contains { abs($0 - x) < seam } || yEdges.contains { abs($0 - y) < seam }
            if !nearSeam { interiorMax = max(interiorMax, d) }
        } } }
        diffs.sort()
        let p999 = diffs[diffs.count * 999 / 1000]
        let mean = diffs.reduce(0, +) / Float(diffs.count)
        print("real-esrgan tiled vs untiled: interior max \(interiorMax * 255)/255, p99.9 \(p999 * 255)/255, "
              + "max \(diffs.last! * 255)/255, mean \(mean * 255)/255")
        #expect(interiorMax <= 0.5 / 255.0, "away from seams: \(interiorMax * 255)/255")
        #expect(p999 <= 2.0 / 255.0, "p99.9 over the image: \(p999 * 255)/255")
        #expect(mean <= 0.5 / 255.0, "mean: \(mean * 255)/255")
    }

    @Test func smoothGradientHasNoStepAtTileBorders() throws {
        let r = try model()
        var img = PlanarImage(width: 96, height: 24, channels: 3)
        for c in 0..<3 { for y in 0..<24 { for x in 0..<96 { img[c, y, x] = 0.15 + 0.7 * Float(x) / 95 } } }
        let up = try TiledUpscaler(restorer: r, tileSize: 40, overlap: 12)
        let grid = try TileGrid(width: 96, height: 24, tileSize: 40, overlap: 12).scaled(by: 4)
        let out = try up.upscale(img)
        // Mean over the interior rows of each output column: a smooth ramp. A seam would show as a jump between
        // neighbouring columns much larger than the typical one, at or near a tile edge.
        let rows = 16..<(out.height - 16)
        let profile = (0..<out.width).map { x in rows.map { out[1, $0, x] }.reduce(0, +) / Float(rows.count) }
        let steps = (16..<(out.width - 17)).map { abs(profile[$0 + 1] - profile[$0]) }
        let typical = steps.sorted()[steps.count / 2]
        let edges = Set(grid.xs.dropFirst().flatMap { [$0, $0 + grid.tileWidth] }.filter { $0 < out.width })
        for (i, s) in steps.enumerated() {
            let x = i + 16
            let nearEdge = edges.contains { abs($0 - x) <= 24 }
            #expect(s < max(4 * typical, 1.0 / 255.0), "jump of \(s * 255)/255 at column \(x)\(nearEdge ? " (tile edge)" : "")")
        }
    }
}
