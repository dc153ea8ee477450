#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PipelineRuntime
import ServiceLifecycle
import Support

/// `host:port` for the status endpoint. `:9464` and `0.0.0.0:9464` listen on all IPv4 interfaces, `[::]:9464` on all
/// IPv6 and IPv4 interfaces, `[::1]:9464` on the IPv6 loopback; port 0 picks a free port (tests).
public struct HTTPAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public var isIPv6: Bool { host.contains(":") }

    public static func parse(_ text: String, error: (String) -> any Error) throws -> HTTPAddress {
        guard let colon = text.lastIndex(of: ":") else { throw error("expected host:port, got '\(text)'") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") && host.count >= 2 {
            host = String(host.dropFirst().dropLast())
            var probe = in6_addr()
            guard inet_pton(AF_INET6, host, &probe) == 1 else {
                throw error("host in '\(text)' must be an IPv6 address inside [ ], e.g. [::1]:9464")
            }
        } else {
            if host.isEmpty { host = "0.0.0.0" }
            if host == "localhost" { host = "127.0.0.1" }
            var probe = in_addr()
            guard inet_pton(AF_INET, host, &probe) == 1 else {
                throw error("host in '\(text)' must be an IPv4 address, an IPv6 address in [ ] (e.g. [::1]:9464), or empty for all interfaces")
            }
        }
        guard let port = UInt16(text[text.index(after: colon)...]) else {
            throw error("port in '\(text)' must be a number 0...65535")
        }
        return HTTPAddress(host: host, port: port)
    }

    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// One HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    /// The body's bytes (text is UTF-8).
    public var bytes: [UInt8]
    public var body: String { String(decoding: bytes, as: UTF8.self) }
    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.bytes = Array(body.utf8)
    }
    public init(status: Int, contentType: String, bytes: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.bytes = bytes
    }
}

/// A minimal HTTP/1.1 responder for a few GET endpoints (health, readiness, metrics), on non-blocking POSIX sockets
/// and one dedicated thread, so status checks keep answering while compute saturates the cooperative pool.
///
/// Connections are served concurrently by one poll(2) loop: a client that sends its request a byte at a time, or
/// sends nothing at all, only holds its own socket, never the others. Each connection gets `requestTimeout` to
/// deliver its request head (at most `maxRequestBytes`) and then to take the answer, after which it is closed; at
/// most `maxConnections` are held, the oldest being dropped to make room. One request per connection
/// (`Connection: close`). Handlers are synchronous and run on the loop thread (they must be quick).
public final class HTTPServer: Service, Sendable {
    public typealias Handler = @Sendable (_ path: String) -> HTTPResponse?

    public struct Limits: Sendable {
        public var requestTimeout: Duration = .seconds(5)
        public var maxConnections = 64
        public var maxRequestBytes = 16384
        public init() {}
    }

    private let address: HTTPAddress
    private let handler: Handler
    private let logger: Logger
    private let limits: Limits
    private let boundPortState = Locked<(UInt16?, [CheckedContinuation<UInt16?, Never>])>((nil, []))
    private let stopped = Locked(false)

    public init(address: HTTPAddress, logger: Logger, limits: Limits = Limits(), handler: @escaping Handler) {
        self.address = address
        self.handler = handler
        self.logger = logger
        self.limits = limits
    }

    /// The port actually bound (useful with port 0); nil if binding failed.
    public func boundPort() async -> UInt16? {
        await withCheckedContinuation { (cont: CheckedContinuation<UInt16?, Never>) in
            let now: UInt16?? = boundPortState.withLock { s in
                if let p = s.0 { return .some(p) }
                if stopped.current { return .some(nil) }
                s.1.append(cont)
                return .none
            }
            if let now { cont.resume(returning: now) }
        }
    }

    private func publish(_ port: UInt16?) {
        let waiters: [CheckedContinuation<UInt16?, Never>] = boundPortState.withLock { s in
            s.0 = port
            let w = s.1
            s.1 = []
            return w
        }
        for w in waiters { w.resume(returning: port) }
    }

