import DreamsrTestKit
import Foundation
import Jobs
import Logging
import ServiceLifecycle
import Testing
@testable import KafkaConnector

/// One in-process mock broker shared by every test of the target (group joins dominate the time, so tests use
/// their own topics and groups and run in parallel).
let sharedCluster: MockKafkaCluster = {
    do { return try MockKafkaCluster(brokers: 1) } catch { fatalError("mock cluster: \(error)") }
}()

func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["DREAMSR_TEST_LOG"] == "1" ? .debug : .warning
    return logger
}

/// A fresh topic set (input, results, dlq) and folders for one test.
struct Fixture {
    let topic: String
    let partitions: Int
    let input: URL
    let output: URL
    let bootstrap = sharedCluster.bootstrapServers

    init(_ name: String, partitions: Int) throws {
        topic = "\(name)-\(UUID().uuidString.prefix(8))"
        self.partitions = partitions
        try sharedCluster.createTopic(topic, partitions: partitions)
        try sharedCluster.createTopic("\(topic).results", partitions: 1)
        try sharedCluster.createTopic("\(topic).dlq", partitions: 1)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-kafka-\(topic)")
        ScratchFiles.removeAtExit(root.path)
        input = root.appendingPathComponent("in")
        output = root.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
    }

    func configuration(maxInFlight: Int) -> KafkaConnectorConfiguration {
        var c = KafkaConnectorConfiguration(bootstrapServers: bootstrap, inputTopic: topic, groupID: "g-\(topic)",
                                            outputDirectory: output.path, maxInFlight: maxInFlight)
        c.retry = .init(maxAttempts: 4, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))
        c.commitIntervalMs = 200
        c.drainTimeout = .seconds(10)
        // The mock broker's rebalance rounds last the session timeout minus 1 s, and a member starting in a group
        // another one just left waits for the rest of that round: a short session timeout (heartbeats well inside
        // it) keeps every (re)start and hand-over to a few seconds instead of ~9 s with the 10 s default.
        c.sessionTimeoutMs = 3_000
        c.clientProperties["heartbeat.interval.ms"] = "300"
        return c
    }

    func writeInput(_ name: String, _ text: String) throws -> String {
        let url = input.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func outputs() throws -> [String: String] {
        var result: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: output.path) {
            result[name] = String(decoding: try Data(contentsOf: output.appendingPathComponent(name)), as: UTF8.self)
        }
        return result
    }

    func produce(_ messages: [(key: String?, value: String, headers: [KafkaHeader])]) async throws {
        try await KafkaTools.produce(bootstrap: bootstrap, topic: topic, messages: messages.map {
            (key: $0.key.map { Array($0.utf8) }, value: Array($0.value.utf8), headers: $0.headers)
        })
    }

    /// Runs the source in a ServiceGroup until `until` holds over its events, then shuts it down gracefully.
    func run(_ configuration: KafkaConnectorConfiguration, processor: any JobProcessor, events: EventLog,
             timeout: Duration = .seconds(60),
             until condition: @escaping ([KafkaSourceEvent]) -> Bool) async throws -> Bool {
        let source = KafkaJobSource(configuration: configuration, processor: processor,
                                    logger: testLogger("kafka-test"), onEvent: events.handler)
        let group = ServiceGroup(services: [source], logger: testLogger("kafka-test-group"))
        let running = Task { try await group.run() }
        let reached = await events.wait(timeout: timeout, condition)
        await group.triggerGracefulShutdown()
        try await running.value
        return reached
    }

    func committedEqualsWatermarks() async throws -> (committed: [Int64], high: [Int64]) {
        let committed = try await KafkaTools.committedOffsets(bootstrap: bootstrap, group: "g-\(topic)", topic: topic,
                                                              partitions: partitions)
        let high = try await KafkaTools.highWatermarks(bootstrap: bootstrap, topic: topic, partitions: partitions)
        return (committed, high)
    }
}

func okResults(_ events: [KafkaSourceEvent]) -> Int {
    EventLog.count(events) { if case .resultPublished(_, _, "ok") = $0 { return true } else { return false } }
}

func deadLetters(_ events: [KafkaSourceEvent]) -> Int {
    EventLog.count(events) { if case .deadLettered = $0 { return true } else { return false } }
}

