import Foundation

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
