import Support

/// A multi-producer, multi-consumer FIFO channel holding at most `capacity` elements. `send` suspends while the
/// channel is full (backpressure; nothing is ever dropped), `receive` suspends while it is empty.
///
/// `close()` ends the channel: pending and later `send`s return false (the element was not taken), receivers drain
/// what is left and then get nil. Cancelling a suspended sender returns false; cancelling a suspended receiver
/// returns nil.
public final class BoundedChannel<Element: Sendable>: Sendable {
    private struct Sender {
        let id: UInt64
        let element: Element
        let continuation: CheckedContinuation<Bool, Never>
    }
    private struct Receiver {
        let id: UInt64
        let continuation: CheckedContinuation<Element?, Never>
    }
    private struct State {
        var buffer: [Element] = []
        var head = 0
        var senders: [Sender] = []
        var receivers: [Receiver] = []
        var closed = false
        var nextID: UInt64 = 0
        var cancelledIDs: Set<UInt64> = []
        var count: Int { buffer.count - head }
        mutating func popFirst() -> Element? {
            guard head < buffer.count else { return nil }
            let e = buffer[head]
            head += 1
            if head > 64 && head * 2 > buffer.count { buffer.removeFirst(head); head = 0 }
            return e
        }
    }

    private enum SendImmediate { case accepted(Int, CheckedContinuation<Element?, Never>?), rejected, wait(UInt64) }
    private enum ReceiveImmediate { case element(Element, Int, CheckedContinuation<Bool, Never>?), end, wait(UInt64) }
    private enum ReceiveParked { case parked, resume(Element?, CheckedContinuation<Bool, Never>?, Int) }

    public let capacity: Int
    private let state = Locked(State())
    private let onDepthChange: (@Sendable (Int) -> Void)?

    public init(capacity: Int, onDepthChange: (@Sendable (Int) -> Void)? = nil) {
        precondition(capacity >= 1, "channel capacity must be >= 1")
        self.capacity = capacity
        self.onDepthChange = onDepthChange
    }

    /// Elements buffered now (not counting suspended senders).
    public var count: Int { state.withLock { $0.count } }

    /// Enqueues `element`, suspending while the channel is full. Returns false when the channel is closed or the
    /// caller was cancelled while waiting; the element was then not enqueued.
    public func send(_ element: Element) async -> Bool {
        let immediate: SendImmediate = state.withLock { s in
            if s.closed { return .rejected }
            if !s.receivers.isEmpty {
                let r = s.receivers.removeFirst()
                return .accepted(s.count, r.continuation)
            }
            if s.count < capacity {
                s.buffer.append(element)
                return .accepted(s.count, nil)
            }
            s.nextID += 1
            return .wait(s.nextID)
        }
        switch immediate {
        case .rejected:
            return false
        case .accepted(let depth, let receiver):
            if let receiver { receiver.resume(returning: element) } else { onDepthChange?(depth) }
            return true
        case .wait(let id):
            return await withTaskCancellationHandler {
                await withCheckedContinuation { (cont: CheckedContinuation<Bool, Never>) in
                    let outcome: Bool? = state.withLock { s in
                        if s.cancelledIDs.remove(id) != nil { return false }
                        if s.closed { return false }
                        // Space may have opened between the check and now.
                        if !s.receivers.isEmpty || s.count < capacity {
                            return nil
                        }
                        s.senders.append(Sender(id: id, element: element, continuation: cont))
                        return .some(true) // parked
                    }
                    switch outcome {
                    case .some(false): cont.resume(returning: false)
                    case .some(true): break
                    case .none:
                        // Retry the fast path without suspending again.
                        let (receiver, depth, ok): (CheckedContinuation<Element?, Never>?, Int, Bool) = state.withLock { s in
                            if s.closed { return (nil, 0, false) }
                            if !s.receivers.isEmpty { return (s.receivers.removeFirst().continuation, s.count, true) }
                            s.buffer.append(element)
                            return (nil, s.count, true)
                        }
                        if let receiver { receiver.resume(returning: element) } else if ok { onDepthChange?(depth) }
                        cont.resume(returning: ok)
                    }
                }
            } onCancel: {
                let cont: CheckedContinuation<Bool, Never>? = state.withLock { s in
                    if let i = s.senders.firstIndex(where: { $0.id == id }) {
                        return s.senders.remove(at: i).continuation
                    }
                    s.cancelledIDs.insert(id)
                    return nil
                }
                cont?.resume(returning: false)
            }
        }
    }

