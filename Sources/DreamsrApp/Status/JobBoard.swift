import Dispatch
import Foundation
import Imaging
import Jobs
import PipelineRuntime
import Support

/// What the status page shows about past jobs: the most recent outcomes, completions over the last hour, and
/// before/after thumbnails (the input's when the job starts, the output's when it ends). The router records every
/// job here; thumbnails are made on a background thread, and only while somebody looks at the page (a page view
/// keeps them on for `thumbnailWindow`), so an unwatched daemon pays nothing for them.
public final class JobBoard: Sendable {
    public struct Entry: Sendable {
        public let number: Int
        public let id: JobID
        public let source: String
        public let outcome: JobOutcome
        public let finished: Date
        public let seconds: Double
        public var before: Data? = nil
        public var after: Data? = nil
    }

    private struct State {
        var next = 1
        var recent: [Entry] = []
        var completions: [Date] = []
        var lastView: ContinuousClock.Instant?
        var pendingThumbnails = 0
        /// Thumbnails of jobs still running, by "number/which".
        var thumbnails: [String: Data] = [:]
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

    /// A job starts: returns its number on the board. While the page is watched, the input's thumbnail is made
    /// now (the source may move the input away once the job ends).
    public func begin(_ request: JobRequest) -> Int {
        let (number, want): (Int, Bool) = state.withLock { s in
            let n = s.next
            s.next += 1
            return (n, reserveThumbnail(&s))
        }
        if want, case .file(let path) = request.source { makeThumbnail(number, "before", path) }
        else if want { state.withLock { $0.pendingThumbnails -= 1 } }
        return number
    }

    /// Records a finished job; its output's thumbnail is made now while the page is watched.
    public func record(_ number: Int, _ request: JobRequest, _ outcome: JobOutcome, seconds: Double, now: Date = Date()) {
        let want: Bool = state.withLock { s in
            s.recent.insert(Entry(number: number, id: request.id, source: request.source.logDescription,
                                  outcome: outcome, finished: now, seconds: seconds,
                                  before: s.thumbnails.removeValue(forKey: "\(number)/before")), at: 0)
            if s.recent.count > capacity { s.recent.removeLast(s.recent.count - capacity) }
            if !outcome.isAbandoned {
                s.completions.append(now)
                let hourAgo = now.addingTimeInterval(-3600)
                if let first = s.completions.firstIndex(where: { $0 >= hourAgo }) { s.completions.removeFirst(first) }
                else { s.completions.removeAll() }
            }
            return outcome.status == .ok && outcome.output != nil && reserveThumbnail(&s)
        }
        if want, let output = outcome.output { makeThumbnail(number, "after", output) }
    }

    /// True (and one more pending) when thumbnails are on and the background queue is not behind.
    private func reserveThumbnail(_ s: inout State) -> Bool {
        let watched = s.lastView.map { ContinuousClock.now - $0 < thumbnailWindow } ?? false
        guard watched, s.pendingThumbnails < 4 else { return false }
        s.pendingThumbnails += 1
        return true
    }

    private func makeThumbnail(_ number: Int, _ which: String, _ path: String) {
        let side = thumbnailSide
        queue.async { [self] in
            let jpeg = try? ImageCodec.thumbnailJPEG(path: path, maxSide: side)
            state.withLock { s in
                s.pendingThumbnails -= 1
                if let i = s.recent.firstIndex(where: { $0.number == number }) {
                    if which == "before" { s.recent[i].before = jpeg } else { s.recent[i].after = jpeg }
                } else if let jpeg, which == "before" {
                    s.thumbnails["\(number)/before"] = jpeg  // the job is still running
                    if s.thumbnails.count > 64 { s.thumbnails.removeAll() }
                }
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
        let number = board.begin(request)
        let outcome = await inner.process(request)
        board.record(number, request, outcome, seconds: (ContinuousClock.now - t0).seconds)
        return outcome
    }
}
