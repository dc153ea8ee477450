import Foundation
import Jobs
import PipelineRuntime
import Testing
@testable import KafkaConnector

/// Issue 12 item 11: one rule set for job fields, checked at parse time with exact messages.
@Suite(.timeLimit(.minutes(1))) struct JobFieldRuleTests {
    func message(_ json: String) -> String? {
        do {
            _ = try InputMessage.parse(Array(json.utf8), maxBytes: 1 << 20)
            return nil
        } catch {
            return error.message
        }
    }

    func code(_ json: String) -> KafkaConnectorError.Code? {
        do {
            _ = try InputMessage.parse(Array(json.utf8), maxBytes: 1 << 20)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func scaleMustBeAnIntegerInOneToFour() throws {
        #expect(message(#"{"source":"/a.png","scale":4.5}"#) == "field 'scale' must be an integer in 1...4, got 4.5")
        #expect(message(#"{"source":"/a.png","scale":"four"}"#)
                == #"field 'scale' must be an integer in 1...4, got the string "four""#)
        #expect(message(#"{"source":"/a.png","scale":true}"#) == "field 'scale' must be an integer in 1...4, got true")
        #expect(message(#"{"source":"/a.png","scale":8}"#) == "field 'scale' must be an integer in 1...4, got 8")
        #expect(message(#"{"source":"/a.png","scale":0}"#) == "field 'scale' must be an integer in 1...4, got 0")
        #expect(code(#"{"source":"/a.png","scale":8}"#) == .limitExceeded)
        #expect(code(#"{"source":"/a.png","scale":4.5}"#) == .invalidMessage)
        for scale in 1...4 {
            #expect(try InputMessage.parse(Array(#"{"source":"/a.png","scale":\#(scale)}"#.utf8), maxBytes: 1 << 20).scale == scale)
        }
        #expect(try InputMessage.parse(Array(#"{"source":"/a.png","scale":null}"#.utf8), maxBytes: 1 << 20).scale == nil)
    }

    @Test func controlCharactersInSourceOrOutputAreRejectedNotCut() {
        #expect(message(#"{"source":"/in/good.png\u0000.png"}"#)
                == "field 'source' contains the control character U+0000 at position 12; control characters are not allowed")
        #expect(message(#"{"source":"/in/a.png","output":"x\ny.png"}"#)
                == "field 'output' contains the control character U+000A at position 1; control characters are not allowed")
        #expect(message(#"{"source":"/in/a\u007f.png"}"#)?.contains("U+007F") == true)
        // The prompt is free text: a newline there is fine.
        #expect(message(#"{"source":"/in/a.png","prompt":"two\nlines"}"#) == nil)
    }

    @Test func outputDepthLengthHiddenAndTemporaryNamesAreRejected() {
        let deep = (0..<2000).map { _ in "d" }.joined(separator: "/") + "/x.png"
        #expect(message(#"{"source":"/a.png","output":"\#(deep)"}"#) == "field 'output': 4005 bytes, limit 1024")
        let seventeen = (0..<16).map { "d\($0)" }.joined(separator: "/") + "/x.png"
        #expect(message(#"{"source":"/a.png","output":"\#(seventeen)"}"#) == "field 'output': 17 path components, limit 16")
        let sixteen = (0..<15).map { "d\($0)" }.joined(separator: "/") + "/x.png"
        #expect(message(#"{"source":"/a.png","output":"\#(sixteen)"}"#) == nil)
        #expect(message(#"{"source":"/a.png","output":"sub/.hidden.png"}"#)
                == "field 'output': '.hidden.png' is a hidden name (starts with '.')")
        #expect(message(#"{"source":"/a.png","output":".cache/x.png"}"#)
                == "field 'output': '.cache' is a hidden name (starts with '.')")
        #expect(message(#"{"source":"/a.png","output":"x.png.part"}"#)
                == "field 'output': 'x.png.part' looks like a temporary file (ends with '.part')")
        #expect(message(#"{"source":"/a.png","output":"x.png~"}"#)
                == "field 'output': 'x.png~' looks like a temporary file (ends with '~')")
        #expect(message(#"{"source":"/a.png","output":"a/../x.png"}"#) == "field 'output': '..' is not allowed")
        // NAME_MAX: 230 bytes for the file (its temporary name must fit in 255 too), 255 for a folder.
        let name230 = String(repeating: "n", count: 226) + ".png"
        #expect(message(#"{"source":"/a.png","output":"\#(name230)"}"#) == nil)
        let name231 = String(repeating: "n", count: 227) + ".png"
        #expect(message(#"{"source":"/a.png","output":"\#(name231)"}"#)?.hasSuffix(
            "is 231 bytes, limit 230 (NAME_MAX 255 less room for the temporary name written first)") == true)
        let folder256 = String(repeating: "f", count: 256)
        #expect(message(#"{"source":"/a.png","output":"\#(folder256)/x.png"}"#)?.hasSuffix(
            "is 256 bytes, limit 255 (NAME_MAX)") == true)
        #expect(OutputFiles.maxNameBytes == 230)
        // The limit leaves room for the temporary name the pipeline writes first.
        let temporary = (OutputFiles.temporaryPath(for: "/o/" + name230) as NSString).lastPathComponent
        #expect(temporary.utf8.count <= 255)
    }
}