    /// Takes the oldest element, suspending while the channel is empty. Nil once the channel is closed and
    /// drained, or when the caller is cancelled while waiting.
    public func receive() async -> Element? {
        let immediate: ReceiveImmediate = state.withLock { s in
            if let e = s.popFirst() {
                var resumed: CheckedContinuation<Bool, Never>?
                if !s.senders.isEmpty {
                    let sender = s.senders.removeFirst()
                    s.buffer.append(sender.element)
                    resumed = sender.continuation
                }
                return .element(e, s.count, resumed)
            }
            if !s.senders.isEmpty {
                let sender = s.senders.removeFirst()
                return .element(sender.element, s.count, sender.continuation)
            }
            if s.closed { return .end }
            s.nextID += 1
            return .wait(s.nextID)
        }
        switch immediate {
        case .end:
            return nil
        case .element(let e, let depth, let sender):
            sender?.resume(returning: true)
            onDepthChange?(depth)
            return e
        case .wait(let id):
            return await withTaskCancellationHandler {
                await withCheckedContinuation { (cont: CheckedContinuation<Element?, Never>) in
                    let parked: ReceiveParked = state.withLock { s in
                        if s.cancelledIDs.remove(id) != nil { return .resume(nil, nil, s.count) }
                        if let e = s.popFirst() {
                            var resumed: CheckedContinuation<Bool, Never>?
                            if !s.senders.isEmpty {
                                let sender = s.senders.removeFirst()
                                s.buffer.append(sender.element)
                                resumed = sender.continuation
                            }
                            return .resume(e, resumed, s.count)
                        }
                        if !s.senders.isEmpty {
                            let sender = s.senders.removeFirst()
                            return .resume(sender.element, sender.continuation, s.count)
                        }
                        if s.closed { return .resume(nil, nil, s.count) }
                        s.receivers.append(Receiver(id: id, continuation: cont))
                        return .parked
                    }
                    if case .resume(let e, let sender, let depth) = parked {
                        sender?.resume(returning: true)
                        if e != nil { onDepthChange?(depth) }
                        cont.resume(returning: e)
                    }
                }
            } onCancel: {
                let cont: CheckedContinuation<Element?, Never>? = state.withLock { s in
                    if let i = s.receivers.firstIndex(where: { $0.id == id }) {
                        return s.receivers.remove(at: i).continuation
                    }
                    s.cancelledIDs.insert(id)
                    return nil
                }
                cont?.resume(returning: nil)
            }
        }
    }

    /// Closes the channel: suspended senders get false, suspended receivers get nil once the buffer is empty.
    public func close() {
        let (senders, receivers): ([Sender], [Receiver]) = state.withLock { s in
            s.closed = true
            let snd = s.senders
            s.senders = []
            // Receivers only wait when the buffer is empty, so all of them end.
            let rcv = s.receivers
            s.receivers = []
            return (snd, rcv)
        }
        for s in senders { s.continuation.resume(returning: false) }
        for r in receivers { r.continuation.resume(returning: nil) }
    }

    /// Removes and returns everything still buffered (used after close to abandon leftovers).
    public func drain() -> [Element] {
        let items: [Element] = state.withLock { s in
            var out: [Element] = []
            while let e = s.popFirst() { out.append(e) }
            return out
        }
        onDepthChange?(0)
        return items
    }
}
