import DreamsrTestKit
import Foundation
import Jobs
import Logging
import ObjectStorage
import ServiceLifecycle
import Testing
@testable import KafkaConnector

/// Kafka jobs with `s3://` sources and outputs and presigned-URL outputs, against moto's S3 server on loopback
/// (scripts/start-moto.sh; signatures checked), with a fault-injecting proxy in front of it. Every run also scans
/// what was logged, the results and the dead letters for the credentials.
@Suite(.timeLimit(.minutes(4)), .enabled(if: !MotoServer.isUnavailable, "PyPI unreachable: moto[server] cannot be installed"))
struct KafkaObjectStorageTests {
    let bucket = "dreamsr-kafka"

    func storage(endpoint: URL, secret: String? = nil) throws -> S3Configuration {
        let m = try MotoServer.instance()
        var c = S3Configuration(endpoint: endpoint, region: "us-east-1",
                                credentials: S3Credentials(accessKeyID: m.accessKeyID,
                                                           secretAccessKey: secret ?? m.secretAccessKey))
        c.policy = TransferPolicy(connectTimeout: .seconds(2), idleTimeout: .seconds(1), requestTimeout: .seconds(20),
                                  maxAttempts: 3, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(100))
        return c
    }

    /// Direct access to moto, for putting inputs and reading outputs.
    func direct() throws -> S3Client {
        try S3Client(configuration: try storage(endpoint: try MotoServer.instance().endpoint), logger: Logger(label: "t"))
    }

