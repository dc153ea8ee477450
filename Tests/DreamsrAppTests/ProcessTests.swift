#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Imaging
import Raster
import Testing

/// Process-level tests: they spawn the built `dreamsr` binary with the real Real-ESRGAN model on small images.
/// Needs `swift build` (the binary) and `scripts/fetch-models.sh` (./models); a missing piece fails, never skips.
enum Daemon {
    static func binary() throws -> String {
        if let env = ProcessInfo.processInfo.environment["DREAMSR_BIN"] { return env }
        // The test bundle lives in the same build folder as the executables.
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("dreamsr").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        let fallback = repoRoot + "/.build/debug/dreamsr"
        guard FileManager.default.isExecutableFile(atPath: fallback) else {
            throw Failure("no dreamsr binary next to the tests nor at \(fallback): run `swift build --build-tests` (or set DREAMSR_BIN)")
        }
        return fallback
    }

    static func modelsDir() throws -> String {
        let dir = ProcessInfo.processInfo.environment["DREAMSR_MODELS_DIR"] ?? repoRoot + "/models"
        guard FileManager.default.fileExists(atPath: dir + "/realesrgan-x4plus/REALESRGAN_X4PLUS_UP4X.bin") else {
            throw Failure("Real-ESRGAN weights missing under \(dir): run scripts/fetch-models.sh")
        }
        return dir
    }

    struct Failure: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }

    static func start(_ args: [String], log: String, env extra: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try binary())
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["DREAMSR_MODELS_DIR"] = try modelsDir()
        for (k, v) in extra { env[k] = v }
        p.environment = env
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    /// Waits (polling the file system) until `condition` holds; fails after `timeout`.
    static func waitUntil(_ what: String, timeout: Duration = .seconds(120), log: String? = nil,
                          _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if ContinuousClock.now > deadline {
                let tail = log.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }.map { String($0.suffix(3000)) } ?? ""
                throw Failure("timed out waiting for \(what)\n\(tail)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func waitForExit(_ p: Process) async throws -> Int32 {
        try await waitUntil("process exit", timeout: .seconds(60)) { !p.isRunning }
        return p.terminationStatus
    }
}

func listing(_ dir: String, hidden: Bool = false) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { hidden || !$0.hasPrefix(".") }.sorted()
}

/// 9 good 16x16 PNGs and 3 bad inputs (text, truncated PNG, empty file) written into `dir`.
func writeInputs(_ dir: String) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let staging = dir + "/../staging"
    try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
    var truncated = Data()
    for i in 0..<9 {
        var img = PlanarImage(width: 16, height: 16, channels: 3)
        for c in 0..<3 { for y in 0..<16 { for x in 0..<16 { img[c, y, x] = Float((x * 7 + y * 13 + c * 50 + i * 17) % 255) / 255 } } }
        let path = staging + "/good\(i).png"
        try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: path)
        if i == 0 { truncated = try Data(contentsOf: URL(fileURLWithPath: path)).prefix(40) }
    }
    FileManager.default.createFile(atPath: staging + "/bad-text.png", contents: Data("this is not an image".utf8))
    FileManager.default.createFile(atPath: staging + "/bad-truncated.png", contents: truncated)
    FileManager.default.createFile(atPath: staging + "/bad-empty.jpg", contents: Data())
    // Move complete files in (as a well-behaved producer does).
    for name in listing(staging) { try FileManager.default.moveItem(atPath: staging + "/" + name, toPath: dir + "/" + name) }
}

func finished(_ dir: String) -> Int {
    listing(dir + "/done").count + listing(dir + "/failed").filter { !$0.hasSuffix(".error.json") }.count
}

/// The final state every scenario must reach.
func expectFinalState(_ dir: String, _ out: String) throws {
    #expect(listing(dir + "/done") == (0..<9).map { "good\($0).png" })
    #expect(listing(dir + "/failed") == ["bad-empty.jpg", "bad-empty.jpg.error.json", "bad-text.png", "bad-text.png.error.json",
                                         "bad-truncated.png", "bad-truncated.png.error.json"])
    #expect(listing(dir + "/processing").isEmpty)
    #expect(listing(dir).sorted() == ["done", "failed", "processing"])
    #expect(listing(out, hidden: true) == (0..<9).map { "good\($0).png" }, "no temporaries or partial files left")
    for name in listing(out) {
        let decoded = try ImageCodec.decode(path: out + "/" + name)
        #expect(decoded.width == 64 && decoded.height == 64)
    }
    let err = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/failed/bad-text.png.error.json"))) as! [String: Any]
    #expect(err["stage"] as? String == "decode")
    #expect((err["message"] as? String)?.isEmpty == false)
}

