import Foundation
import Metrics
import PipelineRuntime
import Prometheus
import Support
import WatchFolderConnector

/// The daemon's Prometheus setup: duration buckets that fit jobs of milliseconds to hours, `dreamsr_build_info`,
/// and the standard `process_*` metrics (read from /proc at each scrape).
public enum DaemonMetrics {
    /// Histogram buckets for every duration metric (jobs, stages): 50 ms to 4 h. A Real-ESRGAN tile takes ~0.1 s, a
    /// 12 MP photo ~15 min on 2 cores, a DreamSR job hours; the Prometheus default (5 ms - 10 s) put nearly every
    /// sample in +Inf.
    public static let defaultDurationBuckets: [Double] = [
        0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400,
    ]

    /// A metrics factory on `registry` whose timers use `buckets` (seconds, ascending).
    public static func factory(registry: PrometheusCollectorRegistry,
                               buckets: [Double] = defaultDurationBuckets) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = buckets.map { .nanoseconds(Int64(($0 * 1e9).rounded())) }
        return factory
    }

    /// `dreamsr_build_info{version,commit,kernel_isa,blas} 1`.
    public static func registerBuildInfo(_ registry: PrometheusCollectorRegistry) {
        registry.makeGauge(descriptor: MetricNameDescriptor(
            metricName: "dreamsr_build", unitName: "info",
            helpText: "Always 1; the labels say which build runs (version, commit, kernel ISA, BLAS)."), labels: [
            ("version", BuildInfo.version), ("commit", BuildInfo.commit),
            ("kernel_isa", BuildInfo.kernelISA), ("blas", BuildInfo.blas),
        ]).set(Double(1))
    }

    /// `dreamsr_ready`: 1 while the pipeline's models are loaded and it accepts work (what /ready answers 200 to),
    /// else 0. Set at each scrape, so alert rules can see "not ready" without probing /ready.
    public static func updateReadiness(_ registry: PrometheusCollectorRegistry, ready: Bool) {
        registry.makeGauge(descriptor: MetricNameDescriptor(
            metricName: "dreamsr_ready", unitName: "", helpText: "1 while the pipeline accepts work (/ready answers 200), else 0."))
            .set(Double(ready ? 1 : 0))
    }

    /// Sets the `process_*` gauges and counter from /proc/self (Linux); a no-op where /proc is unreadable.
    public static func updateProcessMetrics(_ registry: PrometheusCollectorRegistry) {
        guard let sample = ProcessSample.read() else { return }
        func gauge(_ name: String, _ unit: String, _ help: String) -> Prometheus.Gauge {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: unit, helpText: help))
        }
        gauge("process_resident_memory", "bytes", "Resident memory size in bytes.").set(sample.residentBytes)
        gauge("process_virtual_memory", "bytes", "Virtual memory size in bytes.").set(sample.virtualBytes)
        gauge("process_start_time", "seconds", "Start time of the process since the Unix epoch in seconds.")
            .set(sample.startTimeSeconds)
        gauge("process_open", "fds", "Number of open file descriptors.").set(Double(sample.openFDs))
        let cpu = registry.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "process_cpu_seconds", unitName: "total", helpText: "Total user and system CPU time spent in seconds."))
        cpuAdded.withLock { added in
            let last = added[ObjectIdentifier(registry), default: 0]
            if sample.cpuSeconds > last {
                cpu.increment(by: sample.cpuSeconds - last)
                added[ObjectIdentifier(registry)] = sample.cpuSeconds
            }
        }
    }

    /// CPU seconds already added to each registry's `process_cpu_seconds_total` (a counter only goes up by deltas;
    /// kept per registry so a second registry in the process starts from the whole CPU time, not from the last delta).
    private static let cpuAdded = Locked<[ObjectIdentifier: Double]>([:])
}

/// One reading of /proc/self/stat (fields per proc(5)).
struct ProcessSample {
    var residentBytes: Double
    var virtualBytes: Double
    var cpuSeconds: Double
    var startTimeSeconds: Double
    var openFDs: Int

    static func read() -> ProcessSample? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24 (pages).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        func field(_ n: Int) -> Double? { fields.count > n - 3 ? Double(fields[n - 3]) : nil }
        guard let utime = field(14), let stime = field(15), let start = field(22), let vsize = field(23),
              let rss = field(24) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        var bootTime = 0.0
        if let s = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
           let line = s.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }) {
            bootTime = Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return ProcessSample(residentBytes: rss * page, virtualBytes: vsize, cpuSeconds: (utime + stime) / ticks,
                             startTimeSeconds: bootTime + start / ticks, openFDs: fds)
    }
}

/// Watch-folder metrics: `dreamsr_watch_files_total{dir,outcome=done|failed}`, `dreamsr_watch_retries_total{dir}`
/// (counted from the source's events) and `dreamsr_watch_backlog_files{dir,state=waiting|processing}` (counted from
/// the folders at each scrape).
struct WatchFolderMetrics: Sendable {
    let done: Metrics.Counter
    let failed: Metrics.Counter
    let retries: Metrics.Counter

    init(directory: String, factory: any MetricsFactory) {
        done = Metrics.Counter(label: "dreamsr_watch_files_total", dimensions: [("dir", directory), ("outcome", "done")], factory: factory)
        failed = Metrics.Counter(label: "dreamsr_watch_files_total", dimensions: [("dir", directory), ("outcome", "failed")], factory: factory)
        retries = Metrics.Counter(label: "dreamsr_watch_retries_total", dimensions: [("dir", directory)], factory: factory)
    }

    func count(_ event: WatchFolderSource.Event) {
        switch event {
        case .done: done.increment()
        case .failed: failed.increment()
        case .retrying: retries.increment()
        default: break
        }
    }

    static func updateBacklog(_ source: WatchFolderSource, registry: PrometheusCollectorRegistry) {
        let (waiting, processing) = source.backlog()
        let descriptor = MetricNameDescriptor(metricName: "dreamsr_watch_backlog", unitName: "files",
                                              helpText: "Files waiting in the watch folder, and in processing/ (running or waiting for a retry).")
        let dir = source.config.directory
        registry.makeGauge(descriptor: descriptor, labels: [("dir", dir), ("state", "waiting")]).set(Double(waiting))
        registry.makeGauge(descriptor: descriptor, labels: [("dir", dir), ("state", "processing")]).set(Double(processing))
    }
}
