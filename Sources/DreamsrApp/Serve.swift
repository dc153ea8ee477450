import Foundation
import Imaging
import Logging
import Metrics
import Prometheus
import WatchFolderConnector

/// What `dreamsr serve` was given on the command line.
public struct ServeOptions: Sendable {
    public var configPath: String?
    public var watch: String?
    public var output: String?
    public var metricsAddress: String?
    /// Quick start: Kafka bootstrap servers and input topic.
    public var kafka: String?
    public var topic: String?
    public init(configPath: String? = nil, watch: String? = nil, output: String? = nil, metricsAddress: String? = nil,
                kafka: String? = nil, topic: String? = nil) {
        self.configPath = configPath
        self.watch = watch
        self.output = output
        self.metricsAddress = metricsAddress
        self.kafka = kafka
        self.topic = topic
    }
}

/// Loads the configuration for `dreamsr serve`: a config file, or the quick start (`--watch IN --output OUT`).
public func loadServeConfig(_ options: ServeOptions,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DaemonConfig {
    if let path = options.configPath {
        guard options.watch == nil && options.output == nil && options.kafka == nil && options.topic == nil else {
            throw ConfigError(file: path, key: "", problem: "--watch/--output are for the quick start without a config file; put watch folders under sources.watch instead")
        }
        var config = try DaemonConfig.load(path: path, env: environment)
        if let m = options.metricsAddress { config.metricsAddress = m }
        return config
    }
    if let bootstrap = options.kafka {
        guard let topic = options.topic, let output = options.output else {
            throw ConfigError(file: "<command line>", key: "", problem: "--kafka BOOTSTRAP needs --topic TOPIC and --output OUT_DIR")
        }
        return try DaemonConfig.quickStartKafka(bootstrap: bootstrap, topic: topic, output: output, watch: options.watch,
                                                metricsAddress: options.metricsAddress, env: environment)
    }
    guard let watch = options.watch, let output = options.output else {
        throw ConfigError(file: "<command line>", key: "", problem: "give --config FILE, or --watch IN_DIR --output OUT_DIR for the quick start")
    }
    return try DaemonConfig.quickStart(watch: watch, output: output, metricsAddress: options.metricsAddress, env: environment)
}

/// Runs the daemon until SIGTERM/SIGINT (graceful) and returns. Logging and metrics are bootstrapped here, once
/// per process.
///
/// `extraSources` is the seam for other connectors (Kafka): each builder gets the pipeline's `JobProcessor` and
/// returns its source `Service`, which the group runs after the watch folders.
public func runDaemon(config: DaemonConfig, factory: any PipelineFactory = ImagePipelineFactory(),
                      extraSources: [SourceBuilder] = []) async throws {
    bootstrapLogging(level: config.logLevel, format: config.logFormat)
    let logger = Logger(label: "dreamsr")
    // libvips warnings go to the log as one structured line each, never to stderr on their own.
    ImageCodec.setWarningHandler { logger.warning("libvips warning", metadata: ["message": "\($0)"]) }
    let registry = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(DaemonMetrics.factory(registry: registry, buckets: config.durationBuckets))
    var startup: Logger.Metadata = [
        "config": "\(config.file)", "pipeline": "\(config.pipeline.name)",
        "stages": "\(config.pipeline.stages.map(\.kind.rawValue).joined(separator: " -> "))",
        "models_dir": "\(config.modelsDirectory)", "metrics": "\(config.metricsAddress ?? "off")",
        "pid": "\(ProcessInfo.processInfo.processIdentifier)", "version": "\(BuildInfo.versionLine)",
    ]
    if let kafka = config.kafka {
        // Names only: values hold SASL/SSL secrets.
        startup["kafka_client_properties"] = "\(kafka.clientProperties.keys.sorted().joined(separator: ","))"
    }
    logger.info("starting", metadata: startup)
    try validateServeConfig(config, extraSources: extraSources.count)
    try await checkWatchOutputs(config, logger: logger)
    let daemon = try buildServiceGroup(config: config, logger: logger, factory: factory, registry: registry,
                                       extraSources: extraSources)
    try await daemon.group.run()
    logger.info("stopped")
}

/// Installs the process's log handler: swift-log's text lines, or `JSONLogHandler` (one JSON object per line), on
/// standard error at `level`.
func bootstrapLogging(level: Logger.Level, format: DaemonConfig.LogFormat) {
    LoggingSystem.bootstrap { label in
        switch format {
        case .text:
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        case .json:
            var handler = JSONLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Writes the line `dreamsr serve` ends with when `runDaemon` fails (logging is set up by then) in the configured
/// log format, so a `log_format: json` stream stays one JSON object per line to the end.
public func writeServeFailure(_ message: String, format: DaemonConfig.LogFormat) {
    switch format {
    case .text:
        FileHandle.standardError.write(Data("dreamsr serve: \(message)\n".utf8))
    case .json:
        JSONLogHandler.standardError(JSONLogHandler.line(time: Date(), level: .critical, label: "dreamsr",
                                                         message: "dreamsr serve failed", metadata: ["error": "\(message)"]))
    }
}

/// What the daemon refuses before it starts, shared by `serve --check` and `serve` so both refuse exactly the same
/// configurations (exit status 78): no source at all (`sources: {}`, `watch: []`), or a missing models folder or model
/// folder of a pipeline stage. `extraSources`: sources wired in code (tests).
public func validateServeConfig(_ config: DaemonConfig, extraSources: Int = 0) throws {
    try requireSource(config, extraSources: extraSources)
    for (i, stage) in config.pipeline.stages.enumerated() {
        guard let model = stage.model else { continue }
        let dir = DaemonConfig.absolute(model, base: config.modelsDirectory)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw ConfigError(file: config.pipeline.file, key: "stages.\(i).model",
                              problem: "model folder \(dir) does not exist (models_dir is \(config.modelsDirectory); scripts/fetch-models.sh fetches the Real-ESRGAN weights)")
        }
    }
    if let kafka = config.kafka {
        do {
            try kafka.checkClientProperties()
        } catch {
            throw ConfigError(file: config.file, key: "sources.kafka.client_properties", problem: error.message)
        }
    }
}

/// Checks every watch folder's `s3://` output prefix (bucket reachable with the configured credentials), for
/// `serve --check` and before `serve` starts; throws a `ConfigError` at `sources.watch.N.output` naming the S3 error
/// code. Local output folders are not touched.
public func checkWatchOutputs(_ config: DaemonConfig, logger: Logger = Logger(label: "check")) async throws {
    for (i, folder) in config.watchFolders.enumerated() where folder.outputPrefix != nil {
        do throws(WatchFolderError) {
            try await WatchFolderSource.checkOutputPrefix(folder, logger: logger)
        } catch {
            throw ConfigError(file: config.file, key: "sources.watch.\(i).output", problem: error.message)
        }
    }
}

/// Refuses a configuration without any source: nothing would ever be processed.
func requireSource(_ config: DaemonConfig, extraSources: Int) throws {
    guard !config.watchFolders.isEmpty || extraSources > 0 || config.kafka != nil else {
        throw ConfigError(file: config.file, key: "sources", problem: "no source configured: nothing would ever be processed")
    }
}

/// `dreamsr serve --check`: wires the pipeline (without loading weights), checks the model folders exist and
/// returns a summary; throws `ConfigError` naming the problem.
public func checkServeConfig(_ config: DaemonConfig, factory: any PipelineFactory = ImagePipelineFactory()) throws -> String {
    try validateServeConfig(config)
    _ = try factory.makePipeline(config.pipeline, config: config, logger: Logger(label: "check"),
                                 metricsFactory: NOOPMetricsHandler.instance)
    var lines = ["configuration OK: \(config.file)"]
    lines.append("  pipeline \(config.pipeline.name) (\(config.pipeline.file)): "
                 + config.pipeline.stages.map { "\($0.kind.rawValue)x\($0.runtime.concurrency)" }.joined(separator: " -> "))
    lines.append("  capacity \(config.pipeline.capacity.items) jobs, \(config.pipeline.capacity.megapixels) MP in flight")
    lines.append("  models_dir \(config.modelsDirectory)")
    lines.append("  metrics \(config.metricsAddress ?? "off"), grace \(config.gracePeriod), log_format \(config.logFormat.rawValue)")
    lines.append("  duration buckets (s) \(config.durationBuckets.map { String(format: "%g", $0) }.joined(separator: ", "))")
    for w in config.watchFolders { lines.append("  watch \(w.directory) -> \(w.outputDirectory) (\(w.outputFormat))") }
    if let k = config.kafka {
        lines.append("  kafka \(k.bootstrapServers) topic \(k.inputTopic) group \(k.groupID) -> \(k.outputDirectory ?? "(message outputs)"); results \(k.resultsTopic), dlq \(k.deadLetterTopic)")
        // Names only: values hold SASL/SSL secrets.
        let names = k.clientProperties.keys.sorted()
        lines.append("  kafka client properties: \(names.isEmpty ? "(none)" : names.joined(separator: ", "))")
    }
    return lines.joined(separator: "\n")
}