/// Every visible output file is complete (decodes at full size): a partial file never shows under a final name.
func visibleOutputsAreComplete(_ out: String) -> Bool {
    listing(out).allSatisfy { name in
        (try? ImageCodec.decode(path: out + "/" + name)).map { $0.width == 64 && $0.height == 64 } ?? false
    }
}

/// The port the daemon bound (it is started with port 0), read from its log line "HTTP status endpoint listening".
func boundPort(log: String) async throws -> UInt16 {
    var port: UInt16?
    try await Daemon.waitUntil("the status endpoint to listen", log: log) {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.contains("HTTP status endpoint listening") }),
              let range = line.range(of: "address=127.0.0.1:") else { return false }
        port = UInt16(line[range.upperBound...].prefix { $0.isNumber })
        return port != nil
    }
    return port!
}

func writeConfig(_ root: String, dir: String, out: String, grace: Double, port: UInt16) throws -> String {
    let path = root + "/dreamsr.yaml"
    let yaml = """
    log_level: info
    models_dir: \(try Daemon.modelsDir())
    metrics:
      address: 127.0.0.1:\(port)
    shutdown:
      grace_seconds: \(grace)
    sources:
      watch:
        - dir: \(dir)
          output: \(out)
          poll_seconds: 0.2
          stable_seconds: 0.1
          max_concurrent_jobs: 12
    """
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct ProcessTests {
    @Test func quickStartWatchFolderEndToEndWithRealModel() async throws {
        let root = try tempDir(), dir = root + "/in", out = root + "/out"
        try writeInputs(dir)
        let log = root + "/log"
        let p = try Daemon.start(["serve", "--watch", dir, "--output", out, "--metrics", "127.0.0.1:0"], log: log)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let port = try await boundPort(log: log)
        try await Daemon.waitUntil("12 inputs finished", log: log) { finished(dir) == 12 }
        let ready = try httpGet(port: port, path: "/ready")
        #expect(ready.status == 200)
        let metrics = try httpGet(port: port, path: "/metrics")
        let samples = try parsePrometheus(metrics.body)
        #expect(samples.first { $0.key.contains("dreamsr_jobs_total") && $0.key.contains("\"ok\"") }?.value == 9)
        #expect(samples.first { $0.key.contains("dreamsr_jobs_total") && $0.key.contains("\"error\"") }?.value == 3)
        #expect(samples.keys.contains { $0.hasPrefix("dreamsr_model_load_seconds") })
        #expect(samples["dreamsr_vips_memory_bytes"] != nil)
        kill(p.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p) == 0)
        try expectFinalState(dir, out)
    }

    @Test func sigtermDuringTheRunThenRestartReachesTheSameState() async throws {
        let root = try tempDir(), dir = root + "/in", out = root + "/out"
        try writeInputs(dir)
        let port: UInt16 = 0
        // A short grace period: jobs still running at SIGTERM are abandoned and must stay for the restart.
        let config = try writeConfig(root, dir: dir, out: out, grace: 0.3, port: port)
        let log = root + "/log1"
        let p = try Daemon.start(["serve", "--config", config], log: log)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        try await Daemon.waitUntil("first outputs", log: log) { listing(dir + "/done").count >= 2 }
        kill(p.processIdentifier, SIGTERM)
        while p.isRunning {
            #expect(visibleOutputsAreComplete(out))
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(p.terminationStatus == 0)
        // Nothing lost: every input is somewhere (incoming, processing, done, failed).
        let everywhere = listing(dir).filter { !["done", "failed", "processing"].contains($0) }.count
            + listing(dir + "/processing").count + finished(dir)
        #expect(everywhere == 12)
        #expect(visibleOutputsAreComplete(out))

        let p2 = try Daemon.start(["serve", "--config", config], log: root + "/log2")
        defer { if p2.isRunning { kill(p2.processIdentifier, SIGKILL) } }
        try await Daemon.waitUntil("12 inputs finished after restart", log: root + "/log2") { finished(dir) == 12 }
        // The first run may have finished everything within its grace period: then the restart has nothing to do,
        // and a SIGTERM sent before its signal handlers are installed would kill it outright. Wait until it runs.
        try await Daemon.waitUntil("restarted daemon ready", log: root + "/log2") {
            ((try? String(contentsOfFile: root + "/log2", encoding: .utf8)) ?? "").contains("pipeline ready")
        }
        kill(p2.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p2) == 0)
        try expectFinalState(dir, out)
    }

    @Test func sigkillDuringProcessingThenRestartProcessesEverythingExactlyOnce() async throws {
        let root = try tempDir(), dir = root + "/in", out = root + "/out"
        try writeInputs(dir)
        let config = try writeConfig(root, dir: dir, out: out, grace: 5, port: 0)
        let p = try Daemon.start(["serve", "--config", config], log: root + "/log1")
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        try await Daemon.waitUntil("first outputs", log: root + "/log1") { listing(dir + "/done").count >= 2 }
        kill(p.processIdentifier, SIGKILL)
        _ = try await Daemon.waitForExit(p)
        #expect(finished(dir) < 12, "killed mid-run")
        #expect(visibleOutputsAreComplete(out))

        let p2 = try Daemon.start(["serve", "--config", config], log: root + "/log2")
        defer { if p2.isRunning { kill(p2.processIdentifier, SIGKILL) } }
        try await Daemon.waitUntil("12 inputs finished after restart", log: root + "/log2") { finished(dir) == 12 }
        // The first run may have finished everything within its grace period: then the restart has nothing to do,
        // and a SIGTERM sent before its signal handlers are installed would kill it outright. Wait until it runs.
        try await Daemon.waitUntil("restarted daemon ready", log: root + "/log2") {
            ((try? String(contentsOfFile: root + "/log2", encoding: .utf8)) ?? "").contains("pipeline ready")
        }
        kill(p2.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p2) == 0)
        try expectFinalState(dir, out)
    }

    @Test func invalidConfigIsRefusedWithFileKeyAndProblem() async throws {
        let root = try tempDir()
        let path = root + "/bad.yaml"
        try "metrics:\n  address: 127.0.0.1:9464\nshutdown:\n  grace_secs: 3\n".write(toFile: path, atomically: true, encoding: .utf8)
        let log = root + "/log"
        let p = try Daemon.start(["serve", "--config", path], log: log)
        let status = try await Daemon.waitForExit(p)
        #expect(status == 78)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains(path) && text.contains("shutdown.grace_secs") && text.contains("unknown key"))

        // --check validates a good file (and the model folder) without starting.
        let good = try writeConfig(root, dir: root + "/in", out: root + "/out", grace: 1, port: 0)
        let checked = try Daemon.start(["serve", "--config", good, "--check"], log: root + "/check")
        #expect(try await Daemon.waitForExit(checked) == 0)
        #expect(try String(contentsOfFile: root + "/check", encoding: .utf8).contains("configuration OK"))
        let noModels = try Daemon.start(["serve", "--config", good, "--check"], log: root + "/check2",
                                        env: ["DREAMSR_MODELS_DIR": root + "/nowhere"])
        #expect(try await Daemon.waitForExit(noModels) == 78)
        #expect(try String(contentsOfFile: root + "/check2", encoding: .utf8).contains("stages.1.model"))
    }

    @Test func healthAndReadyBeforeAndAfterTheModelLoads() async throws {
        let root = try tempDir()
        let log = root + "/log"
        let p = try Daemon.start(["serve", "--watch", root + "/in", "--output", root + "/out", "--metrics", "127.0.0.1:0"],
                                 log: log)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        // The endpoint answers before the model is in memory; /ready turns 200 only once it is.
        let port = try await boundPort(log: log)
        let health = try httpGet(port: port, path: "/health")
        #expect(health.status == 200)
        let logText = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        if !logText().contains("pipeline ready") {
            let early = try httpGet(port: port, path: "/ready")
            // The model may have finished loading between the two reads; then the log says so.
            #expect(early.status == 503 || logText().contains("pipeline ready"))
        }
        try await Daemon.waitUntil("ready", log: log) { (try? httpGet(port: port, path: "/ready"))?.status == 200 }
        #expect(logText().contains("restore model loaded"))
        #expect(try httpGet(port: port, path: "/health").body.contains("\"state\":\"ready\""))
        kill(p.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p) == 0)
    }
}
