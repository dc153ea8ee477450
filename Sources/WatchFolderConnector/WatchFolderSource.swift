import Foundation
import Jobs
import Logging
import PipelineRuntime
import ServiceLifecycle

/// A source service that turns files dropped into a folder into jobs.
///
/// incoming (the folder itself) -> `processing/` (atomic rename, so a file is owned by exactly one place) ->
/// `done/` after the output was written (by the pipeline, temp name + rename), or `failed/` with `NAME.error.json`
/// (stage, message, time). On start, files left in `processing/` by a crash are retried first. Files are taken
/// only after their size and mtime stayed unchanged for `stabilityInterval`. On graceful shutdown it stops taking
/// files and waits for its in-flight jobs; a job the pipeline abandons stays in `processing/` for the next start.
public final class WatchFolderSource: Service, Sendable {
    public let config: WatchFolderConfig
    private let processor: any JobProcessor
    private let logger: Logger

    private struct Candidate { var size: UInt64; var mtime: Date; var since: ContinuousClock.Instant }
    private struct State {
        var candidates: [String: Candidate] = [:]
        var inFlight = 0
        var stopping = false
        var wakeup: CheckedContinuation<Void, Never>?
        var pendingWakeup = false
        var stabilityTimerArmed = false
    }
    private let state = Locked(State())

    /// Lifecycle events for tests and logs.
    public enum Event: Sendable, Equatable {
        case started
        case claimed(String)
        case done(String)
        case failed(String)
        case leftForRetry(String)
        /// Graceful shutdown began: no more files are taken.
        case stopping
        case stopped
    }
    private let onEvent: (@Sendable (Event) -> Void)?

    public init(config: WatchFolderConfig, processor: any JobProcessor, logger: Logger,
                onEvent: (@Sendable (Event) -> Void)? = nil) {
        self.config = config
        self.processor = processor
        self.logger = logger
        self.onEvent = onEvent
    }

    public func run() async throws {
        try prepareDirectories()
        let watcher = config.useInotify ? InotifyWatcher(directory: config.directory) : nil
        if config.useInotify && watcher == nil {
            logger.warning("inotify unavailable; polling only", metadata: ["dir": "\(config.directory)"])
        }
        watcher?.start { [weak self] in self?.wake() }
        defer { watcher?.stop() }
        onEvent?(.started)
        logger.info("watch folder started", metadata: ["dir": "\(config.directory)", "output": "\(config.outputDirectory)"])

        await withTaskGroup(of: Void.self) { jobs in
            // The ticker drives stability checks and the polling fallback.
            let ticker = Task { [self] in
                while !Task.isCancelled && !state.current.stopping {
                    try? await Task.sleep(for: config.pollInterval)
                    wake()
                }
            }
            defer { ticker.cancel() }
            await withGracefulShutdownHandler {
                // Leftovers from a previous run first (they were claimed but never finished).
                for name in listFiles(config.processingDirectory) {
                    guard await reserveSlot() else { break }
                    logger.info("retrying leftover from processing/", metadata: ["file": "\(name)"])
                    jobs.addTask { await self.runJob(name) }
                }
                while !state.current.stopping && !Task.isCancelled {
                    for name in scanIncoming() {
                        guard !state.current.stopping, await reserveSlot() else { break }
                        guard claim(name) else { releaseSlot(); continue }
                        jobs.addTask { await self.runJob(name) }
                    }
                    // Files seen but not yet stable: look again once the stability interval has passed.
                    let arm: Bool = state.withLock { s in
                        guard !s.candidates.isEmpty, !s.stabilityTimerArmed else { return false }
                        s.stabilityTimerArmed = true
                        return true
                    }
                    if arm {
                        jobs.addTask { [self] in
                            try? await Task.sleep(for: config.stabilityInterval / 2)
                            state.withLock { $0.stabilityTimerArmed = false }
                            wake()
                        }
                    }
                    await waitForWakeup()
                }
            } onGracefulShutdown: {
                self.state.withLock { $0.stopping = true }
                self.onEvent?(.stopping)
                self.wake()
            }
            state.withLock { $0.stopping = true }
            wake()
            await jobs.waitForAll()
        }
        onEvent?(.stopped)
        logger.info("watch folder stopped", metadata: ["dir": "\(config.directory)"])
    }

    // MARK: Files

