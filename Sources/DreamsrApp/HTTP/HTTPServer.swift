#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PipelineRuntime
import ServiceLifecycle

/// `host:port` for the status endpoint. `:9464` and `0.0.0.0:9464` listen on all IPv4 interfaces; port 0 picks a
/// free port (tests).
public struct HTTPAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public static func parse(_ text: String, error: (String) -> any Error) throws -> HTTPAddress {
        guard let colon = text.lastIndex(of: ":") else { throw error("expected host:port, got '\(text)'") }
        var host = String(text[..<colon])
        if host.isEmpty { host = "0.0.0.0" }
        if host == "localhost" { host = "127.0.0.1" }
        guard let port = UInt16(text[text.index(after: colon)...]) else {
            throw error("port in '\(text)' must be a number 0...65535")
        }
        var probe = in_addr()
        guard inet_pton(AF_INET, host, &probe) == 1 else {
            throw error("host in '\(text)' must be an IPv4 address (or empty for all interfaces)")
        }
        return HTTPAddress(host: host, port: port)
    }

    public var description: String { "\(host):\(port)" }
}

/// One HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: String
    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// A minimal HTTP/1.1 responder for a few GET endpoints (health, readiness, metrics), on POSIX sockets and one
/// dedicated thread, so status checks keep answering while compute saturates the cooperative pool. One request per
/// connection (`Connection: close`). Handlers are synchronous and run on that thread.
public final class HTTPServer: Service, Sendable {
    public typealias Handler = @Sendable (_ path: String) -> HTTPResponse?

    private let address: HTTPAddress
    private let handler: Handler
    private let logger: Logger
    private let boundPortState = Locked<(UInt16?, [CheckedContinuation<UInt16?, Never>])>((nil, []))
    private let stopped = Locked(false)

    public init(address: HTTPAddress, logger: Logger, handler: @escaping Handler) {
        self.address = address
        self.handler = handler
        self.logger = logger
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
        do { fd = try bindSocket() } catch {
            stopped.withLock { $0 = true }
            publish(nil)
            throw error
        }
        var sin = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = UInt16(bigEndian: sin.sin_port)
        logger.info("HTTP status endpoint listening", metadata: ["address": "\(address.host):\(port)"])

        let done = Locked<CheckedContinuation<Void, Never>?>(nil)
        let finished = Locked(false)
        let thread = Thread { [handler, stopped, logger] in
            while !stopped.current {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                let client = accept(fd, nil, nil)
                guard client >= 0 else { continue }
                Self.serve(client: client, handler: handler, logger: logger)
                close(client)
            }
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

    private func bindSocket() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw AppError.http("socket() failed: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = address.port.bigEndian
        inet_pton(AF_INET, address.host, &sin.sin_addr)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw AppError.http("cannot listen on \(address): \(String(cString: strerror(e)))")
        }
        guard listen(fd, 16) == 0 else {
            close(fd)
            throw AppError.http("listen() on \(address) failed: errno \(errno)")
        }
        return fd
    }

    private static func serve(client: Int32, handler: Handler, logger: Logger) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while request.count < 16384 {
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            request.append(contentsOf: buffer[0..<n])
            if request.count >= 4, request.suffix(from: max(0, request.count - n - 3)).windows4ContainsCRLFCRLF() { break }
        }
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
        let body = Array(response.body.utf8)
        var head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\n"
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        var out = Array(head.utf8)
        if parts.first != "HEAD" { out += body }
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
    }
}

private extension ArraySlice<UInt8> {
    func windows4ContainsCRLFCRLF() -> Bool {
        let a = Array(self)
        guard a.count >= 4 else { return false }
        for i in 0...(a.count - 4) where a[i] == 13 && a[i + 1] == 10 && a[i + 2] == 13 && a[i + 3] == 10 { return true }
        return false
    }
}
