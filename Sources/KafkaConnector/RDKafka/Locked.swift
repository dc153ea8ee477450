import Foundation

/// A value guarded by a lock. Used for state shared between the librdkafka poll threads and async tasks; critical
/// sections are short and never await.
final class Locked<State>: @unchecked Sendable {
    private let lock = NSLock()
    private var state: State
    init(_ state: State) { self.state = state }
    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&state)
    }
}

/// A C handle handed to the dedicated poll threads. librdkafka handles are thread-safe for the calls made here
/// (poll, produce, offsets_store, pause/resume); the owning final class controls the lifetime and destroys the
/// handle only after the poll thread has stopped.
struct SendableOpaquePointer: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

/// Runs blocking librdkafka calls (flush, close, destroy, committed) on a dedicated serial queue, never on the
/// cooperative pool.
enum BlockingQueue {
    static let queue = DispatchQueue(label: "dreamsr.kafka.blocking")
    /// For the synchronous tools (readers, inspectors), so they never hold up a running source's shutdown.
    static let tools = DispatchQueue(label: "dreamsr.kafka.tools", attributes: .concurrent)

    static func run<T: Sendable>(on queue: DispatchQueue = queue, _ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: body()) }
        }
    }
}
