import Dispatch
import Foundation
import Imaging
import Jobs
import PipelineRuntime

/// What the status page shows about past jobs: the most recent outcomes, completions over the last hour, and
/// before/after thumbnails. The router records every outcome here; thumbnails are made on a background thread, and
/// only while somebody looks at the page (a page view keeps them on for `thumbnailWindow`), so an unwatched daemon
/// pays nothing for them.
public final class JobBoard: Sendable {
    public struct Entry: Sendable {
        public let number: Int
        public let id: JobID
        public let source: String
        public let outcome: JobOutcome
        public let finished: Date
        public let seconds: Double
        public var before: Data?
        public var after: Data?
    }

    private struct State {
        var next = 1
        var recent: [Entry] = []
        var completions: [Date] = []
        var lastView: ContinuousClock.Instant?
        var pendingThumbnails = 0
    }

    public let capacity: Int
    public let thumbnailSide: Int
    public let thumbnailWindow: Duration
    private let state = Locked(State())
    private let queue = DispatchQueue(label: "dreamsr.status.thumbnails", qos: .utility)

    public init(capacity: Int = 12, thumbnailSide: Int = 160, thumbnailWindow: Duration = .seconds(600)) {
        self.capacity = capacity
        self.thumbnailSide = thumbnailSide
        self.thumbnailWindow = thumbnailWindow
    }

    /// Records a finished job (called before the source moves its input away, so the input is still on disk).
    public func record(_ request: JobRequest, _ outcome: JobOutcome, seconds: Double, now: Date = Date()) {
        let (number, wantThumbnails): (Int, Bool) = state.withLock { s in
            let n = s.next
            s.next += 1
            s.recent.insert(Entry(number: n, id: request.id, source: request.source.logDescription, outcome: outcome,
                                  finished: now, seconds: seconds), at: 0)
            if s.recent.count > capacity { s.recent.removeLast(s.recent.count - capacity) }
            if !outcome.isAbandoned {
                s.completions.append(now)
                let hourAgo = now.addingTimeInterval(-3600)
                if let first = s.completions.firstIndex(where: { $0 >= hourAgo }) { s.completions.removeFirst(first) }
                else { s.completions.removeAll() }
            }
            let watched = s.lastView.map { ContinuousClock.now - $0 < thumbnailWindow } ?? false
            let want = watched && s.pendingThumbnails < 4
            if want { s.pendingThumbnails += 1 }
            return (n, want)
        }
        guard wantThumbnails else { return }
        let input: String?
        if case .file(let path) = request.source { input = path } else { input = nil }
        let output = outcome.status == .ok ? outcome.output : nil
        let side = thumbnailSide
        queue.async { [self] in
            let before = input.flatMap { try? ImageCodec.thumbnailJPEG(path: $0, maxSide: side) }
            let after = output.flatMap { try? ImageCodec.thumbnailJPEG(path: $0, maxSide: side) }
            state.withLock { s in
                s.pendingThumbnails -= 1
                guard let i = s.recent.firstIndex(where: { $0.number == number }) else { return }
                s.recent[i].before = before
                s.recent[i].after = after
            }
        }
    }

    /// Marks a page view (turns thumbnails on for `thumbnailWindow`).
    public func viewed() { state.withLock { $0.lastView = .now } }

    public var recent: [Entry] { state.current.recent }

    /// Jobs finished (ok or error) in each of the last `bins` intervals of `3600 / bins` seconds, oldest first.
    public func completionsLastHour(bins: Int = 12, now: Date = Date()) -> [Int] {
        let width = 3600.0 / Double(bins)
        var counts = [Int](repeating: 0, count: bins)
        for t in state.current.completions {
            let age = now.timeIntervalSince(t)
            guard age >= 0, age < 3600 else { continue }
            counts[bins - 1 - Int(age / width)] += 1
        }
        return counts
    }

    /// A thumbnail of a recent job: `which` is "before" or "after".
    public func thumbnail(number: Int, which: String) -> Data? {
        guard let e = state.current.recent.first(where: { $0.number == number }) else { return nil }
        return which == "before" ? e.before : which == "after" ? e.after : nil
    }
}

/// Records each outcome on the board on its way back to the source.
struct RecordingProcessor: JobProcessor {
    let inner: any JobProcessor
    let board: JobBoard

    func process(_ request: JobRequest) async -> JobOutcome {
        let t0 = ContinuousClock.now
        let outcome = await inner.process(request)
        board.record(request, outcome, seconds: (ContinuousClock.now - t0).seconds)
        return outcome
    }
}
