import Support
import Testing

/// How long a test-kit wait lasts before it fails the test (naming what it waited for) instead of hanging CI.
public let defaultTestWait: Duration = .seconds(60)

/// A multi-reader record of events that tests wait on instead of sleeping: producers `emit`, a test awaits
/// `waitFor(count:where:)` which returns as soon as enough matching events have been emitted. Every wait has a
/// deadline: when it passes, the test fails with an issue naming what was awaited and the wait returns the matching
/// events seen so far.
public final class AsyncEvents<Event: Sendable>: Sendable {
    private struct Waiter {
        let id: Int
        let count: Int
        let predicate: @Sendable (Event) -> Bool
        let continuation: CheckedContinuation<[Event], Never>
    }
    private let state = Locked<(events: [Event], waiters: [Waiter], nextID: Int)>(([], [], 0))

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

    /// Returns the matching events once at least `count` of them have been emitted. After `timeout` the current test
    /// fails with an issue naming `what` (or the count) and the matching events seen so far are returned.
    @discardableResult
    public func waitFor(count: Int = 1, timeout: Duration = defaultTestWait, _ what: String? = nil,
                        sourceLocation: SourceLocation = #_sourceLocation,
                        where predicate: @escaping @Sendable (Event) -> Bool = { _ in true }) async -> [Event] {
        let id = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        let timer = Task { [state] in
            try? await Task.sleep(for: timeout)
            if Task.isCancelled { return }
            let expired: (CheckedContinuation<[Event], Never>, [Event])? = state.withLock { s in
                guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                let w = s.waiters.remove(at: i)
                return (w.continuation, s.events.filter(w.predicate))
            }
            if let (c, seen) = expired { c.resume(returning: seen) }
        }
        defer { timer.cancel() }
        let events = await withCheckedContinuation { (cont: CheckedContinuation<[Event], Never>) in
            let now: [Event]? = state.withLock { s in
                let matching = s.events.filter(predicate)
                if matching.count >= count { return matching }
                s.waiters.append(Waiter(id: id, count: count, predicate: predicate, continuation: cont))
                return nil
            }
            if let now { cont.resume(returning: now) }
        }
        if events.count < count {
            let awaited = what ?? "\(count) matching event(s)"
            Issue.record("timed out after \(timeout) waiting for \(awaited): \(events.count) of \(count) arrived",
                         sourceLocation: sourceLocation)
        }
        return events
    }
}

/// A turnstile a fake stage waits at; the test lets jobs through one at a time (`release(n)`) or all (`openAll`).
/// A job that waits longer than the gate's timeout fails the test (naming the gate) and goes through, so a test that
/// forgets to release, or a regression that never gets there, fails instead of hanging.
public final class TestGate: Sendable {
    private struct Waiter {
        let id: Int
        let continuation: CheckedContinuation<Bool, Never>
    }
    private let state = Locked<(permits: Int, open: Bool, waiters: [Waiter], nextID: Int)>((0, false, [], 0))
    private let name: String
    private let timeout: Duration

    public init(_ name: String = "test gate", timeout: Duration = defaultTestWait) {
        self.name = name
        self.timeout = timeout
    }

    public func pass() async {
        let id = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        let timer = Task { [state] in
            try? await Task.sleep(for: timeout)
            if Task.isCancelled { return }
            let expired = state.withLock { s -> CheckedContinuation<Bool, Never>? in
                guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: i).continuation
            }
            expired?.resume(returning: false)
        }
        defer { timer.cancel() }
        let released = await withCheckedContinuation { (cont: CheckedContinuation<Bool, Never>) in
            let go: Bool = state.withLock { s in
                if s.open { return true }
                if s.permits > 0 { s.permits -= 1; return true }
                s.waiters.append(Waiter(id: id, continuation: cont))
                return false
            }
            if go { cont.resume(returning: true) }
        }
        if !released {
            Issue.record("timed out after \(timeout) waiting at \(name): never released")
        }
    }

    public func release(_ n: Int = 1) {
        let woken: [CheckedContinuation<Bool, Never>] = state.withLock { s in
            var out: [CheckedContinuation<Bool, Never>] = []
            var left = n
            while left > 0, !s.waiters.isEmpty { out.append(s.waiters.removeFirst().continuation); left -= 1 }
            s.permits += left
            return out
        }
        for w in woken { w.resume(returning: true) }
    }

    public func openAll() {
        let woken: [CheckedContinuation<Bool, Never>] = state.withLock { s in
            s.open = true
            let w = s.waiters
            s.waiters = []
            return w.map(\.continuation)
        }
        for w in woken { w.resume(returning: true) }
    }
}

/// Polls `condition` until it holds, yielding between polls; after `timeout` the test fails naming `what`. Returns
/// whether the condition held. For state that offers no event to wait on (a lifecycle flag, a channel's count).
@discardableResult
public func pollUntil(_ what: String, timeout: Duration = defaultTestWait, sourceLocation: SourceLocation = #_sourceLocation,
                      _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= deadline {
            Issue.record("timed out after \(timeout) waiting until \(what)", sourceLocation: sourceLocation)
            return false
        }
        await Task.yield()
        try? await Task.sleep(for: .milliseconds(1))
    }
    return true
}
