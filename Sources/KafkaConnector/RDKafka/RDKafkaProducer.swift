import CRdKafka
import Foundation
import Logging
import Support

/// One message header (value nil: a header without value).
public struct KafkaHeader: Sendable, Equatable {
    public var name: String
    public var value: [UInt8]?
    public init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = Array(value.utf8)
    }
    public var stringValue: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}

/// An idempotent producer whose `send` returns only when the broker acknowledged the message (delivery report).
/// The handle is polled by a dedicated thread; `close()` flushes, purges what is left, and destroys the handle.
final class RDKafkaProducer: @unchecked Sendable {
    private let handle: OpaquePointer
    private let callbacks: RDKafkaCallbacks
    private let pollThread: PollThread
    private let state = Locked<(closed: Bool, destroyed: Bool)>((false, false))

    init(properties: [String: String], logger: Logger) throws(KafkaConnectorError) {
        let conf = try RDKafkaConfig.make(properties)
        let callbacks = RDKafkaCallbacks(logger: logger)
        RDKafkaCallbacks.install(on: conf, callbacks)
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let callbacks = RDKafkaCallbacks.from(opaque) else { return }
            let token = UInt(bitPattern: message.pointee._private)
            let err = message.pointee.err
            let handler = callbacks.deliveries.withLock { $0.waiting.removeValue(forKey: token) }
            guard let handler else { return }
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                handler(.success(()))
            } else {
                let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "?"
                handler(.failure(KafkaConnectorError.rdkafka(err, .delivery, "delivery to '\(topic)'")))
            }
        }
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            let reason = String(decoding: errstr.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw KafkaConnectorError(.client, "rd_kafka_new(producer): \(reason)")
        }
        self.handle = handle
        self.callbacks = callbacks
        let pointer = SendableOpaquePointer(handle)
        self.pollThread = PollThread(name: "dreamsr.kafka.producer-poll") { _ = rd_kafka_poll(pointer.pointer, 100) }
        pollThread.start()
    }

    /// One message to produce.
    struct OutgoingMessage: Sendable {
        var key: [UInt8]?
        var value: [UInt8]
        var headers: [KafkaHeader]
    }

    /// Produces one message and waits for its delivery report. Throws a retriable error for transient failures.
    func send(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader],
              partition: Int32? = nil) async throws {
        try await sendInOrder(topic: topic, [OutgoingMessage(key: key, value: value, headers: headers)],
                              partition: partition)
    }

    /// Produces `messages` in their order (enqueued one after the other before any is awaited, so with the
    /// idempotent producer they land in a partition in this order) and waits for every delivery report. Throws the
    /// first failure (a message that failed to enqueue is reported after the ones enqueued before it were
    /// acknowledged or failed).
    func sendInOrder(topic: String, _ messages: [OutgoingMessage], partition: Int32? = nil) async throws {
        guard !messages.isEmpty else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let batch = DeliveryBatch(count: messages.count, continuation)
            for (index, message) in messages.enumerated() {
                if let failure = enqueue(topic: topic, message, partition: partition, onDelivery: batch.report) {
                    // Nothing after a refused message is enqueued (that would break the order).
                    batch.report(.failure(failure))
                    batch.abandon(messages.count - index - 1)
                    return
                }
            }
        }
    }

    /// Enqueues one message; `onDelivery` is called once with its delivery report. Returns the failure (and never
    /// calls `onDelivery`) when the message could not be enqueued.
    private func enqueue(topic: String, _ message: OutgoingMessage, partition: Int32?,
                         onDelivery: @escaping RDKafkaCallbacks.DeliveryHandler) -> KafkaConnectorError? {
        // Under the state lock, so close() can never destroy the handle between the check and the produce call
        // (rd_kafka_producev does not block: a full queue returns QUEUE_FULL, a retriable error).
        state.withLock { state in
            if state.closed { return KafkaConnectorError(.closed, "producer is closed") }
            let token = callbacks.deliveries.withLock { deliveries in
                let token = deliveries.next
                deliveries.next &+= 1
                deliveries.waiting[token] = onDelivery
                return token
            }
            let hdrs: OpaquePointer? = message.headers.isEmpty ? nil : rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                if let value = header.value {
                    _ = value.withUnsafeBytes { rd_kafka_header_add(hdrs, header.name, -1, $0.baseAddress, $0.count) }
                } else {
                    rd_kafka_header_add(hdrs, header.name, -1, nil, 0)
                }
            }
            let key = message.key
            let err = message.value.withUnsafeBytes { valueBytes in
                (key ?? []).withUnsafeBytes { keyBytes in
                    dreamsr_rdk_produce(handle, topic, partition ?? RD_KAFKA_PARTITION_UA, valueBytes.baseAddress,
                                        valueBytes.count, key == nil ? nil : keyBytes.baseAddress,
                                        key == nil ? 0 : keyBytes.count, hdrs, UnsafeMutableRawPointer(bitPattern: token))
                }
            }
            guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
            if let hdrs { rd_kafka_headers_destroy(hdrs) }
            _ = callbacks.deliveries.withLock { $0.waiting.removeValue(forKey: token) }
            return KafkaConnectorError.rdkafka(err, .delivery, "produce to '\(topic)'")
        }
    }

    /// Called once if librdkafka reports a fatal error (e.g. the idempotent producer lost its guarantees).
    func onFatalError(_ handler: @escaping @Sendable (String) -> Void) {
        callbacks.fatal.withLock { $0.handler = handler }
    }

    /// Test hook: makes librdkafka raise a fatal error on this producer (rd_kafka_test_fatal_error).
    func injectFatalErrorForTesting(_ reason: String) {
        _ = rd_kafka_test_fatal_error(handle, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason)
    }

    /// Flush, stop polling, purge anything left (its waiters get a purge error), destroy. Idempotent.
    func close(flushTimeoutMs: Int32) async {
        let proceed = state.withLock { state -> Bool in
            if state.closed { return false }
            state.closed = true
            return true
        }
        guard proceed else { return }
        await pollThread.stop()
        let pointer = SendableOpaquePointer(handle)
        let logger = callbacks.logger
        await BlockingQueue.run {
            let err = rd_kafka_flush(pointer.pointer, flushTimeoutMs)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning("producer flush left messages undelivered; purging",
                               metadata: ["error": "\(String(cString: rd_kafka_err2str(err)))"])
            }
            _ = rd_kafka_purge(pointer.pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            _ = rd_kafka_poll(pointer.pointer, 0)
            rd_kafka_destroy(pointer.pointer)
        }
        state.withLock { $0.destroyed = true }
        // Anything still waiting can never be acknowledged now.
        let leftovers = callbacks.deliveries.withLock { d -> [RDKafkaCallbacks.DeliveryHandler] in
            defer { d.waiting.removeAll() }
            return Array(d.waiting.values)
        }
        for handler in leftovers {
            handler(.failure(KafkaConnectorError(.closed, "producer closed before delivery")))
        }
    }

    deinit {
        // close() was not called (e.g. init of a sibling failed): stop and destroy synchronously.
        if !state.withLock({ $0.destroyed }) {
            pollThread.stopAndWait()
            rd_kafka_destroy(handle)
        }
    }
}

