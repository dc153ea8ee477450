import Foundation

/// Text encodings keyed by prompt string (least recently used dropped): a prompt is encoded once per process, however
/// many patches or jobs use it. Thread-safe; `value(for:compute:)` computes outside the lock, so two threads asking for
/// the same new prompt at once may both compute it (the second result is kept) — harmless, never a deadlock.
public final class PromptEncodingCache<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: (value: Value, tick: UInt64)] = [:]
    private var tick: UInt64 = 0
    public let capacity: Int
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(capacity: Int = 64) { self.capacity = max(1, capacity) }

    public var count: Int {
        lock.lock(); defer { lock.unlock() }
        return entries.count
    }

    public func value(for prompt: String, compute: () throws -> Value) rethrows -> Value {
        lock.lock()
        tick += 1
        if let e = entries[prompt] {
            entries[prompt] = (e.value, tick)
            hits += 1
            lock.unlock()
            return e.value
        }
        misses += 1
        lock.unlock()
        let v = try compute()
        lock.lock()
        tick += 1
        entries[prompt] = (v, tick)
        if entries.count > capacity, let oldest = entries.min(by: { $0.value.tick < $1.value.tick })?.key {
            entries[oldest] = nil
        }
        lock.unlock()
        return v
    }
}
