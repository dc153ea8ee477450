import Foundation
import Testing
@testable import KafkaConnector

/// A tiny HTTP/1.0 server on 127.0.0.1 for download tests (one thread, one request per connection).
///   /ok            200, body "HTTPIMG"
///   /big           200, Content-Length 1000000 (body streamed)
///   /nolength      200, 5000 bytes without Content-Length
///   /redirect/N    302 to /redirect/N-1, /redirect/0 redirects to /ok
///   /fail          503
final class TinyHTTPServer: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw KafkaConnectorError(.client, "bind/listen failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = UInt16(bigEndian: addr.sin_port)
        let thread = Thread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                TinyHTTPServer.serve(client)
            }
        }
        thread.start()
    }

    static func serve(_ client: Int32) {
        defer { close(client) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(client, &buffer, buffer.count)
        guard n > 0 else { return }
        let request = String(decoding: buffer[0..<n], as: UTF8.self)
        let path = request.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        func send(_ text: String) { _ = text.utf8CString.withUnsafeBufferPointer { write(client, $0.baseAddress, $0.count - 1) } }
        if path == "/ok" {
            send("HTTP/1.0 200 OK\r\nContent-Length: 7\r\nContent-Type: image/png\r\n\r\nHTTPIMG")
        } else if path == "/big" {
            send("HTTP/1.0 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            send(String(repeating: "x", count: 100_000))
        } else if path == "/nolength" {
            send("HTTP/1.0 200 OK\r\n\r\n" + String(repeating: "y", count: 5000))
        } else if path.hasPrefix("/redirect/"), let n = Int(path.dropFirst("/redirect/".count)) {
            send("HTTP/1.0 302 Found\r\nLocation: \(n == 0 ? "/ok" : "/redirect/\(n - 1)")\r\nContent-Length: 0\r\n\r\n")
        } else {
            send("HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        }
    }

    deinit { close(listener) }
}

@Suite(.timeLimit(.minutes(10))) struct HTTPSourceFetcherTests {
    let server: TinyHTTPServer
    let rules: KafkaConnectorConfiguration.HTTPSourceRules

    init() throws {
        server = try TinyHTTPServer()
        var rules = KafkaConnectorConfiguration.HTTPSourceRules(allowPrivateAddresses: true, timeout: .seconds(5),
                                                                maxBytes: 4096, maxRedirects: 3)
        rules.allowedSchemes = ["http"]
        self.rules = rules
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(server.port)\(path)" }

    func failure(_ path: String) async -> KafkaConnectorError? {
        do {
            let file = try await HTTPSourceFetcher(rules: rules).download(url(path), name: "t")
            try? FileManager.default.removeItem(atPath: file)
            return nil
        } catch {
            return error
        }
    }

    @Test func downloadsIntoATemporaryFile() async throws {
        let file = try await HTTPSourceFetcher(rules: rules).download(url("/ok"), name: "ok")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(FileManager.default.contents(atPath: file) == Data("HTTPIMG".utf8))
    }

    @Test func followsALimitedNumberOfRedirects() async throws {
        let file = try await HTTPSourceFetcher(rules: rules).download(url("/redirect/2"), name: "r")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(FileManager.default.contents(atPath: file) == Data("HTTPIMG".utf8))
        let tooMany = await failure("/redirect/5")
        #expect(tooMany?.code == .download)
        #expect(tooMany?.message.contains("too many redirects") == true)
    }

    @Test func sizeCapOnContentLengthAndOnBytesRead() async {
        #expect(await failure("/big")?.code == .limitExceeded)
        #expect(await failure("/nolength")?.code == .limitExceeded)
    }

    @Test func serverErrorsAreRetriable() async {
        let error = await failure("/fail")
        #expect(error?.code == .download)
        #expect(error?.isRetriable == true)
    }

    /// The address check runs where the connection is made: a name whose DNS answer (here fixed with curl's
    /// resolve list, as a rebinding server would answer) is loopback is refused although no pre-flight lookup
    /// of "rebind.test" could succeed; the same transfer with private addresses allowed goes through.
    @Test func addressIsCheckedAtConnectTime() async throws {
        var fetcher = HTTPSourceFetcher(rules: .init())
        fetcher.rules.allowedSchemes = ["http"]
        fetcher.resolveOverrides = ["rebind.test:\(server.port):127.0.0.1"]
        let target = "http://rebind.test:\(server.port)/ok"
        do {
            _ = try await fetcher.download(target, name: "rebind")
            Issue.record("expected refusal")
        } catch {
            #expect(error.code == .forbiddenSource)
            #expect(error.message.contains("rebind.test") && error.message.contains("127.0.0.1"))
        }
        fetcher.rules.allowPrivateAddresses = true
        let file = try await fetcher.download(target, name: "rebind")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(FileManager.default.contents(atPath: file) == Data("HTTPIMG".utf8))
    }

    /// Redirect bodies are not the image, and a failed download leaves no file behind.
    @Test func redirectBodyIsDroppedAndFailuresLeaveNoFile() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fetch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fetcher = HTTPSourceFetcher(rules: rules, directory: dir.path)
        let file = try await fetcher.download(url("/redirect/1"), name: "r")
        #expect(FileManager.default.contents(atPath: file) == Data("HTTPIMG".utf8))
        try FileManager.default.removeItem(atPath: file)
        for path in ["/big", "/nolength", "/fail", "/redirect/9"] {
            do {
                _ = try await fetcher.download(url(path), name: "f")
                Issue.record("\(path) must fail")
            } catch {}
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func privateAddressesAreRefusedByDefault() async {
        do {
            _ = try await HTTPSourceFetcher(rules: .init()).download(url("/ok"), name: "p")
            Issue.record("expected refusal")
        } catch {
            #expect(error.code == .forbiddenSource)
        }
    }
}
