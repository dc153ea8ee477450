import Foundation
import Jobs
import Testing
@testable import KafkaConnector

@Suite(.timeLimit(.minutes(10))) struct MessageContractTests {
    func parse(_ json: String, maxBytes: Int = 1 << 20) throws(KafkaConnectorError) -> InputMessage {
        try InputMessage.parse(Array(json.utf8), maxBytes: maxBytes)
    }

    func error(_ json: String, maxBytes: Int = 1 << 20) -> KafkaConnectorError? {
        do {
            _ = try parse(json, maxBytes: maxBytes)
            return nil
        } catch {
            return error
        }
    }

    @Test func fullMessageParsesAndUnknownFieldsAreIgnored() throws {
        let m = try parse(#"{"id":"img-1","source":"/data/a.png","output":"out/a.png","prompt":"a cat","scale":4,"format":"png","pipeline":"fast","extra":{"x":1}}"#)
        #expect(m == InputMessage(id: "img-1", source: "/data/a.png", output: "out/a.png", prompt: "a cat", scale: 4,
                                  format: "png", pipeline: "fast"))
    }

    @Test func minimalMessageAndNulls() throws {
        let m = try parse(#"{"source":"file:///data/b.jpg","prompt":null}"#)
        #expect(m.id == nil && m.prompt == nil && m.scale == nil)
        #expect(try InputMessage.jobSource(m.source) == .file("/data/b.jpg"))
    }

    @Test func badJSONIsRejected() {
        #expect(error("{not json")?.code == .invalidMessage)
        #expect(error("[1,2]")?.code == .invalidMessage)
        #expect(error("")?.code == .invalidMessage)
    }

    @Test func missingSourceIsRejectedByName() {
        let e = error(#"{"id":"x"}"#)
        #expect(e?.code == .invalidMessage)
        #expect(e?.message.contains("'source'") == true)
    }

    @Test func wrongTypesAreRejectedByName() {
        let scale = error(#"{"source":"/a.png","scale":"four"}"#)
        #expect(scale?.code == .invalidMessage)
        #expect(scale?.message.contains("scale") == true)
        #expect(error(#"{"source":"/a.png","scale":4.5}"#)?.code == .invalidMessage)
        #expect(error(#"{"source":"/a.png","scale":true}"#)?.code == .invalidMessage)
        #expect(error(#"{"source":42}"#)?.message.contains("source") == true)
        #expect(error(#"{"source":"/a.png","id":7}"#)?.message.contains("id") == true)
    }

    @Test func limitsAndValues() {
        #expect(error(#"{"source":"/a.png","scale":64}"#)?.code == .limitExceeded)
        #expect(error(#"{"source":"/a.png","format":"bmpx"}"#)?.code == .invalidMessage)
        #expect(error(#"{"source":"/a.png","id":"../../etc/passwd"}"#)?.code == .invalidMessage)
        #expect(error(#"{"source":"/a.png","id":".hidden"}"#)?.code == .invalidMessage)
        #expect(error(#"{"source":"   "}"#)?.code == .invalidMessage)
        let big = #"{"source":"/a.png","prompt":""# + String(repeating: "x", count: 200) + #""}"#
        #expect(error(big, maxBytes: 100)?.code == .limitExceeded)
    }

    @Test func sources() throws {
        #expect(try InputMessage.jobSource("https://example.com/a.png") == .url("https://example.com/a.png"))
        #expect(try InputMessage.jobSource("HTTP://example.com/a.png") == .url("HTTP://example.com/a.png"))
        #expect(try InputMessage.jobSource("/srv/in/a%20b.png") == .file("/srv/in/a%20b.png"))
        #expect(try InputMessage.jobSource("file:///srv/in/a%20b.png") == .file("/srv/in/a b.png"))
        #expect(throws: KafkaConnectorError.self) { try InputMessage.jobSource("relative/a.png") }
        #expect(throws: KafkaConnectorError.self) { try InputMessage.jobSource("ftp://host/a.png") }
        #expect(throws: KafkaConnectorError.self) { try InputMessage.jobSource("file://otherhost/a.png") }
    }

    @Test func outputLocations() throws {
        func location(_ output: String?, format: String? = nil, allowAbsolute: Bool = false) throws -> String {
            let l = try InputMessage.outputLocation(output, id: JobID("a-1"), format: format, outputDirectory: "/out",
                                                    defaultFormat: "png", allowAbsolute: allowAbsolute)
            return "\(l.path)|\(l.format)"
        }
        #expect(try location(nil) == "/out/a-1.png|png")
        #expect(try location(nil, format: "jpeg") == "/out/a-1.jpg|jpeg")
        #expect(try location("sub/x.webp") == "/out/sub/x.webp|webp")
        #expect(try location("sub/") == "/out/sub/a-1.png|png")
        #expect(try location("sub/x.out", format: "tiff") == "/out/sub/x.out|tiff")
        #expect(try location("/tmp/x.png", allowAbsolute: true) == "/tmp/x.png|png")
        let tmp = FileManager.default.temporaryDirectory.path
        #expect(try location(tmp, allowAbsolute: true) == "\(tmp)/a-1.png|png")  // an existing folder
        #expect(throws: KafkaConnectorError.self) { try location("../x.png") }
        #expect(throws: KafkaConnectorError.self) { try location("/etc/x.png") }
        #expect(throws: KafkaConnectorError.self) {
            try InputMessage.outputLocation(nil, id: JobID("a"), format: nil, outputDirectory: nil, defaultFormat: "png",
                                            allowAbsolute: false)
        }
    }

    @Test func jobIDFallsBackToTopicPartitionOffset() {
        #expect(InputMessage.jobID(nil, topic: "in", partition: 2, offset: 17) == JobID("in-2-17"))
        #expect(InputMessage.jobID("abc", topic: "in", partition: 2, offset: 17) == JobID("abc"))
    }

    @Test func resultMessageEncoding() throws {
        let outcome = JobOutcome(id: JobID("a"), status: .ok, output: "/out/a.png", width: 64, height: 48,
                                 stageSeconds: ["decode": 0.5])
        let message = ConsumedMessage(topic: "in", partition: 1, offset: 9, value: [])
        let bytes = ResultMessage(outcome: outcome, attempts: 2, message: message).encoded()
        let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        #expect(object?["id"] as? String == "a")
        #expect(object?["status"] as? String == "ok")
        #expect(object?["width"] as? Int == 64)
        #expect((object?["input"] as? [String: Any])?["offset"] as? Int == 9)
        #expect((object?["timings"] as? [String: Double])?["decode"] == 0.5)
        let decoded = try JSONDecoder().decode(ResultMessage.self, from: Data(bytes))
        #expect(decoded.attempts == 2 && decoded.input.partition == 1)
    }
}

@Suite(.timeLimit(.minutes(10))) struct ConfigurationTests {
    @Test func defaultsFollowTheTopic() throws {
        let c = KafkaConnectorConfiguration(bootstrapServers: "localhost:9092", inputTopic: "images")
        #expect(c.groupID == "dreamsr")
        #expect(c.resultsTopic == "images.results")
        #expect(c.deadLetterTopic == "images.dlq")
        try c.validate()
        let props = c.consumerProperties
        #expect(props["enable.auto.offset.store"] == "false")
        #expect(props["group.id"] == "dreamsr")
        #expect(c.producerProperties["enable.idempotence"] == "true")
    }

    @Test func validationNamesTheKey() {
        var c = KafkaConnectorConfiguration(bootstrapServers: "b:1", inputTopic: "in")
        c.maxInFlight = 0
        #expect(throws: KafkaConnectorError(.configuration, "kafka.max_in_flight: 0 not in 1...4096")) {
            try c.validate()
        }
        c = KafkaConnectorConfiguration(bootstrapServers: "b:1", inputTopic: "bad topic")
        #expect(throws: KafkaConnectorError.self) { try c.validate() }
        c = KafkaConnectorConfiguration(bootstrapServers: "b:1", inputTopic: "in", resultsTopic: "in")
        #expect(throws: KafkaConnectorError.self) { try c.validate() }
    }

    @Test func unknownLibrdkafkaPropertyIsAnErrorNamingIt() {
        do {
            _ = try RDKafkaConfig.make(["no.such.property": "1"])
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .configuration)
            #expect(error.message.contains("no.such.property"))
        }
    }

    @Test func bufferLimitAdaptsToFastJobsUnlessSet() {
        var c = KafkaConnectorConfiguration(bootstrapServers: "b", inputTopic: "t", maxInFlight: 8)
        #expect(c.bufferLimit(jobsPerSecond: 0) == 32)            // 4 x max_in_flight
        #expect(c.bufferLimit(jobsPerSecond: 0.5) == 32)          // slow jobs (image models): the base
        #expect(c.bufferLimit(jobsPerSecond: 400) == 800)         // 2 s of work
        #expect(c.bufferLimit(jobsPerSecond: 1e6) == KafkaConnectorConfiguration.adaptiveBufferCap)
        c.maxInFlight = 1
        #expect(c.bufferLimit(jobsPerSecond: 0) == 16)
        c.maxBuffered = 5
        #expect(c.bufferLimit(jobsPerSecond: 400) == 5)           // a set value is used as is
    }

    @Test func completionRateCountsFullWindows() {
        var r = CompletionRate()
        let t0 = ContinuousClock.now
        #expect(r.rate(now: t0) == 0)
        for i in 0..<50 { r.record(now: t0 + .milliseconds(10 * i)) }
        #expect(r.rate(now: t0 + .milliseconds(600)) == 0)         // the first window has not ended
        #expect(abs(r.rate(now: t0 + .milliseconds(1000)) - 50) < 1e-9)
        #expect(r.rate(now: t0 + .milliseconds(2500)) == 0)        // a second with no completion: idle again
    }

    @Test func backoffDoublesAndCaps() {
        let r = KafkaConnectorConfiguration.RetryPolicy(maxAttempts: 5, initialBackoff: .milliseconds(100),
                                                        maxBackoff: .milliseconds(350))
        #expect(r.delay(afterAttempt: 1) == .milliseconds(100))
        #expect(r.delay(afterAttempt: 2) == .milliseconds(200))
        #expect(r.delay(afterAttempt: 3) == .milliseconds(350))
        #expect(r.delay(afterAttempt: 40) == .milliseconds(350))
    }
}

