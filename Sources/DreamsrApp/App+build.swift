import Foundation
import Jobs
import KafkaConnector
import Logging
import Metrics
import PipelineRuntime
import Prometheus
import ServiceLifecycle
import Support
import WatchFolderConnector

/// Builds a source service that feeds jobs to `processor` (the seam for connectors other than the watch folder,
/// e.g. Kafka): the source calls `processor.process(_:)`, which suspends while the pipeline is full, and must leave
/// an input for retry when the outcome `isAbandoned`.
public typealias SourceBuilder = @Sendable (_ processor: any JobProcessor, _ logger: Logger) throws -> any Service

/// Everything `dreamsr serve` runs, built from a config. Tests call this with a fake factory.
public struct Daemon: Sendable {
    public let group: ServiceGroup
    public let pipeline: PipelineHandle
    public let http: HTTPServer?
    public let registry: PrometheusCollectorRegistry
    public let watchFolders: [WatchFolderSource]
    /// Problems the sources report while they last (a watch folder that cannot be written...); /health reads it.
    public let health: HealthReporter
    /// Recent outcomes and thumbnails for the status page at `/`.
    public let board: JobBoard
}

/// Wires the daemon: the pipeline (from its definition), the HTTP status endpoint, the sources and the systemd
/// notifier into one `ServiceGroup` that shuts down gracefully on SIGTERM/SIGINT.
///
/// Service order (start order; graceful shutdown runs in reverse): HTTP, pipeline, sources, systemd. So on SIGTERM
/// systemd hears STOPPING=1 first, sources stop taking input and wait for their jobs, the pipeline drains, and the
/// status endpoint answers until the end. After `config.gracePeriod` the group is cancelled: unfinished jobs end
/// as abandoned and stay in their source for retry.
public func buildServiceGroup(config: DaemonConfig, logger: Logger, factory: any PipelineFactory,
                              registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
                              extraSources: [SourceBuilder] = [],
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              onWatchEvent: (@Sendable (WatchFolderSource.Event) -> Void)? = nil) throws -> Daemon {
    let metricsFactory = DaemonMetrics.factory(registry: registry, buckets: config.durationBuckets)
    DaemonMetrics.registerBuildInfo(registry)
    let pipeline = try factory.makePipeline(config.pipeline, config: config, logger: logger, metricsFactory: metricsFactory)
    let board = JobBoard()
    let router = RecordingProcessor(inner: PipelineRouter(pipeline: pipeline), board: board)
    let health = HealthReporter()
    let stall = PipelineStallCheck(pipeline: pipeline, limit: config.stallLimit)
    let watcherList = Locked<[WatchFolderSource]>([])

    var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
    var http: HTTPServer?
    if let addressText = config.metricsAddress {
        let address = try HTTPAddress.parse(addressText) { ConfigError(file: config.file, key: "metrics.address", problem: $0) }
        let server = HTTPServer(address: address, logger: logger,
                                handler: statusHandler(pipeline: pipeline, factory: factory, registry: registry,
                                                       health: health, stall: stall, board: board,
                                                       watchers: { watcherList.current }))
        http = server
        services.append(.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
    }
    services.append(.init(service: pipeline.service, successTerminationBehavior: .gracefullyShutdownGroup,
                          failureTerminationBehavior: .gracefullyShutdownGroup))

    var watchers: [WatchFolderSource] = []
    for wf in config.watchFolders {
        let counters = WatchFolderMetrics(directory: wf.directory, factory: metricsFactory)
        let source = WatchFolderSource(config: wf, processor: router, logger: logger, health: health,
                                       onEvent: { event in counters.count(event); onWatchEvent?(event) })
        watchers.append(source)
        services.append(.init(service: source, successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
    }
    for build in extraSources {
        services.append(.init(service: try build(router, logger), successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
    }
    if let kafka = config.kafka {
        services.append(.init(service: KafkaJobSource(configuration: kafka, processor: router, logger: logger,
                                                     metrics: SourceMetrics(source: "kafka", factory: metricsFactory),
                                                     kafkaMetrics: KafkaMetrics(factory: metricsFactory)),
                              successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
    }
    watcherList.withLock { $0 = watchers }
    try requireSource(config, extraSources: extraSources.count)

    let notifier = SystemdNotifier(environment: environment)
    let systemd = SystemdService(notifier: notifier, watchdog: SystemdNotifier.watchdogInterval(environment: environment),
                                 logger: logger, isMakingProgress: { stall.problem() == nil }) {
        await pipeline.waitUntilStarted()
        return pipeline.lifecycle() == .ready
    }
    services.append(.init(service: systemd, successTerminationBehavior: .ignore,
                          failureTerminationBehavior: .ignore))

    var groupConfig = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                cancellationSignals: [], logger: logger)
    groupConfig.maximumGracefulShutdownDuration = config.gracePeriod
    groupConfig.maximumCancellationDuration = .seconds(30)
    return Daemon(group: ServiceGroup(configuration: groupConfig), pipeline: pipeline, http: http,
                  registry: registry, watchFolders: watchers, health: health, board: board)
}

/// /health: the process works (image codec round trip, pipeline not failed, no source reporting a problem such as
/// a watch folder it cannot write); answers while models load.
/// /ready: 200 only once the pipeline's models are loaded and it accepts work.
/// /metrics: Prometheus text format.
func statusHandler(pipeline: PipelineHandle, factory: any PipelineFactory, registry: PrometheusCollectorRegistry,
                   health: HealthReporter, stall: PipelineStallCheck, board: JobBoard,
                   watchers: @escaping @Sendable () -> [WatchFolderSource]) -> HTTPServer.Handler {
    { path in
        switch path {
        case "/health":
            let state = pipeline.lifecycle()
            var problems: [String] = []
            if let p = factory.healthProblem() { problems.append("imaging: \(p)") }
            if case .failed(let m) = state { problems.append("pipeline: \(m)") }
            if let p = stall.problem() { problems.append("pipeline: \(p)") }
            problems += health.current
            let stateText = describe(state)
            let body = "{\"status\":\"\(problems.isEmpty ? "ok" : "fail")\",\"pipeline\":\"\(pipeline.name)\",\"state\":\"\(stateText)\""
                + (problems.isEmpty ? "" : ",\"problems\":[\(problems.map(jsonString).joined(separator: ","))]") + "}\n"
            return HTTPResponse(status: problems.isEmpty ? 200 : 503, contentType: "application/json", body: body)
        case "/", "/index.html":
            board.viewed()
            let stats = pipeline.stats()
            let page = StatusPage(
                pipeline: pipeline.name, state: describe(pipeline.lifecycle()), version: BuildInfo.versionLine,
                stages: pipeline.stages.map { .init(name: $0.name, workers: $0.workers, queued: stats.queueDepths[$0.name] ?? 0) },
                inFlight: pipeline.jobsInFlight(), stats: stats, throughput: board.completionsLastHour(),
                recent: board.recent)
            return HTTPResponse(status: 200, contentType: "text/html; charset=utf-8", body: page.render())
        case "/ready":
            let state = pipeline.lifecycle()
            return state == .ready
                ? HTTPResponse(status: 200, body: "ready\n")
                : HTTPResponse(status: 503, body: "not ready: \(describe(state))\n")
        case "/metrics":
            for (name, value) in factory.scrapeGauges() { registry.makeGauge(name: name).set(value) }
            DaemonMetrics.updateProcessMetrics(registry)
            DaemonMetrics.updateReadiness(registry, ready: pipeline.lifecycle() == .ready)
            for w in watchers() { WatchFolderMetrics.updateBacklog(w, registry: registry) }
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                body: registry.emitToString())
        default:
            // /thumbnails/N/before.jpg | after.jpg: a recent job's thumbnail (made off the loop thread).
            let parts = path.split(separator: "/")
            if parts.count == 3, parts[0] == "thumbnails", let n = Int(parts[1]),
               let which = ["before.jpg": "before", "after.jpg": "after"][String(parts[2])],
               let jpeg = board.thumbnail(number: n, which: which) {
                return HTTPResponse(status: 200, contentType: "image/jpeg", bytes: Array(jpeg))
            }
            return nil
        }
    }
}

/// A pipeline with jobs in flight whose heartbeat is older than `limit` is stuck.
struct PipelineStallCheck: Sendable {
    let pipeline: PipelineHandle
    let limit: Duration

    func problem() -> String? {
        let quiet = pipeline.heartbeat.sinceLastBeat
        guard quiet > limit else { return nil }
        let jobs = pipeline.stats().itemsInFlight
        guard jobs > 0 else { return nil }
        return "stuck: no progress for \(Int(quiet.seconds)) s with \(jobs) job(s) in flight (limit \(Int(limit.seconds)) s)"
    }
}

private func describe(_ state: PipelineLifecycle) -> String {
    switch state {
    case .created, .preparing: return "loading models"
    case .ready: return "ready"
    case .draining: return "draining"
    case .stopped: return "stopped"
    case .failed(let m): return "failed: \(m)"
    }
}
