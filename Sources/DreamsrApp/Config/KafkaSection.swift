import Foundation
import KafkaConnector
import ObjectStorage
import Yams

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
//       lag_interval_seconds: 5          # how often dreamsr_kafka_consumer_lag is asked of the broker
//       assignment_strategy: range,roundrobin   # or range | roundrobin | cooperative-sticky
//       result_headers: [traceparent, tracestate, x-trace-id, x-request-id]   # input headers copied into results
//       retry: {max_attempts: 4, initial_backoff_seconds: 0.5, max_backoff_seconds: 30}
//       http: {allow_private: false, timeout_seconds: 10, max_bytes: 67108864, max_redirects: 3}
//       client_properties: {security.protocol: SASL_SSL, sasl.password_file: /run/credentials/...}  # to librdkafka
//       client_properties_file: ${CREDENTIALS_DIRECTORY}/kafka.properties   # name=value lines
//       object_storage:                  # s3:// sources and outputs (docs/object-storage.md); unset keys come from
//         endpoint: http://minio:9000    #   AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (default: AWS)
//         region: us-east-1              #   AWS_REGION / AWS_DEFAULT_REGION (default us-east-1)
//         addressing: path               #   path | virtual (default: path with an endpoint, virtual on AWS)
//         access_key_id_file: ${CREDENTIALS_DIRECTORY}/s3-key-id      # else AWS_ACCESS_KEY_ID, AWS_PROFILE
//         secret_access_key_file: ${CREDENTIALS_DIRECTORY}/s3-secret
//         session_token_file: ...        #   optional
//         multipart_threshold_bytes: 16777216
//         part_size_bytes: 8388608       #   at least 5 MiB
//         max_download_bytes: 268435456
//         connect_timeout_seconds: 10
//         idle_timeout_seconds: 30       #   no byte moved for this long: a timeout
//         request_timeout_seconds: 900
//         retry: {max_attempts: 4, initial_backoff_seconds: 0.2, max_backoff_seconds: 20}
extension DaemonConfig {
    static func parseKafka(_ node: ConfigNode, baseDirectory: String,
                           defaultFormat: String) throws -> KafkaConnectorConfiguration {
        try node.checkKeys(["bootstrap", "topic", "group_id", "results_topic", "dlq_topic", "output_dir", "format",
                            "max_in_flight", "max_buffered", "max_buffered_bytes", "max_message_bytes", "allow_absolute_output",
                            "publish_error_results", "drain_seconds", "session_timeout_ms", "max_poll_interval_ms",
                            "commit_interval_ms", "auto_offset_reset", "retry", "http", "client_properties",
                            "client_properties_file", "lag_interval_seconds", "object_storage", "assignment_strategy",
                            "result_headers"])
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
        c.lagInterval = .milliseconds(Int64(try node.double("lag_interval_seconds", default: 5, min: 0.1, max: 3600) * 1000))
        c.autoOffsetReset = try node.oneOf("auto_offset_reset", ["earliest", "latest", "error"], default: "earliest")
        c.assignmentStrategy = try node.oneOf("assignment_strategy", KafkaConnectorConfiguration.assignmentStrategies,
                                              default: c.assignmentStrategy)
        if node.has("result_headers") {
            c.resultHeaders = try node.list("result_headers").map { item in
                guard let name = item.node?.scalar?.string, !name.isEmpty else {
                    throw node.error("result_headers", "expected a list of header names", at: item.node)
                }
                return name
            }
        }
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
        c.clientProperties = try clientProperties(node, baseDirectory: baseDirectory)
        c.objectStorage = try objectStorage(try node.child("object_storage"), baseDirectory: baseDirectory)
        do {
            try c.validate()
        } catch {
            throw ConfigError(file: node.file, key: node.path, problem: error.message, line: node.line)
        }
        return c
    }

