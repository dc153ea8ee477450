import Foundation
import Raster
import Tensor
import Testing
@testable import Upscaling

/// `--tta` (issue 17 item 5): the 8 orientations, and TTA of restorers that do and do not commute with them.
@Suite(.timeLimit(.minutes(1))) struct TestTimeAugmentationTests {
    /// Nearest-neighbour x2 then a 3x3 box blur of the result (zero padding): commutes with every flip and transpose.
    struct SymmetricX2: TileRestorer {
        var scale: Int { 2 }
        var name: String { "symmetric-x2" }
        func restore(_ tile: Tensor) throws -> Tensor {
            let (c, h, w) = (tile.shape[1], tile.shape[2] * 2, tile.shape[3] * 2)
            let up = Tensor(shape: [1, c, h, w]) { i in
                let x = i % w, y = (i / w) % h, ch = i / (w * h)
                return tile[flat: (ch * tile.shape[2] + y / 2) * tile.shape[3] + x / 2]
            }
            return Tensor(shape: [1, c, h, w]) { i in
                let x = i % w, y = (i / w) % h, ch = i / (w * h)
                var s: Float = 0
                for dy in -1...1 { for dx in -1...1 where (0..<h).contains(y + dy) && (0..<w).contains(x + dx) {
                    s += up[flat: (ch * h + y + dy) * w + x + dx]
                } }
                return s / 9
            }
        }
    }

    /// Nearest x2 plus a horizontal ramp: not symmetric under a left-right flip.
    struct RampX2: TileRestorer {
        var scale: Int { 2 }
        var name: String { "ramp-x2" }
        func restore(_ tile: Tensor) throws -> Tensor {
            let (c, h, w) = (tile.shape[1], tile.shape[2] * 2, tile.shape[3] * 2)
            return Tensor(shape: [1, c, h, w]) { i in
                let x = i % w, y = (i / w) % h, ch = i / (w * h)
                return tile[flat: (ch * tile.shape[2] + y / 2) * tile.shape[3] + x / 2] + 0.2 * Float(x) / Float(w)
            }
        }
    }

    func image(width: Int, height: Int) -> PlanarImage {
        var img = PlanarImage(width: width, height: height, channels: 3)
        for c in 0..<3 { for y in 0..<height { for x in 0..<width {
            img[c, y, x] = 0.5 + 0.3 * sin(Float(x) * 0.37 + Float(c)) * cos(Float(y * y) * 0.023)
        } } }
        return img
    }

    @Test func theEightOrientationsAreDistinctAndEachIsUndoneByItsInverse() {
        let t = Tensor(shape: [1, 2, 3, 5]) { Float($0) }
        var seen: [[Float]] = []
        for o in TestTimeAugmentedRestorer.Orientation.allCases {
            let turned = o.apply(t)
            #expect(turned.shape == (o.transpose ? [1, 2, 5, 3] : [1, 2, 3, 5]))
            let values = turned.withUnsafeBufferPointer { Array($0) }
            #expect(!seen.contains(values), "orientation \(o) repeats another")
            seen.append(values)
            let back = o.inverse(turned)
            #expect(back.shape == t.shape)
            #expect(back.withUnsafeBufferPointer { Array($0) } == t.withUnsafeBufferPointer { Array($0) }, "\(o)")
        }
        #expect(seen.count == 8)
    }

    @Test func ttaOfASymmetricRestorerEqualsItsPlainOutputThroughTheTiler() throws {
        let img = image(width: 70, height: 45)
        let plain = try TiledUpscaler(restorer: SymmetricX2(), tileSize: 32, overlap: 6).upscale(img)
        let tta = try TiledUpscaler(restorer: TestTimeAugmentedRestorer(SymmetricX2()), tileSize: 32, overlap: 6).upscale(img)
        #expect([tta.width, tta.height] as [Int] == [140, 90] as [Int])
        let worst = zip(plain.pixels, tta.pixels).map { abs($0 - $1) }.max() ?? 1
        // Only float rounding differs: the blur's sums run in another order in a turned tile, then 8 terms averaged.
        #expect(worst <= 1e-6, "max abs difference \(worst)")
        #expect(TestTimeAugmentedRestorer(SymmetricX2()).name == "symmetric-x2+tta")
    }

    @Test func ttaOfAnAsymmetricRestorerAveragesTheOrientations() throws {
        let tile = Tensor(zeros: [1, 3, 8, 8])
        let plain = try RampX2().restore(tile)
        let tta = try TestTimeAugmentedRestorer(RampX2()).restore(tile)
        let diff = plain.withUnsafeBufferPointer { p in tta.withUnsafeBufferPointer { q in zip(p, q).map { abs($0 - $1) }.max() ?? 0 } }
        #expect(diff > 0.05, "the ramp is averaged away by the flips: \(diff)")
        // Half the orientations flip the ramp (x or, turned, y): every pixel gets the mean of r(i) + r(15 - i),
        // r(i) = 0.2 i / 16, i.e. 0.2 * 15 / 16 / 2.
        let expectedRamp: Float = 0.2 * 15 / 16 / 2
        let worst = tta.withUnsafeBufferPointer { $0.map { abs($0 - expectedRamp) }.max() ?? 1 }
        #expect(worst < 1e-6, "\(worst)")
    }
}
