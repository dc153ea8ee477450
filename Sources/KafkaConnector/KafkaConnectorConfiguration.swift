import CRdKafka
import ObjectStorage

/// Configuration of the Kafka source/sink. Every field has a documented default except the broker list and the
/// input topic; `validate()` names the offending key.
public struct KafkaConnectorConfiguration: Sendable, Equatable {
    /// Capped exponential backoff for transient failures (retriable outcome, download timeout, broker unavailable).
    public struct RetryPolicy: Sendable, Equatable {
        /// Attempts per job including the first (default 4); after the last failed attempt the message is
        /// dead-lettered.
        public var maxAttempts: Int = 4
        /// Delay before the second attempt (default 0.5 s); doubles on each attempt.
        public var initialBackoff: Duration = .milliseconds(500)
        /// Upper bound of one delay (default 30 s).
        public var maxBackoff: Duration = .seconds(30)
        public init(maxAttempts: Int = 4, initialBackoff: Duration = .milliseconds(500),
                    maxBackoff: Duration = .seconds(30)) {
            self.maxAttempts = maxAttempts
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
        }

        /// Delay before attempt `attempt + 1` (attempt counts from 1).
        public func delay(afterAttempt attempt: Int) -> Duration {
            let exponent = max(0, min(attempt - 1, 30))
            let scaled = initialBackoff * (1 << exponent)
            return scaled < maxBackoff ? scaled : maxBackoff
        }
    }

    /// Rules for http(s) sources.
    public struct HTTPSourceRules: Sendable, Equatable {
        /// When false (default), a URL whose host resolves to a loopback, link-local, private (RFC 1918 / ULA),
        /// CGNAT, multicast or unspecified address is refused.
        public var allowPrivateAddresses: Bool = false
        /// Whole-download timeout (default 10 s).
        public var timeout: Duration = .seconds(10)
        /// Largest accepted body, checked on Content-Length and on bytes read (default 64 MiB).
        public var maxBytes: Int = 64 << 20
        /// Redirects followed, each re-checked against the address rules (default 3).
        public var maxRedirects: Int = 3
        /// Allowed schemes (default http, https).
        public var allowedSchemes: Set<String> = ["http", "https"]
        public init(allowPrivateAddresses: Bool = false, timeout: Duration = .seconds(10), maxBytes: Int = 64 << 20,
                    maxRedirects: Int = 3) {
            self.allowPrivateAddresses = allowPrivateAddresses
            self.timeout = timeout
            self.maxBytes = maxBytes
            self.maxRedirects = maxRedirects
        }
    }

