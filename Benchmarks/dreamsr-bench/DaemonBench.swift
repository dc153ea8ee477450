import ArgumentParser
import DreamsrApp
import Foundation
import Imaging
import Logging
import PipelineRuntime
import Prometheus
import Raster
import Support
import Upscaling
import WatchFolderConnector

/// `dreamsr-bench daemon`: N small images through the daemon (watch folder -> decode -> Real-ESRGAN restore ->
/// encode, the real `buildServiceGroup` wiring) versus its baseline, the same model called directly on the same
/// pre-decoded images in a loop. Reports throughput, peak RSS and the pipeline overhead (everything but model
/// compute), measured two ways: daemon wall time over the baseline's model time, and daemon wall time over the model
/// time inside the daemon's restore stage.
struct DaemonBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Images through the daemon vs the bare model loop: throughput, peak RSS, pipeline overhead.")

    @Option(help: "Number of images.") var count = 200
    @Option(help: "Side of each square input image in pixels.") var size = 24
    @Option(help: "Folder holding realesrgan-x4plus/ (scripts/fetch-models.sh).") var models = "./models"

    func run() async throws {
        let fm = FileManager.default
        let root = NSTemporaryDirectory() + "dreamsr-daemon-bench-\(getpid())"
        let staging = root + "/staging", input = root + "/in", output = root + "/out"
        for d in [staging, input, output] { try fm.createDirectory(atPath: d, withIntermediateDirectories: true) }
        defer { try? fm.removeItem(atPath: root) }

        var generator = SystemRandomNumberGenerator()
        for i in 0..<count {
            var img = PlanarImage(width: size, height: size, channels: 3)
            for j in img.pixels.indices { img.pixels[j] = Float.random(in: 0...1, using: &generator) }
            try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90,
                                  to: staging + String(format: "/img%04d.png", i))
        }

        // Baseline before the daemon run (the machine may be shared: measure it before and after, use the mean).
        let restoreDef = try DaemonConfig.quickStart(watch: input, output: output, metricsAddress: nil, env: [:]).pipeline.stage(.restore)!
        let modelDir = models + "/" + restoreDef.model!
        let sources = try fm.contentsOfDirectory(atPath: staging).sorted().map { try ImageCodec.decode(path: staging + "/" + $0).color }
        let baselineBefore = try baselineLoop(sources, modelDir: modelDir, tile: restoreDef.tileSize, overlap: restoreDef.tileOverlap)
        let rssBeforeMiB = Double(vmHWMKiB()) / 1024

        // Daemon run.
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        var config = try DaemonConfig.quickStart(watch: input, output: output, metricsAddress: nil,
                                                 env: ["DREAMSR_MODELS_DIR": models])
        config.watchFolders[0].pollInterval = .milliseconds(200)
        config.watchFolders[0].stabilityInterval = .milliseconds(50)
        config.watchFolders[0].maxConcurrentJobs = 16
        let finished = Counter()
        let registry = PrometheusCollectorRegistry()
        let daemon = try buildServiceGroup(config: config, logger: logger, factory: ImagePipelineFactory(),
                                           registry: registry, environment: [:]) { event in
            switch event {
            case .done, .failed: finished.add()
            default: break
            }
        }
        let wall: Duration = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await daemon.group.run() }
            await daemon.pipeline.waitUntilStarted()
            let t0 = ContinuousClock.now
            for name in try fm.contentsOfDirectory(atPath: staging).sorted() {
                try fm.moveItem(atPath: staging + "/" + name, toPath: input + "/" + name)
            }
            await finished.wait(for: count)
            let wall = ContinuousClock.now - t0
            await daemon.group.triggerGracefulShutdown()
            try await group.waitForAll()
            return wall
        }
        let peakRSSMiB = Double(vmHWMKiB()) / 1024
        let stats = daemon.pipeline.stats()
        let metrics = registry.emitToString()
        let restoreInDaemon = metricSum(metrics, stage: "restore")
        let decodeInDaemon = metricSum(metrics, stage: "decode")
        let encodeInDaemon = metricSum(metrics, stage: "encode")

        let baselineAfter = try baselineLoop(sources, modelDir: modelDir, tile: restoreDef.tileSize, overlap: restoreDef.tileOverlap)
        let baseline = (baselineBefore + baselineAfter) / 2
        let w = wall.seconds, b = baseline.seconds
        print("dreamsr-bench daemon: \(count) images of \(size)x\(size) -> \(size * 4)x\(size * 4), pipeline \(config.pipeline.name)")
        print("  completed ok \(stats.completed), failed \(stats.failed), abandoned \(stats.abandoned)")
        print(String(format: "  daemon wall        %8.3f s   throughput %.2f images/s", w, Double(count) / w))
        print(String(format: "  stage sums         decode %.3f s, restore %.3f s, encode %.3f s", decodeInDaemon, restoreInDaemon, encodeInDaemon))
        print(String(format: "  baseline (bare model loop, same images) before %.3f s, after %.3f s, mean %.3f s   %.2f images/s",
                     baselineBefore.seconds, baselineAfter.seconds, b, Double(sources.count) / b))
        print(String(format: "  peak RSS: after baseline %.1f MiB, after daemon run %.1f MiB (process high-water mark)", rssBeforeMiB, peakRSSMiB))
        print(String(format: "  overhead vs baseline model time:      %+.2f %%  (daemon wall / baseline = %.4f)", (w / b - 1) * 100, w / b))
        print(String(format: "  overhead vs in-daemon model time:     %+.2f %%  (daemon wall / restore-stage sum = %.4f)",
                     (w / restoreInDaemon - 1) * 100, w / restoreInDaemon))
    }

    /// The model alone: one restorer, the same tiler settings, images already decoded, no files, no channels.
    private func baselineLoop(_ images: [PlanarImage], modelDir: String, tile: Int, overlap: Int) throws -> Duration {
        let restorer = try ImagePipelineFactory.defaultRestorerLoader(modelDir)
        let t0 = ContinuousClock.now
        for img in images {
            let o = min(overlap, max(0, min(img.width, img.height) - 1))
            _ = try TiledUpscaler(restorer: restorer, tileSize: tile, overlap: o).upscale(img)
        }
        return ContinuousClock.now - t0
    }

    private func metricSum(_ text: String, stage: String) -> Double {
        for line in text.split(separator: "\n") where line.hasPrefix("dreamsr_stage_duration_seconds_sum") && line.contains("stage=\"\(stage)\"") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    private func vmHWMKiB() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }
}

/// Counts events and wakes a waiter at a target count.
private final class Counter: Sendable {
    private let state = Locked<(Int, Int, CheckedContinuation<Void, Never>?)>((0, 0, nil))
    func add() {
        let c: CheckedContinuation<Void, Never>? = state.withLock { s in
            s.0 += 1
            if let c = s.2, s.0 >= s.1 { s.2 = nil; return c }
            return nil
        }
        c?.resume()
    }
    func wait(for target: Int) async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let now: Bool = state.withLock { s in
                if s.0 >= target { return true }
                s.1 = target
                s.2 = cont
                return false
            }
            if now { cont.resume() }
        }
    }
}
