import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An image to caption: encoded PNG/JPEG/WebP bytes as the caller produced them.
public struct CaptionImage: Sendable {
    public var data: Data
    /// MIME type for the data URL; `nil` sniffs PNG/JPEG/WebP from the magic bytes.
    public var mimeType: String?

    public init(data: Data, mimeType: String? = nil) {
        self.data = data
        self.mimeType = mimeType
    }

    var resolvedMIMEType: String {
        if let mimeType { return mimeType }
        let b = [UInt8](data.prefix(12))
        if b.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return "image/png" }
        if b.starts(with: [0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if b.count >= 12, b[0..<4].elementsEqual(Array("RIFF".utf8)), b[8..<12].elementsEqual(Array("WEBP".utf8)) {
            return "image/webp"
        }
        return "application/octet-stream"
    }

    var dataURL: String { "data:\(resolvedMIMEType);base64,\(data.base64EncodedString())" }
}

/// One request/reply exchange with an OpenAI-compatible chat-completions server (no retries here).
///
/// The deadline is enforced by the client itself: when it passes, the URLSession task is cancelled and the call
/// throws `.timeout`, whatever the server or the transport does.
public final class ChatCompletionsClient: Sendable {
    public let url: URL
    let model: String
    let apiKey: String?
    let timeout: Double
    let maxTokens: Int
    let temperature: Double
    private let session: URLSession

    public init(url: URL, model: String, apiKey: String? = nil, timeout: Double, maxTokens: Int, temperature: Double) {
        self.url = url
        self.model = model
        self.apiKey = apiKey
        self.timeout = timeout
        self.maxTokens = maxTokens
        self.temperature = temperature
        // swift-corelibs-foundation truncates these to whole seconds (a 0.3 s timeout fires at once), so they are
        // only a backstop; the exact deadline is the client's own timer in `send`.
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = Self.backstop(timeout)
        config.timeoutIntervalForResource = Self.backstop(timeout)
        config.httpMaximumConnectionsPerHost = 16
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: config)
    }

    deinit { session.invalidateAndCancel() }

    static func backstop(_ timeout: Double) -> Double { timeout.rounded(.up) + 1 }

    /// The JSON body: one user message with a text part and an `image_url` part holding a base64 data URL.
    func requestBody(instruction: String, image: CaptionImage) throws -> Data {
        let body: [String: Any] = [
            "model": model,
            "stream": false,
            "max_tokens": maxTokens,
            "temperature": temperature,
            "messages": [[
                "role": "user",
                "content": [
                    ["type": "text", "text": instruction],
                    ["type": "image_url", "image_url": ["url": image.dataURL]],
                ],
            ]],
        ]
        return try JSONSerialization.data(withJSONObject: body)
    }

    /// Sends one request and returns the reply's message text (trimmed, non-empty).
    public func complete(instruction: String, image: CaptionImage) async throws -> String {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData,
                                 timeoutInterval: Self.backstop(timeout))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        request.httpBody = try requestBody(instruction: instruction, image: image)

        let (data, response) = try await send(request)
        let urlString = url.absoluteString
        guard let http = response as? HTTPURLResponse else {
            throw CaptioningError(.transport, "no HTTP response from \(urlString)", isRetriable: true)
        }
        guard (200..<300).contains(http.statusCode) else {
            throw CaptioningError.http(http.statusCode, url: urlString, body: String(decoding: data.prefix(300), as: UTF8.self))
        }
        return try Self.parseReply(data, url: urlString)
    }

    /// `choices[0].message.content` as a string, or the concatenated text parts of a content array.
    static func parseReply(_ data: Data, url: String) throws -> String {
        guard let object = try? JSONSerialization.jsonObject(with: data) else {
            throw CaptioningError.malformed("body is not JSON (\(data.count) bytes)", url: url)
        }
        guard let root = object as? [String: Any] else { throw CaptioningError.malformed("body is not an object", url: url) }
        if let error = root["error"] {
            throw CaptioningError.malformed("server returned an error object: \(String(describing: error).prefix(200))", url: url)
        }
        guard let choices = root["choices"] as? [Any], let first = choices.first as? [String: Any] else {
            throw CaptioningError.malformed("no choices[0]", url: url)
        }
        guard let message = first["message"] as? [String: Any] else {
            throw CaptioningError.malformed("choices[0] has no message", url: url)
        }
        var text: String
        if let s = message["content"] as? String {
            text = s
        } else if let parts = message["content"] as? [[String: Any]] {
            text = parts.compactMap { $0["text"] as? String }.joined(separator: " ")
        } else {
            throw CaptioningError.malformed("choices[0].message.content is not text", url: url)
        }
        text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw CaptioningError.malformed("empty message content", url: url) }
        return text
    }

    /// Completion-handler request raced against a timer; exactly one of them resumes the continuation.
    private func send(_ request: URLRequest) async throws -> (Data, URLResponse) {
        let state = OnceState()
        let urlString = url.absoluteString
        let timeout = self.timeout
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Data, URLResponse), Error>) in
                let task = session.dataTask(with: request) { data, response, error in
                    if let error {
                        let nsError = error as NSError
                        let timedOut = nsError.domain == NSURLErrorDomain && nsError.code == NSURLErrorTimedOut
                        state.resume(continuation, with: .failure(
                            timedOut ? CaptioningError.timeout(after: timeout, url: urlString)
                                : CaptioningError(.transport, "\(urlString): \(error.localizedDescription)", isRetriable: true)))
                    } else if let data, let response {
                        state.resume(continuation, with: .success((data, response)))
                    } else {
                        state.resume(continuation, with: .failure(
                            CaptioningError(.transport, "\(urlString): empty response", isRetriable: true)))
                    }
                }
                state.setTask(task)
                let timer = DispatchWorkItem {
                    state.resume(continuation, with: .failure(CaptioningError.timeout(after: timeout, url: urlString)))
                    task.cancel()
                }
                state.setTimer(timer)
                DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
                task.resume()
            }
        } onCancel: {
            state.cancel()
        }
    }
}

/// Makes sure a continuation is resumed once, and holds what to cancel.
private final class OnceState: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private var task: URLSessionDataTask?
    private var timer: DispatchWorkItem?
    private var cancelled = false

    func setTask(_ t: URLSessionDataTask) {
        lock.lock(); task = t; let c = cancelled; lock.unlock()
        if c { t.cancel() }
    }

    func setTimer(_ t: DispatchWorkItem) {
        lock.lock(); timer = t; lock.unlock()
    }

    func resume(_ c: CheckedContinuation<(Data, URLResponse), Error>, with result: Result<(Data, URLResponse), Error>) {
        lock.lock()
        if done { lock.unlock(); return }
        done = true
        let t = timer
        lock.unlock()
        t?.cancel()
        c.resume(with: result)
    }

    func cancel() {
        lock.lock(); cancelled = true; let t = task; lock.unlock()
        t?.cancel()  // the completion handler then resumes with a transport (cancelled) error
    }
}
