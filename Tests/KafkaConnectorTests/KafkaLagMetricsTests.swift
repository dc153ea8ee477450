import CoreMetrics
import DreamsrTestKit
import Foundation
import Jobs
import Logging
import PipelineRuntime
import Support
import ServiceLifecycle
import Testing
@testable import KafkaConnector

/// Records counters (sums) and gauges (last value; a destroyed gauge disappears) by `label{dimensions}`.
final class RecordingMetrics: MetricsFactory, @unchecked Sendable {
    let counters = Locked<[String: Int64]>([:])
    let gauges = Locked<[String: Double]>([:])

    final class Count: CounterHandler, @unchecked Sendable {
        let key: String
        let owner: RecordingMetrics
        init(_ key: String, _ owner: RecordingMetrics) { self.key = key; self.owner = owner }
        func increment(by amount: Int64) { owner.counters.withLock { $0[key, default: 0] += amount } }
        func reset() {}
    }

    final class Value: RecorderHandler, TimerHandler, @unchecked Sendable {
        let key: String
        let owner: RecordingMetrics
        init(_ key: String, _ owner: RecordingMetrics) { self.key = key; self.owner = owner }
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) { owner.gauges.withLock { $0[key] = value } }
        func recordNanoseconds(_ duration: Int64) {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        Count(CountingMetrics.key(label, dimensions), self)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        Value(CountingMetrics.key(label, dimensions), self)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        Value(CountingMetrics.key(label, dimensions), self)
    }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {
        if let value = handler as? Value { _ = gauges.withLock { $0.removeValue(forKey: value.key) } }
    }
    func destroyTimer(_ handler: any TimerHandler) {}

    func count(_ label: String, _ dimensions: [(String, String)] = []) -> Int64 {
        counters.withLock { $0[CountingMetrics.key(label, dimensions)] ?? 0 }
    }
    func gauge(_ label: String, _ dimensions: [(String, String)] = []) -> Double? {
        gauges.withLock { $0[CountingMetrics.key(label, dimensions)] }
    }

    /// Polls until `condition` holds; false after `timeout`.
    func wait(timeout: Duration, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }
}

/// A processor whose jobs wait at a gate before running `FakeProcessor` (a blocked pipeline).
final class GatedProcessor: JobProcessor, Sendable {
    let gate = TestGate()
    let inner = FakeProcessor()
    func process(_ request: JobRequest) async -> JobOutcome {
        await gate.pass()
        return await inner.process(request)
    }
}

/// Issue 15 item 4: the Kafka source's lag, message, rebalance and paused-partition metrics against the mock broker.
@Suite(.timeLimit(.minutes(2))) struct KafkaLagMetricsTests {
    @Test func lagRisesWhileThePipelineIsBlockedFallsToZeroAfterAndAPoisonMessageIsDeadLettered() async throws {
        let f = try Fixture("lag", partitions: 1)
        let metrics = RecordingMetrics()
        let processor = GatedProcessor()
        var configuration = f.configuration(maxInFlight: 1)
        configuration.maxBuffered = 2
        configuration.lagInterval = .milliseconds(100)
        let input = try f.writeInput("in.raw", "IN")
        func job(_ i: Int) -> (key: String?, value: String, headers: [KafkaHeader]) {
            (key: "j\(i)", value: #"{"id":"j\#(i)","source":"\#(input)"}"#, headers: [])
        }
        try await f.produce((0..<4).map(job))
        let events = EventLog()
        let source = KafkaJobSource(configuration: configuration, processor: processor, logger: testLogger("lag"),
                                    metrics: SourceMetrics(source: "kafka", factory: metrics),
                                    kafkaMetrics: KafkaMetrics(factory: metrics), onEvent: events.handler)
        let group = ServiceGroup(services: [source], logger: testLogger("lag-group"))
        let running = Task { try await group.run() }
        defer { running.cancel() }
        let lag = { metrics.gauge(KafkaMetrics.consumerLag, [("topic", f.topic), ("partition", "0")]) }

        // Blocked: one job at the gate, two buffered, the partition paused; every message counts as lag.
        #expect(await metrics.wait(timeout: .seconds(30)) { lag() == 4 }, "lag \(String(describing: lag()))")
        #expect(await metrics.wait(timeout: .seconds(10)) { metrics.gauge(KafkaMetrics.pausedPartitions) == 1 })
        #expect(metrics.count(KafkaMetrics.rebalancesTotal, [("kind", "assign")]) >= 1)
        // More input while paused: the lag follows the broker's high watermark, not the (stopped) fetch.
        try await f.produce((4..<10).map(job))
        #expect(await metrics.wait(timeout: .seconds(10)) { lag() == 10 }, "lag \(String(describing: lag()))")

        // Unblocked: everything finishes, the lag falls to 0 and the partition is resumed.
        processor.gate.openAll()
        #expect(await metrics.wait(timeout: .seconds(30)) { lag() == 0 && okResults(events.events) == 10 },
                "lag \(String(describing: lag())), ok \(okResults(events.events))")
        #expect(await metrics.wait(timeout: .seconds(10)) { metrics.gauge(KafkaMetrics.pausedPartitions) == 0 })
        #expect(metrics.count(SourceMetrics.deadLettersTotal, [("source", "kafka"), ("stage", "parse")]) == 0)

        // A poison message: one dead letter, counted, and the lag is back at 0 after it.
        try await f.produce([(key: "poison", value: #"{"id":"#, headers: [])])
        #expect(await metrics.wait(timeout: .seconds(30)) {
            metrics.count(SourceMetrics.deadLettersTotal, [("source", "kafka"), ("stage", "parse")]) == 1
        })
        #expect(await metrics.wait(timeout: .seconds(10)) { lag() == 0 })
        #expect(metrics.count(KafkaMetrics.messagesTotal, [("topic", f.topic)]) == 11)

        await group.triggerGracefulShutdown()
        try await running.value
        // The revoke on close drops the partition's lag series (a stale value would look like a stuck consumer).
        #expect(lag() == nil)
        #expect(metrics.count(KafkaMetrics.rebalancesTotal, [("kind", "revoke")]) >= 1)
    }
}
