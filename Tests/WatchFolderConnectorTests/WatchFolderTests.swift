import DreamsrTestKit
import Foundation
import Jobs
import Logging
import PipelineRuntime
import ServiceLifecycle
import Testing
import WatchFolderConnector

private func tempDir() throws -> String {
    try ScratchFiles.makeDirectory(prefix: "wf-")
}

private func files(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { name in
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir) && !isDir.boolValue
    }.sorted()
}

private func write(_ path: String, _ text: String) {
    FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
}

private func isFinal(_ e: WatchFolderSource.Event) -> Bool {
    switch e {
    case .done, .failed, .leftForRetry: return true
    default: return false
    }
}

/// Runs a source in a ServiceGroup; `body` gets the events; the group is shut down gracefully afterwards.
private func withSource(_ config: WatchFolderConfig, processor: any JobProcessor,
                        _ body: @Sendable (AsyncEvents<WatchFolderSource.Event>, ServiceGroup) async throws -> Void) async throws {
    let events = AsyncEvents<WatchFolderSource.Event>()
    let source = WatchFolderSource(config: config, processor: processor, logger: Logger(label: "test")) { events.emit($0) }
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [source], logger: Logger(label: "test")))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        await events.waitFor { $0 == .started }
        try await body(events, group)
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

@Suite(.timeLimit(.minutes(1))) struct WatchFolderTests {
    func config(_ dir: String, _ out: String, poll: Duration = .milliseconds(50), inotify: Bool = false) -> WatchFolderConfig {
        WatchFolderConfig(directory: dir, outputDirectory: out, pollInterval: poll,
                          stabilityInterval: .milliseconds(60), maxConcurrentJobs: 3, useInotify: inotify)
    }

    @Test func goodFilesGoToDoneBadOnesToFailedWithErrorFile() async throws {
        let dir = try tempDir(), out = try tempDir()
        for i in 0..<5 { write("\(dir)/img\(i).jpg", "image \(i)") }
        for i in 0..<2 { write("\(dir)/bad\(i).jpg", "garbage") }
        write("\(dir)/.hidden", "ignored")
        let processor = RecordingProcessor()
        try await withSource(config(dir, out), processor: processor) { events, _ in
            await events.waitFor(count: 7, where: isFinal)
        }
        #expect(files(dir + "/done") == (0..<5).map { "img\($0).jpg" })
        #expect(files(dir + "/failed") == ["bad0.jpg", "bad0.jpg.error.json", "bad1.jpg", "bad1.jpg.error.json"])
        #expect(files(dir + "/processing").isEmpty)
        #expect(files(out) == (0..<5).map { "img\($0).png" })
        #expect(files(dir) == [".hidden"])
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/failed/bad0.jpg.error.json"))) as! [String: Any]
        #expect(json["stage"] as? String == "decode")
        #expect(json["message"] as? String == "not an image")
        #expect(json["time"] is String)
        // Each request names its output and the job id is the file name (idempotent names).
        let reqs = processor.events.all
        #expect(Set(reqs.map(\.id.rawValue)).count == 7)
        #expect(reqs.first { $0.id.rawValue == "img0.jpg" }?.output == out + "/img0.png")
    }

    @Test func leftoversInProcessingAreRetriedAndPartialOutputsRemoved() async throws {
        let dir = try tempDir(), out = try tempDir()
        try FileManager.default.createDirectory(atPath: dir + "/processing", withIntermediateDirectories: true)
        write("\(dir)/processing/crashed.png", "x")
        write("\(out)/" + ".crashed.png.dreamsr-partial-123", "half")
        let processor = RecordingProcessor()
        try await withSource(config(dir, out), processor: processor) { events, _ in
            await events.waitFor(where: isFinal)
        }
        #expect(files(dir + "/done") == ["crashed.png"])
        #expect(files(out) == ["crashed.png"])
    }

    @Test func abandonedJobsStayInProcessingForTheNextStart() async throws {
        let dir = try tempDir(), out = try tempDir()
        write("\(dir)/a.png", "a")
        let processor = RecordingProcessor(abandon: ["a.png"])
        try await withSource(config(dir, out), processor: processor) { events, _ in
            await events.waitFor(where: isFinal)
        }
        // Beside it, the hidden note of its output name (a retry writes the same output file).
        #expect(files(dir + "/processing") == [".a.png.dreamsr-output", "a.png"])
        #expect(files(dir + "/done").isEmpty && files(dir + "/failed").isEmpty)
        // Restart: it is retried and completes.
        processor.setAbandon([])
        try await withSource(config(dir, out), processor: processor) { events, _ in
            await events.waitFor(where: isFinal)
        }
        #expect(files(dir + "/done") == ["a.png"])
        #expect(files(dir + "/processing").isEmpty)
    }

    @Test func aFileIsTakenOnlyAfterItIsStable() async throws {
        let dir = try tempDir(), out = try tempDir()
        var cfg = config(dir, out)
        cfg.stabilityInterval = .milliseconds(400)
        let processor = RecordingProcessor()
        try await withSource(cfg, processor: processor) { events, _ in
            let written = ContinuousClock.now
            write("\(dir)/slow.png", "data")
            await events.waitFor { $0 == .claimed("slow.png") }
            #expect(ContinuousClock.now - written >= .milliseconds(400))
            await events.waitFor(where: isFinal)
        }
    }

    @Test func inotifyPicksFilesUpWithoutWaitingForThePoll() async throws {
        let dir = try tempDir(), out = try tempDir()
        let cfg = config(dir, out, poll: .seconds(30), inotify: true)
        let processor = RecordingProcessor()
        try await withSource(cfg, processor: processor) { events, _ in
            let written = ContinuousClock.now
            write("\(dir)/fast.png", "data")
            await events.waitFor(where: isFinal)
            #expect(ContinuousClock.now - written < .seconds(10))
        }
        #expect(files(dir + "/done") == ["fast.png"])
    }

    @Test func gracefulShutdownStopsIntakeAndFinishesInFlightJobs() async throws {
        let dir = try tempDir(), out = try tempDir()
        for i in 0..<5 { write("\(dir)/f\(i).png", "x") }
        let gate = TestGate()
        let processor = RecordingProcessor(gate: gate)
        let events = AsyncEvents<WatchFolderSource.Event>()
        let source = WatchFolderSource(config: config(dir, out), processor: processor, logger: Logger(label: "t")) { events.emit($0) }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [source], logger: Logger(label: "t")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // maxConcurrentJobs = 3: three are claimed and block in the processor.
            await processor.events.waitFor(count: 3)
            await group.triggerGracefulShutdown()
            await events.waitFor { $0 == .stopping }
            gate.openAll()
            try await tasks.waitForAll()
        }
        #expect(files(dir + "/done").count == 3)
        #expect(files(dir).count == 2, "files not yet claimed stay in the incoming folder")
        #expect(files(dir + "/processing").isEmpty)
    }

    @Test func outputNamesAreDerivedFromTheInputName() {
        #expect(WatchFolderSource.outputName(for: "photo.jpg", format: "png") == "photo.png")
        #expect(WatchFolderSource.outputName(for: "noext", format: "png") == "noext.png")
        #expect(WatchFolderSource.outputName(for: "a.b.tiff", format: "webp") == "a.b.webp")
    }
}
