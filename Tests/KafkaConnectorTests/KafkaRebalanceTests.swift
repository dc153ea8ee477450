import Foundation
import Jobs
import Logging
import ServiceLifecycle
import Testing
@testable import KafkaConnector

@Suite(.timeLimit(.minutes(10))) struct KafkaRebalanceTests {
    /// A second member joins mid-run: the first one gives partitions up (revoke), stores nothing for partitions it
    /// no longer owns, and together they process every message with committed offsets at the partition ends.
    @Test(.timeLimit(.minutes(2)))
    func secondMemberJoiningMidRunKeepsAtLeastOnceAndOwnership() async throws {
        let f = try Fixture("rebal", partitions: 4)
        let count = 60
        var messages: [(key: String?, value: String, headers: [KafkaHeader])] = []
        var expectedOutputs: [String: String] = [:]
        for i in 0..<count {
            let path = try f.writeInput("b-\(i).raw", "B\(i)")
            messages.append((key: "b-\(i)", value: #"{"id":"b-\#(i)","source":"\#(path)"}"#, headers: []))
            expectedOutputs["b-\(i).png"] = "UPSCALED:B\(i)"
        }
        try await f.produce(messages)
        let configuration = f.configuration(maxInFlight: 3)
        let high = try await KafkaTools.highWatermarks(bootstrap: f.bootstrap, topic: f.topic, partitions: 4)
        #expect(high.reduce(0, +) == Int64(count))
        let processorA = FakeProcessor(delay: .milliseconds(60))
        let processorB = FakeProcessor(delay: .milliseconds(60))
        let eventsA = EventLog()
        let eventsB = EventLog()
        let combined = EventLog()
        let handlerA = eventsA.handler, handlerB = eventsB.handler, handlerAll = combined.handler
        let sourceA = KafkaJobSource(configuration: configuration, processor: processorA, logger: testLogger("a"),
                                     onEvent: { handlerA($0); handlerAll($0) })
        let sourceB = KafkaJobSource(configuration: configuration, processor: processorB, logger: testLogger("b"),
                                     onEvent: { handlerB($0); handlerAll($0) })
        let groupA = ServiceGroup(services: [sourceA], logger: testLogger("ga"))
        let groupB = ServiceGroup(services: [sourceB], logger: testLogger("gb"))
        let runA = Task { try await groupA.run() }
        // Start B once A is busy.
        #expect(await eventsA.wait(timeout: .seconds(30)) { okResults($0) >= 5 })
        let runB = Task { try await groupB.run() }

        // Done when the group's committed offsets reach the partition ends. (A stored offset of a revoked partition
        // may fail to commit during the rebalance: the new owner then processes those messages again.)
        let deadline = ContinuousClock.now + .seconds(90)
        var committedNow: [Int64] = []
        while ContinuousClock.now < deadline {
            committedNow = try await KafkaTools.committedOffsets(bootstrap: f.bootstrap, group: "g-\(f.topic)",
                                                                 topic: f.topic, partitions: 4)
            if committedNow == high { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(committedNow == high)
        let processed = Set(processorA.stats.withLock { Array($0.calls.keys) }
                            + processorB.stats.withLock { Array($0.calls.keys) })
        #expect(processed == Set((0..<count).map { "b-\($0)" }))
        await groupB.triggerGracefulShutdown()
        try await runB.value
        await groupA.triggerGracefulShutdown()
        try await runA.value

        // A was rebalanced, B got partitions.
        #expect(eventsA.events.contains { if case .revoked = $0 { return true } else { return false } })
        #expect(eventsB.events.contains { if case .assigned(let p) = $0 { return !p.isEmpty } else { return false } })
        // Ownership: no member stored an offset for a partition it did not own at that moment.
        for log in [eventsA.events, eventsB.events] {
            var owned = Set<TopicPartition>()
            for event in log {
                switch event {
                case .assigned(let p): owned.formUnion(p)
                case .revoked(let p): owned.subtract(p)
                case .offsetStored(let tp, _): #expect(owned.contains(tp), "stored \(tp) while not owned")
                default: break
                }
            }
        }
        #expect(try f.outputs() == expectedOutputs)
        let (committed, highAfter) = try await f.committedEqualsWatermarks()
        #expect(committed == highAfter)
    }
}

/// A graceful rebalance (a member joins, then leaves by shutting down) runs no message twice with
/// `cooperative-sticky`: the member giving partitions up waits for their running jobs and commits them before the
/// hand-over. (With the eager default the same wait happens, but librdkafka's mock broker refuses every commit while
/// the group rebalances, "Group rebalance in progress", so on the mock eager rebalances redeliver; see
/// docs/scaling.md.)
@Suite(.timeLimit(.minutes(10))) struct GracefulRebalanceTests {
    @Test(.timeLimit(.minutes(2)))
    func cooperativeJoinAndLeaveRedeliverNothing() async throws {
        let strategy = "cooperative-sticky"
        let f = try Fixture("graceful", partitions: 4)
        let count = 60
        var messages: [(key: String?, value: String, headers: [KafkaHeader])] = []
        for i in 0..<count {
            let path = try f.writeInput("g-\(i).raw", "G\(i)")
            messages.append((key: "g-\(i)", value: #"{"id":"g-\#(i)","source":"\#(path)"}"#, headers: []))
        }
        try await f.produce(messages)
        var configuration = f.configuration(maxInFlight: 2)
        configuration.assignmentStrategy = strategy
        // The mock broker's rebalance rounds last about a session timeout: keep it short.
        configuration.sessionTimeoutMs = 3_000
        configuration.clientProperties["heartbeat.interval.ms"] = "200"
        let high = try await KafkaTools.highWatermarks(bootstrap: f.bootstrap, topic: f.topic, partitions: 4)
        // Jobs of 400 ms (12 s of work for one member; the mock broker takes ~3 s per rebalance round, and a
        // cooperative hand-over has two): a rebalance always finds some running.
        let processors = [FakeProcessor(delay: .milliseconds(400)), FakeProcessor(delay: .milliseconds(400))]
        let events = [EventLog(), EventLog()]
        let sources = (0..<2).map { n in
            KafkaJobSource(configuration: configuration, processor: processors[n], logger: testLogger("m\(n)"),
                           onEvent: events[n].handler)
        }
        let groups = (0..<2).map { ServiceGroup(services: [sources[$0]], logger: testLogger("g\($0)")) }
        let runA = Task { try await groups[0].run() }
        #expect(await events[0].wait(timeout: .seconds(30)) { okResults($0) >= 4 })
        // B joins while A is busy (A gives partitions up), then B leaves again (A takes them back).
        let runB = Task { try await groups[1].run() }
        #expect(await events[1].wait(timeout: .seconds(30)) { okResults($0) >= 4 }, "B never got to work")
        #expect(events[0].events.contains { if case .revoked(let p) = $0 { return !p.isEmpty } else { return false } })
        await groups[1].triggerGracefulShutdown()
        try await runB.value

        let deadline = ContinuousClock.now + .seconds(60)
        var committed: [Int64] = []
        while ContinuousClock.now < deadline {
            committed = try await KafkaTools.committedOffsets(bootstrap: f.bootstrap, group: "g-\(f.topic)",
                                                              topic: f.topic, partitions: 4)
            if committed == high { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(committed == high)
        await groups[0].triggerGracefulShutdown()
        try await runA.value

        var calls: [String: Int] = [:]
        for processor in processors {
            for (id, n) in processor.stats.withLock({ $0.calls }) { calls[id, default: 0] += n }
        }
        #expect(Set(calls.keys) == Set((0..<count).map { "g-\($0)" }))
        let twice = calls.filter { $0.value > 1 }.keys.sorted()
        #expect(twice.isEmpty, "\(strategy): redelivered after a graceful rebalance: \(twice)")
    }
}

@Suite(.timeLimit(.minutes(10))) struct MockBrokerProcessTests {
    static func binary() -> String? {
        let candidates = [
            Bundle.main.executableURL?.deletingLastPathComponent().appendingPathComponent("dreamsr-mock-kafka").path,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
                .appendingPathComponent("dreamsr-mock-kafka").path,
            FileManager.default.currentDirectoryPath + "/.build/debug/dreamsr-mock-kafka",
        ].compactMap { $0 } as [String]
        return candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) })
    }

    /// The helper process prints its bootstrap address on line 1, serves produce/fetch, and exits on SIGTERM.
    @Test(.timeLimit(.minutes(1)))
    func mockBrokerProcessServesKafkaAndStopsOnSIGTERM() async throws {
        let path = try #require(Self.binary(), "dreamsr-mock-kafka not built (swift build --product dreamsr-mock-kafka)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--brokers", "2", "--topic", "proc:2"]
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let bootstrap = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(bootstrap.split(separator: ",").count == 2)
        try await KafkaTools.produce(bootstrap: bootstrap, topic: "proc", messages: (0..<5).map {
            (key: nil, value: Array("v\($0)".utf8), headers: [])
        })
        let read = try await KafkaTools.read(bootstrap: bootstrap, topic: "proc", partitions: 2, count: 5)
        #expect(Set(read.map { String(decoding: $0.value ?? [], as: UTF8.self) }) == Set((0..<5).map { "v\($0)" }))
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
    }
}

@Suite(.timeLimit(.minutes(10))) struct ProducerTests {
    @Test(.timeLimit(.minutes(1)))
    func deliveryReportsAndFatalErrors() async throws {
        let topic = "prod-\(UUID().uuidString.prefix(8))"
        try sharedCluster.createTopic(topic, partitions: 1)
        let producer = try RDKafkaProducer(properties: KafkaConnectorConfiguration(
            bootstrapServers: sharedCluster.bootstrapServers, inputTopic: "unused").producerProperties,
                                           logger: testLogger("producer"))
        // An acknowledged send returns; the message is on the broker with its headers.
        try await producer.send(topic: topic, key: Array("k".utf8), value: Array("v".utf8),
                                headers: [KafkaHeader("h", "x"), KafkaHeader("empty", nil)])
        let read = try await KafkaTools.read(bootstrap: sharedCluster.bootstrapServers, topic: topic, partitions: 1,
                                             count: 1)
        #expect(read.first?.value == Array("v".utf8))
        #expect(read.first?.headers == [KafkaHeader("h", "x"), KafkaHeader("empty", nil)])

        // A fatal error reaches the handler once, and later sends fail without retry.
        let reason: String = await withCheckedContinuation { continuation in
            producer.onFatalError { continuation.resume(returning: $0) }
            producer.injectFatalErrorForTesting("test fatal")
        }
        #expect(reason.contains("test fatal"))
        do {
            try await producer.send(topic: topic, key: nil, value: [1], headers: [])
            Issue.record("send after a fatal error must fail")
        } catch let error as KafkaConnectorError {
            #expect(!error.isRetriable)
        }
        await producer.close(flushTimeoutMs: 1_000)
        do {
            try await producer.send(topic: topic, key: nil, value: [1], headers: [])
            Issue.record("send after close must fail")
        } catch let error as KafkaConnectorError {
            #expect(error.code == .closed)
        }
    }

    /// The test tool (and every test that relies on "message i is at offset i") must keep the given order; it once
    /// sent concurrently and the broker saw them in any order.
    @Test(.timeLimit(.minutes(1)))
    func orderedBatchLandsInOrderAndFailsAfterClose() async throws {
        let topic = "order-\(UUID().uuidString.prefix(8))"
        try sharedCluster.createTopic(topic, partitions: 1)
        let values = (0..<200).map { Array("m-\($0)".utf8) }
        try await KafkaTools.produce(bootstrap: sharedCluster.bootstrapServers, topic: topic,
                                     messages: values.map { (key: nil, value: $0, headers: []) })
        let read = try await KafkaTools.read(bootstrap: sharedCluster.bootstrapServers, topic: topic, partitions: 1,
                                             count: values.count)
        #expect(read.map(\.offset) == (0..<Int64(values.count)).map { $0 })
        #expect(read.map(\.value) == values.map { Optional($0) })

        let producer = try RDKafkaProducer(properties: ["bootstrap.servers": sharedCluster.bootstrapServers],
                                           logger: testLogger("producer"))
        await producer.close(flushTimeoutMs: 1_000)
        do {
            try await producer.sendInOrder(topic: topic, [.init(key: nil, value: [1], headers: []),
                                                          .init(key: nil, value: [2], headers: [])])
            Issue.record("a batch after close must fail")
        } catch let error as KafkaConnectorError {
            #expect(error.code == .closed)
        }
    }
}
