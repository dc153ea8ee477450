#if canImport(Glibc)
import Glibc
#endif
import DreamsrApp
import Foundation
import Logging
import PipelineRuntime
import ServiceLifecycle
import Support
import Testing

/// Issue 12 item 15: the status endpoint serves connections concurrently, so stalled or trickling clients never
/// delay /health, and it listens on IPv6 too.
@Suite(.timeLimit(.minutes(1))) struct HTTPServerTests {
    /// Runs an HTTPServer on `address` in a service group for the duration of `body`.
    func withServer(_ address: String, limits: HTTPServer.Limits = HTTPServer.Limits(),
                    _ body: @Sendable (UInt16) async throws -> Void) async throws {
        let parsed = try HTTPAddress.parse(address) { AppError(.http, $0) }
        let server = HTTPServer(address: parsed, logger: Logger(label: "test"), limits: limits) { path in
            switch path {
            case "/health": return HTTPResponse(status: 200, body: "ok\n")
            case "/slow": // a handler that takes its time (a big metrics scrape): it must not hold the others
                usleep(1_000_000)
                return HTTPResponse(status: 200, body: "slow\n")
            case "/bytes": return HTTPResponse(status: 200, contentType: "application/octet-stream", bytes: [0, 255, 13, 10])
            default: return nil
            }
        }
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let port = try #require(await server.boundPort())
            do {
                try await body(port)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// A connected IPv4 socket to 127.0.0.1:port that sent `partial` and then nothing.
    func stalledClient(port: UInt16, partial: String) throws -> Int32 {
        let fd = try connectedSocket(port: port)
        let bytes = Array(partial.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        return fd
    }

    @Test func stalledAndTricklingClientsNeverDelayHealth() async throws {
        try await withServer("127.0.0.1:0") { port in
            // Six clients that sent half a request and stopped, two that sent nothing at all, one that trickles.
            var stalled: [Int32] = []
            defer { for fd in stalled { close(fd) } }
            for _ in 0..<6 { stalled.append(try stalledClient(port: port, partial: "GET /heal")) }
            for _ in 0..<2 { stalled.append(try stalledClient(port: port, partial: "")) }
            let trickler = try stalledClient(port: port, partial: "G")
            stalled.append(trickler)
            let stop = Locked(false)
            let trickle = Thread {
                for byte in Array("ET /health HTTP/1.1\r\n".utf8) where !stop.current {
                    usleep(100_000)
                    _ = withUnsafeBytes(of: byte) { send(trickler, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }
                }
            }
            trickle.start()
            defer { stop.withLock { $0 = true } }
            // And three requests whose handler takes a second, more than the handler threads (2): /health, a probe
            // path, has its own thread and must not queue behind them.
            let slow = Locked<[String]>([])
            for _ in 0..<3 {
                Thread { let body = (try? httpGet(port: port, path: "/slow", timeout: 5))?.body ?? "failed"; slow.withLock { $0.append(body) } }.start()
            }
            usleep(200_000) // the server has accepted them all and is waiting on them
            for attempt in 0..<3 {
                let t0 = ContinuousClock.now
                let answer = try httpGet(port: port, path: "/health", timeout: 5)
                let elapsed = ContinuousClock.now - t0
                #expect(answer.status == 200)
                #expect(elapsed < .milliseconds(500), "attempt \(attempt): /health took \(elapsed) behind stalled clients")
            }
            let deadline = ContinuousClock.now + .seconds(5)
            while slow.current.count < 3 && ContinuousClock.now < deadline { usleep(20_000) }
            #expect(slow.current == ["slow\n", "slow\n", "slow\n"], "the slow requests are answered too")
        }
    }

    @Test func shutdownWithHalfARequestHeadInClosesTheConnectionWithoutAnAnswer() async throws {
        // The clients stay connected through the shutdown (closing first would let the server see their EOF before
        // the quiesce): half a head, a whole head missing its blank line, and nothing at all.
        let parsed = try HTTPAddress.parse("127.0.0.1:0") { AppError(.http, $0) }
        let server = HTTPServer(address: parsed, logger: Logger(label: "test")) { _ in HTTPResponse(status: 200, body: "ok\n") }
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let port = try #require(await server.boundPort())
            let clients = [try stalledClient(port: port, partial: "GET /heal"),
                           try stalledClient(port: port, partial: "GET /health HTTP/1.1\r\nHost: x\r\n"),
                           try stalledClient(port: port, partial: "")]
            defer { for fd in clients { close(fd) } }
            #expect(try httpGet(port: port, path: "/health", timeout: 5).status == 200)
            usleep(200_000) // the server has read the partial heads
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            for fd in clients {
                var limit = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 512)
                let n = recv(fd, &buffer, buffer.count, 0)
                #expect(n == 0, "closed without an answer, got \(n) bytes: \(String(decoding: buffer.prefix(max(0, n)), as: UTF8.self))")
            }
        }
    }

    @Test func aStalledClientIsDroppedAtItsTimeoutAndIdleSocketsCannotExhaustTheServer() async throws {
        var limits = HTTPServer.Limits()
        limits.requestTimeout = .milliseconds(300)
        limits.maxConnections = 4
        try await withServer("127.0.0.1:0", limits: limits) { port in
            let fd = try stalledClient(port: port, partial: "GET /health HTTP/1.1\r\n")
            defer { close(fd) }
            var limit = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            let t0 = ContinuousClock.now
            var byte: UInt8 = 0
            let n = recv(fd, &byte, 1, 0)
            #expect(n == 0, "the server closes a connection whose request never completes")
            #expect(ContinuousClock.now - t0 < .seconds(3))

            // More idle sockets than the server holds: the oldest make room, /health still answers at once.
            var idle: [Int32] = []
            defer { for fd in idle { close(fd) } }
            for _ in 0..<10 { idle.append(try stalledClient(port: port, partial: "")) }
            let t1 = ContinuousClock.now
            #expect(try httpGet(port: port, path: "/health", timeout: 5).status == 200)
            #expect(ContinuousClock.now - t1 < .milliseconds(500))
        }
    }

    @Test func listensOnIPv6() async throws {
        try await withServer("[::1]:0") { port in
            let answer = try httpGet(port: port, path: "/health", host: "::1", timeout: 5)
            #expect(answer.status == 200 && answer.body == "ok\n")
        }
        #expect(try HTTPAddress.parse("[::]:9464") { AppError(.http, $0) }.description == "[::]:9464")
        #expect(throws: AppError.self) { try HTTPAddress.parse("[nonsense]:9464") { AppError(.http, $0) } }
        #expect(throws: AppError.self) { try HTTPAddress.parse("::1:9464") { AppError(.http, $0) } }
    }

    @Test func allInterfacesOverIPv6AlsoTakeIPv4() async throws {
        try await withServer("[::]:0") { port in
            let overIPv6 = try httpGet(port: port, path: "/health", host: "::1", timeout: 5)
            let overIPv4 = try httpGet(port: port, path: "/health", host: "127.0.0.1", timeout: 5)
            #expect(overIPv6.status == 200 && overIPv4.status == 200)
        }
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() async throws {
        try await withServer("[::1]:0") { port in
            let connection = try RawConnection(port: port, host: "::1")
            defer { connection.close() }
            for path in ["/health", "/bytes", "/nope", "/health?probe=1"] {
                try connection.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
                let answer = try connection.readResponse()
                #expect(answer.status == (path == "/nope" ? 404 : 200), "\(path)")
                #expect(answer.headers["connection"] == "keep-alive")
                if path == "/bytes" { #expect(answer.body == [0, 255, 13, 10]) }
            }
            // HEAD: the head of a GET (its length) and no body, so the next answer on the connection parses.
            try connection.send("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
            let head = try connection.readResponse(bodyless: true)
            #expect(head.status == 200 && head.headers["content-length"] == "3")
            // Two requests sent at once are answered in order.
            try connection.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try connection.readResponse().body == Array("ok\n".utf8))
            #expect(try connection.readResponse().body == [0, 255, 13, 10])
            // Connection: close is honoured: the answer, then the end of the stream.
            try connection.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let last = try connection.readResponse()
            #expect(last.status == 200 && last.headers["connection"] == "close")
            #expect(try connection.atEnd())
        }
    }

    @Test func refusesOtherMethodsMalformedRequestsAndOversizedHeads() async throws {
        var limits = HTTPServer.Limits()
        limits.maxRequestBytes = 4096
        try await withServer("127.0.0.1:0", limits: limits) { port in
            let post = try RawConnection(port: port)
            defer { post.close() }
            try post.send("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            let refused = try post.readResponse()
            #expect(refused.status == 405 && refused.headers["allow"] == "GET, HEAD")
            try post.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n") // the connection is still usable
            #expect(try post.readResponse().status == 200)

            let garbage = try RawConnection(port: port)
            defer { garbage.close() }
            try garbage.send("NOT HTTP AT ALL\r\n\r\n")
            #expect(try garbage.readResponse().status == 400)
            #expect(try garbage.atEnd())

            let big = try RawConnection(port: port)
            defer { big.close() }
            try big.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + String(repeating: "a", count: 8000) + "\r\n\r\n")
            #expect(try big.readResponse().status == 431)
            #expect(try big.atEnd())

            #expect(try httpGet(port: port, path: "/health", timeout: 5).status == 200)
        }
    }

    @Test func gracefulShutdownClosesTheListenerAndReturns() async throws {
        let parsed = try HTTPAddress.parse("127.0.0.1:0") { AppError(.http, $0) }
        let server = HTTPServer(address: parsed, logger: Logger(label: "test")) { _ in HTTPResponse(status: 200, body: "ok\n") }
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let port = try #require(await server.boundPort())
            let idle = try RawConnection(port: port) // a kept-alive connection between requests
            defer { idle.close() }
            try idle.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try idle.readResponse().status == 200)
            let t0 = ContinuousClock.now
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            #expect(ContinuousClock.now - t0 < .seconds(3), "run() returns promptly")
            #expect(try idle.atEnd(), "kept-alive connections are closed")
            #expect(throws: (any Error).self) { try httpGet(port: port, path: "/health", timeout: 2) }
        }
    }
}

/// One client connection speaking HTTP/1.1 by hand, reading answers by their Content-Length (keep-alive); every
/// receive gives up after 5 s.
private final class RawConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: UInt16, host: String = "127.0.0.1") throws {
        fd = try connectedSocket(port: port, host: host, timeout: 5)
    }

    func close() { Glibc.close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n == bytes.count else { throw POSIXError(.EPIPE) }
    }

    /// Receives more bytes; false at the end of the stream. Throws when nothing came within the timeout.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw POSIXError(.ETIMEDOUT) }
        if n <= 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// The next answer; `bodyless` for the answer to HEAD (a Content-Length but no body).
    func readResponse(bodyless: Bool = false) throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        let blank: [UInt8] = [13, 10, 13, 10]
        var end: Int?
        while end == nil {
            end = buffer.count >= 4 ? (0...(buffer.count - 4)).first { Array(buffer[$0..<($0 + 4)]) == blank } : nil
            if end == nil { guard try fill() else { throw POSIXError(.ECONNRESET) } }
        }
        let headText = String(decoding: buffer[0..<end!], as: UTF8.self)
        buffer.removeFirst(end! + 4)
        let lines = headText.components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ").dropFirst().first ?? "") ?? -1
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = bodyless ? 0 : Int(headers["content-length"] ?? "0") ?? 0
        while buffer.count < length { guard try fill() else { throw POSIXError(.ECONNRESET) } }
        let body = Array(buffer[0..<length])
        buffer.removeFirst(length)
        return (status, headers, body)
    }

    /// True when the server closed the connection with nothing more to read.
    func atEnd() throws -> Bool { try buffer.isEmpty && !fill() }
}
