#if canImport(Glibc)
import Glibc
#endif
import DreamsrApp
import Foundation
import Imaging
import KafkaConnector
import Raster
import Testing
import DreamsrTestKit

/// Daemon-level Kafka tests: the built `dreamsr` binary (`serve --kafka` and a `sources.kafka` config) with the real
/// Real-ESRGAN model on 16x16 images, against librdkafka's mock broker running in this test process (so the daemon
/// can be killed and restarted against the same broker). Needs `swift build` and `scripts/fetch-models.sh`.
///
/// Each test has its own consumer group: on librdkafka 2.0.2's mock broker a member that joins a group in which
/// another member just left waits for the rest of the rebalance round the leaver's session timeout set (its
/// session timeout minus 1 s), and when that round is longer than the joiner's own session timeout the mock expires
/// the joiner while it waits and never answers its JoinGroup (the daemon then sat out the request's timeout,
/// max_poll_interval_ms + 3 s: 63 s of the crash test when it followed the quick start test in group `dreamsr`).
enum KafkaDaemon {
    static let cluster: MockKafkaCluster = {
        do { return try MockKafkaCluster(brokers: 1) } catch { fatalError("mock cluster: \(error)") }
    }()

    struct Setup {
        let root: String
        let input: String
        let output: String
        let topic: String
        /// The daemon's consumer group.
        let group: String
        var bootstrap: String { KafkaDaemon.cluster.bootstrapServers }
    }

    /// `group`: the consumer group the daemon is configured with (default: one of the test's own).
    static func setup(_ name: String, partitions: Int, group: String? = nil) throws -> Setup {
        let root = try tempDir()
        let topic = "\(name)-\(UUID().uuidString.prefix(6))"
        try cluster.createTopic(topic, partitions: partitions)
        try cluster.createTopic(topic + ".results", partitions: 1)
        try cluster.createTopic(topic + ".dlq", partitions: 1)
        let setup = Setup(root: root, input: root + "/in", output: root + "/out", topic: topic,
                          group: group ?? "dreamsr-\(topic)")
        try FileManager.default.createDirectory(atPath: setup.input, withIntermediateDirectories: true)
        return setup
    }

