import Foundation

/// A value guarded by a lock: the one `@unchecked Sendable` wrapper the service modules share. Every access goes
/// through `withLock`, so the stored value is never touched concurrently; critical sections are short and never
/// await (librdkafka poll threads, inotify readers and async tasks all use it).
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    @discardableResult
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }

    public var current: Value { withLock { $0 } }
}

/// A flag that blocking compute (running on a dedicated thread, outside the Swift task tree) can poll to learn
/// that its job timed out or was cancelled.
public final class CancellationFlag: Sendable {
    private let flag = Locked(false)
    public init() {}
    public func cancel() { flag.withLock { $0 = true } }
    public var isCancelled: Bool { flag.current }
}
