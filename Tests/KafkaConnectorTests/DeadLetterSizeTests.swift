import Captioning
import Foundation
import Jobs
import ServiceLifecycle
import Testing
@testable import KafkaConnector

/// Issue 12 item 1: a dead letter always fits. Poison messages near and above the size limit (1,020,067 bytes,
/// under the 1 MiB consumer limit but over the producer's 1,000,000-byte `message.max.bytes`; 2 MB; 10 MB) each get
/// one dead letter cut to fit, with the original size and SHA-256, and the partition's commits reach its end.
@Suite(.timeLimit(.minutes(2))) struct DeadLetterSizeTests {
    static func header(_ m: ConsumedMessage, _ name: String) -> String? { m.headers.first { $0.name == name }?.stringValue }

    /// A message value of exactly `size` bytes: JSON cut short (poison at parse).
    static func poison(_ id: String, size: Int) -> [UInt8] {
        let head = Array(#"{"id":"\#(id)","source":"/in/x.png","prompt":""#.utf8)
        return head + [UInt8](repeating: UInt8(ascii: "p"), count: size - head.count)
    }

    @Test func oversizedPoisonIsDeadLetteredTruncatedAndThePartitionAdvances() async throws {
        let f = try Fixture("dlq-size", partitions: 4)
        let sizes = [("near", 1_020_067), ("two-mb", 2_000_000), ("ten-mb", 10_000_000)]
        // Each big message in a partition of its own, "after" in the last: librdkafka's mock broker keeps about
        // 1 MB per partition and loses a message set appended after an oversized one (a mock limitation; a real
        // broker keeps its log), so a second message behind a big one would vanish before it is fetched.
        for (partition, (id, size)) in sizes.enumerated() {
            // The input topic takes big messages (as a deployment raising its max.message.bytes would).
            try await KafkaTools.produce(bootstrap: f.bootstrap, topic: f.topic, messages: [
                (key: Array(id.utf8), value: Self.poison(id, size: size), headers: [KafkaHeader("trace", id)]),
            ], partition: Int32(partition), maxMessageBytes: 16 << 20)
        }
        let okPath = try f.writeInput("after.raw", "AFTER")
        try await KafkaTools.produce(bootstrap: f.bootstrap, topic: f.topic, messages: [
            (key: Array("after".utf8), value: Array(#"{"id":"after","source":"\#(okPath)"}"#.utf8), headers: []),
        ], partition: 3)
        let events = EventLog()
        let reached = try await f.run(f.configuration(maxInFlight: 2), processor: FakeProcessor(), events: events) {
            okResults($0) == 1 && deadLetters($0) == 3
                && EventLog.count($0) { if case .offsetStored(_, 1) = $0 { return true } else { return false } } == 4
        }
        #expect(reached, "ok=\(okResults(events.events)) dlq=\(deadLetters(events.events))")
        // Every partition's commits reach its end: no offset is left behind by a dead letter that did not fit.
        let (committed, high) = try await f.committedEqualsWatermarks()
        #expect(committed == high && high == [1, 1, 1, 1])

        let dlq = try await KafkaTools.read(bootstrap: f.bootstrap, topic: "\(f.topic).dlq", partitions: 1, count: 3)
        #expect(dlq.count == 3)
        for (id, size) in sizes {
            let letter = try #require(dlq.first { $0.key == Array(id.utf8) }, "no dead letter for \(id)")
            let value = letter.value ?? []
            let original = Self.poison(id, size: size)
            #expect(value.count < 1_000_000 && value.count > 990_000, "\(id): \(value.count) bytes carried")
            #expect(Array(original.prefix(value.count)) == value, "\(id): the carried bytes are the original's prefix")
            #expect(Self.header(letter, DeadLetterHeader.originalSize) == String(size))
            #expect(Self.header(letter, DeadLetterHeader.originalSHA256) == SHA256Digest.hash(original).hex)
            #expect(Self.header(letter, DeadLetterHeader.truncated) == "value")
            #expect(Self.header(letter, "trace") == id, "original headers are kept")
            #expect(Self.header(letter, DeadLetterHeader.stage) == "parse")
        }
        let near = dlq.first { $0.key == Array("near".utf8) }
        #expect(near.flatMap { Self.header($0, DeadLetterHeader.error) }?.contains("not valid JSON") == true)
        let ten = dlq.first { $0.key == Array("ten-mb".utf8) }
        #expect(ten.flatMap { Self.header($0, DeadLetterHeader.error) } == "message value is 10000000 bytes, limit 1048576")
    }

    /// Fetch limits below the message size (a consumer fetch.max.bytes of 600 KB, a producer message.max.bytes of
    /// 600 KB) still let a 2 MB message through: it is fetched whole, dead-lettered cut to 600 KB, and committed.
    /// (librdkafka fails a fetch response over receive.message.max.bytes and retries it forever; the connector sets
    /// that to librdkafka's maximum.)
    @Test func messageOverTheFetchLimitsIsFetchedAndDeadLettered() async throws {
        let f = try Fixture("fetch-limit", partitions: 1)
        let ok = try f.writeInput("before.raw", "BEFORE")
        try await KafkaTools.produce(bootstrap: f.bootstrap, topic: f.topic, messages: [
            (key: Array("before".utf8), value: Array(#"{"id":"before","source":"\#(ok)"}"#.utf8), headers: []),
            (key: Array("big".utf8), value: Self.poison("big", size: 2_000_000), headers: []),
        ], maxMessageBytes: 16 << 20)
        var configuration = f.configuration(maxInFlight: 1)
        configuration.clientProperties = ["fetch.max.bytes": "600000", "message.max.bytes": "600000"]
        #expect(configuration.consumerProperties["receive.message.max.bytes"] == "2147483647")
        let events = EventLog()
        let reached = try await f.run(configuration, processor: FakeProcessor(), events: events, timeout: .seconds(30)) {
            okResults($0) == 1 && deadLetters($0) == 1
                && $0.contains { if case .offsetStored(_, 2) = $0 { return true } else { return false } }
        }
        #expect(reached, "ok=\(okResults(events.events)) dlq=\(deadLetters(events.events))")
        let dlq = try await KafkaTools.read(bootstrap: f.bootstrap, topic: "\(f.topic).dlq", partitions: 1, count: 1)
        #expect(dlq.first.map { ($0.value?.count ?? 0) < 600_000 && $0.value?.count ?? 0 > 590_000 } == true)
        #expect(dlq.first.flatMap { Self.header($0, DeadLetterHeader.originalSize) } == "2000000")
        let (committed, high) = try await f.committedEqualsWatermarks()
        #expect(committed == high && high == [2])
    }

    /// The broker refuses the dead letter as too large (a topic whose max.message.bytes is below the producer's
    /// limit): the source retries with half the value each time, and later letters start from the learned size.
    @Test func brokerRefusalShrinksTheDeadLetterUntilItFits() async throws {
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = "refuse-\(UUID().uuidString.prefix(8))"
        try cluster.createTopic(topic, partitions: 1)
        try cluster.createTopic("\(topic).results", partitions: 1)
        try cluster.createTopic("\(topic).dlq", partitions: 1)
        let value = Self.poison("refused", size: 400_000)
        try await KafkaTools.produce(bootstrap: cluster.bootstrapServers, topic: topic, messages: [
            (key: Array("refused".utf8), value: value, headers: []),
            (key: Array("second".utf8), value: Self.poison("second", size: 400_000), headers: []),
        ])
        cluster.refuseNextProduceRequestsAsTooLarge(2)

        var configuration = KafkaConnectorConfiguration(bootstrapServers: cluster.bootstrapServers, inputTopic: topic,
                                                        groupID: "g-\(topic)", outputDirectory: "/tmp", maxInFlight: 1)
        configuration.retry = .init(maxAttempts: 2, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(100))
        configuration.commitIntervalMs = 200
        let events = EventLog()
        let source = KafkaJobSource(configuration: configuration, processor: FakeProcessor(),
                                    logger: testLogger("refuse"), onEvent: events.handler)
        let group = RunningSource(source)
        let reached = await events.wait(timeout: .seconds(60)) { deadLetters($0) == 2 }
        try await group.stop()
        #expect(reached)
        let dlq = try await KafkaTools.read(bootstrap: cluster.bootstrapServers, topic: "\(topic).dlq", partitions: 1,
                                            count: 2)
        let first = try #require(dlq.first { $0.key == Array("refused".utf8) })
        // Two refusals: 400,000 -> 200,000 -> 100,000 bytes.
        #expect(first.value?.count == 100_000)
        #expect(first.value.map { Array(value.prefix($0.count)) == $0 } == true)
        #expect(Self.header(first, DeadLetterHeader.originalSize) == "400000")
        #expect(Self.header(first, DeadLetterHeader.originalSHA256) == SHA256Digest.hash(value).hex)
        // The second letter starts below the size the broker refused (learned), so it is cut at once.
        let second = try #require(dlq.first { $0.key == Array("second".utf8) })
        #expect((second.value?.count ?? .max) < 200_000)
        let committed = try await KafkaTools.committedOffsets(bootstrap: cluster.bootstrapServers, group: "g-\(topic)",
                                                              topic: topic, partitions: 1)
        #expect(committed == [2])
        withExtendedLifetime(cluster) {}
    }

    @Test func fittingDropsValueThenKeyAndHeadersAndNeverExceedsTheLimit() {
        let original = ConsumedMessage(topic: "t", partition: 0, offset: 7, key: Array("k".utf8),
                                       value: [UInt8](repeating: 1, count: 5_000),
                                       headers: [KafkaHeader("big", String(repeating: "h", count: 3_000))])
        let mine = [KafkaHeader(DeadLetterHeader.error, "bad")]
        let whole = DeadLetter(original: original, dreamsrHeaders: mine, limit: 1_000_000)
        #expect(!whole.isTruncated && whole.value.count == 5_000 && whole.headers.count == 2)
        let cut = DeadLetter(original: original, dreamsrHeaders: mine, limit: 6_000)
        #expect(cut.isTruncated && cut.size <= 6_000 && cut.value.count > 1_000)
        #expect(cut.headers.contains { $0.name == DeadLetterHeader.originalSize && $0.stringValue == "5000" })
        var letter: DeadLetter? = cut
        var forms: [DeadLetter] = []
        while let l = letter { forms.append(l); letter = l.smaller() }
        #expect(forms.last?.value.isEmpty == true && forms.last?.key == nil)
        #expect(forms.last?.headers.contains { $0.name == "big" } == false)
        #expect(forms.last?.headers.contains { $0.name == DeadLetterHeader.truncated && $0.stringValue == "value,key,headers" } == true)
        #expect(zip(forms, forms.dropFirst()).allSatisfy { $1.size < $0.size })
    }
}

/// A source running in its own ServiceGroup; `stop()` shuts it down gracefully and waits for the end.
struct RunningSource {
    let group: ServiceGroup
    let task: Task<Void, any Error>

    init(_ source: KafkaJobSource) {
        let group = ServiceGroup(services: [source], logger: testLogger("kafka-test-group"))
        self.group = group
        task = Task { try await group.run() }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}