@Suite(.timeLimit(.minutes(10))) struct KafkaEndToEndTests {
    @Test(.timeLimit(.minutes(2)))
    func validMessagesProduceOutputsAndPoisonGoesToTheDeadLetterTopic() async throws {
        let f = try Fixture("e2e", partitions: 3)
        var messages: [(key: String?, value: String, headers: [KafkaHeader])] = []
        var expectedOutputs: [String: String] = [:]
        for i in 0..<20 {
            let path = try f.writeInput("img-\(i).raw", "IMAGE-\(i)")
            messages.append((key: "img-\(i)", value: #"{"id":"img-\#(i)","source":"\#(path)","scale":4}"#, headers: []))
            expectedOutputs["img-\(i).png"] = "UPSCALED:IMAGE-\(i)"
        }
        let flaky = try f.writeInput("flaky.raw", "FLAKY-1")
        messages.append((key: "flaky-1", value: #"{"id":"flaky-1","source":"file://\#(flaky)","format":"webp"}"#,
                         headers: []))
        expectedOutputs["flaky-1.webp"] = "UPSCALED:FLAKY-1"
        let corrupt = try f.writeInput("corrupt.raw", "CORRUPT-JPEG")
        let okPath = try f.writeInput("ok.raw", "OK")
        let poison: [(id: String, value: String, stage: String)] = [
            ("bad-json", #"{"id":"bad-json","source":"#, "parse"),
            ("missing", #"{"id":"missing","source":"/nonexistent/dreamsr/x.png"}"#, "source"),
            ("corrupt", #"{"id":"corrupt","source":"\#(corrupt)"}"#, "decode"),
            ("wrong-type", #"{"id":"wrong-type","source":"\#(okPath)","scale":"four"}"#, "parse"),
            ("ssrf", #"{"id":"ssrf","source":"http://127.0.0.1:1/x.png"}"#, "download"),
            ("no-source", #"{"id":"no-source","src":"\#(okPath)"}"#, "parse"),
        ]
        for p in poison {
            messages.append((key: p.id, value: p.value, headers: [KafkaHeader("trace", "t-\(p.id)")]))
        }
        try await f.produce(messages)

        let processor = FakeProcessor()
        let events = EventLog()
        let reached = try await f.run(f.configuration(maxInFlight: 4), processor: processor, events: events) {
            okResults($0) == 21 && deadLetters($0) == 6
        }
        #expect(reached, "ok=\(okResults(events.events)) dlq=\(deadLetters(events.events))")
        #expect(events.events.last == .stopped)

        // Outputs: exactly the valid ones, with the right content, no temp files left.
        #expect(try f.outputs() == expectedOutputs)
        // Each valid job ran once; the flaky one three times (two retriable failures).
        let calls = processor.stats.withLock { $0.calls }
        #expect(calls["flaky-1"] == 3)
        #expect((0..<20).allSatisfy { calls["img-\($0)"] == 1 })

        // Results: 21 ok + 6 error results.
        let results = try await KafkaTools.read(bootstrap: f.bootstrap, topic: "\(f.topic).results", partitions: 1,
                                                count: 27).map { try JSONDecoder().decode(ResultMessage.self, from: Data($0.value ?? [])) }
        #expect(results.count == 27)
        let ok = results.filter { $0.status == "ok" }
        #expect(Set(ok.map(\.id)) == Set((0..<20).map { "img-\($0)" } + ["flaky-1"]))
        #expect(ok.first { $0.id == "flaky-1" }?.attempts == 3)
        #expect(ok.allSatisfy { $0.output?.hasPrefix(f.output.path) == true && $0.input.topic == f.topic })
        let errors = results.filter { $0.status == "error" }
        // Unparseable JSON has no readable id: its result uses <topic>-<partition>-<offset>.
        let errorStages = Dictionary(uniqueKeysWithValues: errors.map {
            ($0.id.hasPrefix(f.topic) ? "bad-json" : $0.id, $0.errorStage ?? "")
        })
        #expect(errorStages == Dictionary(uniqueKeysWithValues: poison.map { ($0.id, $0.stage) }))
        let badJSON = errors.first { $0.id.hasPrefix(f.topic) }
        #expect(badJSON?.id == "\(f.topic)-\(badJSON?.input.partition ?? -1)-\(badJSON?.input.offset ?? -1)")

        // Dead letters: original bytes, original headers kept, error headers pointing at the input message.
        let inputs = try await KafkaTools.read(bootstrap: f.bootstrap, topic: f.topic, partitions: 3,
                                               count: messages.count)
        let dlq = try await KafkaTools.read(bootstrap: f.bootstrap, topic: "\(f.topic).dlq", partitions: 1, count: 6)
        #expect(dlq.count == 6)
        for letter in dlq {
            func header(_ name: String) -> String? { letter.headers.first { $0.name == name }?.stringValue }
            let key = String(decoding: letter.key ?? [], as: UTF8.self)
            let expected = poison.first { $0.id == key }
            #expect(expected != nil, "unexpected dead letter \(key)")
            #expect(header(DeadLetterHeader.stage) == expected?.stage)
            #expect(header(DeadLetterHeader.topic) == f.topic)
            #expect(header("trace") == "t-\(key)")
            #expect(header(DeadLetterHeader.error)?.isEmpty == false)
            let partition = Int32(header(DeadLetterHeader.partition) ?? "") ?? -1
            let offset = Int64(header(DeadLetterHeader.offset) ?? "") ?? -1
            let original = inputs.first { $0.partition == partition && $0.offset == offset }
            #expect(original?.value == letter.value, "dead letter \(key) must carry the original bytes")
            #expect(letter.value == Array(expected?.value.utf8 ?? "".utf8))
        }

        // Committed offsets are at the end of every partition.
        let (committed, high) = try await f.committedEqualsWatermarks()
        #expect(committed == high)
        #expect(high.reduce(0, +) == Int64(messages.count))
    }

    @Test(.timeLimit(.minutes(2)))
    func backpressureKeepsAtMostCapacityInFlightAndTheConsumerInTheGroup() async throws {
        let f = try Fixture("bp", partitions: 2)
        let count = 100
        var messages: [(key: String?, value: String, headers: [KafkaHeader])] = []
        for i in 0..<count {
            let path = try f.writeInput("m-\(i).raw", "M\(i)")
            messages.append((key: "m-\(i)", value: #"{"id":"m-\#(i)","source":"\#(path)"}"#, headers: []))
        }
        try await f.produce(messages)
        var configuration = f.configuration(maxInFlight: 2)
        // The whole run (100 x 130 ms / 2 = 6.5 s) is longer than max.poll.interval.ms: eviction would show up as a
        // revoke or a second assignment.
        configuration.sessionTimeoutMs = 6_000
        configuration.maxPollIntervalMs = 6_000
        let processor = FakeProcessor(delay: .milliseconds(130))
        let events = EventLog()
        let reached = try await f.run(configuration, processor: processor, events: events, timeout: .seconds(90)) {
            okResults($0) == count
        }
        #expect(reached)
        let log = events.events
        let stats = processor.stats.withLock { $0 }
        #expect(stats.maxInFlight == 2)
        #expect(log.allSatisfy { if case .jobStarted(_, _, let n) = $0 { return n <= 2 } else { return true } })
        #expect(stats.calls.count == count && stats.calls.values.allSatisfy { $0 == 1 })
        let assigned = EventLog.count(log) { if case .assigned = $0 { return true } else { return false } }
        let revokedBeforeStop = log.prefix { if case .revoked = $0 { return false } else { return true } }.count
        #expect(assigned == 1)
        // The only revoke is the one at shutdown (after every job finished).
        #expect(revokedBeforeStop >= log.lastIndex { if case .resultPublished = $0 { return true } else { return false } }! )
        #expect(EventLog.count(log) { if case .paused = $0 { return true } else { return false } } > 0)
        #expect(EventLog.count(log) { if case .resumed = $0 { return true } else { return false } } > 0)
        let (committed, high) = try await f.committedEqualsWatermarks()
        #expect(committed == high)
    }

    @Test(.timeLimit(.minutes(2)))
    func abandonedJobIsNotCommittedAndIsRedeliveredAfterRestart() async throws {
        let f = try Fixture("restart", partitions: 1)
        var messages: [(key: String?, value: String, headers: [KafkaHeader])] = []
        var expectedOutputs: [String: String] = [:]
        for i in 0..<10 {
            let path = try f.writeInput("r-\(i).raw", "R\(i)")
            messages.append((key: "r-\(i)", value: #"{"id":"r-\#(i)","source":"\#(path)"}"#, headers: []))
            expectedOutputs["r-\(i).png"] = "UPSCALED:R\(i)"
        }
        try await f.produce(messages)
        var configuration = f.configuration(maxInFlight: 2)
        configuration.drainTimeout = .milliseconds(500)

        // Run 1: r-3 (offset 3) never finishes; shutdown abandons it. The pipeline abandons r-6: left for
        // redelivery, neither retried nor dead-lettered.
        let first = EventLog()
        let processor1 = FakeProcessor(hangIDs: ["r-3"], abandonIDs: ["r-6"])
        let reached = try await f.run(configuration, processor: processor1, events: first) {
            okResults($0) == 8
        }
        #expect(reached)
        #expect(deadLetters(first.events) == 0)
        #expect(processor1.stats.withLock { $0.calls["r-6"] } == 1)
        // Nothing at or past the unfinished offset 3 is ever stored or committed, and everything before it is.
        #expect(!first.events.contains { if case .offsetStored(_, let o) = $0 { return o > 3 } else { return false } })
        #expect(first.events.contains { if case .offsetStored(_, 3) = $0 { return true } else { return false } })
        let (committed1, _) = try await f.committedEqualsWatermarks()
        #expect(committed1 == [3], "r-0..r-2 finished and r-3 did not: the commit must be 3, got \(committed1)")
        #expect(try f.outputs()["r-3.png"] == nil)

        // Run 2 (restart, same group): redelivery from offset 3; duplicates overwrite the same files.
        let second = EventLog()
        let processor = FakeProcessor()
        let reached2 = try await f.run(configuration, processor: processor, events: second) { events in
            events.contains { if case .offsetStored(_, 10) = $0 { return true } else { return false } }
        }
        #expect(reached2)
        #expect(processor.stats.withLock { $0.calls["r-3"] } == 1)
        #expect(processor.stats.withLock { $0.calls["r-0"] } == nil)
        #expect(try f.outputs() == expectedOutputs)
        let (committed2, high) = try await f.committedEqualsWatermarks()
        #expect(committed2 == high)
    }
}
