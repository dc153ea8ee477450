import Raster
import Tensor
import Foundation
import Testing
@testable import Upscaling

/// A deterministic stand-in model with a spatial receptive field: 3x3 box blur with zero padding (so tile borders
/// are wrong, like a real CNN's), then nearest-neighbour x2.
private struct BlurUpscale2x: TileRestorer {
    var scale: Int { 2 }
    var name: String { "blur-x2" }
    func restore(_ tile: Tensor) throws -> Tensor {
        let (c, h, w) = (tile.shape[1], tile.shape[2], tile.shape[3])
        let out = Tensor(zeros: [1, c, h * 2, w * 2])
        for ch in 0..<c { for y in 0..<h { for x in 0..<w {
            var s: Float = 0
            for dy in -1...1 { for dx in -1...1 {
                let yy = y + dy, xx = x + dx
                if yy >= 0, yy < h, xx >= 0, xx < w { s += tile[flat: (ch * h + yy) * w + xx] }
            } }
            let v = s / 9
            for oy in 0..<2 { for ox in 0..<2 { out[flat: (ch * h * 2 + y * 2 + oy) * w * 2 + x * 2 + ox] = v } }
        } } }
        return out
    }
}

private struct WrongShape: TileRestorer {
    var scale: Int { 4 }
    var name: String { "wrong" }
    func restore(_ tile: Tensor) throws -> Tensor { Tensor(zeros: [1, 3, 4, 4]) }
}

@Suite(.serialized, .timeLimit(.minutes(10)))
final class TiledUpscalerTests {
    private func texture(width: Int, height: Int) -> PlanarImage {
        var img = PlanarImage(width: width, height: height, channels: 3)
        for c in 0..<3 { for y in 0..<height { for x in 0..<width {
            img[c, y, x] = 0.5 + 0.3 * sin(Float(x) * 0.37 + Float(c)) * cos(Float(y) * 0.23)
        } } }
        return img
    }

    @Test func tiledMatchesUntiledAwayFromTheImageBorder() throws {
        let img = texture(width: 150, height: 110)
        let untiled = try TiledUpscaler(restorer: BlurUpscale2x(), tileSize: 1000, overlap: 0).upscale(img)
        let tiled = try TiledUpscaler(restorer: BlurUpscale2x(), tileSize: 48, overlap: 12).upscale(img)
        #expect(try TiledUpscaler(restorer: BlurUpscale2x(), tileSize: 48, overlap: 12)
            .tileCount(width: 150, height: 110) == 4 * 3)
        #expect(tiled.width == 300)
        var maxErr: Float = 0
        for c in 0..<3 { for y in 4..<(tiled.height - 4) { for x in 4..<(tiled.width - 4) {
            maxErr = max(maxErr, abs(tiled[c, y, x] - untiled[c, y, x]))
        } } }
        #expect(maxErr <= 2.0 / 255.0)
    }

    @Test func smoothGradientHasNoStepAtTileBorders() throws {
        var img = PlanarImage(width: 160, height: 64, channels: 3)
        for c in 0..<3 { for y in 0..<64 { for x in 0..<160 { img[c, y, x] = 0.1 + 0.8 * Float(x) / 159 } } }
        let out = try TiledUpscaler(restorer: BlurUpscale2x(), tileSize: 40, overlap: 8).upscale(img)
        // Along a row in the interior, the gradient is linear: every step between neighbouring pixel pairs
        // (the model duplicates pixels, so compare every second column) stays close to the mean step.
        let y = 64
        let steps = stride(from: 8, to: out.width - 10, by: 2).map { out[0, y, $0 + 2] - out[0, y, $0] }
        let mean = steps.reduce(0, +) / Float(steps.count)
        let worst = steps.map { abs($0 - mean) }.max() ?? 0
        #expect(worst < 0.25 * mean, "a step in the gradient means a visible seam")
    }

    @Test func progressReportsEveryTileAndCancellationStops() throws {
        let up = try TiledUpscaler(restorer: BlurUpscale2x(), tileSize: 32, overlap: 4)
        var seen: [Int] = []
        _ = try up.upscale(texture(width: 70, height: 40)) { done, total in
            #expect(total == 6)
            seen.append(done)
        }
        #expect(seen == (Array(0...6)), "0 of 6 at the start, then once per tile")
        var calls = 0
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try up.upscale(texture(width: 70, height: 40), isCancelled: {
            calls += 1
            return calls > 2
        }) }) { #expect(((thrown as? UpscalingError)?.code) == .cancelled) }
    }

    @Test func imageSmallerThanTheOverlapIsUpscaledInOneTile() throws {
        let up = try TiledUpscaler(restorer: BlurUpscale2x(), tileSize: 192, overlap: 16)
        let out = try up.upscale(texture(width: 6, height: 5))
        #expect([out.width, out.height] == [12, 10] as [Int])
        #expect(try up.tileCount(width: 6, height: 5) == 1)
    }

    @Test func badModelOutputAndBadGeometryAreClearErrors() throws {
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try TiledUpscaler(restorer: WrongShape(), tileSize: 32, overlap: 4).upscale(texture(width: 20, height: 20)) }) {
            #expect(((thrown as? UpscalingError)?.code) == .modelOutputShape)
        }
        #expect(throws: (any Error).self) { _ = try TiledUpscaler(restorer: BlurUpscale2x(), tileSize: 32, overlap: 16) }
        let grey = PlanarImage(width: 8, height: 8, channels: 1)
        #expect(throws: (any Error).self) { _ = try TiledUpscaler(restorer: BlurUpscale2x(), tileSize: 32, overlap: 4).upscale(grey) }
    }
}
