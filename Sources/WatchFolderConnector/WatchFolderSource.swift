#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Jobs
import Logging
import ObjectStorage
import ServiceLifecycle
import Support

/// A source service that turns files dropped into a folder into jobs.
///
/// incoming (the folder itself) -> `processing/` (atomic rename, so a file is owned by exactly one place) ->
/// `done/` after the output was written (by the pipeline, temp name + rename), or `failed/` with `NAME.error.json`
/// (stage, message, retriable, attempts, time). Nothing replaces anything: a name already taken in `done/`,
/// `failed/` or the output folder gets the first free `<stem>-N.<ext>`; a name dropped again while the first is
/// still in `processing/` waits in the folder until the first is finished.
///
/// Files are taken only when they are regular files (links and devices go to `failed/` unread), their name is not
/// a writer's temporary (`WatchFolderConfig.isTemporaryName`), no writer is known to hold them open (inotify), and
/// their size and mtime stayed unchanged for `stabilityInterval`. Retriable failures (output folder missing or
/// not writable, disk full, an input that changed while it was processed) keep the input in `processing/` and are
/// retried with a doubling delay; a missing `processing/`, `done/`, `failed/` or output folder is recreated, and one
/// that cannot be is reported to `health` (so /health fails) and re-checked with the same backoff, logging one line
/// per problem per `logInterval`. On start, files left in `processing/` by a crash are retried first (with the
/// output name they were given). On graceful shutdown it stops taking files and waits for its in-flight jobs; a job
/// the pipeline abandons, or one waiting for a retry, stays in `processing/` for the next start.
///
/// With an `s3://` output prefix (`WatchFolderConfig.outputPrefix`) the pipeline writes into the staging folder and
/// the output is uploaded before the input moves to `done/`, under the first key free in the bucket (HEAD, then
/// `If-None-Match: *`; never replacing an object); an upload that fails after the client's retries sends the input
/// to `failed/` (stage `upload`, the S3 error code in the message), and a multipart upload is aborted. The daemon
/// checks the prefix before it starts (`checkOutputPrefix`).
public final class WatchFolderSource: Service, Sendable {
    public let config: WatchFolderConfig
    private let processor: any JobProcessor
    private let logger: Logger
    private let health: HealthReporter?
    private let problemLog: RateLimitedLog
    /// The client for `config.outputPrefix` (or why there is none); nil without a prefix.
    private let objectStore: Result<S3Client, ObjectStorageError>?

    private struct Candidate { var status: FileStatus; var since: ContinuousClock.Instant }
    private struct State {
        var candidates: [String: Candidate] = [:]
        /// Names inotify saw created or written and not yet closed, with when that was first seen.
        var openForWriting: [String: ContinuousClock.Instant] = [:]
        /// Input names in `processing/` that a job of this run owns (running or waiting for a retry).
        var busy: Set<String> = []
        /// Output file names promised to jobs of this run that have not finished yet.
        var reservedOutputs: Set<String> = []
        var inFlight = 0
        var stopping = false
        var wakeup: CheckedContinuation<Void, Never>?
        var pendingWakeup = false
        var stabilityTimerArmed = false
        /// An intake problem was reported and not yet cleared.
        var intakeProblem = false
    }
    private let state = Locked(State())

    /// Lifecycle events for tests and logs.
    public enum Event: Sendable, Equatable {
        case started
        case claimed(String)
        case done(String)
        case failed(String)
        case leftForRetry(String)
        /// A retriable failure: the input stays in `processing/` and runs again after a delay.
        case retrying(String)
        /// Graceful shutdown began: no more files are taken.
        case stopping
        case stopped
    }
    private let onEvent: (@Sendable (Event) -> Void)?