    /// A `size` x `size` PNG (default 16) with a pattern depending on `seed`.
    static func writeImage(_ path: String, seed: Int, size: Int = 16) throws {
        var img = PlanarImage(width: size, height: size, channels: 3)
        for c in 0..<3 { for y in 0..<size { for x in 0..<size { img[c, y, x] = Float((x * 7 + y * 13 + c * 50 + seed * 17) % 255) / 255 } } }
        try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: path)
    }

    /// A PNG whose header claims 100000 x 100000 pixels (a decompression bomb by its header).
    static func headerBombPNG() -> Data {
        func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        func crc32(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xffff_ffff
            for b in bytes {
                crc ^= UInt32(b)
                for _ in 0..<8 { crc = (crc >> 1) ^ (0xedb8_8320 & (0 &- (crc & 1))) }
            }
            return ~crc
        }
        func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
            let typed = Array(type.utf8) + body
            return be32(UInt32(body.count)) + typed + be32(crc32(typed))
        }
        let ihdr = be32(100_000) + be32(100_000) + [8, 2, 0, 0, 0]
        let idat: [UInt8] = [0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", idat)
                    + chunk("IEND", []))
    }

    /// The daemon's config for the kill-and-restart tests. A restarted member gets its partitions after one or two
    /// of the mock broker's rebalance rounds of `sessionTimeoutMs` - 1 s each (one more while the killed member's
    /// session runs out): a short session timeout, with heartbeats well inside it, keeps each restart to seconds.
    static func config(_ s: Setup, sessionTimeoutMs: Int = 3_000) throws -> String {
        let path = s.root + "/dreamsr.yaml"
        let yaml = """
        log_level: info
        models_dir: \(try Daemon.modelsDir())
        shutdown:
          grace_seconds: 20
        sources:
          kafka:
            bootstrap: \(s.bootstrap)
            topic: \(s.topic)
            group_id: \(s.group)
            output_dir: \(s.output)
            max_in_flight: 4
            session_timeout_ms: \(sessionTimeoutMs)
            max_poll_interval_ms: 60000
            commit_interval_ms: 200
            retry: {max_attempts: 3, initial_backoff_seconds: 0.1, max_backoff_seconds: 0.5}
            client_properties:
              heartbeat.interval.ms: 500
        """
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func results(_ s: Setup, count: Int, timeout: Duration = .seconds(10)) async throws -> [ResultMessage] {
        try await KafkaTools.read(bootstrap: s.bootstrap, topic: s.topic + ".results", partitions: 1, count: count,
                                  timeout: timeout)
            .map { try JSONDecoder().decode(ResultMessage.self, from: Data($0.value ?? [])) }
    }

    static func committed(_ s: Setup, partitions: Int) async throws -> [Int64] {
        try await KafkaTools.committedOffsets(bootstrap: s.bootstrap, group: s.group, topic: s.topic,
                                              partitions: partitions)
    }

    /// Polls the group's committed offsets until they equal `high`.
    static func waitForCommitted(_ s: Setup, _ high: [Int64], log: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var last: [Int64] = []
        while true {
            last = (try? await committed(s, partitions: high.count)) ?? []
            if last == high { return }
            if ContinuousClock.now > deadline {
                let tail = (try? String(contentsOfFile: log, encoding: .utf8)).map { String($0.suffix(3000)) } ?? ""
                throw Daemon.Failure("committed \(last) never reached \(high)\n\(tail)")
            }
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    static func outputsAreValid(_ dir: String) -> Bool {
        listing(dir).allSatisfy { name in
            (try? ImageCodec.decode(path: dir + "/" + name)).map { $0.width == 64 && $0.height == 64 } ?? false
        }
    }
}

@Suite(.serialized, .timeLimit(.minutes(6))) struct KafkaDaemonTests {
    /// 60 messages, 6 of them poison: 54 outputs, 54 ok results, 6 dead letters with correct headers, committed
    /// offsets at the end of every partition. Uses the CLI quick start (`serve --kafka --topic --output`).
    @Test func quickStartEndToEndWithRealModel() async throws {
        let s = try KafkaDaemon.setup("e2e", partitions: 3, group: "dreamsr")  // the quick start's group
        var messages: [(key: [UInt8]?, value: [UInt8], headers: [KafkaHeader])] = []
        for i in 0..<54 {
            let path = s.input + "/img\(i).png"
            try KafkaDaemon.writeImage(path, seed: i)
            messages.append((key: Array("img\(i)".utf8), value: Array(#"{"id":"img\#(i)","source":"\#(path)","scale":4}"#.utf8), headers: []))
        }
        FileManager.default.createFile(atPath: s.input + "/corrupt.jpg", contents: Data([0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 0x42, count: 200)))
        FileManager.default.createFile(atPath: s.input + "/bomb.png", contents: KafkaDaemon.headerBombPNG())
        let poison: [(id: String, json: String, stage: String)] = [
            ("p-json", #"{"id":"p-json","source":"#, "parse"),
            ("p-missing", #"{"id":"p-missing","source":"\#(s.input)/nope.png"}"#, "source"),
            ("p-corrupt", #"{"id":"p-corrupt","source":"\#(s.input)/corrupt.jpg"}"#, "decode"),
            ("p-bomb", #"{"id":"p-bomb","source":"\#(s.input)/bomb.png"}"#, "decode"),
            ("p-type", #"{"id":"p-type","source":"\#(s.input)/img0.png","scale":"4"}"#, "parse"),
            ("p-url", #"{"id":"p-url","source":"http://169.254.169.254/latest/meta-data"}"#, "download"),
        ]
        for (n, p) in poison.enumerated() {
            messages.insert((key: Array(p.id.utf8), value: Array(p.json.utf8), headers: []), at: n * 9 + 3)
        }
        try await KafkaTools.produce(bootstrap: s.bootstrap, topic: s.topic, messages: messages)

        let log = s.root + "/log"
        let p = try Daemon.start(["serve", "--kafka", s.bootstrap, "--topic", s.topic, "--output", s.output], log: log)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let high = try await KafkaTools.highWatermarks(bootstrap: s.bootstrap, topic: s.topic, partitions: 3)
        try await KafkaDaemon.waitForCommitted(s, high, log: log, timeout: .seconds(240))
        kill(p.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p) == 0)

        #expect(listing(s.output, hidden: true) == (0..<54).map { "img\($0).png" }.sorted())
        #expect(KafkaDaemon.outputsAreValid(s.output))
        let results = try await KafkaDaemon.results(s, count: 60)
        #expect(Set(results.filter { $0.status == "ok" }.map(\.id)) == Set((0..<54).map { "img\($0)" }))
        #expect(results.filter { $0.status == "ok" }.count == 54)
        #expect(results.filter { $0.status == "ok" }.allSatisfy { $0.width == 64 && $0.height == 64 })
        let dlq = try await KafkaTools.read(bootstrap: s.bootstrap, topic: s.topic + ".dlq", partitions: 1, count: 6)
        #expect(dlq.count == 6)
        for letter in dlq {
            let key = String(decoding: letter.key ?? [], as: UTF8.self)
            func header(_ n: String) -> String? { letter.headers.first { $0.name == n }?.stringValue }
            let expected = poison.first { $0.id == key }
            #expect(expected != nil)
            #expect(header(DeadLetterHeader.stage) == expected?.stage, "\(key): \(header(DeadLetterHeader.error) ?? "")")
            #expect(header(DeadLetterHeader.topic) == s.topic)
            #expect(header(DeadLetterHeader.partition) != nil && header(DeadLetterHeader.offset) != nil)
            #expect(letter.value == Array(expected?.json.utf8 ?? "".utf8))
        }
    }

    /// SIGKILL the daemon at three moments of a 40-message run and restart it each time (same broker, same group).
    /// After every kill, no committed offset covers a valid message whose output does not exist; in the end every
    /// valid message has exactly one complete output file and at least one ok result.
    @Test func crashAndRestartKeepsAtLeastOnceWithoutLosingOrDuplicatingOutputs() async throws {
        let s = try KafkaDaemon.setup("crash", partitions: 2)
        var messages: [(key: [UInt8]?, value: [UInt8], headers: [KafkaHeader])] = []
        var valid: [String] = []
        for i in 0..<36 {
            let path = s.input + "/c\(i).png"
            try KafkaDaemon.writeImage(path, seed: i)
            valid.append("c\(i)")
            messages.append((key: Array("c\(i)".utf8), value: Array(#"{"id":"c\#(i)","source":"\#(path)"}"#.utf8), headers: []))
        }
        for i in 0..<4 {
            messages.insert((key: Array("bad\(i)".utf8), value: Array(#"{"id":"bad\#(i)","source":"\#(s.input)/missing\#(i).png"}"#.utf8),
                             headers: []), at: i * 10 + 5)
        }
        try await KafkaTools.produce(bootstrap: s.bootstrap, topic: s.topic, messages: messages)
        let inputs = try await KafkaTools.read(bootstrap: s.bootstrap, topic: s.topic, partitions: 2, count: 40)
        #expect(inputs.count == 40)
        func id(_ m: ConsumedMessage) -> String { String(decoding: m.key ?? [], as: UTF8.self) }
        let high = try await KafkaTools.highWatermarks(bootstrap: s.bootstrap, topic: s.topic, partitions: 2)
        let configPath = try KafkaDaemon.config(s)

        /// No committed offset may cover a valid message without its (complete) output.
        func checkCommittedHaveOutputs(_ moment: String) async throws {
            let committed = try await KafkaDaemon.committed(s, partitions: 2)
            let outputs = Set(listing(s.output))
            for m in inputs where id(m).hasPrefix("c") && m.offset < committed[Int(m.partition)] {
                #expect(outputs.contains(id(m) + ".png"), "\(moment): offset \(m.offset) of partition \(m.partition) (\(id(m))) committed without output")
            }
            #expect(KafkaDaemon.outputsAreValid(s.output), "\(moment): a visible output is incomplete")
        }

        let thresholds = [1, 14, 26]
        for (run, threshold) in thresholds.enumerated() {
            let log = s.root + "/log\(run)"
            let p = try Daemon.start(["serve", "--config", configPath], log: log)
            try await Daemon.waitUntil("\(threshold) outputs", timeout: .seconds(180), log: log) {
                listing(s.output).count >= threshold
            }
            kill(p.processIdentifier, SIGKILL)
            _ = try await Daemon.waitForExit(p)
            try await checkCommittedHaveOutputs("after kill \(run + 1)")
        }
        let log = s.root + "/log-final"
        let p = try Daemon.start(["serve", "--config", configPath], log: log)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        try await KafkaDaemon.waitForCommitted(s, high, log: log, timeout: .seconds(240))
        kill(p.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p) == 0)
        try await checkCommittedHaveOutputs("final")

        #expect(listing(s.output) == valid.map { $0 + ".png" }.sorted(), "exactly one output per valid message")
        #expect(KafkaDaemon.outputsAreValid(s.output))
        let results = try await KafkaTools.readAll(bootstrap: s.bootstrap, topic: s.topic + ".results", partitions: 1)
            .map { try JSONDecoder().decode(ResultMessage.self, from: Data($0.value ?? [])) }
        #expect(Set(results.filter { $0.status == "ok" }.map(\.id)) == Set(valid), "at least one ok result per valid message")
        let dlq = try await KafkaTools.readAll(bootstrap: s.bootstrap, topic: s.topic + ".dlq", partitions: 1)
        #expect(Set(dlq.map { String(decoding: $0.key ?? [], as: UTF8.self) }) == Set((0..<4).map { "bad\($0)" }))
    }

    /// Issue 12 acceptance, at the process level: a seeded random mix of valid, slow (larger image), poison (bad
    /// JSON; bad fields: scale 4.5, a NUL in source that would read a real file if cut, a hidden output; missing
    /// source; a folder as source) and one oversized message (over max_message_bytes and over the producer's
    /// message.max.bytes, alone in its partition: the mock broker drops older message sets when a partition holds
    /// more than about 1 MB), with the daemon SIGKILLed twice at random moments and restarted. Every message ends as
    /// ok results + its output or as dead letters, never both; committed offsets reach the partition ends.
    @Test func propertyRandomMixWithSigkillsEndsWithEveryMessageAccountedFor() async throws {
        let seed = ProcessInfo.processInfo.environment["DREAMSR_PROPERTY_SEED"].flatMap { UInt64($0) } ?? 20_261_203
        var rng = SeededGenerator(seed: seed)
        let s = try KafkaDaemon.setup("prop", partitions: 3)
        enum Kind: CaseIterable { case valid, slow, badJSON, badField, missing, folder }
        var kinds: [String: Kind] = [:]
        var messages: [(key: [UInt8]?, value: [UInt8], headers: [KafkaHeader])] = []
        try KafkaDaemon.writeImage(s.input + "/real.png", seed: 99)
        try FileManager.default.createDirectory(atPath: s.input + "/a-folder", withIntermediateDirectories: true)
        for i in 0..<24 {
            // At least half valid, so the kills land between outputs.
            let kind: Kind = i % 2 == 0 ? .valid : Kind.allCases.randomElement(using: &rng)!
            let id = "p\(i)"
            kinds[id] = kind
            let json: String
            switch kind {
            case .valid:
                try KafkaDaemon.writeImage(s.input + "/\(id).png", seed: i)
                json = #"{"id":"\#(id)","source":"\#(s.input)/\#(id).png"}"#
            case .slow:
                try KafkaDaemon.writeImage(s.input + "/\(id).png", seed: i, size: 48)
                json = #"{"id":"\#(id)","source":"\#(s.input)/\#(id).png"}"#
            case .badJSON: json = #"{"id":"\#(id)","source":"#
            case .badField:
                json = [#"{"id":"\#(id)","source":"\#(s.input)/real.png","scale":4.5}"#,
                        #"{"id":"\#(id)","source":"\#(s.input)/real.png\u0000.png"}"#,
                        #"{"id":"\#(id)","source":"\#(s.input)/real.png","output":".\#(id).png"}"#].randomElement(using: &rng)!
            case .missing: json = #"{"id":"\#(id)","source":"\#(s.input)/absent-\#(i).png"}"#
            case .folder: json = #"{"id":"\#(id)","source":"\#(s.input)/a-folder"}"#
            }
            messages.append((key: Array(id.utf8), value: Array(json.utf8), headers: []))
        }
        for partition in 0..<2 {
            try await KafkaTools.produce(bootstrap: s.bootstrap, topic: s.topic,
                                         messages: messages.enumerated().filter { $0.offset % 2 == partition }.map(\.element),
                                         partition: Int32(partition))
        }
        let oversized = Array(#"{"id":"big","source":"\#(s.input)/real.png","prompt":""#.utf8)
            + [UInt8](repeating: UInt8(ascii: "x"), count: 1_100_000)
        try await KafkaTools.produce(bootstrap: s.bootstrap, topic: s.topic,
                                     messages: [(key: Array("big".utf8), value: oversized, headers: [])],
                                     partition: 2, maxMessageBytes: 4 << 20)
        let high = try await KafkaTools.highWatermarks(bootstrap: s.bootstrap, topic: s.topic, partitions: 3)
        #expect(high.reduce(0, +) == 25)
        let outputKinds: Set<Kind> = [.valid, .slow]
        let validIDs = kinds.filter { outputKinds.contains($0.value) }.map(\.key)
        let configPath = try KafkaDaemon.config(s)

        var threshold = 0
        for run in 0..<2 {
            threshold = min(validIDs.count - 1, threshold + Int.random(in: 1...5, using: &rng))
            let log = s.root + "/log\(run)"
            let p = try Daemon.start(["serve", "--config", configPath], log: log)
            try await Daemon.waitUntil("\(threshold) outputs", timeout: .seconds(120), log: log) {
                listing(s.output).count >= threshold
            }
            kill(p.processIdentifier, SIGKILL)
            _ = try await Daemon.waitForExit(p)
        }
        let log = s.root + "/log-final"
        let p = try Daemon.start(["serve", "--config", configPath], log: log)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        try await KafkaDaemon.waitForCommitted(s, high, log: log, timeout: .seconds(150))
        kill(p.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p) == 0)

        let results = try await KafkaTools.readAll(bootstrap: s.bootstrap, topic: s.topic + ".results", partitions: 1)
            .map { try JSONDecoder().decode(ResultMessage.self, from: Data($0.value ?? [])) }
        let letters = try await KafkaTools.readAll(bootstrap: s.bootstrap, topic: s.topic + ".dlq", partitions: 1)
        let okIDs = Set(results.filter { $0.status == "ok" }.map(\.id))
        let deadIDs = Set(letters.map { String(decoding: $0.key ?? [], as: UTF8.self) })
        #expect(okIDs == Set(validIDs), "seed \(seed): ok results for exactly the valid messages")
        #expect(deadIDs == Set(kinds.filter { !outputKinds.contains($0.value) }.map(\.key) + ["big"]),
                "seed \(seed): dead letters for exactly the poison messages")
        #expect(listing(s.output, hidden: true) == validIDs.map { $0 + ".png" }.sorted(),
                "seed \(seed): one output per valid message, no temporary left")
        let big = letters.first { $0.key == Array("big".utf8) }
        #expect(big.map { ($0.value?.count ?? .max) < 1_000_000 } == true, "the oversized dead letter was cut to fit")
        #expect(big?.headers.first { $0.name == DeadLetterHeader.originalSize }?.stringValue == String(oversized.count))
    }
}

@Suite(.timeLimit(.minutes(10))) struct KafkaConfigTests {
    @Test func kafkaSectionParsesWithDefaultsAndOverrides() throws {
        let yaml = """
        sources:
          kafka:
            bootstrap: b1:9092,b2:9092
            topic: images
            output_dir: out
            max_in_flight: 6
            max_buffered_bytes: 1048576
            retry: {max_attempts: 5, initial_backoff_seconds: 0.25}
            http: {allow_private: true}
            client_properties:
              security.protocol: SASL_SSL
        """
        let config = try DaemonConfig.parse(yaml: yaml, file: "/etc/dreamsr/d.yaml", baseDirectory: "/etc/dreamsr",
                                            env: ["DREAMSR_SOURCES_KAFKA_GROUP_ID": "g2"])
        let k = try #require(config.kafka)
        #expect(k.bootstrapServers == "b1:9092,b2:9092" && k.inputTopic == "images")
        #expect(k.groupID == "g2")
        #expect(k.resultsTopic == "images.results" && k.deadLetterTopic == "images.dlq")
        #expect(k.outputDirectory == "/etc/dreamsr/out")
        #expect(k.maxInFlight == 6 && k.retry.maxAttempts == 5 && k.retry.initialBackoff == .milliseconds(250))
        #expect(k.http.allowPrivateAddresses)
        #expect(k.maxBuffered == nil && k.maxBufferedBytes == 1 << 20)  // adaptive count, byte cap as set
        #expect(k.consumerProperties["security.protocol"] == "SASL_SSL")
        #expect(k.consumerProperties["enable.auto.offset.store"] == "false")
    }

    @Test func kafkaSectionErrorsNameTheKey() {
        func problem(_ yaml: String) -> String {
            do {
                _ = try DaemonConfig.parse(yaml: yaml, file: "d.yaml", baseDirectory: "/")
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(problem("sources:\n  kafka:\n    topic: t\n").contains("bootstrap"))
        #expect(problem("sources:\n  kafka:\n    bootstrap: b:1\n    topic: t\n    max_inflight: 3\n").contains("max_inflight"))
        #expect(problem("sources:\n  kafka:\n    bootstrap: b:1\n    topic: t\n    max_in_flight: 0\n").contains("max_in_flight"))
        #expect(problem("sources:\n  kafka:\n    bootstrap: b:1\n    topic: t\n    max_buffered_bytes: 0\n").contains("max_buffered_bytes"))
        #expect(problem("sources:\n  kafka:\n    bootstrap: b:1\n    topic: 'bad topic'\n").contains("topic"))
    }

    @Test func quickStartFlags() throws {
        let config = try loadServeConfig(ServeOptions(output: "/srv/out", kafka: "localhost:9092", topic: "jobs"),
                                         environment: [:])
        let k = try #require(config.kafka)
        #expect(k.groupID == "dreamsr" && k.resultsTopic == "jobs.results" && k.deadLetterTopic == "jobs.dlq")
        #expect(k.outputDirectory == "/srv/out")
        #expect(config.watchFolders.isEmpty)
        #expect(throws: (any Error).self) {
            try loadServeConfig(ServeOptions(kafka: "localhost:9092", topic: "jobs"), environment: [:])
        }
    }
}
