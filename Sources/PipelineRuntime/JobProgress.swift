import Foundation
import Jobs
import Support

/// The last moment any job made progress: entered a stage, reported a unit of work (a tile, a sampling step) or
/// ended. The systemd watchdog and /health read it: a pipeline with work in flight and no beat for the stall limit
/// is stuck.
public final class Heartbeat: Sendable {
    private let last = Locked(ContinuousClock.now)
    public init() {}
    public func beat() { last.withLock { $0 = .now } }
    public var lastBeat: ContinuousClock.Instant { last.current }
    public var sinceLastBeat: Duration { ContinuousClock.now - last.current }
}

/// Where one job is: its current stage and how far through it (`done` of `total` units; 0 of 0 when the stage does
/// not report units). The runtime sets the stage; a stage's body reports units through `JobContext.progress`.
public final class JobProgress: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var stage: String?
        public var done: Int
        public var total: Int
        /// done / total, or nil when the stage reports no units.
        public var fraction: Double? { total > 0 ? Double(min(done, total)) / Double(total) : nil }
    }

    private let state = Locked(Snapshot(stage: nil, done: 0, total: 0))
    private let heartbeat: Heartbeat?

    public init(heartbeat: Heartbeat? = nil) { self.heartbeat = heartbeat }

    /// The runtime calls this when a worker of `stage` takes the job.
    public func enter(_ stage: String) {
        state.withLock { $0 = Snapshot(stage: stage, done: 0, total: 0) }
        heartbeat?.beat()
    }

    /// `done` of `total` units of the current stage are finished.
    public func report(done: Int, of total: Int) {
        state.withLock { $0.done = done; $0.total = total }
        heartbeat?.beat()
    }

    public var snapshot: Snapshot { state.current }
}

/// A job the pipeline admitted and has not finished (for status pages).
public struct InFlightJob: Sendable {
    public var id: JobID
    public var source: JobSource
    public var admitted: ContinuousClock.Instant
    public var progress: JobProgress.Snapshot

    struct Tracked: Sendable {
        let request: JobRequest
        let admitted: ContinuousClock.Instant
        let progress: JobProgress
    }
}

extension JobSource {
    /// The source for logs and status pages: a URL without its query and fragment (presigned URLs carry
    /// credentials there) and without user info.
    public var logDescription: String {
        switch self {
        case .file(let path): return path
        case .s3(let uri): return uri
        case .url(let text):
            guard var parts = URLComponents(string: text) else { return "<url>" }
            let hidden = parts.query != nil || parts.fragment != nil || parts.user != nil || parts.password != nil
            parts.query = nil
            parts.fragment = nil
            parts.user = nil
            parts.password = nil
            return (parts.string ?? "<url>") + (hidden ? " (query/credentials hidden)" : "")
        }
    }
}