    private func prepareDirectories() throws {
        let fm = FileManager.default
        for dir in [config.directory, config.processingDirectory, config.doneDirectory, config.failedDirectory,
                    config.outputDirectory] {
            do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw WatchFolderError("cannot create folder: \(error.localizedDescription)", path: dir)
            }
        }
        // Partial outputs of a killed run are never visible under a final name; remove them.
        for name in listFiles(config.outputDirectory, includeHidden: true) where OutputFiles.isTemporary(name) {
            try? fm.removeItem(atPath: config.outputDirectory + "/" + name)
        }
    }

    private func listFiles(_ dir: String, includeHidden: Bool = false) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.filter { name in
            if !includeHidden && name.hasPrefix(".") { return false }
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir) && !isDir.boolValue
        }.sorted()
    }

    /// Names in the incoming folder whose size and mtime stayed unchanged for the stability interval.
    private func scanIncoming() -> [String] {
        let now = ContinuousClock.now
        var seen: [String: (UInt64, Date)] = [:]
        for name in listFiles(config.directory) {
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: config.directory + "/" + name) else { continue }
            let size = (attrs[.size] as? NSNumber)?.uint64Value ?? 0
            let mtime = attrs[.modificationDate] as? Date ?? .distantPast
            seen[name] = (size, mtime)
        }
        return state.withLock { s in
            var ready: [String] = []
            var next: [String: Candidate] = [:]
            for (name, (size, mtime)) in seen {
                if var c = s.candidates[name], c.size == size, c.mtime == mtime {
                    if now - c.since >= config.stabilityInterval { ready.append(name) }
                    c.size = size
                    next[name] = c
                } else {
                    next[name] = Candidate(size: size, mtime: mtime, since: now)
                }
            }
            s.candidates = next
            return ready.sorted()
        }
    }

    /// Moves an incoming file into processing/; false when it vanished (taken by someone else).
    private func claim(_ name: String) -> Bool {
        let from = config.directory + "/" + name
        let to = config.processingDirectory + "/" + name
        guard rename(from, to) == 0 else {
            logger.warning("could not claim file", metadata: ["file": "\(name)", "errno": "\(errno)"])
            return false
        }
        state.withLock { _ = $0.candidates.removeValue(forKey: name) }
        onEvent?(.claimed(name))
        return true
    }

    public static func outputName(for inputName: String, format: String) -> String {
        let stem = (inputName as NSString).deletingPathExtension
        return (stem.isEmpty ? inputName : stem) + "." + format
    }

    private func runJob(_ name: String) async {
        defer { releaseSlot() }
        let path = config.processingDirectory + "/" + name
        let output = config.outputDirectory + "/" + Self.outputName(for: name, format: config.outputFormat)
        let request = JobRequest(id: JobID(name), source: .file(path), output: output, format: config.outputFormat,
                                 pipeline: config.pipeline,
                                 origin: ["source": "watch", "watch.dir": config.directory, "watch.file": name])
        let outcome = await processor.process(request)
        if outcome.isAbandoned {
            logger.info("job left in processing/ for retry", metadata: ["file": "\(name)"])
            onEvent?(.leftForRetry(name))
            return
        }
        if outcome.status == .ok {
            moveReplacing(path, to: config.doneDirectory + "/" + name)
            logger.info("job done", metadata: ["file": "\(name)", "output": "\(outcome.output ?? output)"])
            onEvent?(.done(name))
        } else {
            writeErrorFile(name: name, outcome: outcome)
            moveReplacing(path, to: config.failedDirectory + "/" + name)
            logger.warning("job failed", metadata: [
                "file": "\(name)", "stage": "\(outcome.errorStage ?? "?")", "error": "\(outcome.errorMessage ?? "?")",
            ])
            onEvent?(.failed(name))
        }
    }

    private func moveReplacing(_ from: String, to: String) {
        // rename(2) replaces an existing target atomically (re-processing the same name).
        if rename(from, to) != 0 {
            logger.error("could not move file", metadata: ["from": "\(from)", "to": "\(to)", "errno": "\(errno)"])
        }
    }

    private func writeErrorFile(name: String, outcome: JobOutcome) {
        struct ErrorFile: Encodable {
            var file: String
            var stage: String?
            var message: String?
            var retriable: Bool
            var pipeline: String?
            var time: String
        }
        let body = ErrorFile(file: name, stage: outcome.errorStage, message: outcome.errorMessage,
                             retriable: outcome.retriable, pipeline: outcome.pipeline,
                             time: ISO8601DateFormatter().string(from: Date()))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let final = config.failedDirectory + "/" + name + ".error.json"
        let temp = OutputFiles.temporaryPath(for: final)
        do {
            try encoder.encode(body).write(to: URL(fileURLWithPath: temp))
            guard rename(temp, final) == 0 else { throw WatchFolderError("rename failed (errno \(errno))", path: final) }
        } catch {
            logger.error("could not write error file", metadata: ["file": "\(final)", "error": "\(error)"])
        }
    }

    // MARK: Slots and wake-ups

    private func reserveSlot() async -> Bool {
        while true {
            let ok: Bool = state.withLock { s in
                if s.stopping { return false }
                if s.inFlight < config.maxConcurrentJobs { s.inFlight += 1; return true }
                return false
            }
            if ok { return true }
            if state.current.stopping || Task.isCancelled { return false }
            await waitForWakeup()
        }
    }

    private func releaseSlot() {
        state.withLock { $0.inFlight -= 1 }
        wake()
    }

    private func wake() {
        let cont: CheckedContinuation<Void, Never>? = state.withLock { s in
            if let c = s.wakeup { s.wakeup = nil; return c }
            s.pendingWakeup = true
            return nil
        }
        cont?.resume()
    }

    private func waitForWakeup() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let now: Bool = state.withLock { s in
                if s.pendingWakeup || s.stopping { s.pendingWakeup = false; return true }
                s.wakeup = cont
                return false
            }
            if now { cont.resume() }
        }
    }
}
