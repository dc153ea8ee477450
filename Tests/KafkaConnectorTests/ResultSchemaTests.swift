import DreamsrTestKit
import Foundation
import Jobs
import Testing
@testable import KafkaConnector

/// Results message v2 against its committed JSON Schema (docs/schemas/result-v2.schema.json), the docs' example
/// messages, and the checker itself (it must reject what the schema forbids).
@Suite(.timeLimit(.minutes(2))) struct ResultSchemaTests {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static func schema() throws -> JSONSchemaCheck {
        try JSONSchemaCheck(schemaFile: root + "/docs/schemas/result-v2.schema.json")
    }

    static func sample(status: JobOutcome.Status) throws -> (ResultMessage, String) {
        let dir = URL(fileURLWithPath: try ScratchFiles.makeDirectory(prefix: "dreamsr-schema-"))
        let path = dir.appendingPathComponent("a.png").path
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        var outcome = JobOutcome(id: JobID("a"), status: status, output: path, width: 64, height: 48,
                                 stageSeconds: ["decode": 0.5, "restore": 1.25], pipeline: "realesrgan")
        if status == .error {
            outcome.errorStage = "decode"
            outcome.errorMessage = "not a decodable image"
        }
        let message = ConsumedMessage(topic: "in", partition: 1, offset: 9, value: [], headers: [
            KafkaHeader("TraceParent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            KafkaHeader("x-trace-id", String(repeating: "x", count: ResultMessage.maxHeaderValueBytes + 1)),
            KafkaHeader("secret", "not passed"),
        ])
        let started = Date(timeIntervalSince1970: 1_796_364_432.345)
        var result = ResultMessage(outcome: outcome, attempts: 2, message: message, startedAt: started,
                                   finishedAt: started + 3.367,
                                   file: status == .ok ? ResultMessage.describeFile(path) : nil,
                                   errorCode: status == .ok ? nil : "processing",
                                   headers: ResultMessage.passThroughHeaders(message, names: ["traceparent", "x-trace-id"]))
        if status == .error { result.output = nil; result.outputURI = nil }
        return (result, path)
    }

    @Test func producedResultsMatchTheSchema() throws {
        let schema = try Self.schema()
        let (ok, path) = try Self.sample(status: .ok)
        #expect(schema.violations(json: ok.encoded()) == [])
        #expect(ok.schemaVersion == 2)
        #expect(ok.bytes == 3)
        // SHA-256("abc") (FIPS 180-2 test vector), computed from the file as written.
        #expect(ok.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ok.outputURI == "file://" + path)
        #expect(ok.startedAt == "2026-12-04T06:07:12.345Z" && ok.finishedAt == "2026-12-04T06:07:15.712Z")
        // Names compared case-insensitively, reported as configured; an over-long value and unlisted headers are left out.
        #expect(ok.headers == ["traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"])
        #expect(ok.error == nil)

        let (failed, _) = try Self.sample(status: .error)
        #expect(schema.violations(json: failed.encoded()) == [])
        #expect(failed.error == ResultMessage.Failure(code: "processing", stage: "decode", message: "not a decodable image"))
        #expect(failed.errorStage == "decode" && failed.errorMessage == "not a decodable image")
        let decoded = try JSONDecoder().decode(ResultMessage.self, from: Data(failed.encoded()))
        #expect(decoded == failed)
    }

    /// Every ```json block of the "Results topic" section of docs/kafka.md is a valid v2 result and decodes.
    @Test func docsExamplesMatchTheSchema() throws {
        let schema = try Self.schema()
        let doc = try String(contentsOfFile: Self.root + "/docs/kafka.md", encoding: .utf8)
        let section = try #require(doc.components(separatedBy: "### Results topic").dropFirst().first?
            .components(separatedBy: "\n### ").first)
        let blocks = section.components(separatedBy: "```json\n").dropFirst().compactMap {
            $0.components(separatedBy: "\n```").first
        }
        #expect(blocks.count == 2)
        var statuses: [String] = []
        for block in blocks {
            #expect(schema.violations(json: Array(block.utf8)) == [], "\(block)")
            let result = try JSONDecoder().decode(ResultMessage.self, from: Data(block.utf8))
            statuses.append(result.status)
        }
        #expect(statuses == ["ok", "error"])
    }

    /// The checker refuses what the schema forbids (so the two tests above can fail).
    @Test func schemaCheckRejectsBrokenResults() throws {
        let schema = try Self.schema()
        let (ok, _) = try Self.sample(status: .ok)
        let valid = try #require(try JSONSerialization.jsonObject(with: Data(ok.encoded())) as? [String: Any])
        func violations(_ change: (inout [String: Any]) -> Void) throws -> [String] {
            var copy = valid
            change(&copy)
            return schema.violations(json: Array(try JSONSerialization.data(withJSONObject: copy)))
        }
        #expect(try violations { $0["started_at"] = nil }.contains { $0.contains("started_at") })
        #expect(try violations { $0["sha256"] = nil }.contains { $0.contains("sha256") })       // ok needs its digest
        #expect(try violations { $0["sha256"] = "ABC" }.contains { $0.contains("$.sha256") })
        #expect(try violations { $0["attempts"] = "1" }.contains { $0.contains("$.attempts") })
        #expect(try violations { $0["attempts"] = 0 }.contains { $0.contains("minimum") })
        #expect(try violations { $0["schema_version"] = 1 }.contains { $0.contains("schema_version") })
        #expect(try violations { $0["status"] = "done" }.contains { $0.contains("$.status") })
        #expect(try violations { $0["surprise"] = true }.contains { $0.contains("surprise") })
        #expect(try violations { $0["headers"] = ["t": 1] }.contains { $0.contains("$.headers.t") })
        #expect(try violations { $0["status"] = "error" }.contains { $0.contains("'error'") })  // error needs `error`
        #expect(try violations { $0["error"] = ["code": "x", "stage": "s", "message": "m"] }
            .contains { $0.contains("must not match") })  // ok with an error
        // A schema keyword the checker does not implement is refused, never ignored.
        let odd = JSONSchemaCheck(schema: try JSONValue.parse(Array(#"{"type":"object","minProperties":3}"#.utf8)))
        #expect(odd.violations(json: Array("{}".utf8)).contains { $0.contains("unsupported keyword 'minProperties'") })
    }

    @Test func assignmentStrategyAndResultHeadersAreConfigurable() throws {
        var c = KafkaConnectorConfiguration(bootstrapServers: "localhost:9092", inputTopic: "images")
        #expect(c.consumerProperties["partition.assignment.strategy"] == "range,roundrobin")
        #expect(c.resultHeaders.contains("traceparent"))
        c.assignmentStrategy = "cooperative-sticky"
        try c.validate()
        #expect(c.consumerProperties["partition.assignment.strategy"] == "cooperative-sticky")
        c.assignmentStrategy = "sticky"
        #expect(throws: KafkaConnectorError.self) { try c.validate() }
        c.assignmentStrategy = "range"
        c.resultHeaders = [""]
        #expect(throws: KafkaConnectorError.self) { try c.validate() }
    }
}
