import Foundation
import Logging
import Yams
import KafkaConnector
import ObjectStorage
import WatchFolderConnector

/// The daemon's configuration (`conf/dreamsr.yaml`), typed and validated. Every scalar key can be overridden by an
/// environment variable named `DREAMSR_` + the key path in upper case with `.` replaced by `_`, e.g.
/// `DREAMSR_METRICS_ADDRESS`, `DREAMSR_MODELS_DIR`, `DREAMSR_SHUTDOWN_GRACE_SECONDS`,
/// `DREAMSR_SOURCES_WATCH_0_DIR`. Relative paths are resolved against the config file's folder.
public struct DaemonConfig: Sendable {
    public var file: String
    public var logLevel: Logger.Level
    /// `log_format`: `text` (swift-log's stream format) or `json` (one object per line, see `JSONLogHandler`).
    public var logFormat: LogFormat = .text
    public var modelsDirectory: String
    /// Folder of `NAME.yaml` pipeline files; nil: only the built-in default pipeline.
    public var pipelinesDirectory: String?
    public var pipeline: PipelineDefinition
    /// `host:port` for /health, /ready and /metrics; nil: no HTTP endpoint.
    public var metricsAddress: String?
    /// `metrics.duration_buckets_seconds`: histogram buckets of every duration metric (jobs, stages), ascending.
    public var durationBuckets: [Double] = DaemonMetrics.defaultDurationBuckets
    /// Time to finish in-flight jobs after SIGTERM before they are abandoned (left for retry).
    public var gracePeriod: Duration
    public var maxInputMegapixels: Double
    public var maxFileBytes: Int
    public var watchFolders: [WatchFolderConfig]
    /// The Kafka source (`sources.kafka`, or `serve --kafka`); nil: none.
    public var kafka: KafkaConnectorConfiguration? = nil
    /// With jobs in flight and no progress (a stage entered, a tile or step done, a job ended) for this long, the
    /// pipeline counts as stuck: /health fails and the systemd watchdog stops being pinged.
    public var stallLimit: Duration = .seconds(1800)

    public static let envPrefix = "DREAMSR_"

    public enum LogFormat: String, Sendable, CaseIterable {
        case text, json
    }

