import Dispatch
import Foundation

/// A dedicated thread for blocking compute (BLAS calls, long kernels), so the Swift cooperative pool stays free for
/// I/O and coordination (platform-notes: blocking work on the pool stalls every other task).
///
/// Work submitted to one lane runs serially in submission order; use several lanes for parallel compute.
public final class ComputeLane: Sendable {
    private let queue: DispatchQueue
    public let label: String

    public init(label: String) {
        self.label = label
        self.queue = DispatchQueue(label: "dreamsr.compute.\(label)", qos: .userInitiated)
    }

    /// Runs `body` on the lane's thread and resumes the caller with its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            queue.async {
                do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
            }
        }
    }

    /// A shared lane for callers that do not manage their own.
    public static let shared = ComputeLane(label: "shared")
}
