#if canImport(Glibc)
import Glibc
#endif
import DreamsrTestKit
import Foundation
import Jobs
import Logging
import PipelineRuntime
import ServiceLifecycle
import Support
import Testing
@testable import WatchFolderConnector

// Issue 12, watch-folder items: broken folders (2, 3), symlinks (5), name collisions (7), writers that pause (8).

private func makeDir() throws -> String {
    try ScratchFiles.makeDirectory(prefix: "wfh-")
}

private func entries(_ dir: String, hidden: Bool = false) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { name in
        var isDir: ObjCBool = false
        return (hidden || !name.hasPrefix("."))
            && FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir) && !isDir.boolValue
    }.sorted()
}

private func put(_ path: String, _ text: String) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
}

private func text(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

struct Timeout: Error, CustomStringConvertible { let description: String }

/// Polls `condition` until it holds; throws after `timeout` (every wait in these tests has a deadline).
private func eventually(_ what: String, timeout: Duration = .seconds(20), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw Timeout(description: "timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// A processor whose answer per request is scripted: `answer(request, attempt)` (attempt counts from 1 per job id)
/// returns nil for success (the input's bytes are written to the output, like the real pipeline's encode) or a
/// failed outcome.
final class ScriptedProcessor: JobProcessor, Sendable {
    let requests = Locked<[JobRequest]>([])
    private let answer: @Sendable (JobRequest, Int) -> JobOutcome?
    init(_ answer: @escaping @Sendable (JobRequest, Int) -> JobOutcome? = { _, _ in nil }) { self.answer = answer }

    func process(_ request: JobRequest) async -> JobOutcome {
        let attempt = requests.withLock { r in r.append(request); return r.filter { $0.id == request.id }.count }
        if let failure = answer(request, attempt) { return failure }
        guard case .file(let path) = request.source, let out = request.output,
              let data = FileManager.default.contents(atPath: path) else {
            return JobOutcome(id: request.id, status: .error, errorStage: "decode", errorMessage: "cannot read")
        }
        _ = FileManager.default.createFile(atPath: out, contents: data)
        return JobOutcome(id: request.id, status: .ok, output: out)
    }

    var count: Int { requests.current.count }
}

/// Log lines kept for assertions.
final class CapturedLog: Sendable {
    let lines = Locked<[String]>([])
    var logger: Logger {
        Logger(label: "test") { _ in CaptureHandler(log: self) }
    }
    struct CaptureHandler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let meta = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            log.lines.withLock { $0.append("\(event.level) \(event.message) \(meta)") }
        }
    }
}

/// Runs a source (with a health reporter and a captured log) until `body` returns, then shuts it down gracefully.
private func running(_ config: WatchFolderConfig, _ processor: any JobProcessor, health: HealthReporter = HealthReporter(),
                     log: CapturedLog = CapturedLog(), logInterval: Duration = .seconds(30),
                     _ body: @Sendable (AsyncEvents<WatchFolderSource.Event>) async throws -> Void) async throws {
    let events = AsyncEvents<WatchFolderSource.Event>()
    let source = WatchFolderSource(config: config, processor: processor, logger: log.logger, health: health,
                                   logInterval: logInterval) { events.emit($0) }
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [source], logger: Logger(label: "test")))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        try await eventually("the source to start") { events.all.contains(.started) }
        do { try await body(events) } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

