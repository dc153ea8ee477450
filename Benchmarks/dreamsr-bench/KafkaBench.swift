import ArgumentParser
import Foundation
import Jobs
import KafkaConnector
import Logging
import PipelineRuntime
import ServiceLifecycle

/// `dreamsr-bench kafka`: messages/s through the Kafka connector for N tiny images against an in-process mock
/// broker. The processor does no model work (it copies the input to the output atomically: temp, fsync, rename), so
/// the figure is the connector's overhead: consume, parse, dispatch, result produce + delivery report, offset store.
/// Baseline, measured in the same run: a raw librdkafka loop over the same messages (consume all, produce one
/// result per message, wait for every delivery report), with no tracking and no files.
struct KafkaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Kafka connector overhead (messages/s, model time excluded) vs a raw librdkafka consume+produce loop.")

    @Option(help: "Messages (tiny images).") var messages = 200
    @Option(help: "Input topic partitions.") var partitions = 4
    @Option(help: "Connector max in-flight jobs.") var maxInFlight = 8
    @Option(help: "Repetitions (best is reported).") var repeats = 3
    @Flag(help: "fsync each output in the fake processor (pipeline work, off by default: not connector overhead).")
    var fsync = false
    @Flag(help: "Print gaps > 50 ms between connector events.") var trace = false
    @Option(help: "librdkafka property for the connector's clients, KEY=VALUE (repeatable).") var property: [String] = []
    @Option(help: "Connector max_buffered (default 4 x max_in_flight).") var maxBuffered: Int?

    final class Probe: @unchecked Sendable {
        let lock = NSLock()
        var first: ContinuousClock.Instant?
        var last: ContinuousClock.Instant?
        var published = 0
        var target = 0
        var waiter: CheckedContinuation<Void, Never>?
        var trace = false
        var previous: (ContinuousClock.Instant, KafkaSourceEvent)?

        func handle(_ event: KafkaSourceEvent) {
            lock.lock()
            if trace {
                let now = ContinuousClock.now
                if let (at, last) = previous, now - at > .milliseconds(50) {
                    print("gap \(now - at) after \(last) before \(event)")
                }
                previous = (now, event)
            }
            var resume: CheckedContinuation<Void, Never>?
            switch event {
            case .jobStarted:
                if first == nil { first = .now }
            case .resultPublished:
                published += 1
                if published == target {
                    last = .now
                    resume = waiter
                    waiter = nil
                }
            default: break
            }
            lock.unlock()
            resume?.resume()
        }

        func wait() async {
            await withCheckedContinuation { continuation in
                lock.lock()
                if published >= target {
                    lock.unlock()
                    continuation.resume()
                } else {
                    waiter = continuation
                    lock.unlock()
                }
            }
        }
    }

    struct CopyProcessor: JobProcessor {
        var sync: Bool
        func process(_ request: JobRequest) async -> JobOutcome {
            guard case .file(let path) = request.source, let data = FileManager.default.contents(atPath: path),
                  let target = request.output else {
                return JobOutcome(id: request.id, status: .error, errorStage: "read", errorMessage: "unreadable")
            }
            let temp = target + ".tmp"
            let fd = open(temp, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
            _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if sync { _ = Glibc.fsync(fd) }
            close(fd)
            rename(temp, target)
            return JobOutcome(id: request.id, status: .ok, output: target, width: 4, height: 4)
        }
    }

    func run() async throws {
        var logger = Logger(label: "dreamsr-bench.kafka")
        logger.logLevel = .error
        let cluster = try MockKafkaCluster(brokers: 1)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-kafka-bench-\(UUID().uuidString)")
        let input = root.appendingPathComponent("in"), output = root.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        // A tiny 1x1 PNG (the processor never decodes it).
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52,
                            0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89]
        var payloads: [(key: [UInt8]?, value: [UInt8], headers: [KafkaHeader])] = []
        for i in 0..<messages {
            let path = input.appendingPathComponent("t\(i).png").path
            try Data(png).write(to: URL(fileURLWithPath: path))
            payloads.append((key: Array("t\(i)".utf8), value: Array(#"{"id":"t\#(i)","source":"\#(path)"}"#.utf8),
                             headers: []))
        }

        var bestOurs = Double.infinity, bestBase = Double.infinity
        for round in 0..<repeats {
            let topic = "bench\(round)"
            try cluster.createTopic(topic, partitions: partitions)
            try cluster.createTopic("\(topic).results", partitions: 1)
            try cluster.createTopic("\(topic).dlq", partitions: 1)
            try await KafkaTools.produce(bootstrap: cluster.bootstrapServers, topic: topic, messages: payloads)

            // Baseline: raw consume of every message + one acknowledged result per message.
            let t0 = ContinuousClock.now
            let consumed = try await KafkaTools.read(bootstrap: cluster.bootstrapServers, topic: topic,
                                                     partitions: partitions, count: messages)
            try await KafkaTools.produce(bootstrap: cluster.bootstrapServers, topic: "\(topic).baseline",
                                         messages: consumed.map { (key: $0.key, value: Array(#"{"status":"ok"}"#.utf8), headers: []) })
            let base = (ContinuousClock.now - t0).seconds
            precondition(consumed.count == messages, "baseline read \(consumed.count) of \(messages)")

            // Ours: from the first job start (after the group join) to the last acknowledged result.
            var config = KafkaConnectorConfiguration(bootstrapServers: cluster.bootstrapServers, inputTopic: topic,
                                                     groupID: "bench-\(round)", outputDirectory: output.path,
                                                     maxInFlight: maxInFlight)
            config.drainTimeout = .seconds(10)
            config.maxBuffered = maxBuffered
            for p in property {
                let kv = p.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2 else { throw ValidationError("--property wants KEY=VALUE, got '\(p)'") }
                config.clientProperties[kv[0]] = kv[1]
            }
            let probe = Probe()
            probe.target = messages
            probe.trace = trace
            let source = KafkaJobSource(configuration: config, processor: CopyProcessor(sync: fsync), logger: logger,
                                        onEvent: probe.handle)
            let group = ServiceGroup(services: [source], logger: logger)
            let running = Task { try await group.run() }
            await probe.wait()
            await group.triggerGracefulShutdown()
            try await running.value
            let ours = (probe.last! - probe.first!).seconds
            print(String(format: "round %d: connector %.3f s (%.0f msg/s), raw librdkafka %.3f s (%.0f msg/s)",
                         round, ours, Double(messages) / ours, base, Double(messages) / base))
            bestOurs = min(bestOurs, ours)
            bestBase = min(bestBase, base)
        }
        // The mock broker must outlive every client (release builds may end a local's lifetime at its last use).
        withExtendedLifetime(cluster) {}
        let oursRate = Double(messages) / bestOurs, baseRate = Double(messages) / bestBase
        print(String(format: "kafka: %d tiny images, %d partitions, max_in_flight %d, fsync %@ (best of %d)",
                     messages, partitions, maxInFlight, fsync ? "on" : "off", repeats))
        print(String(format: "  dreamsr connector: %.0f msg/s (%.2f ms/msg overhead, model time excluded)", oursRate,
                     1000 * bestOurs / Double(messages)))
        print(String(format: "  baseline raw librdkafka consume+produce: %.0f msg/s", baseRate))
        print(String(format: "  ratio connector/baseline: %.2f", oursRate / baseRate))
    }
}