    public func run() async throws {
        let fd: Int32
        let port: UInt16
        do { (fd, port) = try bindSocket() } catch {
            stopped.withLock { $0 = true }
            publish(nil)
            throw error
        }
        logger.info("HTTP status endpoint listening", metadata: ["address": "\(HTTPAddress(host: address.host, port: port))"])

        let done = Locked<CheckedContinuation<Void, Never>?>(nil)
        let finished = Locked(false)
        let thread = Thread { [handler, stopped, limits] in
            var loop = EventLoop(listener: fd, limits: limits, handler: handler)
            while !stopped.current { loop.turn() }
            loop.closeAll()
            close(fd)
            let c: CheckedContinuation<Void, Never>? = done.withLock { c in
                finished.withLock { $0 = true }
                let x = c
                c = nil
                return x
            }
            c?.resume()
        }
        thread.name = "dreamsr.http"
        thread.start()
        publish(port)

        try? await gracefulShutdown()
        stopped.withLock { $0 = true }
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let already: Bool = done.withLock { c in
                if finished.current { return true }
                c = cont
                return false
            }
            if already { cont.resume() }
        }
        logger.info("HTTP status endpoint stopped")
    }

    /// A non-blocking listening socket on `address`; returns it with the port actually bound.
    private func bindSocket() throws -> (Int32, UInt16) {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw AppError.http("socket() failed: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = sockaddr_storage()
        let length: socklen_t
        if address.isIPv6 {
            var zero: Int32 = 0 // [::] also takes IPv4 connections (dual stack)
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = address.port.bigEndian
            inet_pton(AF_INET6, address.host, &sin6.sin6_addr)
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = address.port.bigEndian
            inet_pton(AF_INET, address.host, &sin.sin_addr)
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        let rc = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw AppError.http("cannot listen on \(address): \(String(cString: strerror(e)))")
        }
        guard listen(fd, 64) == 0 else {
            let e = errno
            close(fd)
            throw AppError.http("listen() on \(address) failed: \(String(cString: strerror(e)))")
        }
        var bound = sockaddr_storage()
        var boundLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &boundLength) } }
        // sin_port and sin6_port sit at the same offset, right after the family.
        let port = withUnsafeBytes(of: bound) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
        return (fd, port)
    }

    /// The connections of one server and the poll(2) loop serving them; used only on the server's thread.
    private struct EventLoop {
        struct Connection {
            let fd: Int32
            var deadline: UInt64
            var request: [UInt8] = []
            var response: [UInt8]? = nil
            var sent = 0
        }

        let listener: Int32
        let limits: Limits
        let handler: Handler
        var connections: [Connection] = []

        init(listener: Int32, limits: Limits, handler: @escaping Handler) {
            self.listener = listener
            self.limits = limits
            self.handler = handler
        }

        static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

        var timeoutNanoseconds: UInt64 {
            let c = limits.requestTimeout.components
            return UInt64(max(0, c.seconds)) * 1_000_000_000 + UInt64(max(0, c.attoseconds) / 1_000_000_000)
        }

        /// One poll(2) round (at most 100 ms, so the stop flag is seen promptly).
        mutating func turn() {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            for c in connections {
                fds.append(pollfd(fd: c.fd, events: Int16(c.response == nil ? POLLIN : POLLOUT), revents: 0))
            }
            let ready = poll(&fds, nfds_t(fds.count), 100)
            let now = Self.now()
            if ready > 0 {
                // Connections first (their indices match `fds`), then new ones.
                var keep: [Connection] = []
                for (i, var c) in connections.enumerated() {
                    let events = fds[i + 1].revents
                    if events != 0 && !service(&c, events: events) { close(c.fd); continue }
                    keep.append(c)
                }
                connections = keep
                if fds[0].revents & Int16(POLLIN) != 0 { acceptAll(now: now) }
            }
            // Deadlines: a connection that has not delivered its request (or taken its answer) in time is dropped.
            connections.removeAll { c in
                guard now >= c.deadline else { return false }
                close(c.fd)
                return true
            }
        }

        mutating func acceptAll(now: UInt64) {
            while true {
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                if connections.count >= limits.maxConnections {
                    // Full: the oldest connection makes room, so idle sockets can never lock the endpoint.
                    close(connections.removeFirst().fd)
                }
                connections.append(Connection(fd: fd, deadline: now + timeoutNanoseconds))
            }
        }

        /// Reads or writes what the socket allows; false when the connection is finished (or broken).
        func service(_ c: inout Connection, events: Int16) -> Bool {
            if c.response == nil {
                var buffer = [UInt8](repeating: 0, count: 4096)
                while c.request.count < limits.maxRequestBytes {
                    let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
                    if n > 0 {
                        let searchFrom = max(0, c.request.count - 3)
                        c.request.append(contentsOf: buffer[0..<n])
                        if Self.containsBlankLine(c.request, from: searchFrom) { break }
                        continue
                    }
                    if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return true }
                    return false // closed by the peer before a whole request, or an error
                }
                c.response = HTTPServer.respond(to: c.request, handler: handler)
            }
            guard let out = c.response else { return true }
            while c.sent < out.count {
                let n = out[c.sent...].withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 { c.sent += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return true }
                return false
            }
            return false // answered: close
        }

        static func containsBlankLine(_ a: [UInt8], from start: Int) -> Bool {
            guard a.count >= 4 else { return false }
            for i in start...(a.count - 4) where a[i] == 13 && a[i + 1] == 10 && a[i + 2] == 13 && a[i + 3] == 10 {
                return true
            }
            return false
        }

        func closeAll() {
            for c in connections { close(c.fd) }
        }
    }

    /// The whole response (head and body) to one request head.
    static func respond(to request: [UInt8], handler: Handler) -> [UInt8] {
        let text = String(decoding: request, as: UTF8.self)
        let parts = text.split(separator: "\r\n", maxSplits: 1).first?.split(separator: " ") ?? []
        let response: HTTPResponse
        if parts.count < 2 {
            response = HTTPResponse(status: 400, body: "bad request\n")
        } else if parts[0] != "GET" && parts[0] != "HEAD" {
            response = HTTPResponse(status: 405, body: "only GET\n")
        } else {
            let path = String(parts[1].split(separator: "?", maxSplits: 1).first ?? "")
            response = handler(path) ?? HTTPResponse(status: 404, body: "not found\n")
        }
        let reason: String = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                              503: "Service Unavailable"][response.status] ?? "Status"
        let body = response.bytes
        var head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\n"
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        var out = Array(head.utf8)
        if parts.first != "HEAD" { out += body }
        return out
    }
}