@Suite(.timeLimit(.minutes(10))) struct PartitionOffsetTrackerTests {
    @Test func inOrderCompletionAdvances() {
        var t = PartitionOffsetTracker()
        t.begin(5); t.begin(6)
        #expect(t.finish(5) == 6)
        #expect(t.finish(6) == 7)
    }

    @Test func outOfOrderCompletionNeverPassesAnUnfinishedOffset() {
        var t = PartitionOffsetTracker()
        for o in Int64(10)...14 { t.begin(o) }
        #expect(t.finish(12) == nil)
        #expect(t.finish(14) == nil)
        #expect(t.finish(11) == nil)   // 10 still unfinished
        #expect(t.committable == 10)
        #expect(t.finish(10) == 13)    // 13 still unfinished
        #expect(t.finish(13) == 15)
        #expect(t.isIdle)
    }

    @Test func duplicatesAndUnknownOffsetsAreIgnored() {
        var t = PartitionOffsetTracker()
        t.begin(3); t.begin(3)
        #expect(t.unfinished == [3])
        #expect(t.finish(99) == nil)
        #expect(t.finish(3) == 4)
        #expect(t.finish(3) == nil)
    }

    @Test func randomisedCompletionMatchesModel() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            var t = PartitionOffsetTracker()
            let offsets = Array(Int64(100)..<Int64(140))
            offsets.forEach { t.begin($0) }
            var finished = Set<Int64>()
            var lastStored: Int64 = -1
            for o in offsets.shuffled(using: &generator) {
                finished.insert(o)
                var expected = Int64(100)
                while finished.contains(expected) { expected += 1 }
                if let stored = t.finish(o) {
                    #expect(stored == expected)
                    #expect(stored > lastStored)
                    lastStored = stored
                } else {
                    #expect(expected <= max(lastStored, 100))
                }
            }
            #expect(lastStored == 140)
        }
    }
}

