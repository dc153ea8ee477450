import CRdKafka

/// The one error type of the KafkaConnector module.
///
/// Where errors surface:
/// - `KafkaJobSource.run()` throws configuration errors and client-creation errors before it consumes anything.
/// - A bad input message never throws out of the service: it becomes a dead letter whose headers carry
///   `code`/`message` (see docs/kafka.md).
/// - Download and delivery errors are retried while `isRetriable` is true, with capped exponential backoff.
public struct KafkaConnectorError: Error, CustomStringConvertible, Sendable, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A configuration value is missing or out of range.
        public static let configuration = Code("configuration")
        /// librdkafka refused to create or configure a client.
        public static let client = Code("client")
        /// A produce call or its delivery report failed.
        public static let delivery = Code("delivery")
        /// A consumer call (subscribe, assign, commit, store) failed.
        public static let consumer = Code("consumer")
        /// The input message is not valid per the message contract (bad JSON, wrong types, missing source).
        public static let invalidMessage = Code("invalid_message")
        /// The source file is missing, unreadable, or not a regular file (a folder, a device).
        public static let source = Code("source")
        /// The output cannot be written where the message asks: a folder on its path is a file or a symbolic
        /// link, or the name is too long. Checked before the model runs; never retried.
        public static let output = Code("output")
        /// The broker or the producer refused a message as too large (`message.max.bytes`, the topic's
        /// `max.message.bytes`).
        public static let messageTooLarge = Code("message_too_large")
        /// A limit was exceeded (message size, download size, scale).
        public static let limitExceeded = Code("limit_exceeded")
        /// The URL resolves to an address the rules forbid (loopback, link-local, private), or a scheme not allowed.
        public static let forbiddenSource = Code("forbidden_source")
        /// The HTTP download failed (status, connection, too many redirects).
        public static let download = Code("download")
        /// Writing the output to object storage or a presigned URL failed (the message names the object and, for
        /// S3, its error code).
        public static let upload = Code("upload")
        /// The download timed out.
        public static let timeout = Code("timeout")
        /// The pipeline reported an error.
        public static let processing = Code("processing")
        /// The client was already shut down.
        public static let closed = Code("closed")
    }

    public var code: Code
    public var message: String
    public var isRetriable: Bool
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, isRetriable: Bool = false,
                file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.isRetriable = isRetriable
        self.file = file
        self.line = line
    }

    public var description: String { "\(code): \(message)" }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.isRetriable == rhs.isRetriable
    }

    /// A librdkafka error code turned into a connector error right where it is returned.
    static func rdkafka(_ err: rd_kafka_resp_err_t, _ code: Code, _ context: String,
                        file: String = #fileID, line: Int = #line) -> KafkaConnectorError {
        let name = String(cString: rd_kafka_err2str(err))
        let tooLarge = err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE
        return KafkaConnectorError(tooLarge ? .messageTooLarge : code, "\(context): \(name) (\(err.rawValue))",
                                   isRetriable: Self.isRetriable(err), file: file, line: line)
    }

    static func isRetriable(_ err: rd_kafka_resp_err_t) -> Bool {
        switch err {
        case RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
             RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
             RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
             RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
             RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
             RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
             RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
             RD_KAFKA_RESP_ERR__PURGE_QUEUE, RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
            return true
        default:
            return false
        }
    }
}
