import Foundation
import Jobs
import KafkaConnector
import Logging
import Metrics
import PipelineRuntime
import Prometheus
import ServiceLifecycle
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
    let metricsFactory = PrometheusMetricsFactory(registry: registry)
    let pipeline = try factory.makePipeline(config.pipeline, config: config, logger: logger, metricsFactory: metricsFactory)
    let router = PipelineRouter(pipeline: pipeline)

    var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
    var http: HTTPServer?
    if let addressText = config.metricsAddress {
        let address = try HTTPAddress.parse(addressText) { ConfigError(file: config.file, key: "metrics.address", problem: $0) }
        let server = HTTPServer(address: address, logger: logger,
                                handler: statusHandler(pipeline: pipeline, factory: factory, registry: registry))
        http = server
        services.append(.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
    }
    services.append(.init(service: pipeline.service, successTerminationBehavior: .gracefullyShutdownGroup,
                          failureTerminationBehavior: .gracefullyShutdownGroup))

    var watchers: [WatchFolderSource] = []
    for wf in config.watchFolders {
        let source = WatchFolderSource(config: wf, processor: router, logger: logger, onEvent: onWatchEvent)
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
                                                     metrics: SourceMetrics(source: "kafka", factory: metricsFactory)),
                              successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
    }
    guard !config.watchFolders.isEmpty || !extraSources.isEmpty || config.kafka != nil else {
        throw ConfigError(file: config.file, key: "sources", problem: "no source configured: nothing would ever be processed")
    }

    let notifier = SystemdNotifier(environment: environment)
    let systemd = SystemdService(notifier: notifier, watchdog: SystemdNotifier.watchdogInterval(environment: environment),
                                 logger: logger) {
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
                  registry: registry, watchFolders: watchers)
}

/// /health: the process works (image codec round trip, pipeline not failed); answers while models load.
/// /ready: 200 only once the pipeline's models are loaded and it accepts work.
/// /metrics: Prometheus text format.
func statusHandler(pipeline: PipelineHandle, factory: any PipelineFactory,
                   registry: PrometheusCollectorRegistry) -> HTTPServer.Handler {
    { path in
        switch path {
        case "/health":
            let state = pipeline.lifecycle()
            var problems: [String] = []
            if let p = factory.healthProblem() { problems.append("imaging: \(p)") }
            if case .failed(let m) = state { problems.append("pipeline: \(m)") }
            let stateText = describe(state)
            let body = "{\"status\":\"\(problems.isEmpty ? "ok" : "fail")\",\"pipeline\":\"\(pipeline.name)\",\"state\":\"\(stateText)\""
                + (problems.isEmpty ? "" : ",\"problems\":[\(problems.map { "\"\(jsonEscape($0))\"" }.joined(separator: ","))]") + "}\n"
            return HTTPResponse(status: problems.isEmpty ? 200 : 503, contentType: "application/json", body: body)
        case "/ready":
            let state = pipeline.lifecycle()
            return state == .ready
                ? HTTPResponse(status: 200, body: "ready\n")
                : HTTPResponse(status: 503, body: "not ready: \(describe(state))\n")
        case "/metrics":
            for (name, value) in factory.scrapeGauges() { registry.makeGauge(name: name).set(value) }
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                body: registry.emitToString())
        default:
            return nil
        }
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

private func jsonEscape(_ s: String) -> String {
    s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        .replacingOccurrences(of: "\n", with: "\\n")
}
