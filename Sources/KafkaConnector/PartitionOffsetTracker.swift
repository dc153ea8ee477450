/// Tracks the offsets of one partition that were handed out and not yet finished, and says which offset may be
/// stored: never past the smallest unfinished one, so concurrent jobs finishing out of order cannot skip a message.
///
/// Offsets stored are Kafka's "next offset to consume": after finishing 5, 6, 7 (and nothing before), 8.
public struct PartitionOffsetTracker: Sendable, Equatable {
    /// Unfinished offsets, ascending.
    public private(set) var unfinished: [Int64] = []
    /// Largest offset begun so far.
    public private(set) var highestBegun: Int64?
    /// The last offset returned by `finish` (i.e. stored), or the first offset begun.
    public private(set) var lastStored: Int64?

    public init() {}

    /// Records a consumed offset as unfinished.
    public mutating func begin(_ offset: Int64) {
        let index = insertionIndex(offset)
        if index < unfinished.count, unfinished[index] == offset { return }
        unfinished.insert(offset, at: index)
        // Storing the first offset seen would not move anything: it is the baseline.
        if lastStored == nil { lastStored = offset }
        if highestBegun.map({ offset > $0 }) ?? true { highestBegun = offset }
    }

    /// Marks `offset` finished. Returns the offset to store if the committable position advanced, else nil.
    public mutating func finish(_ offset: Int64) -> Int64? {
        let index = insertionIndex(offset)
        guard index < unfinished.count, unfinished[index] == offset else { return nil }
        unfinished.remove(at: index)
        guard let committable else { return nil }
        if let lastStored, committable <= lastStored { return nil }
        lastStored = committable
        return committable
    }

    /// The offset that may be stored now: the smallest unfinished one, or one past the highest begun.
    public var committable: Int64? {
        if let first = unfinished.first { return first }
        return highestBegun.map { $0 + 1 }
    }

    public var isIdle: Bool { unfinished.isEmpty }

    private func insertionIndex(_ offset: Int64) -> Int {
        var low = 0
        var high = unfinished.count
        while low < high {
            let mid = (low + high) / 2
            if unfinished[mid] < offset { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
