import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 (POSIX sockets, a thread per connection, one request per connection) that
/// answers OpenAI-style chat completions as the test's handler decides. Records every request it parsed.
public final class LoopbackChatServer: @unchecked Sendable {
    public struct Request: Sendable {
        public let method: String
        public let path: String
        public let headers: [String: String]
        public let body: Data

        public var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] }

        /// The text part and image URL of the first user message.
        public var instruction: String? { parts.first { $0["type"] as? String == "text" }?["text"] as? String }
        public var imageURL: String? {
            (parts.first { $0["type"] as? String == "image_url" }?["image_url"] as? [String: Any])?["url"] as? String
        }

        private var parts: [[String: Any]] {
            guard let messages = json?["messages"] as? [[String: Any]], let content = messages.first?["content"]
                as? [[String: Any]] else { return [] }
            return content
        }
    }

    public enum Reply: Sendable {
        /// 200 with a well-formed chat-completions body whose message content is `text`.
        case caption(String)
        /// Any status with any body.
        case raw(status: Int, body: String)
        /// Hold the connection open without answering until the server stops (or `seconds` pass).
        case stall(seconds: Double)
    }

    public let port: UInt16
    private let listenFD: Int32
    private let handler: @Sendable (Request, Int) -> Reply
    private let lock = NSLock()
    private var recorded: [Request] = []
    private var inFlight = 0
    private var maxInFlightSeen = 0
    private var stopped = false
    private let release = DispatchSemaphore(value: 0)

    /// `handler(request, n)` gets the request and its 0-based arrival number.
    public init(handler: @escaping @Sendable (Request, Int) -> Reply) throws {
        self.handler = handler
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = UInt16(bigEndian: addr.sin_port)
        listenFD = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    public var url: URL { URL(string: "http://127.0.0.1:\(port)/v1/chat/completions")! }

    public var requests: [Request] {
        lock.lock(); defer { lock.unlock() }
        return recorded
    }

    public var maxConcurrentRequests: Int {
        lock.lock(); defer { lock.unlock() }
        return maxInFlightSeen
    }

    public func stop() {
        lock.lock()
        let wasStopped = stopped
        stopped = true
        lock.unlock()
        guard !wasStopped else { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        for _ in 0..<64 { release.signal() }
    }

    deinit { stop() }

    private func acceptLoop() {
        while true {
            let client = accept(listenFD, nil, nil)
            if client < 0 {
                lock.lock(); let s = stopped; lock.unlock()
                if s { return }
                continue
            }
            let t = Thread { [self] in serve(client) }
            t.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        func readMore() -> Bool {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return false }
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        var headerEnd: Int?
        while headerEnd == nil {
            if let r = findSubsequence(buffer, separator) { headerEnd = r; break }
            if !readMore() { return }
        }
        let head = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        var headers: [String: String] = [:]
        for l in lines {
            if let c = l.firstIndex(of: ":") {
                headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)
            }
        }
        if headers["expect"]?.lowercased() == "100-continue" { write(fd, "HTTP/1.1 100 Continue\r\n\r\n") }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = headerEnd! + 4
        while buffer.count - bodyStart < length { if !readMore() { return } }
        let request = Request(method: requestLine.first.map(String.init) ?? "", path: requestLine.count > 1
                                  ? String(requestLine[1]) : "", headers: headers,
                              body: Data(buffer[bodyStart..<(bodyStart + length)]))
        lock.lock()
        let n = recorded.count
        recorded.append(request)
        inFlight += 1
        maxInFlightSeen = max(maxInFlightSeen, inFlight)
        lock.unlock()
        defer { lock.lock(); inFlight -= 1; lock.unlock() }

        switch handler(request, n) {
        case .caption(let text):
            let body: [String: Any] = [
                "id": "chatcmpl-test", "object": "chat.completion", "model": "test",
                "choices": [["index": 0, "finish_reason": "stop", "message": ["role": "assistant", "content": text]]],
            ]
            let data = try! JSONSerialization.data(withJSONObject: body)
            respond(fd, status: 200, body: String(decoding: data, as: UTF8.self))
        case .raw(let status, let body):
            respond(fd, status: status, body: body)
        case .stall(let seconds):
            _ = release.wait(timeout: .now() + seconds)
        }
    }

    private func respond(_ fd: Int32, status: Int, body: String) {
        let bytes = Array(body.utf8)
        write(fd, "HTTP/1.1 \(status) Test\r\nContent-Type: application/json\r\nContent-Length: \(bytes.count)\r\n"
            + "Connection: close\r\n\r\n" + body)
    }

    private func write(_ fd: Int32, _ s: String) {
        let bytes = Array(s.utf8)
        var sent = 0
        while sent < bytes.count {
            #if os(Linux)
            let flags = Int32(MSG_NOSIGNAL)
            #else
            let flags: Int32 = 0
            #endif
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, flags) }
            if n <= 0 { return }
            sent += n
        }
    }

    private func findSubsequence(_ a: [UInt8], _ b: [UInt8]) -> Int? {
        guard a.count >= b.count else { return nil }
        for i in 0...(a.count - b.count) where a[i] == b[0] && Array(a[i..<(i + b.count)]) == b { return i }
        return nil
    }
}
