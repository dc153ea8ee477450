import Checkpoints
import DreamsrTestKit
import Foundation
@testable import Models
import Raster
import Tensor
import Testing
@testable import Upscaling

/// Tiled inference of a network with squeeze-excitation blocks (global averages) shares the whole image's averages
/// across tiles, so tiled output is untiled output within the RRDBNet tiling bounds (RealESRGANTilingTests).
/// CI has no Real-CUGAN / waifu2x cunet model, so these tests write a small 2x U-Net of the same shape (two SE
/// stages, one at half resolution, trimming its input like Real-CUGAN) with seeded random weights; the real models are
/// checked in NCNNZooTilingTests when installed.
@Suite("tiling shares global averages across tiles", .serialized, .timeLimit(.minutes(2)))
struct SharedStatisticsTilingTests {
    /// The test network's layers: conv 3x3 (no padding) -> [stride-2 conv, conv 3x3, SE 0, 2x deconvolution] + crop
    /// skip -> SE 1 -> 4x4 stride-2 deconvolution (padding 3). Output 2 * (W - 8): it trims 4 input pixels per side.
    static let param = """
        7767517
        19 22
        Input            in0   0 1 in0
        Convolution      c1    1 1 in0 x1 0=8 1=3 5=1 6=216 9=2 -23310=1,0.1
        Split            s1    1 2 x1 a b
        Convolution      c2    1 1 b x2 0=8 1=2 3=2 5=1 6=256 9=2 -23310=1,0.1
        Convolution      c3    1 1 x2 x3 0=8 1=3 5=1 6=576 9=2 -23310=1,0.1
        Split            s2    1 2 x3 d e
        Pooling          gap0  1 1 e g0 0=1 4=1
        InnerProduct     fc1   1 1 g0 f1 0=4 1=1 2=32 9=1
        InnerProduct     fc2   1 1 f1 f2 0=8 1=1 2=32 9=4
        BinaryOp         mul0  2 1 d f2 m0 0=2
        Deconvolution    up    1 1 m0 u 0=8 1=2 3=2 5=1 6=256 9=2 -23310=1,0.1
        Crop             crop  1 1 a ac -23309=2,2,2 -23310=2,-2,-2 -23311=2,-2,-1
        BinaryOp         add   2 1 ac u s 0=0
        Split            s3    1 2 s g h
        Pooling          gap1  1 1 h g1 0=1 4=1
        InnerProduct     fc3   1 1 g1 f3 0=4 1=1 2=32 9=1
        InnerProduct     fc4   1 1 f3 f4 0=8 1=1 2=32 9=4
        BinaryOp         mul1  2 1 g f4 m1 0=2
        Deconvolution    out   1 1 m1 out0 0=3 1=4 3=2 4=3 5=1 6=384
        """

    /// The .bin: per weighted layer in file order, weights (tagged float32) then bias (raw), uniform in +-`scale`.
    /// The squeeze-excitation layers get large weights so that the averages matter; the output bias is 0.5.
    static func bin(seed: UInt64) -> Data {
        var g = SeededGenerator(seed: seed)
        var d = Data()
        func values(_ n: Int, _ scale: Float) -> [Float] { (0..<n).map { _ in (g.nextFloat() * 2 - 1) * scale } }
        func append(_ v: [Float], tagged: Bool) {
            if tagged { d.append(contentsOf: [0, 0, 0, 0]) }
            for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        }
        for (w, b, scale) in [(216, 8, 0.5), (256, 8, 0.4), (576, 8, 0.3), (32, 4, 3.0), (32, 8, 3.0), (256, 8, 0.4),
                              (32, 4, 3.0), (32, 8, 3.0)] as [(Int, Int, Float)] {
            append(values(w, scale), tagged: true)
            append(values(b, scale / 4), tagged: false)
        }
        append(values(384, 0.05), tagged: true)
        append([0.5, 0.5, 0.5], tagged: false)
        return d
    }

