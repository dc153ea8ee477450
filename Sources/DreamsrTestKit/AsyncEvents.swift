import PipelineRuntime

/// A multi-reader record of events that tests wait on instead of sleeping: producers `emit`, a test awaits
/// `waitFor(count:where:)` which returns as soon as enough matching events have been emitted.
public final class AsyncEvents<Event: Sendable>: Sendable {
    private struct Waiter {
        let count: Int
        let predicate: @Sendable (Event) -> Bool
        let continuation: CheckedContinuation<[Event], Never>
    }
    private let state = Locked<(events: [Event], waiters: [Waiter])>(([], []))

    public init() {}

    public var all: [Event] { state.withLock { $0.events } }

    public func emit(_ event: Event) {
        let ready: [(CheckedContinuation<[Event], Never>, [Event])] = state.withLock { s in
            s.events.append(event)
            var out: [(CheckedContinuation<[Event], Never>, [Event])] = []
            s.waiters.removeAll { w in
                let matching = s.events.filter(w.predicate)
                if matching.count >= w.count { out.append((w.continuation, matching)); return true }
                return false
            }
            return out
        }
        for (c, e) in ready { c.resume(returning: e) }
    }

    /// Returns the matching events once at least `count` of them have been emitted.
    @discardableResult
    public func waitFor(count: Int = 1, where predicate: @escaping @Sendable (Event) -> Bool = { _ in true }) async -> [Event] {
        await withCheckedContinuation { (cont: CheckedContinuation<[Event], Never>) in
            let now: [Event]? = state.withLock { s in
                let matching = s.events.filter(predicate)
                if matching.count >= count { return matching }
                s.waiters.append(Waiter(count: count, predicate: predicate, continuation: cont))
                return nil
            }
            if let now { cont.resume(returning: now) }
        }
    }
}

/// A turnstile a fake stage waits at; the test lets jobs through one at a time (`release(n)`) or all (`openAll`).
public final class TestGate: Sendable {
    private let state = Locked<(permits: Int, open: Bool, waiters: [CheckedContinuation<Void, Never>])>((0, false, []))
    public init() {}

    public func pass() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let go: Bool = state.withLock { s in
                if s.open { return true }
                if s.permits > 0 { s.permits -= 1; return true }
                s.waiters.append(cont)
                return false
            }
            if go { cont.resume() }
        }
    }

    public func release(_ n: Int = 1) {
        let woken: [CheckedContinuation<Void, Never>] = state.withLock { s in
            var out: [CheckedContinuation<Void, Never>] = []
            var left = n
            while left > 0, !s.waiters.isEmpty { out.append(s.waiters.removeFirst()); left -= 1 }
            s.permits += left
            return out
        }
        for w in woken { w.resume() }
    }

    public func openAll() {
        let woken: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.open = true
            let w = s.waiters
            s.waiters = []
            return w
        }
        for w in woken { w.resume() }
    }
}
