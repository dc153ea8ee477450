import ArgumentParser
import DreamsrApp
import Foundation
import Imaging
import Logging
import PipelineRuntime
import Prometheus
import Raster
import Support

/// `dreamsr-bench http`: the status endpoint under `wrk` (64 connections on /metrics) while the daemon runs a real
/// Real-ESRGAN job, with /health timed on its own connection during the same load. Baseline: the same /metrics load
/// on the idle daemon (no job), measured first in the same run.
struct HTTPBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http",
        abstract: "wrk on /metrics (and /health) while a Real-ESRGAN job runs, vs the idle daemon.")

    @Option(help: "wrk connections on /metrics.") var connections = 64
    @Option(help: "wrk threads on /metrics.") var threads = 2
    @Option(help: "Seconds of load while the job runs.") var seconds = 15
    @Option(help: "Seconds of the idle baseline.") var baselineSeconds = 5
    @Option(help: "Side of the square input image (big enough that the job outlasts the load).") var size = 384
    @Option(help: "Folder holding realesrgan-x4plus/ (scripts/fetch-models.sh).") var models = "./models"
    @Option(help: "The wrk executable (Debian package wrk).") var wrk = "/usr/bin/wrk"

    func run() async throws {
        let fm = FileManager.default
        let root = NSTemporaryDirectory() + "dreamsr-http-bench-\(getpid())"
        let staging = root + "/staging", input = root + "/in", output = root + "/out"
        for d in [staging, input, output] { try fm.createDirectory(atPath: d, withIntermediateDirectories: true) }
        defer { try? fm.removeItem(atPath: root) }
        var generator = SystemRandomNumberGenerator()
        var img = PlanarImage(width: size, height: size, channels: 3)
        for j in img.pixels.indices { img.pixels[j] = Float.random(in: 0...1, using: &generator) }
        try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90,
                              to: staging + "/photo.png")

        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        var config = try DaemonConfig.quickStart(watch: input, output: output, metricsAddress: "127.0.0.1:0",
                                                 env: ["DREAMSR_MODELS_DIR": models])
        config.watchFolders[0].pollInterval = .milliseconds(200)
        config.watchFolders[0].stabilityInterval = .milliseconds(50)
        let claimed = Locked(false), finished = Locked(false)
        let daemon = try buildServiceGroup(config: config, logger: logger, factory: ImagePipelineFactory(),
                                           registry: PrometheusCollectorRegistry(), environment: [:]) { event in
            switch event {
            case .claimed: claimed.withLock { $0 = true }
            case .done, .failed: finished.withLock { $0 = true }
            default: break
            }
        }
        let runner = Task { try await daemon.group.run() }
        guard let port = await daemon.http?.boundPort() else { throw ValidationError("the status endpoint did not start") }
        await daemon.pipeline.waitUntilStarted()
        let base = "http://127.0.0.1:\(port)"

        let idle = try await runWrk([wrk, "-t", "\(threads)", "-c", "\(connections)", "-d", "\(baselineSeconds)s", "--latency",
                                     base + "/metrics"])

        try fm.moveItem(atPath: staging + "/photo.png", toPath: input + "/photo.png")
        let deadline = ContinuousClock.now + .seconds(60)
        while !claimed.current && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        guard claimed.current else { throw ValidationError("the job was never claimed") }
        try await Task.sleep(for: .seconds(1)) // into the restore stage

        async let metrics = runWrk([wrk, "-t", "\(threads)", "-c", "\(connections)", "-d", "\(seconds)s", "--latency",
                                    base + "/metrics"])
        async let health = runWrk([wrk, "-t", "1", "-c", "1", "-d", "\(seconds)s", "--latency", base + "/health"])
        let (loaded, probe) = try await (metrics, health)
        let jobRanThroughout = !finished.current

        print("dreamsr-bench http: wrk \(connections) connections / \(threads) threads on /metrics, "
            + "a \(size)x\(size) Real-ESRGAN x4 job running, pipeline \(config.pipeline.name)")
        print("  job still running when the load ended: \(jobRanThroughout ? "yes" : "NO (finished early: use a bigger --size)")")
        print("  /metrics under load (\(seconds) s):  " + loaded.summary)
        print("  /health, 1 connection, same time:  " + probe.summary)
        print("  baseline /metrics, idle daemon (\(baselineSeconds) s): " + idle.summary)
        print(String(format: "  /metrics requests/s with the job vs idle: %.2f", loaded.requestsPerSecond / max(idle.requestsPerSecond, 1e-9)))
        print("  wrk output (/metrics under load):\n" + loaded.raw)
        // The job may take minutes more: the benchmark ends here instead of waiting for it.
        runner.cancel()
        Foundation.exit(0)
    }

    struct WrkResult {
        var raw: String
        var requests = 0, errors = 0, non2xx = 0
        var requestsPerSecond = 0.0
        var p50 = "?", p99 = "?", max = "?"

        init(raw: String) {
            self.raw = raw
            for line in raw.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                if line.hasPrefix("50%"), f.count > 1 { p50 = f[1] }
                if line.hasPrefix("99%"), f.count > 1 { p99 = f[1] }
                if line.hasPrefix("Latency"), f.count > 3 { max = f[3] }
                if line.hasPrefix("Requests/sec:"), f.count > 1 { requestsPerSecond = Double(f[1]) ?? 0 }
                if line.contains("requests in"), let n = Int(f[0]) { requests = n }
                if line.hasPrefix("Socket errors:") {
                    errors = f.compactMap { Int($0.trimmingCharacters(in: CharacterSet(charactersIn: ","))) }.reduce(0, +)
                }
                if line.hasPrefix("Non-2xx"), let n = Int(f.last ?? "") { non2xx = n }
            }
        }

        var summary: String {
            String(format: "%.0f requests/s (%d requests)", requestsPerSecond, requests)
                + ", latency p50 \(p50) p99 \(p99) max \(max), socket errors \(errors), non-2xx \(non2xx)"
        }
    }

    /// Runs wrk to the end and parses its report.
    private func runWrk(_ arguments: [String]) async throws -> WrkResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = try await Task.detached { try pipe.fileHandleForReading.readToEnd() ?? Data() }.value
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("wrk failed (\(process.terminationStatus)): \(String(decoding: data, as: UTF8.self))")
        }
        return WrkResult(raw: String(decoding: data, as: UTF8.self))
    }
}