    /// The test network as a catalog-like model (scale 2, trims 4 pixels per side, even sizes, context 16).
    static func restorer(seed: UInt64 = 17) throws -> (NCNNModelRestorer, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-se-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let paramPath = dir.appendingPathComponent("SE_TEST_UP2X.param"), binPath = dir.appendingPathComponent("SE_TEST_UP2X.bin")
        try param.write(to: paramPath, atomically: true, encoding: .utf8)
        try bin(seed: seed).write(to: binPath)
        let file = ModelFile(stem: "SE_TEST_UP2X", paramSHA256: "", binSHA256: "")
        let package = ModelPackage(name: "test", version: "0", wheelSHA256: "", license: "MIT", innerFolder: "", files: [file])
        let model = CatalogModel(name: "se-test-x2", package: package, file: file, scale: 2, noise: nil, kind: .anime,
                                 speed: .fast, networkPad: 4, sizeMultiple: 2, tilePad: 16, proRange: false,
                                 nearestResidual: false)
        let located = ModelLocator.Located(model: model, paramPath: paramPath.path, binPath: binPath.path)
        return (try NCNNModelRestorer(located, threads: 1), dir)
    }

    /// The real photo crop of the zoo parity fixtures (76 x 76).
    static func photo() throws -> PlanarImage { try NCNNZooTilingTests.photo() }

