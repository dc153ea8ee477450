import DreamsrApp
import Foundation
import Logging
import PipelineRuntime
import Support
import Testing

@Suite(.timeLimit(.minutes(1))) struct JSONLogTests {
    @Test func everyLineParsesAsOneObjectWithStableKeys() throws {
        let lines = Locked<[String]>([])
        var logger = Logger(label: "dreamsr") { JSONLogHandler(label: $0) { line in lines.withLock { $0.append(line) } } }
        logger.logLevel = .debug
        logger[metadataKey: "pipeline"] = "realesrgan"
        logger.info("job done", metadata: ["id": "a\"b", "file": "evil\nname\u{1}.png", "seconds": "1.5"])
        logger.warning("multi\nline \u{2028} message\\")
        logger.debug("nested", metadata: ["list": ["a", "b"], "dict": ["k": "v"]])
        let text = lines.current.joined()
        let split = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(split.count == 4 && split.last == "")  // three lines, each ending in a newline
        for (i, line) in split.dropLast().enumerated() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["logger"] as? String == "dreamsr")
            #expect(object["pipeline"] as? String == "realesrgan")
            let ts = try #require(object["ts"] as? String)
            #expect(ts.count == 24 && ts.hasSuffix("Z"))
            #expect(line.hasPrefix("{\"ts\":"), "line \(i) starts with ts")
        }
        let first = try #require(try JSONSerialization.jsonObject(with: Data(split[0].utf8)) as? [String: Any])
        #expect(first["msg"] as? String == "job done")
        #expect(first["level"] as? String == "info")
        #expect(first["id"] as? String == "a\"b")
        #expect(first["file"] as? String == "evil\nname\u{1}.png")
        let second = try #require(try JSONSerialization.jsonObject(with: Data(split[1].utf8)) as? [String: Any])
        #expect(second["msg"] as? String == "multi\nline \u{2028} message\\")
    }
}