    /// The `object_storage` section, completed from the AWS_* environment variables as the AWS CLI reads them.
    /// Secrets only through `*_file` keys (or the environment / shared credentials file); no error shows a value.
    static func objectStorage(_ node: ConfigNode, baseDirectory: String) throws -> S3Configuration {
        try node.checkKeys(["endpoint", "region", "addressing", "access_key_id", "access_key_id_file",
                            "secret_access_key_file", "session_token_file", "multipart_threshold_bytes", "part_size_bytes",
                            "max_download_bytes", "connect_timeout_seconds", "idle_timeout_seconds",
                            "request_timeout_seconds", "retry"])
        var c = S3Configuration()
        if let endpoint = try node.optionalString("endpoint") {
            guard let url = URL(string: endpoint) else { throw node.error("endpoint", "'\(endpoint)' is not a URL") }
            c.endpoint = url
        }
        let region = try node.optionalString("region")
        if let region { c.region = region }
        if node.has("addressing") {
            c.addressing = S3Configuration.Addressing(rawValue: try node.oneOf("addressing", ["path", "virtual"], default: "path"))
        }
        func secret(_ key: String) throws -> String? {
            guard let path = try node.optionalString(key) else { return nil }
            let value = try readSecretFile(absolute(path, base: baseDirectory), node: node, key: key,
                                           at: node.node?.mapping?[key])
            if value.isEmpty { throw node.error(key, "\(path) is empty") }
            return value
        }
        let keyID = try node.optionalString("access_key_id") ?? secret("access_key_id_file")
        let secretKey = try secret("secret_access_key_file")
        let token = try secret("session_token_file")
        switch (keyID, secretKey) {
        case let (id?, secretKey?):
            c.credentials = S3Credentials(accessKeyID: id, secretAccessKey: secretKey, sessionToken: token)
        case (nil, nil):
            if token != nil { throw node.error("session_token_file", "needs access_key_id and secret_access_key_file") }
        case (.some, nil):
            throw node.error("secret_access_key_file", "is required with access_key_id")
        case (nil, .some):
            throw node.error("access_key_id", "is required with secret_access_key_file")
        }
        c.multipartThreshold = try node.int("multipart_threshold_bytes", default: 16 << 20, min: 1)
        c.partSize = try node.int("part_size_bytes", default: 8 << 20, min: S3Configuration.minimumPartSize, max: 5 << 30)
        c.maxDownloadBytes = try node.int("max_download_bytes", default: 256 << 20, min: 1)
        func seconds(_ node: ConfigNode, _ key: String, _ def: Double, min: Double = 0.001) throws -> Duration {
            .milliseconds(Int64(try node.double(key, default: def, min: min, max: 86_400) * 1000))
        }
        c.policy.connectTimeout = try seconds(node, "connect_timeout_seconds", 10)
        c.policy.idleTimeout = try seconds(node, "idle_timeout_seconds", 30, min: 1)
        c.policy.requestTimeout = try seconds(node, "request_timeout_seconds", 900)
        let retry = try node.child("retry")
        try retry.checkKeys(["max_attempts", "initial_backoff_seconds", "max_backoff_seconds"])
        c.policy.maxAttempts = try retry.int("max_attempts", default: 4, min: 1, max: 100)
        c.policy.initialBackoff = try seconds(retry, "initial_backoff_seconds", 0.2, min: 0)
        c.policy.maxBackoff = try seconds(retry, "max_backoff_seconds", 20, min: 0)
        do {
            return try c.resolved(environment: node.env, regionIsSet: region != nil)
        } catch {
            throw ConfigError(file: node.file, key: node.path, problem: error.message, line: node.line)
        }
    }

    /// Prefix of the environment variables that set librdkafka properties: `DREAMSR_KAFKA_PROPERTY_SASL_PASSWORD`
    /// sets `sasl.password` (the rest of the name in lower case, `_` -> `.`; librdkafka property names have no `_`).
    public static let kafkaPropertyPrefix = "DREAMSR_KAFKA_PROPERTY_"

