#if canImport(Glibc)
import Glibc
#endif
import DreamsrApp
import DreamsrTestKit
import Foundation
import Logging
import PipelineRuntime
import ServiceLifecycle
import Support
import Testing
import WatchFolderConnector
import Jobs

private func value(_ samples: [String: Double], _ name: String, _ labels: [String] = []) -> Double? {
    samples.first { key, _ in
        key.hasPrefix(name + "{") && labels.allSatisfy { key.contains($0) } || (labels.isEmpty && key == name)
    }?.value
}

private func isFinal(_ e: WatchFolderSource.Event) -> Bool {
    switch e {
    case .done, .failed, .leftForRetry: return true
    default: return false
    }
}

@Suite(.timeLimit(.minutes(1))) struct DaemonTests {
    func quickConfig(_ dir: String) throws -> DaemonConfig {
        var config = try DaemonConfig.quickStart(watch: dir + "/in", output: dir + "/out", metricsAddress: "127.0.0.1:0", env: [:])
        config.watchFolders[0].pollInterval = .milliseconds(50)
        config.watchFolders[0].stabilityInterval = .milliseconds(50)
        return config
    }

    @Test func healthReadyAndMetricsAcrossModelLoadingAndJobs() async throws {
        let dir = try tempDir()
        let gate = TestGate()
        let events = AsyncEvents<WatchFolderSource.Event>()
        let daemon = try buildServiceGroup(config: try quickConfig(dir), logger: Logger(label: "test"),
                                           factory: FakeFactory(loadGate: gate), environment: [:]) { events.emit($0) }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await daemon.group.run() }
            let port = try #require(await daemon.http?.boundPort())

            // Models still loading: alive but not ready.
            let readyBefore = try httpGet(port: port, path: "/ready")
            #expect(readyBefore.status == 503)
            #expect(readyBefore.body.contains("loading models"))
            let healthBefore = try httpGet(port: port, path: "/health")
            #expect(healthBefore.status == 200)
            #expect(healthBefore.body.contains("\"state\":\"loading models\""))

            gate.openAll()
            await daemon.pipeline.waitUntilStarted()
            #expect(try httpGet(port: port, path: "/ready").status == 200)
            #expect(try httpGet(port: port, path: "/health").status == 200)
            #expect(try httpGet(port: port, path: "/nope").status == 404)

            FileManager.default.createFile(atPath: dir + "/in/good.png", contents: Data("image".utf8))
            FileManager.default.createFile(atPath: dir + "/in/bad.png", contents: Data("bad bytes".utf8))
            await events.waitFor(count: 2, where: isFinal)

            let metrics = try httpGet(port: port, path: "/metrics")
            #expect(metrics.status == 200)
            let samples = try parsePrometheus(metrics.body)
            #expect(value(samples, "dreamsr_jobs_total", ["outcome=\"ok\""]) == 1)
            #expect(value(samples, "dreamsr_jobs_total", ["outcome=\"error\""]) == 1)
            #expect(value(samples, "dreamsr_job_duration_seconds_count") == 2)
            #expect(value(samples, "dreamsr_stage_duration_seconds_count", ["stage=\"decode\""]) == 2)
            #expect(value(samples, "dreamsr_stage_duration_seconds_count", ["stage=\"encode\""]) == 1)
            #expect(value(samples, "dreamsr_stage_queue_depth", ["stage=\"restore\""]) != nil)
            #expect(value(samples, "dreamsr_megapixels_in_flight") == 0)
            #expect(value(samples, "dreamsr_model_load_seconds", ["stage=\"restore\""]) != nil)

            await daemon.group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/out/good.png"))
        #expect(FileManager.default.fileExists(atPath: dir + "/in/done/good.png"))
        #expect(FileManager.default.fileExists(atPath: dir + "/in/failed/bad.png.error.json"))
    }

    @Test func healthFailsWhenTheCodecCheckFails() async throws {
        let dir = try tempDir()
        let daemon = try buildServiceGroup(config: try quickConfig(dir), logger: Logger(label: "test"),
                                           factory: FakeFactory(healthy: false), environment: [:])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await daemon.group.run() }
            let port = try #require(await daemon.http?.boundPort())
            let health = try httpGet(port: port, path: "/health")
            #expect(health.status == 503)
            #expect(health.body.contains("codec round trip failed"))
            await daemon.group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func systemdHearsReadyThenStopping() async throws {
        let dir = try tempDir()
        let socketPath = dir + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in socketPath.utf8.enumerated() { raw[i] = b } }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)

        var config = try quickConfig(dir)
        config.metricsAddress = nil
        let daemon = try buildServiceGroup(config: config, logger: Logger(label: "test"), factory: FakeFactory(),
                                           environment: ["NOTIFY_SOCKET": socketPath, "WATCHDOG_USEC": "60000000"])
        #expect(daemon.http == nil)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await daemon.group.run() }
            await daemon.pipeline.waitUntilStarted()
            await daemon.group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        var messages: [String] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { break }
            messages.append(String(decoding: buf[0..<n], as: UTF8.self))
        }
        let joined = messages.joined(separator: "|")
        #expect(joined.contains("WATCHDOG=1"))
        #expect(joined.contains("EXTEND_TIMEOUT_USEC="))
        let stopping = try #require(messages.firstIndex { $0.contains("STOPPING=1") })
        // READY comes from a task racing shutdown here; when it was sent, it came before STOPPING.
        if let ready = messages.firstIndex(where: { $0.contains("READY=1") }) { #expect(ready < stopping) }
    }

    @Test func aDaemonWithoutSourcesIsRefused() throws {
        var config = try DaemonConfig.quickStart(watch: "/tmp/x", output: "/tmp/y", metricsAddress: nil, env: [:])
        config.watchFolders = []
        #expect(throws: ConfigError.self) {
            try buildServiceGroup(config: config, logger: Logger(label: "t"), factory: FakeFactory(), environment: [:])
        }
    }
}

@Suite(.timeLimit(.minutes(10))) struct SourceSeamTests {
    /// The seam other connectors (Kafka) use: a `SourceBuilder` gets the pipeline's processor and returns a Service.
    @Test func extraSourcesFeedThePipelineAndRoutingRefusesUnknownPipelines() async throws {
        let dir = try tempDir()
        var config = try DaemonConfig.quickStart(watch: dir + "/in", output: dir + "/out", metricsAddress: nil, env: [:])
        config.watchFolders = []
        FileManager.default.createFile(atPath: dir + "/a.png", contents: Data("image".utf8))
        let made = Locked<InMemorySource?>(nil)
        let requests = [
            JobRequest(id: JobID("a"), source: .file(dir + "/a.png"), output: dir + "/a-out.png"),
            JobRequest(id: JobID("b"), source: .file(dir + "/a.png"), output: dir + "/b-out.png", pipeline: "dreamsr-full"),
        ]
        let daemon = try buildServiceGroup(config: config, logger: Logger(label: "t"), factory: FakeFactory(),
                                           extraSources: [{ processor, _ in
                                               let s = InMemorySource(requests: requests, processor: processor)
                                               made.withLock { $0 = s }
                                               return s
                                           }], environment: [:])
        let source = try #require(made.current)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await daemon.group.run() }
            let outcomes = await source.outcomes.waitFor(count: 2)
            let a = try #require(outcomes.first { $0.id.rawValue == "a" })
            let b = try #require(outcomes.first { $0.id.rawValue == "b" })
            #expect(a.status == .ok && a.output == dir + "/a-out.png")
            #expect(b.status == .error && b.errorStage == "admission" && b.errorMessage?.contains("not loaded") == true)
            await daemon.group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