@Suite(.timeLimit(.minutes(2))) struct WatchFolderHardeningTests {
    func config(_ dir: String, _ out: String, inotify: Bool = false) -> WatchFolderConfig {
        WatchFolderConfig(directory: dir, outputDirectory: out, pollInterval: .milliseconds(30),
                          stabilityInterval: .milliseconds(60), maxConcurrentJobs: 4, useInotify: inotify,
                          retryDelay: .milliseconds(40), maxRetryDelay: .milliseconds(200), maxRetries: 5)
    }

    // Item 2: processing/ deleted at run time is recreated; one that cannot be recreated (a file is in its place)
    // fails health with the reason, is re-checked with backoff (no busy loop, a bounded number of log lines), and
    // files flow again once it is fixed.
    @Test func brokenProcessingFolderIsRecreatedOrReportedWithBackoff() async throws {
        let dir = try makeDir(), out = try makeDir()
        let health = HealthReporter(), log = CapturedLog()
        let processor = ScriptedProcessor()
        try await running(config(dir, out), processor, health: health, log: log, logInterval: .seconds(30)) { events in
            try FileManager.default.removeItem(atPath: dir + "/processing")
            put(dir + "/a.png", "a")
            try await eventually("a.png done after processing/ was recreated") { entries(dir + "/done") == ["a.png"] }

            try replaceFolderWithFile(dir + "/processing")
            put(dir + "/b.png", "b")
            try await eventually("health to report processing/") {
                health.current.contains { $0.contains("processing folder") && $0.contains("is not a folder") }
            }
            try await Task.sleep(for: .seconds(1))
            #expect(entries(dir).contains("b.png"), "b.png waits in the folder, untouched")
            let problemLines = log.lines.current.filter { $0.contains("cannot take files") }
            #expect(problemLines.count == 1, "one line per problem per interval, got \(problemLines.count)")
            #expect(log.lines.current.count < 20, "no log flood: \(log.lines.current.count) lines")

            try FileManager.default.removeItem(atPath: dir + "/processing")
            try await eventually("b.png done once processing/ can be recreated") { entries(dir + "/done") == ["a.png", "b.png"] }
            try await eventually("health to clear") { health.current.isEmpty }
        }
        #expect(entries(out) == ["a.png", "b.png"])
    }

    // Item 3: an output folder that cannot be used holds jobs in processing/ (the model does not run), health says
    // why; a deleted output folder is recreated; retriable failures are retried with backoff, non-retriable ones
    // still go to failed/.
    @Test func brokenOutputFolderAndRetriableFailuresAreRetried() async throws {
        let dir = try makeDir(), root = try makeDir()
        let out = root + "/out"
        let health = HealthReporter()
        // "flaky" fails twice retriably (disk full), then succeeds; "bad" fails for good.
        let processor = ScriptedProcessor { request, attempt in
            if request.id.rawValue == "flaky.png" && attempt <= 2 {
                return JobOutcome(id: request.id, status: .error, errorStage: "encode",
                                  errorMessage: "No space left on device", retriable: true)
            }
            if request.id.rawValue == "bad.png" {
                return JobOutcome(id: request.id, status: .error, errorStage: "decode", errorMessage: "not an image")
            }
            return nil
        }
        try await running(config(dir, out), processor, health: health) { events in
            try replaceFolderWithFile(out)
            put(dir + "/a.png", "a")
            try await eventually("health to report the output folder") {
                health.current.contains { $0.contains("output folder") && $0.contains("not a folder") }
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(processor.count == 0, "the model does not run while outputs cannot be written")
            #expect(entries(dir + "/processing") == ["a.png"])
            try FileManager.default.removeItem(atPath: out)   // gone: recreated by the source
            try await eventually("a.png done") { entries(dir + "/done") == ["a.png"] }
            #expect(entries(out) == ["a.png"])
            try await eventually("health to clear") { health.current.isEmpty }

            put(dir + "/flaky.png", "f")
            put(dir + "/bad.png", "x")
            try await eventually("flaky done, bad failed") {
                entries(dir + "/done") == ["a.png", "flaky.png"] && entries(dir + "/failed") == ["bad.png", "bad.png.error.json"]
            }
        }
        #expect(processor.requests.current.filter { $0.id.rawValue == "flaky.png" }.count == 3)
        #expect(processor.requests.current.filter { $0.id.rawValue == "bad.png" }.count == 1)
        #expect(incoming(dir).isEmpty)
        #expect(entries(out) == ["a.png", "flaky.png"])
    }

    // Item 3: a failure that stays retriable ends in failed/ after maxRetries, with retriable and attempts recorded.
    @Test func retriesAreBoundedAndRecorded() async throws {
        let dir = try makeDir(), out = try makeDir()
        let processor = ScriptedProcessor { request, _ in
            JobOutcome(id: request.id, status: .error, errorStage: "restore", errorMessage: "timeout", retriable: true)
        }
        var cfg = config(dir, out)
        cfg.maxRetries = 2
        try await running(cfg, processor) { _ in
            put(dir + "/t.png", "t")
            try await eventually("t.png failed") { entries(dir + "/failed").count == 2 }
        }
        #expect(processor.count == 3)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/failed/t.png.error.json"))) as! [String: Any]
        #expect(json["retriable"] as? Bool == true)
        #expect(json["attempts"] as? Int == 3)
    }

    // Item 5: a symlink in the watch folder is never read: it goes to failed/ (the link itself) with the reason.
    @Test func symlinksAreNotFollowed() async throws {
        let dir = try makeDir(), out = try makeDir(), elsewhere = try makeDir()
        put(elsewhere + "/secret.png", "secret")
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.png", withDestinationPath: elsewhere + "/secret.png")
        let processor = ScriptedProcessor()
        try await running(config(dir, out), processor) { _ in
            try await eventually("link.png failed") {
                FileStatus(dir + "/failed/link.png") != nil && FileStatus(dir + "/failed/link.png.error.json") != nil
            }
        }
        #expect(processor.count == 0)
        #expect(FileStatus(dir + "/failed/link.png")?.kind == .symlink)
        #expect(text(elsewhere + "/secret.png") == "secret")
        #expect(text(dir + "/failed/link.png.error.json")?.contains("symbolic link") == true)
        #expect(entries(out).isEmpty)
    }

    // Item 5: outputs stay in the output folder's real path: a link planted under an output name is never written
    // through (another name is used), and an output folder that comes to resolve into the watch folder holds jobs.
    @Test func outputsAreConfinedToTheOutputFolder() async throws {
        let dir = try makeDir(), root = try makeDir(), elsewhere = try makeDir()
        let out = root + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        put(elsewhere + "/target", "untouched")
        try FileManager.default.createSymbolicLink(atPath: out + "/a.png", withDestinationPath: elsewhere + "/target")
        let health = HealthReporter()
        let processor = ScriptedProcessor()
        try await running(config(dir, out), processor, health: health) { _ in
            put(dir + "/a.png", "a")
            try await eventually("a.png done") { entries(dir + "/done") == ["a.png"] }
            #expect(processor.requests.current.first?.output == FileStatus.realPath(out)! + "/a-1.png")
            // The output folder is swapped for a link into the watch folder: nothing runs, health says why.
            try FileManager.default.moveItem(atPath: out, toPath: root + "/old-out")
            try FileManager.default.createSymbolicLink(atPath: out, withDestinationPath: dir + "/done")
            put(dir + "/b.png", "b")
            try await eventually("health to report the output folder") {
                health.current.contains { $0.contains("inside the watch folder") }
            }
            #expect(processor.count == 1)
            #expect(entries(dir + "/processing") == ["b.png"])
        }
        #expect(text(elsewhere + "/target") == "untouched")
        #expect(FileStatus(root + "/old-out/a.png")?.kind == .symlink)
        #expect(text(root + "/old-out/a-1.png") == "a")
        #expect(entries(dir + "/done") == ["a.png"], "nothing was written into the watch folder")
    }

    // Item 7: the same name dropped again while the first is processing waits, and neither input nor output is
    // replaced; a.png and a.webp get a.png and a-1.png.
    @Test func nameCollisionsKeepEveryInputAndOutput() async throws {
        let dir = try makeDir(), out = try makeDir()
        let gate = TestGate()
        let processor = GatedProcessor(gate: gate)
        try await running(config(dir, out), processor) { events in
            put(dir + "/a.png", "first")
            try await eventually("the first a.png to be processing") { processor.inner.count == 1 }
            put(dir + "/a.png", "second")
            put(dir + "/a.webp", "webp")
            try await eventually("a.webp to be processing") { processor.inner.count == 2 }
            try await Task.sleep(for: .milliseconds(300))
            #expect(text(dir + "/processing/a.png") == "first", "the second a.png must not replace the first")
            #expect(text(dir + "/a.png") == "second", "the second a.png waits in the folder")
            gate.openAll()
            try await eventually("all three done") { entries(dir + "/done").count == 3 }
        }
        #expect(entries(dir + "/done") == ["a-1.png", "a.png", "a.webp"])
        #expect(text(dir + "/done/a.png") == "first" && text(dir + "/done/a-1.png") == "second")
        #expect(Set(entries(out).compactMap { text(out + "/" + $0) }) == ["first", "second", "webp"])
        #expect(entries(out) == ["a-1.png", "a-2.png", "a.png"])
    }

    // Item 8: writers' temporary names are never taken.
    @Test func temporaryNamesAreIgnored() async throws {
        let dir = try makeDir(), out = try makeDir()
        let names = [".hidden.png", "x.png.part", "x.tmp", "x.png~", "x.png.crdownload", "X.PART"]
        for n in names { put(dir + "/" + n, "partial") }
        put(dir + "/real.png", "real")
        let processor = ScriptedProcessor()
        try await running(config(dir, out), processor) { _ in
            try await eventually("real.png done") { entries(dir + "/done") == ["real.png"] }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(processor.count == 1)
        #expect(entries(dir, hidden: true) == names.sorted())
    }

    // Item 8: with inotify, a file still open for writing is not taken even when its writer pauses longer than the
    // stability interval; it is taken once closed.
    @Test func aWriterPausingLongerThanTheStabilityIntervalIsWaitedFor() async throws {
        let dir = try makeDir(), out = try makeDir()
        let processor = ScriptedProcessor()
        try await running(config(dir, out, inotify: true), processor) { _ in
            put(dir + "/slow.png", "")
            let handle = try #require(FileHandle(forWritingAtPath: dir + "/slow.png"))
            try handle.write(contentsOf: Data("first half ".utf8))
            try await Task.sleep(for: .milliseconds(600))   // 10x the stability interval
            #expect(processor.count == 0, "taken while its writer still holds it open")
            try handle.write(contentsOf: Data("second half".utf8))
            try handle.close()
            try await eventually("slow.png done") { entries(dir + "/done") == ["slow.png"] }
        }
        #expect(text(out + "/slow.png") == "first half second half")
    }

    // Item 8: a file linked in (inotify reports it created, never closed) is not mistaken for one being written.
    @Test func aHardLinkedInputIsTakenWithoutWaitingForAClose() async throws {
        let dir = try makeDir(), out = try makeDir(), staging = try makeDir()
        let processor = ScriptedProcessor()
        try await running(config(dir, out, inotify: true), processor) { _ in
            put(staging + "/x", "linked")
            let linked = ContinuousClock.now
            #expect(link(staging + "/x", dir + "/linked.png") == 0)
            try await eventually("linked.png done") { entries(dir + "/done") == ["linked.png"] }
            #expect(ContinuousClock.now - linked < .seconds(10), "waited for a close that never comes")
        }
    }

    // Item 8: a decode failure of a file that changed after it was taken is retried (without inotify's help).
    @Test func aDecodeFailureOfAnInputThatChangedIsRetried() async throws {
        let dir = try makeDir(), out = try makeDir()
        let processor = ScriptedProcessor { request, attempt in
            guard case .file(let path) = request.source else { return nil }
            if attempt == 1 {
                // The writer resumes while the job runs: the half-written file fails to decode.
                let handle = FileHandle(forWritingAtPath: path)!
                handle.seekToEndOfFile()
                handle.write(Data(" rest".utf8))
                handle.closeFile()
                return JobOutcome(id: request.id, status: .error, errorStage: "decode", errorMessage: "truncated")
            }
            return nil
        }
        try await running(config(dir, out), processor) { _ in
            put(dir + "/half.png", "half")
            try await eventually("half.png done") { entries(dir + "/done") == ["half.png"] }
        }
        #expect(processor.count == 2)
        #expect(text(out + "/half.png") == "half rest")
        #expect(entries(dir + "/failed").isEmpty)
    }

    @Test func inotifyEventsAreDecoded() {
        func record(_ mask: UInt32, _ name: String) -> [UInt8] {
            var name = Array(name.utf8)
            let len = name.isEmpty ? 0 : (name.count / 16 + 1) * 16
            name += [UInt8](repeating: 0, count: len - name.count)
            func le(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xff) } }
            return le(1) + le(mask) + le(0) + le(UInt32(len)) + name
        }
        let bytes = record(0x100, "a.png") + record(0x2, "a.png") + record(0x8, "a.png") + record(0x4000_0100, "sub")
            + record(0x80, "b.png") + record(0x4000, "")
        // Creation alone (IN_CREATE: a hard link is never closed) does not mark a writer; a write does.
        #expect(InotifyWatcher.decode(bytes) == [.writing("a.png"), .settled("a.png"), .settled("b.png"), .overflow])
    }
}

/// A scripted processor whose jobs wait at a gate.
final class GatedProcessor: JobProcessor, Sendable {
    let inner = ScriptedProcessor()
    let gate: TestGate
    init(gate: TestGate) { self.gate = gate }
    func process(_ request: JobRequest) async -> JobOutcome {
        inner.requests.withLock { $0.append(request) }
        await gate.pass()
        guard case .file(let path) = request.source, let out = request.output,
              let data = FileManager.default.contents(atPath: path) else {
            return JobOutcome(id: request.id, status: .error, errorStage: "decode", errorMessage: "cannot read")
        }
        _ = FileManager.default.createFile(atPath: out, contents: data)
        return JobOutcome(id: request.id, status: .ok, output: out)
    }
}

private func incoming(_ dir: String) -> [String] { entries(dir).filter { $0 != "done" && $0 != "failed" && $0 != "processing" } }
