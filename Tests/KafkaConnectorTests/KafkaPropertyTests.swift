import Foundation
import Jobs
import ServiceLifecycle
import Testing
@testable import KafkaConnector
import DreamsrTestKit

/// Issue 12 acceptance (Kafka): a seeded random mix of valid, poison (bad JSON, bad fields, missing source,
/// undecodable), oversized, flaky and slow jobs, consumed by a source that is stopped abruptly several times
/// (cancelled with no drain: in-flight jobs are abandoned, nothing more is stored) and restarted in the same
/// group. In the end every message has ended as ok results + its output, or dead letters, never both; every dead
/// letter fits the dead-letter limit; committed offsets reach the partition ends.
///
/// The kill is the in-process source's abrupt stop, not a SIGKILL of a daemon process (a process-level version
/// would need the real model per job and take several minutes).
@Suite(.timeLimit(.minutes(2))) struct KafkaPropertyTests {
    enum Kind: CaseIterable { case valid, slow, flaky, badJSON, badField, missing, undecodable, oversized }

    @Test func randomMixWithKillsEndsWithEveryMessageAccountedFor() async throws {
        let seed = ProcessInfo.processInfo.environment["DREAMSR_PROPERTY_SEED"].flatMap { UInt64($0) } ?? 20_261_203
        var rng = SeededGenerator(seed: seed)
        let f = try Fixture("property", partitions: 3)
        let dlqLimit = 50_000

        var messages: [(key: String?, value: String, headers: [KafkaHeader])] = []
        var expected: [String: Kind] = [:]
        for i in 0..<60 {
            let kind = Kind.allCases.randomElement(using: &rng)!
            let id = "m\(i)"
            expected[id] = kind
            let json: String
            switch kind {
            case .valid: json = #"{"id":"\#(id)","source":"\#(try f.writeInput("\(id).raw", "V\(i)"))"}"#
            case .slow: json = #"{"id":"\#(id)","source":"\#(try f.writeInput("\(id).raw", "SLOW\(i)"))"}"#
            case .flaky: json = #"{"id":"\#(id)","source":"\#(try f.writeInput("\(id).raw", "FLAKY\(i)"))"}"#
            case .undecodable: json = #"{"id":"\#(id)","source":"\#(try f.writeInput("\(id).raw", "CORRUPT\(i)"))"}"#
            case .badJSON: json = #"{"id":"\#(id)","source":"#
            case .badField:
                json = [#"{"id":"\#(id)","source":"/in/a.png","scale":4.5}"#,
                        #"{"id":"\#(id)","source":"/in/a.png\u0000.png"}"#,
                        #"{"id":"\#(id)","source":"/in/a.png","output":".hidden.png"}"#].randomElement(using: &rng)!
            case .missing: json = #"{"id":"\#(id)","source":"\#(f.input.path)/absent-\#(i).png"}"#
            case .oversized:
                // Over the consumer's limit (64 KiB here) and over the dead-letter limit: cut to fit.
                json = #"{"id":"\#(id)","source":"/in/a.png","prompt":""# + String(repeating: "x", count: 70_000) + #""}"#
            }
            messages.append((key: id, value: json, headers: []))
        }
        try await f.produce(messages)
        let high = try await KafkaTools.highWatermarks(bootstrap: f.bootstrap, topic: f.topic, partitions: 3)
        #expect(high.reduce(0, +) == 60)

        var configuration = f.configuration(maxInFlight: 3)
        configuration.maxMessageBytes = 64 << 10
        configuration.clientProperties["message.max.bytes"] = String(dlqLimit)
        configuration.retry = .init(maxAttempts: 3, initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(200))
        let processor = FakeProcessor(flakyFailures: 1, slowDelay: .milliseconds(300))

        // Three abrupt stops at random moments, then a run to the end.
        for round in 0..<3 {
            var kill = configuration
            kill.drainTimeout = .zero
            let events = EventLog()
            let source = KafkaJobSource(configuration: kill, processor: processor, logger: testLogger("property"),
                                        onEvent: events.handler)
            let group = ServiceGroup(services: [source], logger: testLogger("property-group"))
            let task = Task { try await group.run() }
            let finished = Int.random(in: 3...12, using: &rng)
            _ = await events.wait(timeout: .seconds(15)) { events in
                EventLog.count(events) { if case .offsetStored = $0 { return true } else { return false } } >= finished
            }
            task.cancel()
            _ = try? await task.value
            #expect(events.events.last == .stopped, "round \(round) stopped")
        }
        let events = EventLog()
        let source = KafkaJobSource(configuration: configuration, processor: processor, logger: testLogger("property"),
                                    onEvent: events.handler)
        let running = RunningSource(source)
        let deadline = ContinuousClock.now + .seconds(45)
        var committed: [Int64] = []
        while ContinuousClock.now < deadline {
            committed = (try? await KafkaTools.committedOffsets(bootstrap: f.bootstrap, group: "g-\(f.topic)",
                                                                topic: f.topic, partitions: 3)) ?? []
            if committed == high { break }
            try await Task.sleep(for: .milliseconds(300))
        }
        try await running.stop()
        #expect(committed == high, "seed \(seed): committed \(committed), ends \(high)")

        let results = try await KafkaTools.readAll(bootstrap: f.bootstrap, topic: "\(f.topic).results", partitions: 1)
            .map { try JSONDecoder().decode(ResultMessage.self, from: Data($0.value ?? [])) }
        let letters = try await KafkaTools.readAll(bootstrap: f.bootstrap, topic: "\(f.topic).dlq", partitions: 1)
        let okIDs = Set(results.filter { $0.status == "ok" }.map(\.id))
        let deadIDs = Set(letters.map { String(decoding: $0.key ?? [], as: UTF8.self) })
        let outputs = try f.outputs()
        for (id, kind) in expected.sorted(by: { $0.key < $1.key }) {
            switch kind {
            case .valid, .slow, .flaky:
                #expect(okIDs.contains(id), "seed \(seed): \(id) (\(kind)) has no ok result")
                #expect(!deadIDs.contains(id), "seed \(seed): \(id) (\(kind)) was dead-lettered")
                #expect(outputs["\(id).png"]?.hasPrefix("UPSCALED:") == true, "seed \(seed): \(id) has no output")
            default:
                #expect(deadIDs.contains(id), "seed \(seed): \(id) (\(kind)) has no dead letter")
                #expect(!okIDs.contains(id), "seed \(seed): \(id) (\(kind)) has an ok result")
                #expect(outputs["\(id).png"] == nil, "seed \(seed): \(id) (\(kind)) has an output")
            }
        }
        #expect(Set(outputs.keys) == Set(expected.filter { [.valid, .slow, .flaky].contains($0.value) }.map { "\($0.key).png" }),
                "seed \(seed): only valid jobs have outputs, and no temporary file is left")
        let oversized = letters.filter { expected[String(decoding: $0.key ?? [], as: UTF8.self)] == .oversized }
        #expect(oversized.allSatisfy { ($0.value?.count ?? 0) < dlqLimit && $0.headers.contains { $0.name == DeadLetterHeader.truncated } })
    }
}
