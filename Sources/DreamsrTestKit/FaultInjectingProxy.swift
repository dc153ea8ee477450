import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An HTTP/1.1 server on 127.0.0.1 (POSIX sockets, a thread per connection, one request per connection) that puts
/// faults in front of an upstream server: for each request the handler decides to forward it unchanged to
/// `127.0.0.1:upstreamPort` (its Host header kept, so a SigV4 signature made for the proxy's address stays valid),
/// answer it itself, hold it without answering, or drop the connection. Records every request it read.
public final class FaultInjectingProxy: @unchecked Sendable {
    public struct Request: Sendable {
        public let method: String
        /// Path and query as sent.
        public let target: String
        /// Lower-case names.
        public let headers: [String: String]
        public let body: Data
    }

    public enum Action: Sendable {
        case forward
        case respond(status: Int, headers: [String: String], body: String)
        /// Never answer (the connection stays open until the proxy stops).
        case stall
        /// Close the connection without answering.
        case drop
    }

    public let port: UInt16
    public let upstreamPort: UInt16?
    private let listenFD: Int32
    private let handler: @Sendable (Request, Int) -> Action
    private let lock = NSLock()
    private var recorded: [Request] = []
    private var stopped = false

    /// `handler(request, n)` gets each request and its 0-based arrival number.
    public init(upstreamPort: UInt16?, handler: @escaping @Sendable (Request, Int) -> Action) throws {
        self.upstreamPort = upstreamPort
        self.handler = handler
        let fd = Self.tcpSocket()
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.loopback(port: 0)
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
        Thread { [self] in acceptLoop() }.start()
    }

    /// A proxy answering `status` (with an S3-style error document) to the first `failures` requests, forwarding
    /// the rest.
    public static func failingFirst(_ failures: Int, status: Int = 503, upstreamPort: UInt16) throws -> FaultInjectingProxy {
        try FaultInjectingProxy(upstreamPort: upstreamPort) { _, n in
            n < failures ? .respond(status: status, headers: ["Content-Type": "application/xml"],
                                    body: "<Error><Code>SlowDown</Code><Message>injected fault \(n + 1)</Message></Error>")
                         : .forward
        }
    }

    public var endpoint: URL { URL(string: "http://127.0.0.1:\(port)")! }

    public var requests: [Request] { lock.withLock { recorded } }

    public func stop() {
        let already = lock.withLock { () -> Bool in
            defer { stopped = true }
            return stopped
        }
        if !already { shutdown(listenFD, Int32(SHUT_RDWR)); close(listenFD) }
    }

    deinit { stop() }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func acceptLoop() {
        while !isStopped {
            let client = accept(listenFD, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            Thread { [self] in serve(client) }.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        guard let (head, body) = readRequest(fd) else { return }
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines.first?.split(separator: " ") ?? []
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let request = Request(method: parts.count > 0 ? String(parts[0]) : "", target: parts.count > 1 ? String(parts[1]) : "",
                              headers: headers, body: body)
        let n = lock.withLock { () -> Int in
            recorded.append(request)
            return recorded.count - 1
        }
        switch handler(request, n) {
        case .drop:
            return
        case .stall:
            while !isStopped { usleep(50_000) }
        case .respond(let status, let extra, let text):
            var response = "HTTP/1.1 \(status) Injected\r\nContent-Length: \(text.utf8.count)\r\nConnection: close\r\n"
            for (name, value) in extra { response += "\(name): \(value)\r\n" }
            response += "\r\n" + text
            writeAll(fd, Array(response.utf8))
        case .forward:
            guard let upstreamPort else { return }
            let up = Self.tcpSocket()
            guard up >= 0 else { return }
            defer { close(up) }
            var addr = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(up, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { return }
            // The same request, except that the upstream closes the connection after its answer.
            var forwarded = lines.enumerated().filter { i, line in
                i == 0 || !(line.lowercased().hasPrefix("connection:") || line.isEmpty)
            }.map(\.element).joined(separator: "\r\n")
            forwarded += "\r\nConnection: close\r\n\r\n"
            writeAll(up, Array(forwarded.utf8) + Array(body))
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(up, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                writeAll(fd, Array(buffer[0..<n]))
            }
        }
    }

    /// The head (request line and headers, without the blank line) and the Content-Length body.
    private func readRequest(_ fd: Int32) -> (String, Data)? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var headEnd: Range<Data.Index>?
        while headEnd == nil {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return nil }
            data.append(contentsOf: buffer[0..<n])
            headEnd = data.range(of: Data("\r\n\r\n".utf8))
        }
        let head = String(decoding: data[..<headEnd!.lowerBound], as: UTF8.self)
        var length = 0
        for line in head.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("content-length:") {
            length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        var body = Data(data[headEnd!.upperBound...])
        while body.count < length {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, length - body.count)) }
            if n <= 0 { return nil }
            body.append(contentsOf: buffer[0..<n])
        }
        return (head, body)
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a peer that went away must not raise SIGPIPE in the test process.
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    private static func tcpSocket() -> Int32 {
        #if canImport(Glibc)
        socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        socket(AF_INET, SOCK_STREAM, 0)
        #endif
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }
}