    func put(_ text: String, key: String) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-put-\(UUID().uuidString)").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try await direct().upload(file: path, to: S3Location(bucket: bucket, key: key))
    }

    func get(_ key: String) async throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-get-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try await direct().download(S3Location(bucket: bucket, key: key), to: path)
        return String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
    }

    /// Runs the source with a capturing logger until `ok` ok results and `dead` dead letters were published.
    func run(_ f: Fixture, _ configuration: KafkaConnectorConfiguration, capture: LogCapture, ok: Int,
             dead: Int) async throws -> (reached: Bool, results: [ResultMessage], letters: [ConsumedMessage]) {
        let events = EventLog()
        let source = KafkaJobSource(configuration: configuration, processor: FakeProcessor(),
                                    logger: capture.logger("kafka-s3", level: .debug), onEvent: events.handler)
        let group = ServiceGroup(services: [source], logger: testLogger("kafka-s3-group"))
        let running = Task { try await group.run() }
        let reached = await events.wait(timeout: .seconds(60)) { okResults($0) == ok && deadLetters($0) == dead }
        await group.triggerGracefulShutdown()
        try await running.value
        let results = try await KafkaTools.read(bootstrap: f.bootstrap, topic: "\(f.topic).results", partitions: 1,
                                                count: ok + dead).map {
            try JSONDecoder().decode(ResultMessage.self, from: Data($0.value ?? []))
        }
        let letters = try await KafkaTools.read(bootstrap: f.bootstrap, topic: "\(f.topic).dlq", partitions: 1, count: dead)
        return (reached, results, letters)
    }

    /// No credential in any log line, result or dead letter (value and headers).
    func expectNoCredential(_ capture: LogCapture, _ results: [ResultMessage], _ letters: [ConsumedMessage],
                            extra: [String] = []) throws {
        let m = try MotoServer.instance()
        var texts = capture.lines
        texts += results.map { String(decoding: $0.encoded(), as: UTF8.self) }
        for letter in letters {
            texts += letter.headers.compactMap(\.stringValue)
        }
        #expect(texts.count > 5)
        for text in texts {
            for secret in [m.secretAccessKey, m.accessKeyID, "Signature="] + extra {
                #expect(!text.contains(secret), "credential in: \(text.prefix(300))")
            }
        }
    }

    func header(_ letter: ConsumedMessage, _ name: String) -> String? {
        letter.headers.first { $0.name == name }?.stringValue
    }

    @Test func s3SourcesAndOutputsWithRetriesRefusalsAndTimeouts() async throws {
        let m = try MotoServer.instance()
        let f = try Fixture("s3", partitions: 2)
        try await put("IMAGE-A", key: "in/a.raw")
        try await put("IMAGE-B", key: "in/b.raw")
        // In front of moto: the first two requests answer 503 (retried), keys under never/ get no answer.
        let proxy = try FaultInjectingProxy(upstreamPort: m.port) { request, n in
            if request.target.contains("/never/") { return .stall }
            return n < 2 ? .respond(status: 503, headers: [:], body: "<Error><Code>SlowDown</Code></Error>") : .forward
        }
        defer { proxy.stop() }
        var c = f.configuration(maxInFlight: 2)
        c.objectStorage = try storage(endpoint: proxy.endpoint)
        let downloads = f.output.deletingLastPathComponent().appendingPathComponent("downloads")
        try FileManager.default.createDirectory(at: downloads, withIntermediateDirectories: true)
        c.downloadDirectory = downloads.path
        // The operator's endpoint is trusted on loopback; a job's URL is not (allow_private stays false).
        let messages: [(key: String?, value: String, headers: [KafkaHeader])] = [
            ("s3-to-s3", #"{"id":"s3-to-s3","source":"s3://dreamsr-kafka/in/a.raw","output":"s3://dreamsr-kafka/out/"}"#, []),
            ("s3-to-key", #"{"id":"s3-to-key","source":"s3://dreamsr-kafka/in/b.raw","output":"s3://dreamsr-kafka/named/b.webp"}"#, []),
            ("s3-to-local", #"{"id":"s3-to-local","source":"s3://dreamsr-kafka/in/a.raw"}"#, []),
            ("missing-key", #"{"id":"missing-key","source":"s3://dreamsr-kafka/in/none.raw"}"#, []),
            ("missing-bucket", #"{"id":"missing-bucket","source":"s3://dreamsr-nobucket/in/a.raw"}"#, []),
            ("never", #"{"id":"never","source":"s3://dreamsr-kafka/never/a.raw"}"#, []),
            ("ssrf-output", #"{"id":"ssrf-output","source":"s3://dreamsr-kafka/in/a.raw","output":"http://127.0.0.1:\#(m.port)/dreamsr-kafka/x.png?X-Amz-Signature=abc"}"#, []),
            ("bad-s3", #"{"id":"bad-s3","source":"s3://x/in/a.raw"}"#, []),
        ]
        try await f.produce(messages)
        let capture = LogCapture()
        let start = ContinuousClock.now
        let (reached, results, letters) = try await run(f, c, capture: capture, ok: 3, dead: 5)
        #expect(reached, "results \(results.map { "\($0.id)=\($0.status)" })")
        #expect(ContinuousClock.now - start < .seconds(60))

        let ok = Dictionary(uniqueKeysWithValues: results.filter { $0.status == "ok" }.map { ($0.id, $0) })
        #expect(ok["s3-to-s3"]?.output == "s3://dreamsr-kafka/out/s3-to-s3.png")
        #expect(ok["s3-to-key"]?.output == "s3://dreamsr-kafka/named/b.webp")
        #expect(ok["s3-to-local"]?.output == f.output.appendingPathComponent("s3-to-local.png").path)
        #expect(try await get("out/s3-to-s3.png") == "UPSCALED:IMAGE-A")
        #expect(try await get("named/b.webp") == "UPSCALED:IMAGE-B")
        #expect(try f.outputs() == ["s3-to-local.png": "UPSCALED:IMAGE-A"])
        // Results v2 for object outputs: the object's URI, and size + digest of what was uploaded.
        let schema = try ResultSchemaTests.schema()
        for (id, uri) in [("s3-to-s3", "s3://dreamsr-kafka/out/s3-to-s3.png"), ("s3-to-key", "s3://dreamsr-kafka/named/b.webp")] {
            let result = try #require(ok[id])
            #expect(result.outputURI == uri)
            #expect(result.bytes == "UPSCALED:IMAGE-A".utf8.count)
            #expect(schema.violations(json: result.encoded()) == [], "\(id)")
        }

        var stages: [String: (stage: String?, error: String)] = [:]
        for letter in letters {
            let key = String(decoding: letter.key ?? [], as: UTF8.self)
            stages[key] = (header(letter, DeadLetterHeader.stage), header(letter, DeadLetterHeader.error) ?? "")
            #expect(header(letter, DeadLetterHeader.attempts) == "1", "\(key): S3 retries happen inside the client")
        }
        #expect(stages["missing-key"]?.stage == "download")
        #expect(stages["missing-key"]?.error.contains("s3://dreamsr-kafka/in/none.raw: HTTP 404 NoSuchKey") == true)
        #expect(stages["missing-bucket"]?.error.contains("s3://dreamsr-nobucket/in/a.raw: HTTP 404 NoSuchBucket") == true)
        #expect(stages["never"]?.stage == "download")
        #expect(stages["never"]?.error.contains("after 3 attempts") == true)
        #expect(letters.first { String(decoding: $0.key ?? [], as: UTF8.self) == "never" }
            .flatMap { header($0, DeadLetterHeader.errorCode) } == "timeout")
        #expect(proxy.requests.filter { $0.target.contains("/never/") }.count == 3)
        #expect(stages["ssrf-output"]?.stage == "upload")
        #expect(stages["ssrf-output"]?.error.contains("loopback/link-local/private") == true)
        #expect(stages["ssrf-output"]?.error.contains("X-Amz-Signature=abc") == false)
        #expect(stages["bad-s3"]?.stage == "parse")
        // The two injected 503s were retried: nothing failed because of them.
        #expect(proxy.requests.count >= 2)
        // Nothing staged is left behind.
        let staged = try FileManager.default.contentsOfDirectory(atPath: downloads.path)
        #expect(staged.isEmpty, "\(staged)")
        try expectNoCredential(capture, results, letters)
    }

    @Test func wrongCredentialsDeadLetterOnceAndPresignedOutputsUpload() async throws {
        let m = try MotoServer.instance()
        let f = try Fixture("s3-creds", partitions: 1)
        let counter = try FaultInjectingProxy(upstreamPort: m.port) { _, _ in .forward }
        defer { counter.stop() }
        let sink = try FaultInjectingProxy(upstreamPort: nil) { _, _ in .respond(status: 200, headers: [:], body: "") }
        defer { sink.stop() }
        var c = f.configuration(maxInFlight: 2)
        c.objectStorage = try storage(endpoint: counter.endpoint, secret: "wrong-secret-value")
        c.http.allowPrivateAddresses = true
        let input = try f.writeInput("p.raw", "IMAGE-P")
        let url = "\(sink.endpoint.absoluteString)/up/p.png?X-Amz-Signature=presigned-signature-value"
        try await f.produce([
            ("denied", #"{"id":"denied","source":"s3://dreamsr-kafka/in/a.raw"}"#, []),
            ("presigned", #"{"id":"presigned","source":"\#(input)","output":"\#(url)","output_method":"PUT","output_headers":{"Content-Type":"image/png","x-amz-meta-trace":"t-1"}}"#, []),
        ])
        let capture = LogCapture()
        let (reached, results, letters) = try await run(f, c, capture: capture, ok: 1, dead: 1)
        #expect(reached)
        #expect(counter.requests.count == 1, "a 403 is not retried")
        let letter = try #require(letters.first)
        #expect(header(letter, DeadLetterHeader.stage) == "download")
        #expect(header(letter, DeadLetterHeader.error)?.contains("s3://dreamsr-kafka/in/a.raw: HTTP 403 SignatureDoesNotMatch") == true)
        let presigned = try #require(results.first { $0.id == "presigned" })
        #expect(presigned.status == "ok")
        #expect(presigned.output == "\(sink.endpoint.absoluteString)/up/p.png (query hidden)")
        let sent = try #require(sink.requests.first)
        #expect(sent.method == "PUT" && sent.headers["content-type"] == "image/png" && sent.headers["x-amz-meta-trace"] == "t-1")
        #expect(String(decoding: sent.body, as: UTF8.self) == "UPSCALED:IMAGE-P")
        try expectNoCredential(capture, results, letters, extra: ["wrong-secret-value", "presigned-signature-value"])
    }
}