/// Counts the delivery reports of an ordered batch and resumes its waiter once, after the last, with the first
/// failure if any.
private final class DeliveryBatch: @unchecked Sendable {
    private let state: Locked<(remaining: Int, failure: KafkaConnectorError?, continuation: CheckedContinuation<Void, any Error>?)>

    init(count: Int, _ continuation: CheckedContinuation<Void, any Error>) {
        state = Locked((count, nil, continuation))
    }

    func report(_ result: Result<Void, KafkaConnectorError>) {
        finish(count: 1, failure: { if case .failure(let e) = result { return e } else { return nil } }())
    }

    /// Messages that will never be enqueued (after a refused one).
    func abandon(_ count: Int) {
        if count > 0 { finish(count: count, failure: nil) }
    }

    private func finish(count: Int, failure: KafkaConnectorError?) {
        let done = state.withLock { s -> (CheckedContinuation<Void, any Error>, KafkaConnectorError?)? in
            s.remaining -= count
            if s.failure == nil { s.failure = failure }
            guard s.remaining <= 0, let continuation = s.continuation else { return nil }
            s.continuation = nil
            return (continuation, s.failure)
        }
        guard let (continuation, failure) = done else { return }
        if let failure { continuation.resume(throwing: failure) } else { continuation.resume() }
    }
}

/// A dedicated thread that repeats `body` (a blocking librdkafka poll with a timeout) until stopped.
final class PollThread: @unchecked Sendable {
    private let stopped = Locked(false)
    private let done = DispatchSemaphore(value: 0)
    private let thread: Thread
    private let started = Locked(false)

    init(name: String, body: @escaping @Sendable () -> Void) {
        let stopped = self.stopped
        let done = self.done
        thread = Thread {
            while !stopped.withLock({ $0 }) { body() }
            done.signal()
        }
        thread.name = name
    }

    func start() {
        started.withLock { $0 = true }
        thread.start()
    }

    /// Asks the loop to stop and waits (off the cooperative pool) for its last iteration to end.
    func stop() async {
        await BlockingQueue.run { [self] in stopAndWait() }
    }

    func stopAndWait() {
        let wasRunning = stopped.withLock { stopped -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if wasRunning && started.withLock({ $0 }) { done.wait() }
    }
}
