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
            path == "/health" ? HTTPResponse(status: 200, body: "ok\n") : nil
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
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
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
            usleep(200_000) // the server has accepted them all and is waiting on them
            for attempt in 0..<3 {
                let t0 = ContinuousClock.now
                let answer = try httpGet(port: port, path: "/health", timeout: 5)
                let elapsed = ContinuousClock.now - t0
                #expect(answer.status == 200)
                #expect(elapsed < .milliseconds(500), "attempt \(attempt): /health took \(elapsed) behind stalled clients")
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
}