@Suite(.timeLimit(.minutes(10))) struct HTTPSourceRulesTests {
    @Test func forbiddenRanges() {
        let forbidden: [[UInt8]] = [[127, 0, 0, 1], [10, 1, 2, 3], [172, 20, 0, 1], [192, 168, 1, 1], [169, 254, 169, 254],
                                    [100, 64, 0, 1], [0, 0, 0, 0], [224, 0, 0, 1], [255, 255, 255, 255],
                                    [UInt8](repeating: 0, count: 15) + [1],
                                    [0xfe, 0x80] + [UInt8](repeating: 0, count: 14),
                                    [0xfd, 0x00] + [UInt8](repeating: 0, count: 14),
                                    [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 127, 0, 0, 1]]
        for a in forbidden { #expect(HTTPSourceFetcher.isForbidden(a), "\(a)") }
        let allowed: [[UInt8]] = [[8, 8, 8, 8], [172, 32, 0, 1], [192, 169, 0, 1], [93, 184, 216, 34],
                                  [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 12),
                                  [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 8, 8, 8, 8]]
        for a in allowed { #expect(!HTTPSourceFetcher.isForbidden(a), "\(a)") }
    }

    @Test func loopbackURLIsRefusedBeforeConnecting() async {
        let fetcher = HTTPSourceFetcher(rules: .init())
        do {
            _ = try await fetcher.download("http://localhost:9/x.png", name: "t")
            Issue.record("expected refusal")
        } catch {
            #expect(error.code == .forbiddenSource)
            #expect(!error.isRetriable)
        }
        do {
            _ = try await fetcher.download("gopher://example.com/x", name: "t")
            Issue.record("expected refusal")
        } catch {
            #expect(error.code == .forbiddenSource)
        }
    }
}
