import Foundation

/// moto's S3-compatible server for tests, started by `scripts/start-moto.sh` (which installs moto into a venv
/// when needed) on a free loopback port, with signature checking on. It stops when the test process ends.
public enum MotoServer {
    public struct Instance: Sendable {
        public let endpoint: URL
        public let port: UInt16
        public let accessKeyID: String
        public let secretAccessKey: String
        public let pid: Int32
    }

    public enum Status: Sendable {
        case running(Instance)
        /// PyPI could not be reached to install moto: the only reason a moto-backed test may be skipped.
        case unreachablePyPI(String)
        case failed(String)
    }

    /// The buckets every moto-backed test may use.
    public static let buckets = ["dreamsr-objects", "dreamsr-abort", "dreamsr-kafka"]

    /// One server for the whole test process, started on first use.
    public static let shared: Status = start(buckets: buckets)

    /// True only when PyPI cannot be reached to install moto: the one reason a moto-backed test is skipped (the
    /// start script says so on stderr).
    public static var isUnavailable: Bool { if case .unreachablePyPI = shared { return true } else { return false } }

    /// The running shared server; throws why there is none.
    public static func instance() throws -> Instance {
        switch shared {
        case .running(let instance): return instance
        case .unreachablePyPI(let why), .failed(let why): throw StartFailure(reason: why)
        }
    }

    public struct StartFailure: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { "moto did not start: \(reason)" }
    }

    /// The repository root (this file is Sources/DreamsrTestKit/MotoServer.swift).
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Runs the start script (at most `timeout`, a first install included) and creates `buckets`.
    public static func start(buckets: [String], timeout: TimeInterval = 900) -> Status {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [repositoryRoot.appendingPathComponent("scripts/start-moto.sh").path,
                             "--owner-pid", String(getpid())] + buckets.flatMap { ["--bucket", $0] }
        process.currentDirectoryURL = repositoryRoot
        // Files, not pipes: moto and its watcher outlive the script and would hold a pipe open.
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-moto-start-\(UUID().uuidString)")
        let outPath = base.path + ".out"
        let errPath = base.path + ".err"
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        guard FileManager.default.createFile(atPath: outPath, contents: nil),
              FileManager.default.createFile(atPath: errPath, contents: nil),
              let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: errPath) else {
            return .failed("cannot create the start script's output files")
        }
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { return .failed("cannot run scripts/start-moto.sh: \(error)") }
        try? out.close()
        try? err.close()
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        process.waitUntilExit()
        watchdog.cancel()
        let stdout = FileManager.default.contents(atPath: outPath) ?? Data()
        let stderr = FileManager.default.contents(atPath: errPath) ?? Data()
        let errorText = String(decoding: stderr, as: UTF8.self)
        if process.terminationStatus == 3 {
            let line = errorText.split(separator: "\n").first { $0.hasPrefix("SKIP:") }.map(String.init) ?? errorText
            FileHandle.standardError.write(Data("\n*** \(line) ***\n\n".utf8))
            return .unreachablePyPI(line)
        }
        guard process.terminationStatus == 0 else {
            return .failed("scripts/start-moto.sh exited with \(process.terminationStatus): \(errorText.suffix(2000))")
        }
        var fields: [String: String] = [:]
        for pair in String(decoding: stdout, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            if let eq = pair.firstIndex(of: "=") { fields[String(pair[..<eq])] = String(pair[pair.index(after: eq)...]) }
        }
        guard let endpointText = fields["endpoint"], let endpoint = URL(string: endpointText), let port = endpoint.port,
              let key = fields["access_key"], let secret = fields["secret_key"], let pid = fields["pid"].flatMap({ Int32($0) })
        else {
            return .failed("unexpected output of scripts/start-moto.sh")
        }
        return .running(Instance(endpoint: endpoint, port: UInt16(port), accessKeyID: key, secretAccessKey: secret, pid: pid))
    }
}
