#if canImport(Glibc)
import Glibc
#endif
import DreamsrApp
import DreamsrTestKit
import Foundation
import Jobs
import Logging
import PipelineRuntime
import Testing
import WatchFolderConnector

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
private func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// A bound unix datagram socket standing in for systemd's NOTIFY_SOCKET.
private final class NotifySocket {
    let path: String
    let fd: Int32
    init(dir: String) {
        path = dir + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
    deinit { close(fd) }
    /// Messages received so far (non-blocking).
    func drain() -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { break }
            out.append(String(decoding: buf[0..<n], as: UTF8.self))
        }
        return out
    }
}

@Suite(.timeLimit(.minutes(1))) struct StatusPageTests {
    @Test func pageShowsTheJobInFlightAndAStuckStageFailsHealthAndStopsTheWatchdog() async throws {
        let dir = try tempDir()
        let notify = NotifySocket(dir: dir)
        var config = try DaemonConfig.quickStart(watch: dir + "/in", output: dir + "/out", metricsAddress: "127.0.0.1:0", env: [:])
        config.watchFolders[0].pollInterval = .milliseconds(50)
        config.watchFolders[0].stabilityInterval = .milliseconds(50)
        config.stallLimit = .milliseconds(400)
        let hold = TestGate()
        // Watchdog interval: half of WATCHDOG_USEC = 50 ms.
        let daemon = try buildServiceGroup(config: config, logger: Logger(label: "test"),
                                           factory: FakeFactory(holdRestore: hold),
                                           environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "100000"])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await daemon.group.run() }
            let port = try #require(await daemon.http?.boundPort())
            await daemon.pipeline.waitUntilStarted()
            FileManager.default.createFile(atPath: dir + "/in/photo <one>.png", contents: Data("image".utf8))

            // The job shows on the page, in the restore stage, 3 of 10 units done; its name is escaped.
            var page = ""
            #expect(try eventually {
                page = try httpGet(port: port, path: "/").body
                return page.contains("3/10")
            })
            #expect(page.contains("<table id=\"in-flight\">"))
            #expect(page.contains("photo &lt;one&gt;.png"))
            #expect(!page.contains("photo <one>.png"))
            #expect(page.contains(">restore<"))
            #expect(page.contains("width:30%"))
            #expect(!page.contains("http://") && !page.contains("https://"), "no external assets")

            // Stuck: no progress for longer than the stall limit -> /health 503 and the watchdog goes quiet.
            #expect(try eventually {
                let h = try httpGet(port: port, path: "/health")
                return h.status == 503 && h.body.contains("stuck: no progress")
            })
            // The watchdog task notices on its next tick and says so; from then on it sends no ping.
            var seen: [String] = []
            #expect(eventually { seen += notify.drain(); return seen.contains { $0.contains("STATUS=stuck") } })
            try await Task.sleep(for: .milliseconds(300))
            let whileStuck = notify.drain()
            #expect(!whileStuck.contains { $0.contains("WATCHDOG=1") }, "no watchdog pings while stuck: \(whileStuck)")

            // Progress again: the job ends, health recovers, pings resume, the job is in the recent list.
            hold.openAll()
            #expect(try eventually { try httpGet(port: port, path: "/health").status == 200 })
            try await Task.sleep(for: .milliseconds(200))
            #expect(notify.drain().contains { $0.contains("WATCHDOG=1") }, "watchdog pings resume")
            page = try httpGet(port: port, path: "/").body
            #expect(page.contains("<table id=\"recent\">"))
            #expect(page.contains("No job is running."))
            #expect(page.contains("Throughput, last hour (1 jobs)"))
            // Watch-folder metrics: one input done, nothing waiting or in processing/.
            let samples = try parsePrometheus(try httpGet(port: port, path: "/metrics").body)
            #expect(samples.first { $0.key.hasPrefix("dreamsr_watch_files_total{") && $0.key.contains("outcome=\"done\"") }?.value == 1)
            #expect(samples.first { $0.key.hasPrefix("dreamsr_watch_backlog_files{") && $0.key.contains("state=\"waiting\"") }?.value == 0)
            #expect(samples.first { $0.key.hasPrefix("dreamsr_watch_backlog_files{") && $0.key.contains("state=\"processing\"") }?.value == 0)

            await daemon.group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func boardCountsCompletionsPerIntervalAndKeepsTheNewest() {
        let board = JobBoard(capacity: 3)
        let now = Date()
        for (i, age) in [3599.0, 1800, 10, 5, 3700].enumerated() {
            let request = JobRequest(id: JobID("j\(i)"), source: .url("https://u:p@example.com/x.png?sig=secret"))
            board.record(board.begin(request), request, JobOutcome(id: JobID("j\(i)"), status: .ok), seconds: 1,
                         now: now.addingTimeInterval(-age))
        }
        let bins = board.completionsLastHour(bins: 12, now: now)
        #expect(bins.count == 12)
        #expect(bins.reduce(0, +) == 4)  // the 3700 s old one is out of the hour
        #expect(bins[11] == 2 && bins[0] == 1 && bins[5] + bins[6] == 1)
        #expect(board.recent.map(\.id.rawValue) == ["j4", "j3", "j2"])
        #expect(!board.recent[0].source.contains("secret") && !board.recent[0].source.contains("u:p"))
    }
}
