import CRdKafka
import Foundation
import Logging

/// librdkafka's in-process mock cluster (Kafka protocol on localhost ports), for tests and local runs.
/// `dreamsr-mock-kafka` runs the same thing as a separate process. Keep the object alive while clients use it
/// (`withExtendedLifetime` in release builds): its deinit destroys the brokers.
public final class MockKafkaCluster: @unchecked Sendable {
    private let client: OpaquePointer
    private let cluster: OpaquePointer
    /// `host:port,...` of the mock brokers.
    public let bootstrapServers: String

    public init(brokers: Int = 1) throws(KafkaConnectorError) {
        let conf = try RDKafkaConfig.make(["log_level": "3"])
        var errstr = [CChar](repeating: 0, count: 512)
        guard let client = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaConnectorError(.client, "rd_kafka_new for the mock cluster failed")
        }
        guard let cluster = rd_kafka_mock_cluster_new(client, Int32(brokers)) else {
            rd_kafka_destroy(client)
            throw KafkaConnectorError(.client, "rd_kafka_mock_cluster_new(\(brokers)) failed")
        }
        self.client = client
        self.cluster = cluster
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaConnectorError) {
        let err = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor))
        Self.letTheMockThreadSettle()
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaConnectorError.rdkafka(err, .client, "create mock topic '\(name)'")
        }
    }

    /// librdkafka 2.0.2's mock cluster serves its command queue before it drains the queue's wake-up pipe: a
    /// command issued right after the previous one returned can have its wake-up byte drained with the old one and
    /// then waits for the mock thread's 1 s poll timeout (measured: every second `rd_kafka_mock_topic_create` of a
    /// burst took 1.0 s). A short pause after each command lets the mock thread finish its loop first.
    private static func letTheMockThreadSettle() {
        Thread.sleep(forTimeInterval: 0.01)
    }

    /// Makes the next `count` produce requests to this cluster fail with "message size too large", as a broker
    /// does for a message over the topic's `max.message.bytes` (for tests of the dead-letter size fallback).
    public func refuseNextProduceRequestsAsTooLarge(_ count: Int) {
        let errors = [rd_kafka_resp_err_t](repeating: RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, count: count)
        rd_kafka_mock_push_request_errors_array(cluster, 0 /* ProduceRequest */, count, errors)
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(client)
    }
}

/// Small synchronous Kafka utilities for tests, benchmarks and tooling: produce raw messages, read a whole topic,
/// read committed offsets and watermarks. All calls block: use them from a dedicated thread or `BlockingQueue`.
public enum KafkaTools {
    /// Produces `messages` (key, value, headers) to `topic` in the order given, with acks=all, and waits for all
    /// delivery reports. At most librdkafka's queue (queue.buffering.max.messages, 100000) at once.
    public static func produce(bootstrap: String, topic: String,
                               messages: [(key: [UInt8]?, value: [UInt8], headers: [KafkaHeader])],
                               partition: Int32? = nil, maxMessageBytes: Int = 1_000_000) async throws {
        let producer = try RDKafkaProducer(properties: ["bootstrap.servers": bootstrap, "enable.idempotence": "true",
                                                        "linger.ms": "1", "message.max.bytes": String(maxMessageBytes)],
                                           logger: Logger(label: "dreamsr.kafka.tools"))
        do {
            // In order: a partition receives the messages in the order given (concurrent sends would not).
            try await producer.sendInOrder(topic: topic, messages.map {
                RDKafkaProducer.OutgoingMessage(key: $0.key, value: $0.value, headers: $0.headers)
            }, partition: partition)
        } catch {
            await producer.close(flushTimeoutMs: 1_000)
            throw error
        }
        await producer.close(flushTimeoutMs: 5_000)
    }

    /// Reads every partition of `topic` from the beginning until `count` messages arrived or `timeout` passed.
    public static func read(bootstrap: String, topic: String, partitions: Int, count: Int,
                            timeout: Duration = .seconds(20)) async throws -> [ConsumedMessage] {
        try await consume(bootstrap: bootstrap, topic: topic, partitions: partitions, timeout: timeout) { messages, _ in
            messages.count >= count
        }
    }

    /// Reads every partition of `topic` from the beginning to its end as it is when the call starts (its high
    /// watermarks): every message the topic holds, without waiting for more. Stops early, with what arrived, when
    /// `timeout` passed. For a topic whose writers are done (a stopped daemon's results and dead letters).
    public static func readAll(bootstrap: String, topic: String, partitions: Int,
                               timeout: Duration = .seconds(20)) async throws -> [ConsumedMessage] {
        let ends = try await watermarks(bootstrap: bootstrap, topic: topic, partitions: partitions)
        return try await consume(bootstrap: bootstrap, topic: topic, partitions: partitions, timeout: timeout) { _, next in
            (0..<partitions).allSatisfy { ends[$0].high <= max(next[$0], ends[$0].low) }
        }
    }