    @Test("the global averages are found in run order with where their pixels lie; max pooling is not shared")
    func plan() throws {
        let (r, dir) = try Self.restorer()
        defer { try? FileManager.default.removeItem(at: dir) }
        let plan = try #require(r.sharedPooling)
        // gap0 is at half resolution (after the 3x3 and the stride-2 2x2 convolutions), gap1 at full resolution.
        #expect(plan.stages == [NCNNBlobPlacement(stepX: 2, stepY: 2, offsetX: 3.5, offsetY: 3.5),
                                NCNNBlobPlacement(stepX: 1, stepY: 1, offsetX: 3, offsetY: 3)])
        #expect(plan.alignment == 2)
        #expect(r.sharedStatisticsStages == 2 && r.sharedStatisticsAlignment == 2)

        let maxPooling = Self.param.replacingOccurrences(of: "gap1  1 1 h g1 0=1 4=1", with: "gap1  1 1 h g1 0=0 4=1")
        var bin = NCNNModelBin(data: Self.bin(seed: 17))
        let g = try NCNNGraph(param: NCNNParam(text: maxPooling), bin: &bin, source: "max.param", threads: 1)
        let e = #expect(throws: NCNNGraphError.self) { try g.sharedPooling() }
        #expect(e?.code == .unsupportedLayer && e?.message.contains("'gap1'") == true, "\(String(describing: e))")
    }

    /// The tiles' sums over the parts they own add up to exactly the untiled feature map's pixel count, and their
    /// average is the untiled average (stage 1 given the untiled stage-0 average).
    @Test("tiles' owned parts partition the untiled feature maps; summed, they give the untiled averages")
    func ownedPartsPartitionTheFeatureMap() throws {
        let (r, dir) = try Self.restorer()
        defer { try? FileManager.default.removeItem(at: dir) }
        let img = try Self.photo()
        let up = try TiledUpscaler(restorer: r, tileSize: 24, overlap: 4, contextPadding: 16)
        let grid = try TileGrid(width: img.width, height: img.height, tileSize: 24, overlap: 4)
        #expect(grid.count == 16)
        let whole = Tensor(shape: [1, 3, img.height, img.width], values: img.pixels)
        var shared: [Tensor] = []
        for stage in 0..<2 {
            let untiled = try r.statisticsSums(whole, shared: shared, x: -.infinity..<(.infinity), y: -.infinity..<(.infinity))
            var tiled = NCNNPoolingSums(channels: 8)
            for tile in grid.tiles {
                let rect = up.inputRect(tile.rect, width: img.width, height: img.height, alignment: 2)
                #expect(rect.x % 2 == 0 && rect.y % 2 == 0)
                let x = Tensor(shape: [1, 3, rect.height, rect.width], values: img.cropped(to: rect).pixels)
                try tiled.add(r.statisticsSums(x, shared: shared,
                                               x: TiledUpscaler.owned(grid.xs, size: grid.tileWidth, index: tile.column, origin: rect.x),
                                               y: TiledUpscaler.owned(grid.ys, size: grid.tileHeight, index: tile.row, origin: rect.y)))
            }
            // Untiled: (76 + 8 - 2) / 2 - 2 = 39 pixels a side at half resolution, 76 + 8 - 6 = 78 at full.
            #expect(untiled.count == [39 * 39, 78 * 78][stage], "stage \(stage)")
            #expect(tiled.count == untiled.count, "stage \(stage): tiles own \(tiled.count) pixels, untiled \(untiled.count)")
            let a = try tiled.mean().toArray(), b = try untiled.mean().toArray()
            for c in 0..<8 { #expect(abs(a[c] - b[c]) <= 1e-5 * max(1, abs(b[c])), "stage \(stage) channel \(c): \(a[c]) vs \(b[c])") }
            shared.append(try untiled.mean())
        }
    }

    /// Differences of tiled vs untiled output: away from seams (further than the overlap from a shared tile edge),
    /// p99.9 and mean over the image.
    static func compare(_ tiled: PlanarImage, _ untiled: PlanarImage, grid: TileGrid, seam: Int) -> (interior: Float, p999: Float, mean: Float) {
        let xEdges = grid.xs.dropFirst() + grid.xs.dropLast().map { $0 + grid.tileWidth }
        let yEdges = grid.ys.dropFirst() + grid.ys.dropLast().map { $0 + grid.tileHeight }
        var interior: Float = 0
        var diffs: [Float] = []
        for c in 0..<3 { for y in 0..<tiled.height { for x in 0..<tiled.width {
            let d = abs(tiled[c, y, x] - untiled[c, y, x])
            diffs.append(d)
            if !(xEdges.contains { abs($0 - x) < seam } || yEdges.contains { abs($0 - y) < seam }) { interior = max(interior, d) }
        } } }
        diffs.sort()
        return (interior, diffs[diffs.count * 999 / 1000], diffs.reduce(0, +) / Float(diffs.count))
    }

    @Test("tiled == untiled within the RRDBNet tiling bounds with shared averages; per-tile averages miss them")
    func tiledMatchesUntiled() throws {
        let (r, dir) = try Self.restorer()
        defer { try? FileManager.default.removeItem(at: dir) }
        let img = try Self.photo()
        let untiled = try TiledUpscaler(restorer: r, tileSize: 512, overlap: 4, contextPadding: 16).upscale(img)
        var reports: [(Int, Int)] = []
        let shared = try TiledUpscaler(restorer: r, tileSize: 24, overlap: 4, contextPadding: 16)
            .upscale(img, progress: { reports.append(($0, $1)) })
        let perTile = try TiledUpscaler(restorer: r, tileSize: 24, overlap: 4, contextPadding: 16, sharedStatistics: false)
            .upscale(img)
        let grid = try TileGrid(width: img.width, height: img.height, tileSize: 24, overlap: 4).scaled(by: 2)
        // 16 tiles, run three times: up to each average, then whole.
        #expect(reports.first! == (0, 48) && reports.last! == (48, 48) && reports.count == 49)
        let d = Self.compare(shared, untiled, grid: grid, seam: 8)
        let p = Self.compare(perTile, untiled, grid: grid, seam: 8)
        print("se-test-x2 tiled vs untiled: shared averages: away from seams \(d.interior * 255)/255, p99.9 "
              + "\(d.p999 * 255)/255, mean \(d.mean * 255)/255; per-tile averages: \(p.interior * 255)/255, "
              + "\(p.p999 * 255)/255, \(p.mean * 255)/255")
        #expect(d.interior <= 0.5 / 255, "away from seams: \(d.interior * 255)/255")
        #expect(d.p999 <= 2.0 / 255, "p99.9: \(d.p999 * 255)/255")
        #expect(d.mean <= 0.5 / 255, "mean: \(d.mean * 255)/255")
        // The network's averages matter: without sharing, the same bounds fail.
        #expect(p.interior > 0.5 / 255 && p.p999 > 2.0 / 255, "per-tile averages are within the bounds: the test network's SE blocks do not matter")
    }

    @Test("a cancel during an averaging pass stops the work")
    func cancelDuringAveragingPass() throws {
        let (r, dir) = try Self.restorer()
        defer { try? FileManager.default.removeItem(at: dir) }
        let img = try Self.photo()
        var polls = 0
        let e = #expect(throws: UpscalingError.self) {
            _ = try TiledUpscaler(restorer: r, tileSize: 24, overlap: 4, contextPadding: 16)
                .upscale(img, isCancelled: { polls += 1; return polls > 3 })
        }
        #expect(e?.code == .cancelled && e?.message.contains("3 of 48") == true, "\(String(describing: e))")
    }
}
