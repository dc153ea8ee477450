#if canImport(Glibc)
import Glibc
#endif
import DreamsrApp
import DreamsrTestKit
import Foundation
import Jobs
import Logging
import Metrics
import PipelineRuntime

let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A new folder under the temporary folder, removed when the test process exits.
func tempDir() throws -> String {
    try ScratchFiles.makeDirectory(prefix: "app-")
}

/// A factory building the fake stages from the definition's stage list (names and runtime settings kept), with a
/// gate on model loading so tests can observe /ready before and after.
struct FakeFactory: PipelineFactory {
    var loadGate: TestGate?
    var healthy = true
    /// When set, the restore stage reports 3 of 10 units done and then waits here (a long or stuck stage).
    var holdRestore: TestGate?

    func makePipeline(_ definition: PipelineDefinition, config: DaemonConfig, logger: Logger,
                      metricsFactory: any MetricsFactory) throws -> PipelineHandle {
        let stages: [Stage<FakePayload>] = definition.stages.map { def in
            let gate = loadGate
            let load: @Sendable () async throws -> Void = { if let gate { await gate.pass() } }
            let prepare: (@Sendable () async throws -> Void)? = def.kind == .restore ? load : nil
            return Stage(def.runtime, prepare: prepare) { ctx in
                if def.kind == .decode {
                    guard case .file(let path) = ctx.request.source, let data = FileManager.default.contents(atPath: path),
                          !String(decoding: data, as: UTF8.self).hasPrefix("bad") else {
                        throw PipelineError.badInput("not an image")
                    }
                    ctx.megapixels = 0.5
                }
                if def.kind == .restore, let hold = holdRestore {
                    ctx.progress.report(done: 3, of: 10)
                    await hold.pass()
                }
                if def.kind == .encode, let out = ctx.request.output {
                    FileManager.default.createFile(atPath: out, contents: Data("upscaled".utf8))
                    ctx.output = out
                }
            }
        }
        let pipeline = try Pipeline(configuration: PipelineConfiguration(name: definition.name, capacity: definition.capacity,
                                                                         jobTimeout: definition.jobTimeout),
                                    stages: stages, logger: logger, metricsFactory: metricsFactory) { _ in FakePayload() }
        return PipelineHandle(pipeline)
    }

    func healthProblem() -> String? { healthy ? nil : "codec round trip failed" }
}

/// A TCP socket connected to `host` (IPv4 or IPv6) and `port`, whose sends and receives give up after `timeout`
/// seconds (a receive that times out fails with EAGAIN).
func connectedSocket(port: UInt16, host: String = "127.0.0.1", timeout: Int = 10) throws -> Int32 {
    let v6 = host.contains(":")
    let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var limit = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    let rc: Int32
    if v6 {
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        inet_pton(AF_INET6, host, &sin6.sin6_addr)
        rc = withUnsafePointer(to: &sin6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    } else {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &sin.sin_addr)
        rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
    guard rc == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    return fd
}

/// A blocking HTTP/1.1 GET over a plain socket (no HTTP client dependency in tests), to 127.0.0.1 or another IPv4
/// or IPv6 `host`, asking the server to close after the answer (it is read to the end); each send and receive
/// gives up after `timeout` seconds, so a stuck server fails the test.
func httpGet(port: UInt16, path: String, host: String = "127.0.0.1", timeout: Int = 10) throws -> (status: Int, body: String) {
    let fd = try connectedSocket(port: port, host: host, timeout: timeout)
    defer { close(fd) }
    let req = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
    _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw POSIXError(.ETIMEDOUT) }
        if n <= 0 { break }
        data += buf[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? -1
    let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
    return (status, body)
}

/// Checks Prometheus text exposition format 0.0.4 line by line; returns samples by "name{labels}".
func parsePrometheus(_ text: String) throws -> [String: Double] {
    struct Bad: Error, CustomStringConvertible { let description: String }
    var samples: [String: Double] = [:]
    var typed: [String: String] = [:]
    let namePattern = try NSRegularExpression(pattern: "^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    func validName(_ s: String) -> Bool { namePattern.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil }
    for line in text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) {
        if line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            guard parts.count == 4, validName(String(parts[2])),
                  ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else { throw Bad(description: "bad TYPE line: \(line)") }
            typed[String(parts[2])] = String(parts[3])
            continue
        }
        if line.hasPrefix("#") { continue }
        var name = line
        var labels = ""
        if let brace = line.firstIndex(of: "{") {
            guard let close = line.lastIndex(of: "}") else { throw Bad(description: "unclosed labels: \(line)") }
            name = String(line[..<brace])
            labels = String(line[line.index(after: brace)..<close])
            let rest = line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)
            for pair in labels.split(separator: ",") where !pair.isEmpty {
                let kv = pair.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, validName(String(kv[0])), kv[1].hasPrefix("\""), kv[1].hasSuffix("\"") else {
                    throw Bad(description: "bad label \(pair) in \(line)")
                }
            }
            guard let v = Double(rest.split(separator: " ").first.map(String.init) ?? "") ?? (rest == "+Inf" ? .infinity : nil) else {
                throw Bad(description: "bad value in \(line)")
            }
            guard validName(name) else { throw Bad(description: "bad metric name in \(line)") }
            samples["\(name){\(labels)}"] = v
        } else {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, validName(String(parts[0])), let v = Double(parts[1]) else { throw Bad(description: "bad sample: \(line)") }
            name = String(parts[0])
            samples[name] = v
        }
        let base = name.replacingOccurrences(of: "_bucket", with: "").replacingOccurrences(of: "_sum", with: "")
            .replacingOccurrences(of: "_count", with: "")
        guard typed[name] != nil || typed[base] != nil else { throw Bad(description: "sample without TYPE: \(line)") }
    }
    return samples
}