    /// `health`: where folder and output problems are reported while they last (keys `watch DIR intake` and
    /// `watch DIR output`). `logInterval`: one log line per distinct problem per interval.
    public init(config: WatchFolderConfig, processor: any JobProcessor, logger: Logger, health: HealthReporter? = nil,
                logInterval: Duration = .seconds(30), onEvent: (@Sendable (Event) -> Void)? = nil) {
        self.config = config
        self.processor = processor
        self.logger = logger
        self.health = health
        self.problemLog = RateLimitedLog(interval: logInterval)
        self.onEvent = onEvent
        if config.outputPrefix != nil {
            do throws(ObjectStorageError) {
                guard let storage = config.objectStorage else {
                    throw ObjectStorageError(.configuration, operation: "configure", target: config.outputDirectory,
                                             message: "an s3:// output needs the object storage settings")
                }
                objectStore = .success(try S3Client(configuration: storage, logger: logger))
            } catch {
                objectStore = .failure(error)
            }
        } else {
            objectStore = nil
        }
    }

    /// Checks an `s3://` output prefix before the daemon starts: settings and credentials present, the bucket
    /// exists and these credentials may use it (HeadBucket, after the client's retries). Throws a `WatchFolderError`
    /// naming the prefix and the S3 error code; does nothing for a local output folder.
    public static func checkOutputPrefix(_ config: WatchFolderConfig, logger: Logger) async throws(WatchFolderError) {
        guard let prefix = config.outputPrefix else { return }
        do throws(ObjectStorageError) {
            guard let storage = config.objectStorage else {
                throw ObjectStorageError(.configuration, operation: "configure", target: prefix.uri,
                                         message: "an s3:// output needs the object storage settings")
            }
            try await S3Client(configuration: storage, logger: logger).checkBucket(prefix.bucket)
        } catch {
            throw WatchFolderError("output prefix \(prefix.uri) cannot be used: \(error)", path: config.directory)
        }
    }

    private var intakeKey: String { "watch \(config.directory) intake" }
    private var outputKey: String { "watch \(config.directory) output" }

