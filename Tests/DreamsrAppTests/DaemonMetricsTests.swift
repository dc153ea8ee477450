import DreamsrApp
import Foundation
import Logging
import Metrics
import Prometheus
import Testing

@Suite(.timeLimit(.minutes(1))) struct DaemonMetricsTests {
    /// The `le` buckets and their cumulative counts of one histogram in Prometheus text.
    private func buckets(_ text: String, _ name: String) -> [(le: String, count: Double)] {
        text.split(separator: "\n").compactMap { line -> (String, Double)? in
            guard line.hasPrefix(name + "_bucket{"), let leRange = line.range(of: "le=\""),
                  let end = line[leRange.upperBound...].firstIndex(of: "\""),
                  let count = line.split(separator: " ").last.flatMap({ Double($0) }) else { return nil }
            return (String(line[leRange.upperBound..<end]), count)
        }
    }

    @Test func twentyMinuteJobLandsInAFiniteBucket() throws {
        let registry = PrometheusCollectorRegistry()
        let factory = DaemonMetrics.factory(registry: registry)
        let timer = Metrics.Timer(label: "dreamsr_job_duration_seconds", dimensions: [("pipeline", "t")], factory: factory)
        timer.recordSeconds(20 * 60)
        timer.recordMilliseconds(70)
        let b = buckets(registry.emitToString(), "dreamsr_job_duration_seconds")
        #expect(b.first?.le == "0.05" && b.first?.count == 0)
        // 20 min = 1200 s: above the 600 s bucket, inside le=1200 (buckets are <=); 70 ms inside 0.1 s.
        func count(_ le: Double) -> Double? { b.first { Double($0.le) == le }?.count }
        #expect(count(0.1) == 1)
        #expect(count(600) == 1)
        #expect(count(1200) == 2)
        let finite = b.filter { $0.le != "+Inf" }
        #expect(Double(finite.last?.le ?? "") == 14400)
    }

    /// `metrics.duration_buckets_seconds` reaches the daemon's histograms (built as `serve` builds them).
    @Test func configuredBucketsAreTheDaemonsHistogramBuckets() throws {
        let dir = try tempDir()
        var config = try DaemonConfig.quickStart(watch: dir + "/in", output: dir + "/out", metricsAddress: nil,
                                                 env: ["DREAMSR_METRICS_DURATION_BUCKETS_SECONDS": "1,90,28800"])
        config.metricsAddress = nil
        let daemon = try buildServiceGroup(config: config, logger: Logger(label: "test"), factory: FakeFactory(),
                                           environment: [:])
        let text = daemon.registry.emitToString()
        #expect(buckets(text, "dreamsr_job_duration_seconds").map(\.le) == ["1.0", "90.0", "28800.0", "+Inf"]
                || buckets(text, "dreamsr_job_duration_seconds").map(\.le) == ["1", "90", "28800", "+Inf"],
                "\(buckets(text, "dreamsr_job_duration_seconds"))")
    }

    @Test func bucketsAreAscendingFrom50msTo4h() {
        let b = DaemonMetrics.defaultDurationBuckets
        #expect(b.first == 0.05 && b.last == 4 * 3600)
        #expect(zip(b, b.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test func buildInfoIsExported() {
        let registry = PrometheusCollectorRegistry()
        DaemonMetrics.registerBuildInfo(registry)
        let line = registry.emitToString().split(separator: "\n").first { $0.hasPrefix("dreamsr_build_info{") }
        #expect(line?.contains("version=\"\(BuildInfo.version)\"") == true)
        #expect(line?.contains("kernel_isa=\"") == true)
        #expect(line?.hasSuffix(" 1") == true || line?.hasSuffix(" 1.0") == true)
        #expect(BuildInfo.versionLine.hasPrefix("dreamsr \(BuildInfo.version) (commit "))
    }

    @Test func processMetricsComeFromProc() {
        let registry = PrometheusCollectorRegistry()
        var x = 0.0
        for i in 0..<3_000_000 { x += Double(i).squareRoot() }  // some CPU time to count
        #expect(x > 0)
        DaemonMetrics.updateProcessMetrics(registry)
        let text = registry.emitToString()
        func value(_ name: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { $0.split(separator: " ").last }
                .flatMap { Double($0) }
        }
        #expect((value("process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((value("process_cpu_seconds_total") ?? 0) > 0)
        // A second registry gets the whole CPU time too (not just the time since the first one's scrape).
        let second = PrometheusCollectorRegistry()
        DaemonMetrics.updateProcessMetrics(second)
        let secondCPU = second.emitToString().split(separator: "\n")
            .first { $0.hasPrefix("process_cpu_seconds_total ") }.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
        #expect((secondCPU ?? 0) >= (value("process_cpu_seconds_total") ?? .infinity))
        #expect((value("process_open_fds") ?? 0) >= 3)
        let start = value("process_start_time_seconds") ?? 0
        #expect(abs(start - Date().timeIntervalSince1970) < 24 * 3600)
    }
}