    /// Reads every partition of `topic` from the beginning until `done(messages, next)` holds (`next[p]`: one past
    /// the highest offset read from partition p) or `timeout` passed.
    private static func consume(bootstrap: String, topic: String, partitions: Int, timeout: Duration,
                                done: @escaping @Sendable ([ConsumedMessage], [Int64]) -> Bool) async throws
        -> [ConsumedMessage] {
        try await BlockingQueue.run(on: BlockingQueue.tools) { () -> Result<[ConsumedMessage], KafkaConnectorError> in
            do {
                let consumer = try RDKafkaConsumer(properties: [
                    "bootstrap.servers": bootstrap, "group.id": "dreamsr-tools-reader",
                    "enable.auto.commit": "false", "enable.partition.eof": "false",
                ], logger: Logger(label: "dreamsr.kafka.tools"), rebalance: { _ in })
                let tps = (0..<partitions).map { TopicPartition(topic, Int32($0)) }
                let offsets = [Int64](repeating: Int64(RD_KAFKA_OFFSET_BEGINNING), count: partitions)
                let err = RDKafkaPartitionList.with(tps, offsets: offsets) { rd_kafka_assign(consumer.handle, $0) }
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    throw KafkaConnectorError.rdkafka(err, .consumer, "assign \(topic)")
                }
                var messages: [ConsumedMessage] = []
                var next = [Int64](repeating: 0, count: partitions)
                let deadline = ContinuousClock.now + timeout
                while !done(messages, next) && ContinuousClock.now < deadline {
                    if case .message(let m) = consumer.poll(timeoutMs: 100) {
                        messages.append(m)
                        if Int(m.partition) < partitions { next[Int(m.partition)] = max(next[Int(m.partition)], m.offset + 1) }
                    }
                }
                consumer.closeAndDestroy()
                return .success(messages)
            } catch let error as KafkaConnectorError {
                return .failure(error)
            } catch {
                return .failure(KafkaConnectorError(.consumer, "\(error)"))
            }
        }.get()
    }

    /// Committed offsets of `group` for partitions 0..<partitions of `topic` (-1001 = none).
    public static func committedOffsets(bootstrap: String, group: String, topic: String,
                                        partitions: Int) async throws -> [Int64] {
        try await BlockingQueue.run(on: BlockingQueue.tools) { () -> Result<[Int64], KafkaConnectorError> in
            do {
                let consumer = try RDKafkaConsumer(properties: ["bootstrap.servers": bootstrap, "group.id": group,
                                                                "enable.auto.commit": "false"],
                                                   logger: Logger(label: "dreamsr.kafka.tools"), rebalance: { _ in })
                defer { consumer.closeAndDestroy() }
                let tps = (0..<partitions).map { TopicPartition(topic, Int32($0)) }
                return try RDKafkaPartitionList.with(tps) { list in
                    let err = rd_kafka_committed(consumer.handle, list, 10_000)
                    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                        throw KafkaConnectorError.rdkafka(err, .consumer, "committed offsets of \(group)")
                    }
                    return .success((0..<partitions).map { list.pointee.elems[$0].offset })
                }
            } catch let error as KafkaConnectorError {
                return .failure(error)
            } catch {
                return .failure(KafkaConnectorError(.consumer, "\(error)"))
            }
        }.get()
    }

    /// High watermarks (next offset to be written) of partitions 0..<partitions.
    public static func highWatermarks(bootstrap: String, topic: String, partitions: Int) async throws -> [Int64] {
        try await watermarks(bootstrap: bootstrap, topic: topic, partitions: partitions).map(\.high)
    }

    /// Low (first offset still held) and high (next offset to be written) watermarks of partitions 0..<partitions.
    public static func watermarks(bootstrap: String, topic: String,
                                  partitions: Int) async throws -> [(low: Int64, high: Int64)] {
        try await BlockingQueue.run(on: BlockingQueue.tools) { () -> Result<[(low: Int64, high: Int64)], KafkaConnectorError> in
            do {
                let consumer = try RDKafkaConsumer(properties: ["bootstrap.servers": bootstrap,
                                                                "group.id": "dreamsr-tools-watermarks"],
                                                   logger: Logger(label: "dreamsr.kafka.tools"), rebalance: { _ in })
                defer { consumer.closeAndDestroy() }
                var marks: [(low: Int64, high: Int64)] = []
                for partition in 0..<partitions {
                    var low: Int64 = 0
                    var high: Int64 = 0
                    let err = rd_kafka_query_watermark_offsets(consumer.handle, topic, Int32(partition), &low, &high,
                                                               10_000)
                    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                        throw KafkaConnectorError.rdkafka(err, .consumer, "watermarks of \(topic)[\(partition)]")
                    }
                    marks.append((low, high))
                }
                return .success(marks)
            } catch let error as KafkaConnectorError {
                return .failure(error)
            } catch {
                return .failure(KafkaConnectorError(.consumer, "\(error)"))
            }
        }.get()
    }
}