    public static func load(path: String, env: [String: String] = ProcessInfo.processInfo.environment) throws -> DaemonConfig {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, key: "", problem: "cannot read the configuration file")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(yaml: text, file: path, baseDirectory: base, env: env)
    }

    /// `dreamsr serve --watch IN --output OUT`: defaults (plus environment overrides) and one watch folder.
    public static func quickStart(watch: String, output: String, metricsAddress: String?,
                                  env: [String: String] = ProcessInfo.processInfo.environment) throws -> DaemonConfig {
        var config = try parse(yaml: "{}", file: "<command line>", baseDirectory: FileManager.default.currentDirectoryPath, env: env)
        var folder = WatchFolderConfig(directory: absolute(watch, base: FileManager.default.currentDirectoryPath),
                                       outputDirectory: absolute(output, base: FileManager.default.currentDirectoryPath),
                                       outputFormat: config.pipeline.outputFormat)
        if isObjectStorageURI(output) {
            try setOutputPrefix(&folder, output, error: { ConfigError(file: "<command line>", key: "--output", problem: $0) }) {
                do throws(ObjectStorageError) {
                    return try S3Configuration().resolved(environment: env, regionIsSet: false)
                } catch {
                    throw ConfigError(file: "<environment>", key: "AWS_*", problem: error.message)
                }
            }
        }
        config.watchFolders = [folder]
        if let metricsAddress { config.metricsAddress = metricsAddress }
        try checkFolderOverlap(config.watchFolders, kafkaOutput: nil) { _, problem in
            ConfigError(file: "<command line>", key: "--output", problem: problem)
        }
        return config
    }

    public static func parse(yaml: String, file: String, baseDirectory: String,
                             env: [String: String] = [:]) throws -> DaemonConfig {
        let root = try ConfigNode.parse(yaml: yaml, file: file, env: env, envPrefix: envPrefix)
        try root.checkKeys(["log_level", "log_format", "models_dir", "pipelines_dir", "pipeline", "metrics", "shutdown", "limits", "sources"])
        let levelText = try root.oneOf("log_level", Logger.Level.allCases.map(\.rawValue), default: "info")
        let logFormat = LogFormat(rawValue: try root.oneOf("log_format", LogFormat.allCases.map(\.rawValue), default: "text"))!
        let models = absolute(try root.string("models_dir", default: "./models"), base: baseDirectory)
        let pipelinesDir = try root.optionalString("pipelines_dir").map { absolute($0, base: baseDirectory) }
        let pipelineName = try root.string("pipeline", default: "realesrgan")

        let pipeline: PipelineDefinition
        if let pipelinesDir {
            let path = pipelinesDir + "/" + pipelineName + ".yaml"
            guard FileManager.default.fileExists(atPath: path) else {
                throw root.error("pipeline", "pipeline '\(pipelineName)' not found: no file \(path)")
            }
            pipeline = try PipelineDefinition.load(path: path)
            guard pipeline.name == pipelineName else {
                throw ConfigError(file: path, key: "name", problem: "is '\(pipeline.name)' but the file is named \(pipelineName).yaml")
            }
        } else if let builtIn = try PipelineDefinition.builtIn(named: pipelineName) {
            pipeline = builtIn
        } else {
            throw root.error("pipeline", "pipeline '\(pipelineName)' is not built in; set pipelines_dir to a folder holding \(pipelineName).yaml")
        }

        let metrics = try root.child("metrics")
        try metrics.checkKeys(["address", "duration_buckets_seconds"])
        let buckets = try parseBuckets(metrics)
        var address = try metrics.optionalString("address")
        if let a = address, a.isEmpty || a == "off" { address = nil }
        if let a = address { _ = try HTTPAddress.parse(a, error: { metrics.error("address", $0) }) }

        let shutdown = try root.child("shutdown")
        try shutdown.checkKeys(["grace_seconds"])
        let grace = try shutdown.double("grace_seconds", default: 30, min: 0, max: 3600)

        let limits = try root.child("limits")
        try limits.checkKeys(["max_input_megapixels", "max_file_bytes"])
        let maxMP = try limits.double("max_input_megapixels", default: 50, min: 0, exclusiveMin: true)
        let maxBytes = try limits.int("max_file_bytes", default: 256 << 20, min: 1)

        let sources = try root.child("sources")
        try sources.checkKeys(["watch", "kafka"])
        let kafka = try sources.has("kafka")
            ? parseKafka(try sources.child("kafka"), baseDirectory: baseDirectory, defaultFormat: pipeline.outputFormat)
            : nil
        var watch: [WatchFolderConfig] = []
        let watchItems = try sources.list("watch")
        for item in watchItems {
            try item.checkKeys(["dir", "output", "format", "poll_seconds", "stable_seconds", "max_concurrent_jobs", "inotify"])
            let poll = try item.double("poll_seconds", default: 2, min: 0.01, max: 3600)
            let stable = try item.double("stable_seconds", default: 1, min: 0, max: 3600)
            let output = try item.requiredString("output")
            var folder = WatchFolderConfig(
                directory: absolute(try item.requiredString("dir"), base: baseDirectory),
                outputDirectory: absolute(output, base: baseDirectory),
                outputFormat: try item.oneOf("format", PipelineDefinition.outputFormats, default: pipeline.outputFormat),
                pipeline: pipeline.name,
                pollInterval: .milliseconds(Int64(poll * 1000)),
                stabilityInterval: .milliseconds(Int64(stable * 1000)),
                maxConcurrentJobs: try item.int("max_concurrent_jobs", default: 8, min: 1, max: 10_000),
                useInotify: try item.bool("inotify", default: true))
            if isObjectStorageURI(output) {
                // The object storage Kafka uses (sources.kafka.object_storage, completed from AWS_*), or, without a
                // Kafka source, the AWS_* environment alone.
                try setOutputPrefix(&folder, output, error: { item.error("output", $0) }) {
                    try kafka?.objectStorage
                        ?? objectStorage(try sources.child("kafka").child("object_storage"), baseDirectory: baseDirectory)
                }
            }
            watch.append(folder)
        }
        try checkFolderOverlap(watch, kafkaOutput: kafka?.outputDirectory) { i, problem in
            i < watchItems.count ? watchItems[i].error("output", problem) : sources.error("kafka", problem)
        }
        try refuseUnknownVariables(root, env: env)
        return DaemonConfig(file: file, logLevel: Logger.Level(rawValue: levelText)!, logFormat: logFormat,
                            modelsDirectory: models, pipelinesDirectory: pipelinesDir, pipeline: pipeline,
                            metricsAddress: address, durationBuckets: buckets,
                            gracePeriod: .milliseconds(Int64(grace * 1000)), maxInputMegapixels: maxMP,
                            maxFileBytes: maxBytes, watchFolders: watch, kafka: kafka)
    }

    static func isObjectStorageURI(_ text: String) -> Bool { text.lowercased().hasPrefix("s3://") }

    /// Makes `folder` upload to the `s3://bucket/prefix/` in `output`, with the object storage `storage()` returns;
    /// refuses a URI that is no prefix or settings without credentials.
    static func setOutputPrefix(_ folder: inout WatchFolderConfig, _ output: String, error fail: (String) -> ConfigError,
                                storage: () throws -> S3Configuration) throws {
        let prefix: S3Location
        do throws(ObjectStorageError) {
            prefix = try S3Location.parse(output)
        } catch {
            throw fail(error.message)
        }
        guard prefix.isPrefix else {
            throw fail("an s3:// output is a prefix the outputs are stored under: end it with '/' (\(prefix.uri)/)")
        }
        let settings = try storage()
        guard settings.credentials != nil else {
            throw fail("no S3 credentials for \(prefix.uri): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                        + "with a shared credentials file, or sources.kafka.object_storage.*_file (docs/object-storage.md)")
        }
        folder.outputDirectory = prefix.uri
        folder.outputPrefix = prefix
        folder.objectStorage = settings
    }

    /// `metrics.duration_buckets_seconds`: a list of positive, strictly ascending, finite numbers (seconds); from
    /// the environment (`DREAMSR_METRICS_DURATION_BUCKETS_SECONDS`) as a comma-separated list.
    static func parseBuckets(_ metrics: ConfigNode) throws -> [Double] {
        let key = "duration_buckets_seconds"
        var texts: [(String, Node?)] = []
        if let variable = metrics.overridingVariable(key), let value = metrics.env[variable] {
            texts = value.split(separator: ",").map { (String($0).trimmingCharacters(in: .whitespaces), nil) }
        } else if let value = metrics.node?.mapping?[key] {
            guard let items = value.sequence else {
                throw metrics.error(key, "expected a list of seconds, e.g. [0.5, 60, 3600]", at: value)
            }
            for item in items {
                guard let text = item.scalar?.string else {
                    throw metrics.error(key, "expected a list of numbers (seconds)", at: item)
                }
                texts.append((text, item))
            }
        } else {
            return DaemonMetrics.defaultDurationBuckets
        }
        guard !texts.isEmpty else { throw metrics.error(key, "needs at least one bucket") }
        var buckets: [Double] = []
        for (text, node) in texts {
            guard let v = Double(text), v.isFinite else {
                throw metrics.error(key, "'\(text)' is not a number of seconds", at: node)
            }
            guard v > 0 else { throw metrics.error(key, "bucket \(text) must be > 0 seconds", at: node) }
            if let last = buckets.last, v <= last {
                throw metrics.error(key, "buckets must be strictly ascending: \(text) after \(last)", at: node)
            }
            buckets.append(v)
        }
        return buckets
    }

    static func absolute(_ path: String, base: String) -> String {
        if path.hasPrefix("/") { return path }
        return URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: base, isDirectory: true)).standardizedFileURL.path
    }
}
