import Foundation
import KafkaConnector

// The `sources.kafka` section of the daemon config and the `--kafka` quick start (see docs/kafka.md).
//
//   sources:
//     kafka:
//       bootstrap: localhost:9092        # required
//       topic: images                    # required
//       group_id: dreamsr                # default
//       results_topic: images.results    # default TOPIC.results
//       dlq_topic: images.dlq            # default TOPIC.dlq
//       output_dir: /srv/out             # required unless every message names an absolute output
//       format: png                      # default: the pipeline's output format
//       max_in_flight: 4
//       max_buffered: 64                 # default: adaptive (see docs/kafka.md)
//       max_buffered_bytes: 67108864
//       max_message_bytes: 1048576
//       allow_absolute_output: false
//       publish_error_results: true
//       drain_seconds: 20
//       session_timeout_ms: 10000
//       max_poll_interval_ms: 300000
//       commit_interval_ms: 1000
//       auto_offset_reset: earliest
//       retry: {max_attempts: 4, initial_backoff_seconds: 0.5, max_backoff_seconds: 30}
//       http: {allow_private: false, timeout_seconds: 10, max_bytes: 67108864, max_redirects: 3}
//       client_properties: {security.protocol: SASL_SSL, ...}   # passed to librdkafka as is
extension DaemonConfig {
    static func parseKafka(_ node: ConfigNode, baseDirectory: String,
                           defaultFormat: String) throws -> KafkaConnectorConfiguration {
        try node.checkKeys(["bootstrap", "topic", "group_id", "results_topic", "dlq_topic", "output_dir", "format",
                            "max_in_flight", "max_buffered", "max_buffered_bytes", "max_message_bytes", "allow_absolute_output",
                            "publish_error_results", "drain_seconds", "session_timeout_ms", "max_poll_interval_ms",
                            "commit_interval_ms", "auto_offset_reset", "retry", "http", "client_properties"])
        var c = KafkaConnectorConfiguration(
            bootstrapServers: try node.requiredString("bootstrap"), inputTopic: try node.requiredString("topic"),
            groupID: try node.string("group_id", default: "dreamsr"),
            resultsTopic: try node.optionalString("results_topic"), deadLetterTopic: try node.optionalString("dlq_topic"),
            outputDirectory: try node.optionalString("output_dir").map { absolute($0, base: baseDirectory) },
            maxInFlight: try node.int("max_in_flight", default: 4, min: 1, max: 4096))
        c.defaultFormat = try node.oneOf("format", PipelineDefinition.outputFormats, default: defaultFormat)
        if node.has("max_buffered") { c.maxBuffered = try node.int("max_buffered", default: 16, min: 1, max: 100_000) }
        c.maxBufferedBytes = try node.int("max_buffered_bytes", default: 64 << 20, min: 1)
        c.maxMessageBytes = try node.int("max_message_bytes", default: 1 << 20, min: 64)
        c.allowAbsoluteOutputPaths = try node.bool("allow_absolute_output", default: false)
        c.publishErrorResults = try node.bool("publish_error_results", default: true)
        c.drainTimeout = .milliseconds(Int64(try node.double("drain_seconds", default: 20, min: 0, max: 3600) * 1000))
        c.sessionTimeoutMs = try node.int("session_timeout_ms", default: 10_000, min: 1_000)
        c.maxPollIntervalMs = try node.int("max_poll_interval_ms", default: 300_000, min: 1_000)
        c.commitIntervalMs = try node.int("commit_interval_ms", default: 1_000, min: 10)
        c.autoOffsetReset = try node.oneOf("auto_offset_reset", ["earliest", "latest", "error"], default: "earliest")
        let retry = try node.child("retry")
        try retry.checkKeys(["max_attempts", "initial_backoff_seconds", "max_backoff_seconds"])
        c.retry = .init(maxAttempts: try retry.int("max_attempts", default: 4, min: 1, max: 1000),
                        initialBackoff: .milliseconds(Int64(try retry.double("initial_backoff_seconds", default: 0.5, min: 0) * 1000)),
                        maxBackoff: .milliseconds(Int64(try retry.double("max_backoff_seconds", default: 30, min: 0) * 1000)))
        let http = try node.child("http")
        try http.checkKeys(["allow_private", "timeout_seconds", "max_bytes", "max_redirects"])
        c.http = .init(allowPrivateAddresses: try http.bool("allow_private", default: false),
                       timeout: .milliseconds(Int64(try http.double("timeout_seconds", default: 10, min: 0.1) * 1000)),
                       maxBytes: try http.int("max_bytes", default: 64 << 20, min: 1),
                       maxRedirects: try http.int("max_redirects", default: 3, min: 0, max: 100))
        if let mapping = node.node?.mapping?["client_properties"] {
            guard let properties = mapping.mapping else {
                throw node.error("client_properties", "expected a mapping of librdkafka properties", at: mapping)
            }
            for (key, value) in properties {
                guard let name = key.string, let text = value.scalar?.string else {
                    throw node.error("client_properties", "each librdkafka property must be a single value", at: value)
                }
                c.clientProperties[name] = text
            }
        }
        do {
            try c.validate()
        } catch {
            throw ConfigError(file: node.file, key: node.path, problem: error.message, line: node.line)
        }
        return c
    }

    /// `dreamsr serve --kafka BOOTSTRAP --topic TOPIC --output OUT_DIR [--watch IN_DIR]`: defaults (plus environment
    /// overrides), group `dreamsr`, results to `TOPIC.results`, dead letters to `TOPIC.dlq`.
    public static func quickStartKafka(bootstrap: String, topic: String, output: String, watch: String?,
                                       metricsAddress: String?,
                                       env: [String: String] = ProcessInfo.processInfo.environment) throws -> DaemonConfig {
        let cwd = FileManager.default.currentDirectoryPath
        var config = try watch.map { try quickStart(watch: $0, output: output, metricsAddress: metricsAddress, env: env) }
            ?? parse(yaml: "{}", file: "<command line>", baseDirectory: cwd, env: env)
        if let metricsAddress { config.metricsAddress = metricsAddress }
        var kafka = KafkaConnectorConfiguration(bootstrapServers: bootstrap, inputTopic: topic,
                                                outputDirectory: absolute(output, base: cwd))
        kafka.defaultFormat = config.pipeline.outputFormat
        kafka.drainTimeout = min(kafka.drainTimeout, config.gracePeriod)
        do {
            try kafka.validate()
        } catch {
            throw ConfigError(file: "<command line>", key: "--kafka/--topic", problem: error.message)
        }
        config.kafka = kafka
        return config
    }
}
