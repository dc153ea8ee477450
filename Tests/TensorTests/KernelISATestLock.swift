import Foundation

/// The dispatched kernel ISA is process-wide and Swift Testing runs tests in parallel: a test that forces the ISA
/// (to run every SIMD variant) holds this lock while it does, and so does a test whose bit-for-bit comparisons need
/// the dispatched kernels to stay the same between two runs.
enum KernelISATestLock {
    private static let lock = NSLock()

    static func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
