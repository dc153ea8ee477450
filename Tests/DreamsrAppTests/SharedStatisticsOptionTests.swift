import DreamsrApp
import Foundation
import Imaging
import Jobs
import Models
import Raster
import Tensor
import Testing
import Upscaling

/// The restore stage's `shared_statistics` key (`dreamsr upscale --per-tile-statistics` sets it to false): a model
/// with global averages gets them shared across tiles by default, per tile when it is false; the key belongs to the
/// restore stage only. (The mechanism itself: UpscalingTests/SharedStatisticsTilingTests.)
@Suite(.serialized, .timeLimit(.minutes(2))) struct SharedStatisticsOptionTests {
    /// Nearest x4 with one fake global average: counts the averaging runs and the runs given shared averages.
    final class CountingAveragesRestorer: SharedStatisticsRestorer, @unchecked Sendable {
        let base = NearestX4Restorer()
        private let lock = NSLock()
        private var counts = (sums: 0, shared: 0, plain: 0)
        var calls: (sums: Int, shared: Int, plain: Int) { lock.withLock { counts } }
        var scale: Int { base.scale }
        var name: String { base.name }
        var sharedStatisticsStages: Int { 1 }
        var sharedStatisticsAlignment: Int { 1 }
        func statisticsSums(_ tile: Tensor, shared: [Tensor], x: Range<Double>, y: Range<Double>) throws -> NCNNPoolingSums {
            lock.withLock { counts.sums += 1 }
            return NCNNPoolingSums(sums: [1], count: 1)
        }
        func restore(_ tile: Tensor, shared: [Tensor]) throws -> Tensor {
            lock.withLock { counts.shared += 1 }
            return try base.restore(tile)
        }
        func restore(_ tile: Tensor) throws -> Tensor {
            lock.withLock { counts.plain += 1 }
            return try base.restore(tile)
        }
    }

    @Test func sharedByDefaultPerTileWhenFalseAndOnlyOnTheRestoreStage() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ImageCodec.initialize()
        var img = PlanarImage(width: 80, height: 60, channels: 3)
        for i in img.pixels.indices { img.pixels[i] = Float(i % 251) / 250 }
        try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: dir + "/in.png")
        let tiles = try TiledUpscaler.tileCount(width: 80, height: 60, tileSize: 40, overlap: 16)
        #expect(tiles > 1)
        for key in ["", "    shared_statistics: true\n", "    shared_statistics: false\n"] {
            let yaml = PipelineDefinition.builtInRealESRGANYAML.replacingOccurrences(of: "    tile: 192\n", with: "    tile: 40\n" + key)
            let def = try PipelineDefinition.parse(yaml: yaml, file: "t.yaml")
            let shared = !key.contains("false")
            #expect(def.stage(.restore)?.sharedStatistics == shared)
            let restorer = CountingAveragesRestorer()
            let config = try DaemonConfig.parse(yaml: "{}", file: "<test>", baseDirectory: dir, env: [:])
            let runner = PipelineRunner(definition: def, config: config,
                                        factory: ImagePipelineFactory(loadRestorer: { _ in restorer }))
            let o = try #require(try await runner.run([JobRequest(id: JobID("t"), source: .file(dir + "/in.png"),
                                                                  output: dir + "/out.png")]).first)
            #expect(o.status == .ok, "\(o.errorMessage ?? "")")
            let c = restorer.calls
            #expect(shared ? (c.sums == tiles && c.shared == tiles && c.plain == 0) : (c.sums == 0 && c.shared == 0 && c.plain == tiles),
                    "'\(key)': \(c)")
        }
        let misplaced = PipelineDefinition.builtInRealESRGANYAML.replacingOccurrences(
            of: "  - stage: encode\n", with: "  - stage: encode\n    shared_statistics: false\n")
        #expect(throws: (any Error).self) { try PipelineDefinition.parse(yaml: misplaced, file: "bad.yaml") }
    }
}
