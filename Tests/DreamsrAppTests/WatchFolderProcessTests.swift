#if canImport(Glibc)
import Glibc
#endif
@testable import DreamsrApp
import Foundation
import Imaging
import PipelineRuntime
import Raster
import Support
import Testing
import DreamsrTestKit

// Issue 12, watch-folder items against the real daemon process (Real-ESRGAN on 8x8 images): overlapping folders
// refused (4), a broken processing/ or output folder (2, 3), and the property-style test of random interleavings.

/// An 8x8 PNG whose pixels encode `n` (so every input's bytes differ).
private func tinyPNG(_ n: Int, in dir: String) throws -> Data {
    var img = PlanarImage(width: 8, height: 8, channels: 3)
    for c in 0..<3 { for y in 0..<8 { for x in 0..<8 { img[c, y, x] = Float((x * 31 + y * 7 + c * 50 + n * 37) % 251) / 255 } } }
    img[0, 0, 0] = Float(n % 256) / 255
    img[1, 0, 0] = Float((n / 256) % 256) / 255
    let path = dir + "/tiny-\(n)-\(UUID().uuidString).png"
    try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: path)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try Data(contentsOf: URL(fileURLWithPath: path))
}

/// Puts a regular file where the folder `path` is (the daemon may recreate the folder in between: try again).
private func logText(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

/// Regular files of `dir` (hidden ones too), sorted.
private func plainFiles(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { name in
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir) && !isDir.boolValue
    }.sorted()
}