    /// `bootstrap.servers`, e.g. `localhost:9092` or `b1:9092,b2:9092`.
    public var bootstrapServers: String
    /// Consumer group (default `dreamsr`).
    public var groupID: String = "dreamsr"
    /// Topic with the JSON job requests.
    public var inputTopic: String
    /// Topic for result messages (default `<inputTopic>.results`).
    public var resultsTopic: String
    /// Dead-letter topic (default `<inputTopic>.dlq`).
    public var deadLetterTopic: String
    /// Folder outputs go to when a message names no output (nil: the pipeline's own default).
    public var outputDirectory: String?
    /// Output format when a message names none (default png); also the extension of derived output names.
    public var defaultFormat: String = "png"
    /// When false (default), a message's `output` must be a relative path without `..`; it is resolved under
    /// `outputDirectory`.
    public var allowAbsoluteOutputPaths: Bool = false
    /// Jobs processed concurrently (default 4). When full, the partitions are paused (backpressure).
    public var maxInFlight: Int = 4
    /// Messages consumed ahead of the processor (waiting for a free slot) before the partitions are paused; they
    /// resume when the buffer is half empty, so fetching overlaps work (librdkafka 2.0.2 takes up to ~1 s to deliver
    /// again after a resume). Default (nil): adaptive — max(16, 4 x maxInFlight), raised to the number of jobs
    /// finished in the last `bufferSeconds` when jobs are that fast (so a resume's fetch delay does not starve the
    /// processor), at most `adaptiveBufferCap` messages; a set value is used as is.
    /// Buffered messages are not committed: a crash redelivers them.
    public var maxBuffered: Int?
    /// Bytes of buffered message values before the partitions are paused, whatever the count (default 64 MiB).
    public var maxBufferedBytes: Int = 64 << 20
    /// Seconds of work the adaptive buffer aims to hold (default 2).
    public static let bufferSeconds = 2.0
    /// Upper bound of the adaptive buffer (messages).
    public static let adaptiveBufferCap = 10_000
    /// The pause threshold for a processor finishing `jobsPerSecond` jobs per second.
    func bufferLimit(jobsPerSecond: Double) -> Int {
        if let maxBuffered { return maxBuffered }
        let base = max(16, 4 * maxInFlight)
        let adaptive = min(Double(Self.adaptiveBufferCap), (jobsPerSecond * Self.bufferSeconds).rounded(.up))
        return max(base, Int(adaptive))
    }
    /// Largest accepted message value (default 1 MiB); larger ones are dead-lettered.
    public var maxMessageBytes: Int = 1 << 20
    /// Largest dead letter in bytes: the producer's `message.max.bytes` (from `clientProperties`, else librdkafka's
    /// default 1,000,000). A larger original is cut to fit (see `DeadLetter`); a broker refusal ("message size too
    /// large", e.g. a smaller `max.message.bytes` on the topic) lowers it for the rest of the run.
    public var deadLetterMaxBytes: Int {
        clientProperties["message.max.bytes"].flatMap { Int($0) } ?? 1_000_000
    }
    public var retry = RetryPolicy()
    public var http = HTTPSourceRules()
    /// Publish `status: error` results for dead-lettered messages too (default true).
    public var publishErrorResults: Bool = true
    /// How long shutdown waits for in-flight jobs before abandoning them (their offsets are never stored).
    public var drainTimeout: Duration = .seconds(20)
    /// How long a rebalance waits for the running jobs of the partitions it takes away before committing and
    /// handing them over: `drainTimeout`, at most half of `max.poll.interval.ms` (the poll thread waits). Jobs
    /// finished by then are committed and not run again by the next owner; the rest are redelivered.
    public var revokeWait: Duration {
        min(drainTimeout, .milliseconds(maxPollIntervalMs / 2))
    }
    /// `auto.offset.reset` for a group without committed offsets (default `earliest`).
    public var autoOffsetReset: String = "earliest"
    /// `session.timeout.ms` (default 10000) and `max.poll.interval.ms` (default 300000).
    public var sessionTimeoutMs: Int = 10_000
    public var maxPollIntervalMs: Int = 300_000
    /// `auto.commit.interval.ms`: how often stored offsets are committed (default 1000); a final commit runs on
    /// revoke and shutdown.
    public var commitIntervalMs: Int = 1_000
    /// Extra librdkafka properties for both clients (e.g. `security.protocol`, `sasl.*`, `ssl.*`), applied last.
    public var clientProperties: [String: String] = [:]
    /// How often the consumer lag (`dreamsr_kafka_consumer_lag`) is asked of the broker.
    public var lagInterval: Duration = .seconds(5)
    /// Folder for downloads (default: the system temporary folder); s3:// and URL outputs are staged here too
    /// before their upload.
    public var downloadDirectory: String?
    /// The object storage `s3://` sources and outputs use (endpoint, region, credentials, part sizes, retries);
    /// nil: none configured, such jobs are dead-lettered. Its `policy` also governs uploads to presigned URLs.
    public var objectStorage: S3Configuration?
    /// `partition.assignment.strategy` of the consumer group: `range,roundrobin` (default, librdkafka's: eager,
    /// every rebalance revokes all partitions of every member), `range`, `roundrobin`, or `cooperative-sticky`
    /// (incremental: a member joining or leaving moves only the partitions that must move). Every member of a group
    /// must use the same protocol family (eager or cooperative).
    public var assignmentStrategy: String = "range,roundrobin"
    public static let assignmentStrategies = ["range,roundrobin", "range", "roundrobin", "cooperative-sticky"]
    /// Input-message headers copied into the result's `headers` (names compared case-insensitively), e.g. a
    /// trace id. Default: `traceparent`, `tracestate`, `x-trace-id`, `x-request-id`.
    public var resultHeaders: [String] = ["traceparent", "tracestate", "x-trace-id", "x-request-id"]

    public init(bootstrapServers: String, inputTopic: String, groupID: String = "dreamsr",
                resultsTopic: String? = nil, deadLetterTopic: String? = nil, outputDirectory: String? = nil,
                maxInFlight: Int = 4) {
        self.bootstrapServers = bootstrapServers
        self.inputTopic = inputTopic
        self.groupID = groupID
        self.resultsTopic = resultsTopic ?? "\(inputTopic).results"
        self.deadLetterTopic = deadLetterTopic ?? "\(inputTopic).dlq"
        self.outputDirectory = outputDirectory
        self.maxInFlight = maxInFlight
    }

