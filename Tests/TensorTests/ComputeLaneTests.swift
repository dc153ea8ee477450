import Foundation
import Testing
@testable import Tensor
#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(10))) struct ComputeLaneTests {
    /// Threads of this process whose name starts with `prefix` (Linux thread names, at most 15 bytes).
    private static func threadCount(named prefix: String) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.filter { task in
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
            return comm.hasPrefix(prefix)
        }.count
    }

    /// Work runs in submission order on one dedicated thread, at the lane's lower priority.
    @Test func runsInOrderOnOneThreadAtItsPriority() async throws {
        let lane = ComputeLane(label: "test", niceIncrement: 3)
        let base = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        var threads = Set<UInt>()
        var results: [Int] = []
        var nices = Set<Int32>()
        for i in 0..<20 {
            let (value, thread, nice) = try await lane.run { () -> (Int, UInt, Int32) in
                (i * i, UInt(pthread_self()), getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0))
            }
            results.append(value)
            threads.insert(thread)
            nices.insert(nice)
        }
        #expect(results == (0..<20).map { $0 * $0 })
        #expect(threads.count == 1)
        #expect(nices == [min(19, base + 3)])
        await #expect(throws: CancellationError.self) { try await lane.run { throw CancellationError() } }
    }

    /// A released lane's thread ends (lanes are made per pipeline: they must not pile up).
    @Test func releasedLanesEndTheirThreads() async throws {
        let prefix = "dreamsr.relt"
        do {
            let lanes = (0..<16).map { ComputeLane(label: "relt\($0)") }
            for lane in lanes { _ = try await lane.run { 1 } }
            #expect(Self.threadCount(named: prefix) == 16)
        }
        var left = Self.threadCount(named: prefix)
        for _ in 0..<200 where left > 0 {
            try await Task.sleep(for: .milliseconds(10))
            left = Self.threadCount(named: prefix)
        }
        #expect(left == 0, "\(left) of 16 lane threads still running after their lanes were released")
    }
}
