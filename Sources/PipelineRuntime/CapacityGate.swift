import Support

/// A budget of some quantity (jobs, megapixels) that callers reserve before going on and release when done.
/// Waiters are served strictly in arrival order, so a large reservation is not starved by a stream of small ones.
/// A reservation larger than the whole budget is not refused: it waits its turn until nothing else is reserved, then
/// runs alone (while it holds, every later reservation waits), so an oversized job costs throughput, never a refusal.
public final class CapacityGate: Sendable {
    public enum Result: Sendable, Equatable { case acquired, closed }

    private struct Waiter {
        let id: UInt64
        let amount: Double
        let continuation: CheckedContinuation<Result, Never>
    }
    private struct State {
        var used: Double = 0
        var peak: Double = 0
        var waiters: [Waiter] = []
        var closed = false
        var nextID: UInt64 = 0
        var cancelledIDs: Set<UInt64> = []
    }

    public let limit: Double
    private let state = Locked(State())
    private let onChange: (@Sendable (Double) -> Void)?

    public init(limit: Double, onChange: (@Sendable (Double) -> Void)? = nil) {
        precondition(limit > 0, "capacity must be positive")
        self.limit = limit
        self.onChange = onChange
    }

    /// Amount reserved now.
    public var inUse: Double { state.withLock { $0.used } }
    /// Largest amount ever reserved at once (above `limit` only while an oversized reservation runs alone).
    public var peak: Double { state.withLock { $0.peak } }

    /// Reserves `amount`, suspending (in FIFO order) until it fits: `used + amount <= limit`, or, for an amount larger
    /// than the limit, until nothing is reserved. Cancellation while waiting returns `.closed`.
    public func acquire(_ amount: Double) async -> Result {
        enum Fast { case done(Result, Double?), wait(UInt64) }
        let fast: Fast = state.withLock { s in
            if s.closed { return .done(.closed, nil) }
            if s.waiters.isEmpty && fits(amount, used: s.used) {
                s.used += amount
                s.peak = max(s.peak, s.used)
                return .done(.acquired, s.used)
            }
            s.nextID += 1
            return .wait(s.nextID)
        }
        switch fast {
        case .done(let r, let used):
            if let used { onChange?(used) }
            return r
        case .wait(let id):
            return await withTaskCancellationHandler {
                await withCheckedContinuation { (cont: CheckedContinuation<Result, Never>) in
                    let immediate: Result? = state.withLock { s in
                        if s.cancelledIDs.remove(id) != nil || s.closed { return .closed }
                        s.waiters.append(Waiter(id: id, amount: amount, continuation: cont))
                        return nil
                    }
                    if let immediate { cont.resume(returning: immediate) } else { wakeWaiters() }
                }
            } onCancel: {
                let cont: CheckedContinuation<Result, Never>? = state.withLock { s in
                    if let i = s.waiters.firstIndex(where: { $0.id == id }) {
                        return s.waiters.remove(at: i).continuation
                    }
                    s.cancelledIDs.insert(id)
                    return nil
                }
                cont?.resume(returning: .closed)
                wakeWaiters()
            }
        }
    }

    /// Returns `amount` to the budget and wakes waiters that now fit.
    public func release(_ amount: Double) {
        guard amount > 0 else { return }
        let used: Double = state.withLock { s in
            s.used = max(0, s.used - amount)
            return s.used
        }
        onChange?(used)
        wakeWaiters()
    }

    /// Refuses every pending and future reservation (`.closed`). Reservations already held stay until released.
    public func close() {
        let waiters: [Waiter] = state.withLock { s in
            s.closed = true
            let w = s.waiters
            s.waiters = []
            return w
        }
        for w in waiters { w.continuation.resume(returning: .closed) }
    }

    /// Whether `amount` may be reserved on top of `used`: within the limit, or alone when it exceeds the limit.
    private func fits(_ amount: Double, used: Double) -> Bool {
        used + amount <= limit + 1e-9 || (used <= 1e-9 && amount > limit)
    }

    private func wakeWaiters() {
        let (woken, used): ([CheckedContinuation<Result, Never>], Double) = state.withLock { s in
            var out: [CheckedContinuation<Result, Never>] = []
            while let first = s.waiters.first, fits(first.amount, used: s.used) {
                s.waiters.removeFirst()
                s.used += first.amount
                s.peak = max(s.peak, s.used)
                out.append(first.continuation)
            }
            return (out, s.used)
        }
        if !woken.isEmpty { onChange?(used) }
        for c in woken { c.resume(returning: .acquired) }
    }
}
