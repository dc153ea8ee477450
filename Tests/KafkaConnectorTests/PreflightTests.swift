import Foundation
import Jobs
import Testing
@testable import KafkaConnector

/// Issue 12 items 10 and 5: failures no retry can fix are classified before the model runs (one dead letter, no
/// retries, no processor call, an exact message), and an `output` through a symbolic link inside the output folder
/// is refused instead of written outside it.
@Suite(.timeLimit(.minutes(2))) struct PreflightTests {
    @Test func hopelessJobsAreDeadLetteredOnceWithoutAModelRun() async throws {
        let f = try Fixture("preflight", partitions: 1)
        let ok = try f.writeInput("ok.raw", "OK")
        let folder = f.input.appendingPathComponent("a-folder").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // A file where the output wants a folder, and a link inside OUT pointing outside it.
        try Data("not a folder".utf8).write(to: f.output.appendingPathComponent("blocker"))
        let elsewhere = f.input.deletingLastPathComponent().appendingPathComponent("elsewhere")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: f.output.appendingPathComponent("link").path,
                                                   withDestinationPath: elsewhere.path)
        try FileManager.default.createSymbolicLink(atPath: f.input.appendingPathComponent("zero-link").path,
                                                   withDestinationPath: "/dev/zero")
        let cases: [(id: String, json: String, stage: String, error: String)] = [
            ("dir", #"{"id":"dir","source":"\#(folder)"}"#, "source",
             "source '\(folder)' is a folder, not a regular file"),
            ("zero", #"{"id":"zero","source":"/dev/zero"}"#, "source",
             "source '/dev/zero' is a character device, not a regular file"),
            ("zero-link", #"{"id":"zero-link","source":"\#(f.input.path)/zero-link"}"#, "source",
             "source '\(f.input.path)/zero-link' is a character device, not a regular file"),
            ("parent-file", #"{"id":"parent-file","source":"\#(ok)","output":"blocker/x.png"}"#, "output",
             "output '\(f.output.path)/blocker/x.png': '\(f.output.path)/blocker' is a regular file, not a folder"),
            ("via-link", #"{"id":"via-link","source":"\#(ok)","output":"link/x.png"}"#, "output",
             "output '\(f.output.path)/link/x.png': folder '\(f.output.path)/link' is a symbolic link; outputs must stay inside kafka.output_dir"),
            ("via-link-folder", #"{"id":"via-link-folder","source":"\#(ok)","output":"link/"}"#, "output",
             "output '\(f.output.path)/link/via-link-folder.png': folder '\(f.output.path)/link' is a symbolic link; outputs must stay inside kafka.output_dir"),
            ("long-name", #"{"id":"long-name","source":"\#(ok)","output":"\#(String(repeating: "n", count: 251)).png"}"#, "parse",
             "field 'output': name '\(String(repeating: "n", count: 32))...' is 255 bytes, limit 230 (NAME_MAX 255 less room for the temporary name written first)"),
        ]
        var messages: [(key: String?, value: String, headers: [KafkaHeader])] = cases.map {
            (key: $0.id, value: $0.json, headers: [])
        }
        messages.append((key: "fine", value: #"{"id":"fine","source":"\#(ok)","output":"sub/dir/fine.png"}"#, headers: []))
        try await f.produce(messages)

        let processor = FakeProcessor()
        let events = EventLog()
        let reached = try await f.run(f.configuration(maxInFlight: 2), processor: processor, events: events) {
            deadLetters($0) == cases.count && okResults($0) == 1
        }
        #expect(reached, "dlq=\(deadLetters(events.events)) ok=\(okResults(events.events))")
        let calls = processor.stats.withLock { $0.calls }
        #expect(calls == ["fine": 1], "only the valid job reaches the processor")
        #expect(!events.events.contains { if case .retrying = $0 { return true } else { return false } })
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere.path).isEmpty, "nothing written through the link")
        #expect(FileManager.default.fileExists(atPath: f.output.appendingPathComponent("sub/dir/fine.png").path))

        let dlq = try await KafkaTools.read(bootstrap: f.bootstrap, topic: "\(f.topic).dlq", partitions: 1,
                                            count: cases.count)
        #expect(dlq.count == cases.count)
        for c in cases {
            let letter = dlq.first { $0.key == Array(c.id.utf8) }
            func header(_ name: String) -> String? { letter?.headers.first { $0.name == name }?.stringValue }
            #expect(header(DeadLetterHeader.stage) == c.stage, "\(c.id)")
            #expect(header(DeadLetterHeader.error) == c.error, "\(c.id)")
            #expect(header(DeadLetterHeader.attempts) == "1", "\(c.id)")
        }
        let (committed, high) = try await f.committedEqualsWatermarks()
        #expect(committed == high)
    }
}