    /// The librdkafka client properties, from (later wins, each source refusing a name twice within itself):
    /// 1. `client_properties` in the file (values may use `${NAME}`; `NAME_file: PATH` reads the value of `NAME`
    ///    from a file, e.g. `sasl.password_file: ${CREDENTIALS_DIRECTORY}/kafka-password`);
    /// 2. `client_properties_file: PATH`, a file of `name=value` lines (`#` comments, blank lines skipped; spaces
    ///    around the name and the value dropped);
    /// 3. `DREAMSR_KAFKA_PROPERTY_*` environment variables.
    /// A property set by two sources is an error naming the property; no error shows a value.
    static func clientProperties(_ node: ConfigNode, baseDirectory: String) throws -> [String: String] {
        var properties: [String: String] = [:]
        var origin: [String: String] = [:]
        func set(_ name: String, _ value: String, from source: String, key: String, at: Node?) throws {
            if let first = origin[name] {
                throw node.error(key, "librdkafka property '\(name)' is set twice: by \(first) and by \(source)", at: at)
            }
            properties[name] = value
            origin[name] = source
        }
        if let mapping = node.node?.mapping?["client_properties"] {
            guard let entries = mapping.mapping else {
                throw node.error("client_properties", "expected a mapping of librdkafka properties", at: mapping)
            }
            for (key, value) in entries {
                guard let name = key.string, let raw = value.scalar?.string else {
                    throw node.error("client_properties", "each librdkafka property must be a single value", at: value)
                }
                let text = try node.interpolated(raw, key: "client_properties.\(name)", at: value)
                if name.hasSuffix("_file") {
                    let property = String(name.dropLast(5))
                    let path = absolute(text, base: baseDirectory)
                    let secret = try readSecretFile(path, node: node, key: "client_properties.\(name)", at: value)
                    try set(property, secret, from: "client_properties.\(name)", key: "client_properties", at: key)
                } else {
                    try set(name, text, from: "client_properties", key: "client_properties", at: key)
                }
            }
        }
        if let pathText = try node.optionalString("client_properties_file") {
            let path = absolute(pathText, base: baseDirectory)
            let text = try readSecretFile(path, node: node, key: "client_properties_file", at: node.node?.mapping?["client_properties_file"], trim: false)
            // Character-wise split: "\r\n" is one Character, so CRLF files work too.
            for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                guard let eq = trimmed.firstIndex(of: "="), eq != trimmed.startIndex else {
                    // The line may hold a secret: name its number only.
                    throw node.error("client_properties_file", "\(path) line \(number + 1): expected name=value")
                }
                let name = trimmed[..<eq].trimmingCharacters(in: .whitespaces)
                let value = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
                try set(name, value, from: "client_properties_file (\(path))", key: "client_properties_file", at: nil)
            }
        }
        // The environment overrides the file, as for every other key.
        for (name, entry) in environmentProperties(node.env) {
            node.consulted.names.insert(entry.variable)
            properties[name] = entry.value
        }
        return properties
    }

    /// The `DREAMSR_KAFKA_PROPERTY_*` variables as librdkafka property names (`SASL_PASSWORD` -> `sasl.password`).
    static func environmentProperties(_ env: [String: String]) -> [String: (variable: String, value: String)] {
        var out: [String: (variable: String, value: String)] = [:]
        for (variable, value) in env where variable.hasPrefix(kafkaPropertyPrefix) && variable.count > kafkaPropertyPrefix.count {
            let name = variable.dropFirst(kafkaPropertyPrefix.count).lowercased().replacingOccurrences(of: "_", with: ".")
            out[name] = (variable, value)
        }
        return out
    }

    /// Reads a secret file (`*_file` keys). Errors name the file and the key, never the content. One trailing
    /// newline is dropped (`echo secret > file`), unless `trim` is false.
    static func readSecretFile(_ path: String, node: ConfigNode, key: String, at: Node?, trim: Bool = true) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw node.error(key, "cannot read \(path)", at: at)
        }
        guard var text = String(data: data, encoding: .utf8) else {
            throw node.error(key, "\(path) is not UTF-8 text", at: at)
        }
        if trim {
            if text.hasSuffix("\r\n") { text.removeLast(2) } else if text.hasSuffix("\n") { text.removeLast() }
        }
        return text
    }

    /// `dreamsr serve --kafka BOOTSTRAP --topic TOPIC --output OUT_DIR [--watch IN_DIR]`: defaults (plus environment
    /// overrides), group `dreamsr`, results to `TOPIC.results`, dead letters to `TOPIC.dlq`.
    public static func quickStartKafka(bootstrap: String, topic: String, output: String, watch: String?,
                                       metricsAddress: String?,
                                       env: [String: String] = ProcessInfo.processInfo.environment) throws -> DaemonConfig {
        let cwd = FileManager.default.currentDirectoryPath
        // DREAMSR_KAFKA_PROPERTY_* are read here, not by a key of the (empty) file.
        let otherEnv = env.filter { !$0.key.hasPrefix(kafkaPropertyPrefix) }
        var config = try watch.map { try quickStart(watch: $0, output: output, metricsAddress: metricsAddress, env: otherEnv) }
            ?? parse(yaml: "{}", file: "<command line>", baseDirectory: cwd, env: otherEnv)
        if let metricsAddress { config.metricsAddress = metricsAddress }
        var kafka = KafkaConnectorConfiguration(bootstrapServers: bootstrap, inputTopic: topic,
                                                outputDirectory: absolute(output, base: cwd))
        kafka.defaultFormat = config.pipeline.outputFormat
        kafka.drainTimeout = min(kafka.drainTimeout, config.gracePeriod)
        kafka.clientProperties = environmentProperties(env).mapValues(\.value)
        do {
            kafka.objectStorage = try S3Configuration().resolved(environment: env, regionIsSet: false)
        } catch {
            throw ConfigError(file: "<environment>", key: "AWS_*", problem: error.message)
        }
        do {
            try kafka.validate()
        } catch {
            throw ConfigError(file: "<command line>", key: "--kafka/--topic", problem: error.message)
        }
        config.kafka = kafka
        return config
    }
}
