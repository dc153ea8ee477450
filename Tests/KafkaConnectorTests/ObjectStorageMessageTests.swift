import Foundation
import Jobs
import ObjectStorage
import Testing
@testable import KafkaConnector

/// The message contract for `s3://` sources and outputs and presigned-URL outputs (no server needed).
@Suite(.timeLimit(.minutes(1))) struct ObjectStorageMessageTests {
    func parse(_ json: String) throws(KafkaConnectorError) -> InputMessage {
        try InputMessage.parse(Array(json.utf8), maxBytes: 1 << 20)
    }

    @Test func s3SourcesParse() throws {
        #expect(try InputMessage.jobSource("s3://media-in/a/b.png") == .s3("s3://media-in/a/b.png"))
        for bad in ["s3://media-in/", "s3://m/x.png", "s3://media-in/../x.png"] {
            let error = #expect(throws: KafkaConnectorError.self) { _ = try InputMessage.jobSource(bad) }
            #expect(error?.code == .invalidMessage && error?.message.hasPrefix("field 'source'") == true)
        }
        #expect(JobSource.s3("s3://b/k").logDescription == "s3://b/k")
    }

    @Test func remoteOutputsAreNamedFromTheIdAndFormat() throws {
        let id = JobID("job-1")
        let prefix = try parse(#"{"source":"/x","output":"s3://media-out/done/"}"#)
        #expect(try InputMessage.remoteOutput(prefix, id: id, defaultFormat: "png")?.output
                == .s3(S3Location(bucket: "media-out", key: "done/job-1.png")))
        let jpeg = try parse(#"{"source":"/x","output":"s3://media-out/done/","format":"jpeg"}"#)
        #expect(try InputMessage.remoteOutput(jpeg, id: id, defaultFormat: "png")?.output
                == .s3(S3Location(bucket: "media-out", key: "done/job-1.jpg")))
        let named = try parse(#"{"source":"/x","output":"s3://media-out/a/b.webp"}"#)
        let namedOutput = try InputMessage.remoteOutput(named, id: id, defaultFormat: "png")
        #expect(namedOutput?.output == .s3(S3Location(bucket: "media-out", key: "a/b.webp")) && namedOutput?.format == "webp")
        let url = try parse(#"{"source":"/x","output":"https://h.example/o/x.tif?X-Amz-Signature=s","output_method":"put","output_headers":{"Content-Type":"image/tiff"}}"#)
        let remote = try InputMessage.remoteOutput(url, id: id, defaultFormat: "png")
        #expect(remote?.output == .url("https://h.example/o/x.tif?X-Amz-Signature=s", method: "PUT",
                                       headers: ["Content-Type": "image/tiff"]))
        #expect(remote?.format == "tif")
        #expect(remote?.output.displayName == "https://h.example/o/x.tif (query hidden)")
        #expect(try InputMessage.remoteOutput(try parse(#"{"source":"/x","output":"a/b.png"}"#), id: id,
                                              defaultFormat: "png") == nil)
    }

    @Test func remoteOutputRules() {
        let long = "https://h.example/x.png?sig=" + String(repeating: "a", count: 8192)
        let cases: [(String, String)] = [
            (#"{"source":"/x","output":"\#(long)"}"#, "field 'output': URL is 8220 bytes, limit 8192"),
            (#"{"source":"/x","output":"s3://b/k.png"}"#, "field 'output': bucket name 'b' must be 3-63 characters"),
            (#"{"source":"/x","output":"out/x.png","output_method":"PUT"}"#, "field 'output_method' needs an http(s) URL"),
            (#"{"source":"/x","output":"https://h.example/x.png","output_method":"DELETE"}"#, "field 'output_method' = 'DELETE' is not one of"),
            (#"{"source":"/x","output":"https://h.example/x.png","output_headers":{"Host":"evil"}}"#, "field 'output_headers': header 'Host' is set by the client"),
            (#"{"source":"/x","output":"https://h.example/x.png","output_headers":{"X-A":"a\nb"}}"#, "field 'output_headers': header 'X-A' value contains a control character"),
            (#"{"source":"/x","output":"s3://bucket/k.png","output_headers":{"X-A":"1"}}"#, "field 'output_headers' needs an http(s) URL"),
        ]
        for (json, message) in cases {
            let error = #expect(throws: KafkaConnectorError.self, "\(message)") { _ = try parse(json) }
            #expect(error?.code == .invalidMessage)
            #expect(error?.message.hasPrefix(message) == true, "\(error?.message ?? "")")
        }
        // At most 32 headers, values at most 8192 bytes.
        func headers(_ count: Int, valueBytes: Int = 1) -> String {
            let entries = (0..<count).map { #""X-H\#($0)":"\#(String(repeating: "v", count: valueBytes))""# }
            return #"{"source":"/x","output":"https://h.example/x.png","output_headers":{\#(entries.joined(separator: ","))}}"#
        }
        #expect((try? parse(headers(32, valueBytes: 8192))) != nil)
        let tooMany = #expect(throws: KafkaConnectorError.self) { _ = try parse(headers(33)) }
        #expect(tooMany?.message == "field 'output_headers': 33 headers, limit 32")
        let tooLong = #expect(throws: KafkaConnectorError.self) { _ = try parse(headers(1, valueBytes: 8193)) }
        #expect(tooLong?.message == "field 'output_headers': header 'X-H0' value is longer than 8192 bytes")
        // An 8192-byte URL is accepted; presigned URLs with a session token are longer than a path's 1024 bytes.
        let fits = "https://h.example/x.png?sig=" + String(repeating: "a", count: 8192 - 28)
        #expect(fits.utf8.count == 8192)
        #expect((try? parse(#"{"source":"/x","output":"\#(fits)"}"#)) != nil)
    }
}