    public func run() async throws {
        try prepareDirectories()
        let watcher = config.useInotify ? InotifyWatcher(directory: config.directory) : nil
        if config.useInotify && watcher == nil {
            logger.warning("inotify unavailable; polling only", metadata: ["dir": "\(config.directory)"])
        }
        watcher?.start { [weak self] events in self?.noteWriters(events) }
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
                for name in listNames(config.processingDirectory) {
                    guard await reserveSlot() else { break }
                    let output = leftoverOutputName(name)
                    logger.info("retrying leftover from processing/", metadata: ["file": "\(name)", "output": "\(output)"])
                    jobs.addTask { await self.runJob(name, outputName: output, taken: nil) }
                }
                var delay = config.retryDelay
                while !state.current.stopping && !Task.isCancelled {
                    if let problem = intakeProblem() {
                        reportIntake(problem)
                        guard await pause(delay) else { break }
                        delay = min(delay * 2, config.maxRetryDelay)
                        continue
                    }
                    let (ready, pending) = scanIncoming()
                    var claimProblem = false
                    for name in ready {
                        guard !state.current.stopping, await reserveSlot() else { break }
                        switch claim(name) {
                        case .claimed(let output, let taken):
                            jobs.addTask { await self.runJob(name, outputName: output, taken: taken) }
                        case .gone:
                            releaseSlot(wake: false)
                        case .folderProblem(let problem, let key):
                            releaseSlot(wake: false)
                            reportIntake(problem, key: key)
                            claimProblem = true
                        }
                        if claimProblem { break }
                    }
                    if claimProblem {
                        guard await pause(delay) else { break }
                        delay = min(delay * 2, config.maxRetryDelay)
                        continue
                    }
                    if !ready.isEmpty || !pending { clearIntakeProblem() }
                    delay = config.retryDelay
                    // Files seen but not yet stable: look again once the stability interval has passed.
                    let arm: Bool = state.withLock { s in
                        guard pending, !s.stabilityTimerArmed else { return false }
                        s.stabilityTimerArmed = true
                        return true
                    }
                    if arm {
                        jobs.addTask { [self] in
                            try? await Task.sleep(for: max(config.stabilityInterval / 2, .milliseconds(20)))
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

    // MARK: Folders

    private func prepareDirectories() throws {
        let fm = FileManager.default
        let outputs = config.outputPrefix == nil ? config.outputDirectory : config.stagingDirectory
        for dir in [config.directory, config.processingDirectory, config.doneDirectory, config.failedDirectory, outputs] {
            do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw WatchFolderError("cannot create folder: \(error.localizedDescription)", path: dir)
            }
        }
        // Partial outputs of a killed run are never visible under a final name; remove them.
        for name in (try? fm.contentsOfDirectory(atPath: outputs)) ?? []
        where OutputFiles.isTemporary(name) || config.outputPrefix != nil {
            // Staged outputs of a killed run were not uploaded (or their input would be in done/): the job reruns.
            try? fm.removeItem(atPath: outputs + "/" + name)
        }
        // Output-name notes whose input is gone (finished just before a kill), and their temporaries.
        for name in (try? fm.contentsOfDirectory(atPath: config.processingDirectory)) ?? [] {
            if OutputFiles.isTemporary(name) {
                try? fm.removeItem(atPath: config.processingDirectory + "/" + name)
            } else if let input = Self.inputName(ofOutputNote: name), FileStatus.isAbsent(config.processingDirectory + "/" + input) {
                try? fm.removeItem(atPath: config.processingDirectory + "/" + name)
            }
        }
    }

    /// Recreates a missing folder; describes why `dir` cannot be used (nil: usable).
    private func ensureFolder(_ dir: String, what: String) -> String? {
        if FileStatus.isAbsent(dir) {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                problemLog.log("recreated " + dir) { suppressed in
                    logger.warning("\(what) was missing; recreated it", metadata: ["dir": "\(dir)", "suppressed_repeats": "\(suppressed)"])
                }
            } catch {
                return "\(what) \(dir) is missing and cannot be recreated: \(error.localizedDescription)"
            }
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            return "\(what) \(dir) is not a folder"
        }
        guard access(dir, W_OK | X_OK) == 0 else {
            return "\(what) \(dir) is not writable: \(String(cString: strerror(errno)))"
        }
        return nil
    }

    private func intakeProblem() -> String? {
        for (dir, what) in [(config.directory, "watch folder"), (config.processingDirectory, "processing folder"),
                            (config.doneDirectory, "done folder"), (config.failedDirectory, "failed folder")] {
            if let problem = ensureFolder(dir, what: what) { return problem }
        }
        return nil
    }

    /// `key`: what makes two reports the same problem for the log limit (default: the text).
    private func reportIntake(_ problem: String, key: String? = nil) {
        state.withLock { $0.intakeProblem = true }
        health?.set(intakeKey, problem: problem + "; not taking files until it is fixed")
        problemLog.log(intakeKey + (key ?? problem)) { suppressed in
            logger.error("watch folder cannot take files; retrying with backoff", metadata: [
                "dir": "\(config.directory)", "problem": "\(problem)", "suppressed_repeats": "\(suppressed)",
            ])
        }
    }

    private func clearIntakeProblem() {
        guard state.withLock({ s in defer { s.intakeProblem = false }; return s.intakeProblem }) else { return }
        health?.set(intakeKey, problem: nil)
        logger.info("watch folder takes files again", metadata: ["dir": "\(config.directory)"])
    }

    /// The output folder's real path, recreated when missing; or why outputs cannot be written there now.
    private func outputFolder() -> Result<String, WatchFolderError> {
        if config.outputPrefix != nil {
            if let problem = ensureFolder(config.stagingDirectory, what: "staging folder") {
                return .failure(WatchFolderError(problem, path: config.stagingDirectory))
            }
            return .success(config.stagingDirectory)
        }
        if let problem = ensureFolder(config.outputDirectory, what: "output folder") {
            return .failure(WatchFolderError(problem, path: config.outputDirectory))
        }
        guard let real = FileStatus.realPath(config.outputDirectory) else {
            return .failure(WatchFolderError("output folder cannot be resolved", path: config.outputDirectory))
        }
        if let watch = FileStatus.realPath(config.directory), real == watch || real.hasPrefix(watch + "/") {
            return .failure(WatchFolderError("output folder resolves to \(real), inside the watch folder \(watch): not writing there",
                                             path: config.outputDirectory))
        }
        return .success(real)
    }

    // MARK: Names

    /// Visible (not hidden) directory entries, sorted; sub-folders excluded.
    /// Files waiting in the watch folder (not temporary names) and files in `processing/` (running or waiting for a
    /// retry), counted from the folders (for the backlog metrics).
    public func backlog() -> (waiting: Int, processing: Int) {
        let waiting = listNames(config.directory).filter { name in
            !WatchFolderConfig.isTemporaryName(name)
                && FileStatus(config.directory + "/" + name) != nil
        }.count
        let processing = listNames(config.directory + "/processing").filter { !$0.hasPrefix(".") }.count
        return (waiting, processing)
    }

    private func listNames(_ dir: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.filter { name in
            !name.hasPrefix(".") && FileStatus(dir + "/" + name).map { $0.kind != .directory } ?? false
        }.sorted()
    }

    public static func outputName(for inputName: String, format: String) -> String {
        let stem = (inputName as NSString).deletingPathExtension
        return (stem.isEmpty ? inputName : stem) + "." + format
    }

    /// `name` when `isFree(name)`, else the first free `<stem>-N.<ext>` (N = 1, 2, ... 9999; then a UUID).
    static func firstFreeName(_ name: String, _ isFree: (String) -> Bool) -> String {
        if isFree(name) { return name }
        for n in 1..<10_000 where isFree(suffixedName(name, String(n))) { return suffixedName(name, String(n)) }
        return suffixedName(name, UUID().uuidString)
    }

    /// `<stem>-<tag>.<ext>` (`<name>-<tag>` without an extension).
    static func suffixedName(_ name: String, _ tag: String) -> String {
        let ext = (name as NSString).pathExtension
        let stem = (name as NSString).deletingPathExtension
        return ext.isEmpty ? "\(name)-\(tag)" : "\(stem)-\(tag).\(ext)"
    }

    /// Picks and reserves the output file name for `inputName`: never one that exists or another job was given.
    private func reserveOutputName(for inputName: String) -> String {
        let base = Self.outputName(for: inputName, format: config.outputFormat)
        let dir = config.outputDirectory
        // An s3:// prefix is checked for existing objects when the output is uploaded.
        let local = config.outputPrefix == nil
        let chosen: String = state.withLock { s in
            let name = Self.firstFreeName(base) {
                !s.reservedOutputs.contains($0) && (!local || FileStatus(dir + "/" + $0) == nil)
            }
            s.reservedOutputs.insert(name)
            return name
        }
        if chosen != base {
            logger.notice("output name already taken; writing a suffixed name instead of replacing it", metadata: [
                "file": "\(inputName)", "taken": "\(base)", "output": "\(chosen)",
            ])
        }
        return chosen
    }

    /// The note beside a claimed input recording its output name, so a retry after a crash writes the same file.
    private func outputNotePath(_ inputName: String) -> String {
        config.processingDirectory + "/." + inputName + ".dreamsr-output"
    }

    static func inputName(ofOutputNote name: String) -> String? {
        guard name.hasPrefix("."), name.hasSuffix(".dreamsr-output") else { return nil }
        return String(name.dropFirst().dropLast(".dreamsr-output".count))
    }

    private func leftoverOutputName(_ inputName: String) -> String {
        state.withLock { _ = $0.busy.insert(inputName) }
        if let data = FileManager.default.contents(atPath: outputNotePath(inputName)),
           let name = String(data: data, encoding: .utf8), !name.isEmpty, !name.contains("/"), !name.hasPrefix("."),
           state.withLock({ $0.reservedOutputs.insert(name).inserted }) {
            return name
        }
        let name = reserveOutputName(for: inputName)
        writeOutputNote(inputName, name)
        return name
    }

    private func writeOutputNote(_ inputName: String, _ outputName: String) {
        let path = outputNotePath(inputName)
        let temp = OutputFiles.temporaryPath(for: path)
        do {
            try Data(outputName.utf8).write(to: URL(fileURLWithPath: temp))
            guard rename(temp, path) == 0 else { throw WatchFolderError("rename failed (errno \(errno))", path: path) }
        } catch {
            try? FileManager.default.removeItem(atPath: temp)
            logger.warning("could not record the output name (a retry after a crash may write a suffixed name)",
                           metadata: ["file": "\(inputName)", "error": "\(error)"])
        }
    }

    // MARK: Intake

    private func noteWriters(_ events: [InotifyWatcher.Event]) {
        let now = ContinuousClock.now
        state.withLock { s in
            for event in events {
                switch event {
                case .writing(let name): if s.openForWriting[name] == nil { s.openForWriting[name] = now }
                case .settled(let name): s.openForWriting.removeValue(forKey: name)
                case .overflow: s.openForWriting.removeAll()
                }
            }
        }
        wake()
    }

    /// Names in the incoming folder ready to take (unchanged for the stability interval, not held open by a writer,
    /// not a temporary name, not in `processing/` already), and whether others are still settling.
    private func scanIncoming() -> (ready: [String], pending: Bool) {
        let now = ContinuousClock.now
        var seen: [String: FileStatus] = [:]
        for name in listNames(config.directory) where !WatchFolderConfig.isTemporaryName(name) {
            if let status = FileStatus(config.directory + "/" + name) { seen[name] = status }
        }
        return state.withLock { s in
            var ready: [String] = []
            var pending = false
            var next: [String: Candidate] = [:]
            for (name, status) in seen {
                guard let c = s.candidates[name], c.status == status else {
                    next[name] = Candidate(status: status, since: now)
                    if !s.busy.contains(name) { pending = true }
                    continue
                }
                next[name] = c
                // The same name is still being processed: it waits (releasing that job wakes the loop).
                if s.busy.contains(name) { continue }
                let unchanged = now - c.since
                if s.openForWriting[name] != nil && unchanged < config.openWriterLimit {
                    pending = true
                } else if unchanged >= config.stabilityInterval {
                    ready.append(name)
                } else {
                    pending = true
                }
            }
            s.candidates = next
            s.openForWriting = s.openForWriting.filter { seen[$0.key] != nil }
            return (ready.sorted(), pending)
        }
    }

    private enum Claim {
        case claimed(output: String, taken: FileStatus?)
        /// The file vanished (taken by someone else) or its name is in use: nothing to do now.
        case gone
        /// The file could not be moved: the problem, and the key under which it is logged (without the name).
        case folderProblem(String, key: String)
    }

    /// Moves an incoming file into `processing/` (never over another file) and picks its output name.
    private func claim(_ name: String) -> Claim {
        let from = config.directory + "/" + name
        let to = config.processingDirectory + "/" + name
        guard state.withLock({ $0.busy.insert(name).inserted }) else { return .gone }
        guard FileStatus(to) == nil else {
            state.withLock { _ = $0.busy.remove(name) }
            problemLog.log("occupied " + name) { suppressed in
                logger.warning("processing/ already holds a file of this name that no job owns; leaving the new one in the folder",
                               metadata: ["file": "\(name)", "suppressed_repeats": "\(suppressed)"])
            }
            return .gone
        }
        guard rename(from, to) == 0 else {
            let err = errno
            state.withLock { _ = $0.busy.remove(name) }
            if FileStatus(from) == nil { return .gone }
            let reason = String(cString: strerror(err))
            return .folderProblem("cannot move \(name) into \(config.processingDirectory): \(reason)", key: "claim: " + reason)
        }
        state.withLock { _ = $0.candidates.removeValue(forKey: name) }
        let taken = FileStatus(to)
        let output = reserveOutputName(for: name)
        writeOutputNote(name, output)
        onEvent?(.claimed(name))
        return .claimed(output: output, taken: taken)
    }

    // MARK: Jobs

    private func runJob(_ name: String, outputName: String, taken: FileStatus?) async {
        let path = config.processingDirectory + "/" + name
        defer {
            state.withLock { s in
                s.busy.remove(name)
                s.reservedOutputs.remove(outputName)
            }
            if FileStatus.isAbsent(path) { try? FileManager.default.removeItem(atPath: outputNotePath(name)) }
            releaseSlot()
        }
        guard let status = FileStatus(path) else {
            logger.warning("file vanished from processing/ before it ran", metadata: ["file": "\(name)"])
            return
        }
        switch status.kind {
        case .regular: break
        case .symlink:
            await finishFailed(name, JobOutcome(id: JobID(name), status: .error, errorStage: "intake",
                                                errorMessage: "is a symbolic link: links are not followed (drop the file itself)"),
                               attempts: 0)
            return
        case .other, .directory:
            await finishFailed(name, JobOutcome(id: JobID(name), status: .error, errorStage: "intake",
                                                errorMessage: "is not a regular file"), attempts: 0)
            return
        }

        var before = taken ?? status
        var attempts = 0
        var delay = config.retryDelay
        while true {
            let outputDir: String
            switch outputFolder() {
            case .success(let dir): outputDir = dir
            case .failure(let problem):
                health?.set(outputKey, problem: problem.message + "; jobs wait in processing/")
                problemLog.log(outputKey + problem.message) { suppressed in
                    logger.error("cannot write outputs; the job waits in processing/ and is retried with backoff", metadata: [
                        "file": "\(name)", "problem": "\(problem.message)", "suppressed_repeats": "\(suppressed)",
                    ])
                }
                guard await pause(delay) else { return leftForRetry(name) }
                delay = min(delay * 2, config.maxRetryDelay)
                continue
            }
            let output = outputDir + "/" + outputName
            let request = JobRequest(id: JobID(name), source: .file(path), output: output, format: config.outputFormat,
                                     pipeline: config.pipeline,
                                     origin: ["source": "watch", "watch.dir": config.directory, "watch.file": name])
            let outcome = await processor.process(request)
            if outcome.isAbandoned { return leftForRetry(name) }
            if outcome.status == .ok {
                health?.set(outputKey, problem: nil)
                var stored = outcome.output ?? output
                if let prefix = config.outputPrefix {
                    let staged = outcome.output ?? output
                    let result = await upload(staged, name: outputName, to: prefix, input: name)
                    try? FileManager.default.removeItem(atPath: staged)
                    switch result {
                    case .success(let location):
                        stored = location.uri
                    case .failure(let error) where error.kind == .cancelled:
                        return leftForRetry(name)
                    case .failure(let error):
                        await finishFailed(name, JobOutcome(id: JobID(name), status: .error, errorStage: "upload",
                                                            errorMessage: error.description,
                                                            retriable: error.isRetriable, pipeline: outcome.pipeline),
                                           attempts: attempts + 1)
                        return
                    }
                }
                guard let final = await moveKeeping(path, into: config.doneDirectory, name: name) else { return leftForRetry(name) }
                logger.info("job done", metadata: ["file": "\(name)", "output": "\(stored)", "done": "\(final)"])
                onEvent?(.done(name))
                return
            }
            var now = FileStatus(path)
            if !outcome.retriable, now == before, outcome.errorStage == "decode" {
                // A writer that paused longer than the stability interval may still be writing: look once more.
                guard await pause(config.stabilityInterval) else { return leftForRetry(name) }
                now = FileStatus(path)
            }
            guard now != nil else {
                logger.warning("input vanished from processing/ while it was processed (removed by someone else)",
                               metadata: ["file": "\(name)", "error": "\(outcome.errorMessage ?? "?")"])
                return
            }
            let changed = now != before
            guard (outcome.retriable || changed) && attempts < config.maxRetries else {
                await finishFailed(name, outcome, attempts: attempts + 1)
                return
            }
            attempts += 1
            let reason = changed ? "the input changed while it was processed" : (outcome.errorMessage ?? "?")
            if outcome.retriable && outcome.errorStage == "encode" {
                health?.set(outputKey, problem: "writing outputs fails (\(reason)); jobs are retried")
            }
            logger.warning("retriable failure; the input stays in processing/ and is retried", metadata: [
                "file": "\(name)", "stage": "\(outcome.errorStage ?? "?")", "reason": "\(reason)",
                "attempt": "\(attempts)", "max_retries": "\(config.maxRetries)", "delay": "\(delay)",
            ])
            onEvent?(.retrying(name))
            if changed {
                guard let settled = await waitUntilUnchanged(path) else { return leftForRetry(name) }
                before = settled
            }
            guard await pause(delay) else { return leftForRetry(name) }
            delay = min(delay * 2, config.maxRetryDelay)
            if !changed, let current = FileStatus(path) { before = current }
        }
    }

    /// Uploads a staged output under `prefix`: `name`, or the first free `<stem>-N.<ext>` when an object of that key
    /// exists (HEAD) or another job of this run was given it; the PUT carries `If-None-Match: *`, so an object
    /// stored between the HEAD and the PUT is not replaced either (412: the next name is tried).
    private func upload(_ file: String, name: String, to prefix: S3Location,
                        input: String) async -> Result<S3Location, ObjectStorageError> {
        let client: S3Client
        switch objectStore {
        case .success(let c)?: client = c
        case .failure(let error)?: return .failure(error)
        case nil:
            return .failure(ObjectStorageError(.configuration, operation: "configure", target: prefix.uri,
                                               message: "no object storage client"))
        }
        let others = state.withLock { $0.reservedOutputs }.subtracting([name])
        let contentType = S3Client.contentType(imageFormat: config.outputFormat)
        var n = 0
        while true {
            let candidate = n == 0 ? name : Self.suffixedName(name, n < 10_000 ? String(n) : UUID().uuidString)
            n += 1
            if others.contains(candidate) { continue }
            let location = prefix.appending(candidate)
            do throws(ObjectStorageError) {
                if try await client.exists(location) { continue }
                _ = try await client.upload(file: file, to: location, contentType: contentType, ifAbsent: true)
            } catch where error.status == 412 {
                continue
            } catch {
                return .failure(error)
            }
            if candidate != name {
                logger.notice("output key already taken; uploaded under a suffixed key instead of replacing it", metadata: [
                    "file": "\(input)", "taken": "\(prefix.appending(name).uri)", "output": "\(location.uri)",
                ])
            }
            return .success(location)
        }
    }

    private func leftForRetry(_ name: String) {
        logger.info("job left in processing/ for retry", metadata: ["file": "\(name)"])
        onEvent?(.leftForRetry(name))
    }

    /// Waits until the file's size, mtime and inode stayed unchanged for the stability interval; nil when stopping.
    private func waitUntilUnchanged(_ path: String) async -> FileStatus? {
        var last = FileStatus(path)
        while true {
            guard await pause(max(config.stabilityInterval, .milliseconds(20))) else { return nil }
            let now = FileStatus(path)
            if now == last, let now { return now }
            if now == nil { return nil }
            last = now
        }
    }

    private func finishFailed(_ name: String, _ outcome: JobOutcome, attempts: Int) async {
        let path = config.processingDirectory + "/" + name
        var final = name
        var delay = config.retryDelay
        // Pick a name free in failed/ for both the input and its error file; write the error file first.
        while true {
            if let problem = ensureFolder(config.failedDirectory, what: "failed folder") {
                reportIntake(problem)
                guard await pause(delay) else { return leftForRetry(name) }
                delay = min(delay * 2, config.maxRetryDelay)
                continue
            }
            let dir = config.failedDirectory
            final = Self.firstFreeName(name) { FileStatus(dir + "/" + $0) == nil && FileStatus(dir + "/" + $0 + ".error.json") == nil }
            writeErrorFile(name: name, finalName: final, outcome: outcome, attempts: attempts)
            if rename(path, dir + "/" + final) == 0 { break }
            let problem = "cannot move \(name) into \(dir): \(String(cString: strerror(errno)))"
            try? FileManager.default.removeItem(atPath: dir + "/" + final + ".error.json")
            reportIntake(problem)
            guard await pause(delay) else { return leftForRetry(name) }
            delay = min(delay * 2, config.maxRetryDelay)
        }
        logger.warning("job failed", metadata: [
            "file": "\(name)", "failed": "\(final)", "stage": "\(outcome.errorStage ?? "?")",
            "error": "\(outcome.errorMessage ?? "?")", "retriable": "\(outcome.retriable)", "attempts": "\(attempts)",
        ])
        onEvent?(.failed(name))
    }

    /// Moves `path` into `dir` under `name`, or the first free suffixed name when `name` is taken there (never
    /// replacing a file). Recreates `dir` when missing; while it cannot be used, reports it and retries with
    /// backoff. Returns the name used; nil when stopping first (the file stays where it is).
    private func moveKeeping(_ path: String, into dir: String, name: String) async -> String? {
        var delay = config.retryDelay
        while true {
            if let problem = ensureFolder(dir, what: "done folder") {
                reportIntake(problem)
            } else {
                let final = Self.firstFreeName(name) { FileStatus(dir + "/" + $0) == nil }
                if rename(path, dir + "/" + final) == 0 {
                    if final != name {
                        logger.notice("name already taken in \(dir); kept both", metadata: ["file": "\(name)", "as": "\(final)"])
                    }
                    return final
                }
                reportIntake("cannot move \(name) into \(dir): \(String(cString: strerror(errno)))")
            }
            guard await pause(delay) else { return nil }
            delay = min(delay * 2, config.maxRetryDelay)
        }
    }

    private func writeErrorFile(name: String, finalName: String, outcome: JobOutcome, attempts: Int) {
        struct ErrorFile: Encodable {
            var file: String
            var stage: String?
            var message: String?
            var retriable: Bool
            var attempts: Int
            var pipeline: String?
            var time: String
        }
        let body = ErrorFile(file: name, stage: outcome.errorStage, message: outcome.errorMessage,
                             retriable: outcome.retriable, attempts: attempts, pipeline: outcome.pipeline,
                             time: ISO8601DateFormatter().string(from: Date()))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let final = config.failedDirectory + "/" + finalName + ".error.json"
        let temp = OutputFiles.temporaryPath(for: final)
        do {
            try encoder.encode(body).write(to: URL(fileURLWithPath: temp))
            guard rename(temp, final) == 0 else { throw WatchFolderError("rename failed (errno \(errno))", path: final) }
        } catch {
            try? FileManager.default.removeItem(atPath: temp)
            logger.error("could not write error file", metadata: ["file": "\(final)", "error": "\(error)"])
        }
    }

    // MARK: Slots, pauses and wake-ups

    /// Sleeps `duration` unless the source stops first; false when stopping (or cancelled).
    private func pause(_ duration: Duration) async -> Bool {
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            if state.current.stopping || Task.isCancelled { return false }
            try? await Task.sleep(for: min(.milliseconds(50), end - ContinuousClock.now))
        }
        return !(state.current.stopping || Task.isCancelled)
    }

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

    private func releaseSlot(wake shouldWake: Bool = true) {
        state.withLock { $0.inFlight -= 1 }
        if shouldWake { wake() }
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
