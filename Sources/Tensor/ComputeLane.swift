import CKernels
import Foundation

/// A dedicated thread for blocking compute (BLAS calls, long kernels), so the Swift cooperative pool stays free for
/// I/O and coordination (platform-notes: blocking work on the pool stalls every other task).
///
/// Work submitted to one lane runs serially in submission order on the lane's own thread (the same thread every
/// time: caches stay warm); use several lanes for parallel compute. A lane may run at a lower scheduling priority
/// (`niceIncrement` > 0, Linux per-thread nice): side work such as image decode and encode then yields the cores to
/// the model lanes instead of preempting their threads. The thread ends when the lane is released (after the work
/// already submitted).
public final class ComputeLane: Sendable {
    public let label: String
    private let worker: LaneWorker

    public init(label: String, niceIncrement: Int32 = 0) {
        self.label = label
        let worker = LaneWorker()
        self.worker = worker
        let name = "dreamsr.\(label)"
        let thread = Thread { worker.loop(name: name, niceIncrement: niceIncrement) }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    deinit { worker.stop() }

    /// Runs `body` on the lane's thread and resumes the caller with its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            worker.submit {
                do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
            }
        }
    }

    /// A shared lane for callers that do not manage their own.
    public static let shared = ComputeLane(label: "shared")
}

/// The lane's queue and its thread's loop (owned by the thread and the lane, so releasing the lane can stop it).
private final class LaneWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private var work: [@Sendable () -> Void] = []
    private var stopped = false

    func loop(name: String, niceIncrement: Int32) {
        ck_thread_name(name)
        if niceIncrement > 0 { _ = ck_thread_nice(niceIncrement) }
        while true {
            condition.lock()
            while work.isEmpty && !stopped { condition.wait() }
            if work.isEmpty {
                condition.unlock()
                return
            }
            let next = work.removeFirst()
            condition.unlock()
            next()
        }
    }

    func submit(_ item: @escaping @Sendable () -> Void) {
        condition.lock()
        work.append(item)
        condition.signal()
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}
