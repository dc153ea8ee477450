import CRdKafka
import Foundation
import Logging
import Support

/// One consumed message, copied out of librdkafka (the C message is destroyed right away).
public struct ConsumedMessage: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [KafkaHeader]

    public init(topic: String, partition: Int32, offset: Int64, key: [UInt8]? = nil, value: [UInt8]?,
                headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
    }

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }

    init(_ message: UnsafeMutablePointer<rd_kafka_message_t>) {
        let m = message.pointee
        topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        partition = m.partition
        offset = m.offset
        key = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
        value = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) }
        var hdrs: OpaquePointer?
        var headers: [KafkaHeader] = []
        if rd_kafka_message_headers(message, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                headers.append(KafkaHeader(name.map { String(cString: $0) } ?? "", bytes))
                index += 1
            }
        }
        self.headers = headers
    }
}

/// A high-level (group) consumer. Every call on it is made from the source's dedicated poll thread, except
/// `storeOffset` (thread-safe in librdkafka, made under the source's lock) and the shutdown calls.
final class RDKafkaConsumer: @unchecked Sendable {
    let handle: OpaquePointer
    private let callbacks: RDKafkaCallbacks
    private let state = Locked(false)  // destroyed

    enum PollResult {
        case message(ConsumedMessage)
        case error(KafkaConnectorError)
        case nothing
    }

    /// `rebalance` runs on the polling thread before the assignment changes (revoke) or after it was recorded
    /// (assign); the wrapper performs the assign/unassign itself (eager or cooperative protocol).
    init(properties: [String: String], logger: Logger,
         rebalance: @escaping @Sendable (RebalanceEvent) -> Void) throws(KafkaConnectorError) {
        let conf = try RDKafkaConfig.make(properties)
        let callbacks = RDKafkaCallbacks(logger: logger)
        callbacks.rebalance = rebalance
        RDKafkaCallbacks.install(on: conf, callbacks)
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            guard let rk, let partitions, let callbacks = RDKafkaCallbacks.from(opaque) else { return }
            let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
            let list = RDKafkaPartitionList.read(partitions)
            switch err {
            case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                callbacks.rebalance?(.assigned(list))
                if cooperative {
                    if let error = rd_kafka_incremental_assign(rk, partitions) {
                        callbacks.logger.error("incremental assign failed: \(String(cString: rd_kafka_error_string(error)))")
                        rd_kafka_error_destroy(error)
                    }
                } else {
                    let result = rd_kafka_assign(rk, partitions)
                    if result != RD_KAFKA_RESP_ERR_NO_ERROR {
                        callbacks.logger.error("assign failed: \(String(cString: rd_kafka_err2str(result)))")
                    }
                }
            default:
                // Revoke (or an error): stop work and commit first, then give the partitions up.
                callbacks.rebalance?(.revoked(list))
                if cooperative {
                    if let error = rd_kafka_incremental_unassign(rk, partitions) { rd_kafka_error_destroy(error) }
                } else {
                    _ = rd_kafka_assign(rk, nil)
                }
            }
        }
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            let reason = String(decoding: errstr.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw KafkaConnectorError(.client, "rd_kafka_new(consumer): \(reason)")
        }
        rd_kafka_poll_set_consumer(handle)
        self.handle = handle
        self.callbacks = callbacks
    }

    /// Called once if librdkafka reports a fatal error.
    func onFatalError(_ handler: @escaping @Sendable (String) -> Void) {
        callbacks.fatal.withLock { $0.handler = handler }
    }

    func subscribe(_ topics: [String]) throws(KafkaConnectorError) {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics { rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA) }
        let err = rd_kafka_subscribe(handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaConnectorError.rdkafka(err, .consumer, "subscribe to \(topics)")
        }
    }

    /// Blocking: call only from the poll thread.
    func poll(timeoutMs: Int32) -> PollResult {
        guard let message = rd_kafka_consumer_poll(handle, timeoutMs) else { return .nothing }
        defer { rd_kafka_message_destroy(message) }
        let err = message.pointee.err
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if err == RD_KAFKA_RESP_ERR__PARTITION_EOF { return .nothing }
            return .error(KafkaConnectorError.rdkafka(err, .consumer, "consume"))
        }
        return .message(ConsumedMessage(message))
    }

    func pause(_ partitions: [TopicPartition]) {
        guard !partitions.isEmpty else { return }
        RDKafkaPartitionList.with(partitions) { list in _ = rd_kafka_pause_partitions(handle, list) }
    }

    func resume(_ partitions: [TopicPartition]) {
        guard !partitions.isEmpty else { return }
        RDKafkaPartitionList.with(partitions) { list in _ = rd_kafka_resume_partitions(handle, list) }
    }

    /// Stores `offset` (the next offset to consume) for a partition; librdkafka commits it.
    func storeOffset(_ tp: TopicPartition, _ offset: Int64) throws(KafkaConnectorError) {
        let err: rd_kafka_resp_err_t = RDKafkaPartitionList.with([tp], offsets: [offset]) { list in
            let result = rd_kafka_offsets_store(handle, list)
            if result != RD_KAFKA_RESP_ERR_NO_ERROR { return result }
            return list.pointee.elems[0].err
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaConnectorError.rdkafka(err, .consumer, "store offset \(offset) for \(tp)")
        }
    }

    /// The partition's low and high watermarks (first offset kept, next offset to be written), asked of the broker
    /// (blocking up to `timeoutMs`; the cached values stop moving while a partition is paused). Nil when the broker
    /// did not answer.
    func watermarks(_ tp: TopicPartition, timeoutMs: Int32) -> (low: Int64, high: Int64)? {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_query_watermark_offsets(handle, tp.topic, tp.partition, &low, &high, timeoutMs)
        return err == RD_KAFKA_RESP_ERR_NO_ERROR && low >= 0 && high >= 0 ? (low, high) : nil
    }

    /// The group's committed offset of a partition (blocking up to `timeoutMs`); nil when none is committed yet or
    /// the broker did not answer.
    func committedOffset(_ tp: TopicPartition, timeoutMs: Int32) -> Int64? {
        RDKafkaPartitionList.with([tp]) { list -> Int64? in
            guard rd_kafka_committed(handle, list, timeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR,
                  list.pointee.elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
            let offset = list.pointee.elems[0].offset
            return offset >= 0 ? offset : nil
        }
    }

    /// Synchronous commit of the stored offsets (blocking). "Nothing to commit" is not an error.
    func commitStored() -> KafkaConnectorError? {
        let err = rd_kafka_commit(handle, nil, 0)
        if err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET { return nil }
        return KafkaConnectorError.rdkafka(err, .consumer, "commit")
    }

    /// Leaves the group (final revoke + commit through the rebalance callback) and destroys the handle. Blocking.
    func closeAndDestroy() {
        let proceed = state.withLock { destroyed -> Bool in
            defer { destroyed = true }
            return !destroyed
        }
        guard proceed else { return }
        let err = rd_kafka_consumer_close(handle)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            callbacks.logger.warning("consumer close: \(String(cString: rd_kafka_err2str(err)))")
        }
        rd_kafka_destroy(handle)
    }

    deinit {
        closeAndDestroy()
    }
}
