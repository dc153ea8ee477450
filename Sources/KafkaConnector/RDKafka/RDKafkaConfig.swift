import CRdKafka
import Logging
import Support

/// Builds an `rd_kafka_conf_t` from a property dictionary; any refused key becomes a `KafkaConnectorError` naming it
/// (and never showing its value: client properties hold SASL/SSL secrets).
enum RDKafkaConfig {
    static func make(_ properties: [String: String]) throws(KafkaConnectorError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaConnectorError(.client, "rd_kafka_conf_new failed")
        }
        var errstr = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, key, value, &errstr, errstr.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                // Never the value (it may be a secret), not even inside librdkafka's own message.
                var reason = string(errstr)
                if !value.isEmpty { reason = reason.replacingOccurrences(of: value, with: "<value>") }
                throw KafkaConnectorError(.configuration, "librdkafka property '\(key)': \(reason)")
            }
        }
        return conf
    }

    /// A NUL-terminated C buffer as a String.
    static func string(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Callback context reachable from librdkafka's C callbacks through the client opaque. Owned (retained) by the
/// client class, so it outlives the handle.
final class RDKafkaCallbacks: @unchecked Sendable {
    let logger: Logger
    /// Producer: called with the delivery report of each message, keyed by the message's token.
    typealias DeliveryHandler = @Sendable (Result<Void, KafkaConnectorError>) -> Void
    let deliveries = Locked<(next: UInt, waiting: [UInt: DeliveryHandler])>((1, [:]))
    /// Consumer: called on the poll thread during `rd_kafka_consumer_poll`.
    var rebalance: (@Sendable (RebalanceEvent) -> Void)?
    /// Called once with the reason when librdkafka reports a fatal error (the client cannot continue).
    let fatal = Locked<(reported: Bool, handler: (@Sendable (String) -> Void)?)>((false, nil))

    init(logger: Logger) { self.logger = logger }

    static func from(_ opaque: UnsafeMutableRawPointer?) -> RDKafkaCallbacks? {
        guard let opaque else { return nil }
        return Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
    }

    static func install(on conf: OpaquePointer, _ callbacks: RDKafkaCallbacks) {
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(callbacks).toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, fac, buf in
            guard let rk, let callbacks = RDKafkaCallbacks.from(rd_kafka_opaque(rk)) else { return }
            let text = "\(fac.map { String(cString: $0) } ?? ""): \(buf.map { String(cString: $0) } ?? "")"
            switch level {
            case 0...3: callbacks.logger.error("librdkafka \(text)")
            case 4: callbacks.logger.warning("librdkafka \(text)")
            case 5, 6: callbacks.logger.info("librdkafka \(text)")
            default: callbacks.logger.debug("librdkafka \(text)")
            }
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
            guard let callbacks = RDKafkaCallbacks.from(opaque) else { return }
            let text = reason.map { String(cString: $0) } ?? ""
            let errorCode = rd_kafka_resp_err_t(err)
            if errorCode == RD_KAFKA_RESP_ERR__FATAL {
                var detail = [CChar](repeating: 0, count: 512)
                let original = rk.map { rd_kafka_fatal_error($0, &detail, detail.count) } ?? errorCode
                let reason = "\(String(cString: rd_kafka_err2name(original))): \(RDKafkaConfig.string(detail))"
                callbacks.logger.critical("librdkafka fatal error: \(reason)")
                let handler = callbacks.fatal.withLock { f -> (@Sendable (String) -> Void)? in
                    defer { f.reported = true }
                    return f.reported ? nil : f.handler
                }
                handler?(reason)
            } else {
                callbacks.logger.warning("librdkafka error: \(text)",
                                         metadata: ["code": "\(String(cString: rd_kafka_err2name(errorCode)))"])
            }
        }
    }
}

/// A rebalance as the consumer's callback reports it.
enum RebalanceEvent: Sendable {
    case assigned([TopicPartition])
    case revoked([TopicPartition])
}

public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public var description: String { "\(topic)[\(partition)]" }
}

/// Topic-partition-list helpers.
enum RDKafkaPartitionList {
    static func read(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartition] {
        (0..<Int(list.pointee.cnt)).map { index in
            let element = list.pointee.elems[index]
            return TopicPartition(String(cString: element.topic), element.partition)
        }
    }

    /// Calls `body` with a freshly allocated list (offsets optional), destroyed afterwards.
    static func with<R>(_ partitions: [TopicPartition], offsets: [Int64]? = nil,
                        _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws -> R) rethrows -> R {
        let list = rd_kafka_topic_partition_list_new(Int32(max(1, partitions.count)))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (index, tp) in partitions.enumerated() {
            let element = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)!
            if let offsets { element.pointee.offset = offsets[index] }
        }
        return try body(list)
    }
}
