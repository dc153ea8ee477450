import CKernels
import Foundation

/// A small fork-join pool of dedicated threads for splitting one compute step (e.g. one convolution's tile rows)
/// across cores. `run` executes `body(0)` on the calling thread and `body(1..<count)` on the pool's threads, and
/// returns when all are done. Not for the Swift cooperative pool: call it from a `ComputeLane`. Call `shutdown()`
/// when done (the threads hold the pool alive until then).
public final class ParallelWorkers: @unchecked Sendable {
    public let count: Int
    private let start: [DispatchSemaphore]
    private let done = DispatchSemaphore(value: 0)
    private var job: ((Int) -> Void)?
    private var stopping = false
    private var isShutDown = false

    public init(count: Int) {
        self.count = max(1, count)
        start = (0..<(self.count - 1)).map { _ in DispatchSemaphore(value: 0) }
        for i in 1..<self.count {
            let t = Thread { [self] in self.loop(i) }
            t.name = "dreamsr.worker.\(i)"
            t.start()
        }
    }

    private func loop(_ i: Int) {
        while true {
            start[i - 1].wait()
            if stopping { done.signal(); return }
            job?(i)
            done.signal()
        }
    }

    /// Runs `body(i)` for i in 0..<count, in parallel, and waits for all.
    public func run(_ body: (Int) -> Void) {
        precondition(!isShutDown, "ParallelWorkers used after shutdown")
        if count == 1 { body(0); return }
        withoutActuallyEscaping(body) { b in
            job = b
            for s in start { s.signal() }
            b(0)
            for _ in start { done.wait() }
            job = nil
        }
    }

    /// Hands `chunks` chunks of work to at most `slots` threads (`workers`' threads, or the caller alone when nil or
    /// one slot) from a shared counter: `body(slot, chunk)` runs once per chunk, slot in `0..<slots` naming the
    /// caller's scratch. A thread that gets descheduled (busy machine) then holds no fixed share back.
    public static func forEachChunk(_ chunks: Int, slots: Int, on workers: ParallelWorkers?,
                                    _ body: (_ slot: Int, _ chunk: Int) -> Void) {
        let parts = min(slots, workers?.count ?? 1, chunks)
        guard parts > 1, let workers else {
            for c in 0..<chunks { body(0, c) }
            return
        }
        let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        counter.initialize(to: 0)
        defer { counter.deallocate() }
        workers.run { slot in
            guard slot < parts else { return }
            while true {
                let c = ck_atomic_fetch_add(counter, 1)
                if c >= chunks { break }
                body(slot, c)
            }
        }
    }

    /// Stops the threads (idempotent).
    public func shutdown() {
        if isShutDown { return }
        isShutDown = true
        stopping = true
        for s in start { s.signal() }
        for _ in start { done.wait() }
    }
}
