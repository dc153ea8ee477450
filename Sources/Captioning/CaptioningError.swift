/// The one error type of the Captioning module.
///
/// These errors do not reach a job as failures: the `Captioner` turns each into the documented fallback (the fixed
/// prompt) and records `description` as the reason in `CaptionResult.notes`. They surface as thrown errors only from
/// `ChatCompletionsClient` and from `CaptionerConfiguration.validate()`.
public struct CaptioningError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// The request did not complete within `CaptionerConfiguration.timeout`.
        public static let timeout = Code(name: "timeout")
        /// Connection refused/reset, DNS, TLS: the server could not be talked to.
        public static let transport = Code(name: "transport")
        /// The server answered with a non-2xx HTTP status.
        public static let httpStatus = Code(name: "httpStatus")
        /// 2xx, but the body is not a chat-completions reply with a non-empty text message.
        public static let malformedReply = Code(name: "malformedReply")
        /// The configuration cannot work (bad endpoint URL, zero concurrency, ...).
        public static let invalidConfiguration = Code(name: "invalidConfiguration")
    }

    public let code: Code
    public let message: String
    /// HTTP status for `.httpStatus`.
    public let status: Int?
    /// Whether trying the same request again may succeed (timeouts, transport errors, 5xx and 429).
    public let isRetriable: Bool

    public init(_ code: Code, _ message: String, status: Int? = nil, isRetriable: Bool) {
        self.code = code
        self.message = message
        self.status = status
        self.isRetriable = isRetriable
    }

    public var description: String { "\(code): \(message)" }

    static func timeout(after seconds: Double, url: String) -> CaptioningError {
        CaptioningError(.timeout, "no reply from \(url) within \(format(seconds)) s", isRetriable: true)
    }

    static func http(_ status: Int, url: String, body: String) -> CaptioningError {
        CaptioningError(.httpStatus, "HTTP \(status) from \(url)\(body.isEmpty ? "" : ": " + body.prefix(200))",
                        status: status, isRetriable: status >= 500 || status == 429)
    }

    static func malformed(_ why: String, url: String) -> CaptioningError {
        CaptioningError(.malformedReply, "malformed chat-completions reply from \(url): \(why)", isRetriable: false)
    }
}

func format(_ seconds: Double) -> String {
    let ms = (seconds * 1000).rounded()
    return ms.truncatingRemainder(dividingBy: 1000) == 0 ? String(Int(ms / 1000)) : String(ms / 1000)
}
