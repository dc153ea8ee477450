import CoreMetrics
import DreamsrTestKit
import Foundation
import Jobs
import Logging
import PipelineRuntime
import ServiceLifecycle
import Support
import Testing
@testable import KafkaConnector

/// Counts every counter increment by `label{dimensions}`; recorders and timers are ignored.
final class CountingMetrics: MetricsFactory, @unchecked Sendable {
    let counts = Locked<[String: Int64]>([:])

    final class Count: CounterHandler, @unchecked Sendable {
        let key: String
        let owner: CountingMetrics
        init(_ key: String, _ owner: CountingMetrics) { self.key = key; self.owner = owner }
        func increment(by amount: Int64) { owner.counts.withLock { $0[key, default: 0] += amount } }
        func reset() {}
    }

    final class Ignored: RecorderHandler, TimerHandler, @unchecked Sendable {
        func record(_ value: Int64) {}
        func record(_ value: Double) {}
        func recordNanoseconds(_ duration: Int64) {}
    }

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + "{" + dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        Count(Self.key(label, dimensions), self)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { Ignored() }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Ignored() }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    func count(_ label: String, _ dimensions: [(String, String)]) -> Int64 {
        counts.withLock { $0[Self.key(label, dimensions)] ?? 0 }
    }
}

/// Issue 12 item 12: dead letters and retries are counted; a retried attempt is not a job error (one job, one
/// final outcome in dreamsr_jobs_total).
@Suite(.timeLimit(.minutes(2))) struct KafkaMetricsTests {
    @Test func retriesAndDeadLettersAreCountedAndEachJobHasOneFinalOutcome() async throws {
        let f = try Fixture("metrics", partitions: 1)
        let metrics = CountingMetrics()
        let attempts = Locked<[String: Int]>([:])
        // A one-stage pipeline: "flaky" fails retriably twice, "broken" fails retriably every time (4 attempts,
        // then a dead letter), "corrupt" fails for good at once, the rest write their output.
        let stage = Stage<FakePayload>(StageConfig(name: "restore")) { ctx in
            let id = ctx.request.id.rawValue
            let n = attempts.withLock { $0[id, default: 0] += 1; return $0[id]! }
            if (id == "flaky" && n <= 2) || id == "broken" {
                throw PipelineError.stageFailed("transient failure \(n)", retriable: true)
            }
            if id == "corrupt" { throw PipelineError.badInput("not an image") }
            guard let output = ctx.request.output else { throw PipelineError.badInput("no output") }
            try Data("OUT".utf8).write(to: URL(fileURLWithPath: output))
            ctx.output = output
        }
        let pipeline = try Pipeline(configuration: PipelineConfiguration(name: "p", capacity: PipelineCapacity(items: 4, megapixels: 100)),
                                    stages: [stage], logger: testLogger("metrics-pipeline"),
                                    metricsFactory: metrics) { _ in FakePayload() }
        let input = try f.writeInput("in.raw", "IN")
        try await f.produce([
            (key: "good", value: #"{"id":"good","source":"\#(input)"}"#, headers: []),
            (key: "flaky", value: #"{"id":"flaky","source":"\#(input)"}"#, headers: []),
            (key: "broken", value: #"{"id":"broken","source":"\#(input)"}"#, headers: []),
            (key: "corrupt", value: #"{"id":"corrupt","source":"\#(input)"}"#, headers: []),
            (key: "bad-json", value: #"{"id":"#, headers: []),
        ])
        let events = EventLog()
        let source = KafkaJobSource(configuration: f.configuration(maxInFlight: 4), processor: pipeline,
                                    logger: testLogger("metrics"),
                                    metrics: SourceMetrics(source: "kafka", factory: metrics), onEvent: events.handler)
        let group = ServiceGroup(services: [pipeline, source], logger: testLogger("metrics-group"))
        let running = Task { try await group.run() }
        let reached = await events.wait(timeout: .seconds(60)) { okResults($0) == 2 && deadLetters($0) == 3 }
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(reached)

        let jobs = PipelineMetrics.jobsTotal
        #expect(metrics.count(jobs, [("pipeline", "p"), ("outcome", "ok")]) == 2)
        // broken (after its last attempt) and corrupt; flaky's and broken's retried attempts are not job errors.
        #expect(metrics.count(jobs, [("pipeline", "p"), ("outcome", "error")]) == 2)
        #expect(metrics.count(SourceMetrics.retriesTotal, [("source", "kafka"), ("stage", "restore")]) == 5)
        #expect(metrics.count(SourceMetrics.deadLettersTotal, [("source", "kafka"), ("stage", "restore")]) == 2)
        #expect(metrics.count(SourceMetrics.deadLettersTotal, [("source", "kafka"), ("stage", "parse")]) == 1)
        #expect(metrics.count(SourceMetrics.deadLetterFailuresTotal, [("source", "kafka"), ("stage", "parse")]) == 0)
        #expect(attempts.withLock { $0 } == ["good": 1, "flaky": 3, "broken": 4, "corrupt": 1])
    }
}