    public func validate() throws(KafkaConnectorError) {
        func fail(_ key: String, _ why: String) -> KafkaConnectorError {
            KafkaConnectorError(.configuration, "kafka.\(key): \(why)")
        }
        if bootstrapServers.isEmpty { throw fail("bootstrap", "must name at least one broker") }
        for (key, topic) in [("topic", inputTopic), ("results_topic", resultsTopic), ("dlq_topic", deadLetterTopic)] {
            if topic.isEmpty || topic.count > 249
                || !topic.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
                throw fail(key, "'\(topic)' is not a valid topic name ([A-Za-z0-9._-], 1-249 chars)")
            }
        }
        if resultsTopic == inputTopic || deadLetterTopic == inputTopic {
            throw fail("results_topic", "results and dead-letter topics must differ from the input topic")
        }
        if groupID.isEmpty { throw fail("group_id", "must not be empty") }
        if maxInFlight < 1 || maxInFlight > 4096 { throw fail("max_in_flight", "\(maxInFlight) not in 1...4096") }
        if !InputMessage.formats.contains(defaultFormat.lowercased()) {
            throw fail("format", "'\(defaultFormat)' is not one of \(InputMessage.formats.sorted())")
        }
        if let maxBuffered, maxBuffered < 1 { throw fail("max_buffered", "\(maxBuffered) < 1") }
        if maxBufferedBytes < 1 { throw fail("max_buffered_bytes", "\(maxBufferedBytes) < 1") }
        if maxMessageBytes < 64 { throw fail("max_message_bytes", "\(maxMessageBytes) < 64") }
        if retry.maxAttempts < 1 { throw fail("retry.max_attempts", "\(retry.maxAttempts) < 1") }
        if retry.initialBackoff < .zero || retry.maxBackoff < retry.initialBackoff {
            throw fail("retry.max_backoff", "must be >= retry.initial_backoff >= 0")
        }
        if http.maxBytes < 1 { throw fail("http.max_bytes", "\(http.maxBytes) < 1") }
        if http.maxRedirects < 0 { throw fail("http.max_redirects", "\(http.maxRedirects) < 0") }
        if !["earliest", "latest", "error"].contains(autoOffsetReset) {
            throw fail("auto_offset_reset", "'\(autoOffsetReset)' is not earliest|latest|error")
        }
        if let objectStorage {
            do {
                try objectStorage.validate()
            } catch {
                throw fail("object_storage", error.message)
            }
        }
        if !Self.assignmentStrategies.contains(assignmentStrategy) {
            throw fail("assignment_strategy",
                       "'\(assignmentStrategy)' is not one of \(Self.assignmentStrategies.joined(separator: " | "))")
        }
        if resultHeaders.contains(where: { $0.isEmpty || $0.utf8.count > 256 }) {
            throw fail("result_headers", "header names must be 1-256 bytes")
        }
        if maxPollIntervalMs < sessionTimeoutMs {
            throw fail("max_poll_interval_ms", "\(maxPollIntervalMs) < session_timeout_ms \(sessionTimeoutMs)")
        }
    }

    /// The librdkafka consumer properties (the one place they are built).
    public var consumerProperties: [String: String] {
        var props: [String: String] = [
            "bootstrap.servers": bootstrapServers,
            "group.id": groupID,
            "client.id": "dreamsr-consumer",
            // At-least-once: offsets are stored by us, only for finished jobs; librdkafka commits stored offsets.
            "enable.auto.offset.store": "false",
            "enable.auto.commit": "true",
            "auto.commit.interval.ms": String(commitIntervalMs),
            "auto.offset.reset": autoOffsetReset,
            "session.timeout.ms": String(sessionTimeoutMs),
            "max.poll.interval.ms": String(maxPollIntervalMs),
            "enable.partition.eof": "false",
            "partition.assignment.strategy": assignmentStrategy,
            // Keep the prefetch small: paused partitions drop it anyway.
            "queued.max.messages.kbytes": "1024",
            "fetch.wait.max.ms": "100",
            "fetch.error.backoff.ms": "50",
            // A fetch returns at least one whole record batch however large (KIP-74); a response over this limit
            // fails with "Invalid response size ...: increase receive.message.max.bytes" and librdkafka retries it
            // forever, stalling the partition. At librdkafka's maximum, any message the broker accepted can be
            // fetched (and dead-lettered if over max_message_bytes). Lowering it in client_properties brings the
            // stall back (see docs/kafka.md).
            "receive.message.max.bytes": "2147483647",
        ]
        props.merge(clientProperties) { _, new in new }
        return props
    }

    /// The librdkafka producer properties (results and dead letters).
    public var producerProperties: [String: String] {
        var props: [String: String] = [
            "bootstrap.servers": bootstrapServers,
            "client.id": "dreamsr-producer",
            "enable.idempotence": "true",
            "acks": "all",
            "linger.ms": "5",
            "message.timeout.ms": "60000",
        ]
        props.merge(clientProperties) { _, new in new }
        return props
    }

    /// Hands the consumer and producer properties to librdkafka's configuration parser (no connection is made):
    /// `serve --check` refuses what the start would. The error names the property, never its value.
    public func checkClientProperties() throws(KafkaConnectorError) {
        for properties in [consumerProperties, producerProperties] {
            let conf = try RDKafkaConfig.make(properties)
            rd_kafka_conf_destroy(conf)
        }
    }
}