/// Creates `path` with `data` only if nothing is there (a producer never replaces a file it did not write).
private func createNew(_ path: String, _ data: Data, staging: String) -> Bool {
    let temp = staging + "/" + UUID().uuidString
    _ = FileManager.default.createFile(atPath: temp, contents: data)
    defer { unlink(temp) }
    return link(temp, path) == 0
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct WatchFolderProcessTests {
    // Item 4: an output folder equal to the watch folder, inside it (also through a symlink) or containing it is
    // refused with exit status 78 by --check and at start, naming both folders.
    @Test func overlappingFoldersAreRefusedByCheckAndAtStart() async throws {
        let root = try tempDir()
        try FileManager.default.createDirectory(atPath: root + "/in", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/alias", withDestinationPath: root + "/in")
        let cases: [(watch: String, output: String, says: String)] = [
            (root + "/in", root + "/in", "is the watch folder"),
            (root + "/in", root + "/in/out", "is inside the watch folder"),
            (root + "/in", root + "/alias/out", "is inside the watch folder"),
            (root + "/all/in", root + "/all", "is inside the output folder"),
        ]
        for (i, c) in cases.enumerated() {
            for check in [true, false] {
                let log = root + "/log\(i)\(check)"
                let p = try Daemon.start(["serve", "--watch", c.watch, "--output", c.output] + (check ? ["--check"] : []), log: log)
                defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
                #expect(try await Daemon.waitForExit(p) == 78, "\(c) check=\(check)")
                #expect(logText(log).contains(c.says), "\(c): \(logText(log))")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/in/processing"), "refused before touching the folder")
        // In a config file the error names the file, the line and the key.
        let config = try writeConfig(root, dir: root + "/in", out: root + "/in/out", grace: 1, port: 0)
        let p = try Daemon.start(["serve", "--config", config, "--check"], log: root + "/logcfg")
        #expect(try await Daemon.waitForExit(p) == 78)
        #expect(logText(root + "/logcfg").contains("sources.watch.0.output"))
        // Separate folders side by side still pass.
        let ok = try Daemon.start(["serve", "--watch", root + "/in", "--output", root + "/out", "--check"], log: root + "/logok")
        #expect(try await Daemon.waitForExit(ok) == 0)
    }

    @Test func overlapIsCheckedOnRealPathsInTheConfig() throws {
        let root = try tempDir()
        try FileManager.default.createDirectory(atPath: root + "/real", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: root + "/real")
        let yaml = """
        sources:
          watch:
            - dir: real/in
              output: out
            - dir: link/in
              output: out2
        """
        #expect(throws: ConfigError.self) { try DaemonConfig.parse(yaml: yaml, file: "t.yaml", baseDirectory: root) }
        let nested = "sources:\n  watch:\n    - dir: a\n      output: b\n    - dir: b\n      output: c\n"
        do {
            _ = try DaemonConfig.parse(yaml: nested, file: "t.yaml", baseDirectory: root)
            Issue.record("an output folder that is another watch folder was accepted")
        } catch let e as ConfigError {
            #expect(e.key == "sources.watch.0.output" && e.problem.contains("sources.watch.1"))
        }
        _ = try DaemonConfig.parse(yaml: "sources:\n  watch:\n    - dir: a\n      output: b\n", file: "t.yaml", baseDirectory: root)
    }

    // Items 2 and 3 with the real daemon: processing/ replaced by a file makes /health fail with the reason, the
    // log gets a bounded number of lines (it was ~26,000/s), and the daemon recovers once it is fixed; a deleted
    // output folder is recreated.
    @Test func brokenFoldersFailHealthWithoutFloodingTheLogAndRecover() async throws {
        let root = try tempDir(), dir = root + "/in", out = root + "/out"
        let config = try writeConfig(root, dir: dir, out: out, grace: 2, port: 0)
        let log = root + "/log"
        let p = try Daemon.start(["serve", "--config", config, "--metrics", "127.0.0.1:0"], log: log)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let port = try await boundPort(log: log)
        try await Daemon.waitUntil("ready", log: log) { (try? httpGet(port: port, path: "/ready"))?.status == 200 }
        let staging = root + "/staging"
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)

        try replaceFolderWithFile(dir + "/processing")
        #expect(createNew(dir + "/a.png", try tinyPNG(1, in: staging), staging: staging))
        try await Daemon.waitUntil("/health to fail", timeout: .seconds(20), log: log) {
            (try? httpGet(port: port, path: "/health"))?.status == 503
        }
        let health = try httpGet(port: port, path: "/health")
        #expect(health.body.contains("processing folder") && health.body.contains("is not a folder"), "\(health.body)")
        let sizeBefore = logText(log).utf8.count
        try await Task.sleep(for: .seconds(2))
        let grown = logText(log).utf8.count - sizeBefore
        #expect(grown < 2000, "the log grew \(grown) bytes in 2 s while processing/ was broken")
        #expect(logText(log).components(separatedBy: "cannot take files").count - 1 == 1)

        try FileManager.default.removeItem(atPath: dir + "/processing")
        try FileManager.default.removeItem(atPath: out)
        try await Daemon.waitUntil("a.png done after the fix", timeout: .seconds(40), log: log) {
            listing(dir + "/done") == ["a.png"]
        }
        #expect(listing(out) == ["a.png"], "the output folder was recreated")
        try await Daemon.waitUntil("/health ok again", timeout: .seconds(10), log: log) {
            (try? httpGet(port: port, path: "/health"))?.status == 200
        }
        kill(p.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(p) == 0)
    }

    // The acceptance's property test: seeded random interleavings of drops, re-drops of a name, bad files, deletes,
    // slow writers, SIGTERM and SIGKILL with restarts of the real daemon. Afterwards every dropped input is in
    // exactly one of done/ or failed/ (good ones in done/, bad ones in failed/ with their error file), every done
    // input has its complete output, and nothing was written anywhere but the output folder and the watch folder's
    // own sub-folders. Three seeds, each bounded (about 10-20 s); DREAMSR_PROPERTY_SEED=N runs seed N instead of
    // each of them (to replay a failure: the seed and the script of operations are in every failure message).
    @Test(arguments: [20_261_203, 7, 1_234_567] as [UInt64])
    func randomInterleavingsOfDropsAndKillsLoseNothing(defaultSeed: UInt64) async throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["DREAMSR_PROPERTY_SEED"] ?? "") ?? defaultSeed
        var rng = SeededGenerator(seed: seed)
        let root = try tempDir(), dir = root + "/in", out = root + "/out", staging = root + "/staging"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let config = try writeConfig(root, dir: dir, out: out, grace: 0.3, port: 0)
        let started = ContinuousClock.now
        var run = 0
        var logs: [String] = []
        func startDaemon() throws -> Process {
            run += 1
            let log = root + "/log\(run)"
            logs.append(log)
            return try Daemon.start(["serve", "--config", config], log: log)
        }
        var daemon = try startDaemon()
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) } }

        var dropped: [Data] = []           // every input that entered the folder and was not deleted again
        var good: Set<Data> = []
        var inFolder: [String: Data] = [:] // the latest content created under each incoming name
        var writers: [Task<Void, Never>] = []
        let writing = Locked<Set<String>>([])  // names a slow writer still holds open
        let names = ["a", "b", "c", "d"], extensions = ["png", "jpg", "webp"]
        var n = 0, kills = 0, terms = 0
        var script: [String] = []

        for _ in 0..<48 where ContinuousClock.now - started < .seconds(40) {
            let name = names.randomElement(using: &rng)! + "." + extensions.randomElement(using: &rng)!
            let roll = Int.random(in: 0..<100, using: &rng)
            switch roll {
            case 0..<40, 40..<50:   // a good drop (a re-drop when the name was used before); 40..<50: a bad one
                n += 1
                let data = roll < 40 ? try tinyPNG(n, in: staging) : Data("not an image #\(n)".utf8)
                guard !writing.current.contains(name), createNew(dir + "/" + name, data, staging: staging) else { continue }
                script.append("drop \(name)\(roll < 40 ? "" : " (bad)")")
                dropped.append(data)
                if roll < 40 { good.insert(data) }
                inFolder[name] = data
            case 50..<62:           // a slow writer: half, a pause well past stable_seconds, the rest
                n += 1
                let data = try tinyPNG(n, in: staging)
                let fd = open(dir + "/" + name, O_WRONLY | O_CREAT | O_EXCL, 0o644)
                guard fd >= 0 else { continue }
                script.append("slow \(name)")
                dropped.append(data)
                good.insert(data)
                writing.withLock { _ = $0.insert(name) }
                let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
                try handle.write(contentsOf: data.prefix(data.count / 2))
                writers.append(Task {
                    try? await Task.sleep(for: .milliseconds(500))
                    try? handle.write(contentsOf: data.dropFirst(data.count / 2))
                    try? handle.close()
                    writing.withLock { _ = $0.remove(name) }
                })
            case 62..<74:           // delete a file still waiting in the folder (it is no longer an input)
                guard !writing.current.contains(name), let data = inFolder[name], unlink(dir + "/" + name) == 0 else { continue }
                script.append("delete \(name)")
                dropped.remove(at: dropped.lastIndex(of: data)!)
                good.remove(data)
                inFolder[name] = nil
            case 74..<82, 82..<90:  // SIGTERM or SIGKILL, then a restart
                guard roll < 82 ? terms < 2 : kills < 2 else { continue }
                for w in writers { await w.value }
                writers = []
                let log = logs.last!
                // Kill only a daemon that runs (a signal before its handlers are installed would end it outright).
                try await Daemon.waitUntil("daemon ready before the signal", timeout: .seconds(60), log: log) {
                    logText(log).contains("pipeline ready")
                }
                if roll < 82 {
                    terms += 1
                    script.append("SIGTERM")
                    kill(daemon.processIdentifier, SIGTERM)
                    #expect(try await Daemon.waitForExit(daemon) == 0, "seed \(seed): \(script)")
                } else {
                    kills += 1
                    script.append("SIGKILL")
                    kill(daemon.processIdentifier, SIGKILL)
                    _ = try await Daemon.waitForExit(daemon)
                }
                daemon = try startDaemon()
            default:
                try await Task.sleep(for: .milliseconds(Int.random(in: 0..<300, using: &rng)))
            }
            // Names that left the incoming folder are no longer deletable by the producer.
            for (name, _) in inFolder where FileManager.default.fileExists(atPath: dir + "/" + name) == false { inFolder[name] = nil }
        }
        for w in writers { await w.value }
        let context = "seed \(seed), script \(script)"

        let finalLog = logs.last!
        try await Daemon.waitUntil("every input finished (\(dropped.count))", timeout: .seconds(100), log: finalLog) {
            listing(dir + "/done").count + listing(dir + "/failed").filter { !$0.hasSuffix(".error.json") }.count == dropped.count
                && listing(dir + "/processing").isEmpty
        }
        try await Daemon.waitUntil("daemon ready before the final SIGTERM", timeout: .seconds(60), log: finalLog) {
            logText(finalLog).contains("pipeline ready")
        }
        kill(daemon.processIdentifier, SIGTERM)
        #expect(try await Daemon.waitForExit(daemon) == 0, "\(context)")

        // Every dropped input is in exactly one place: good ones in done/, bad ones in failed/.
        func contents(_ d: String, _ names: [String]) -> [Data] { names.compactMap { FileManager.default.contents(atPath: d + "/" + $0) } }
        let done = contents(dir + "/done", plainFiles(dir + "/done"))
        let failedNames = plainFiles(dir + "/failed").filter { !$0.hasSuffix(".error.json") }
        let failed = contents(dir + "/failed", failedNames)
        func counts(_ items: [Data]) -> [Data: Int] { items.reduce(into: [:]) { $0[$1, default: 0] += 1 } }
        #expect(counts(done + failed) == counts(dropped), "\(context)")
        #expect(Set(done) == good.intersection(Set(dropped)), "\(context)")
        #expect(failed.allSatisfy { !good.contains($0) }, "\(context)")
        for name in failedNames {
            #expect(FileManager.default.fileExists(atPath: dir + "/failed/" + name + ".error.json"), "\(name): \(context)")
        }
        #expect(plainFiles(dir + "/failed").count == 2 * failedNames.count, "\(context)")
        #expect(plainFiles(dir + "/processing").isEmpty && plainFiles(dir).isEmpty, "\(context)")
        // Every done input has its output, complete, and nothing else is in the output folder.
        let outputs = plainFiles(out)
        #expect(outputs.count == done.count, "outputs \(outputs) for \(done.count) done inputs; \(context)")
        for name in outputs {
            let decoded = try ImageCodec.decode(path: out + "/" + name)
            #expect(decoded.width == 32 && decoded.height == 32, "\(name): \(context)")
        }
        // Nothing written outside OUT: the test's own files, the watch folder's three sub-folders, nothing else.
        #expect(Set(plainFiles(root)) == Set(["dreamsr.yaml"] + logs.map { ($0 as NSString).lastPathComponent }), "\(context)")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: root)) == Set(["in", "out", "staging", "dreamsr.yaml"] + logs.map { ($0 as NSString).lastPathComponent }))
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == ["done", "failed", "processing"], "\(context)")
        #expect(plainFiles(staging).isEmpty)
        print("watch-folder property test: seed \(seed), \(dropped.count) inputs (\(done.count) done, \(failed.count) failed), \(terms) SIGTERM, \(kills) SIGKILL, \(ContinuousClock.now - started); script \(script)")
    }
}
