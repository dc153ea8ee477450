import ArgumentParser
import Foundation
import Imaging
import KafkaConnector
import Raster

/// `dreamsr-bench scaleout`: throughput of 1, 2, 3 ... `dreamsr serve` processes in one consumer group (each its own
/// process, real Real-ESRGAN on small images) against `dreamsr-mock-kafka` in its own process, with the peak RSS of
/// each member; then, optionally, redeliveries per SIGKILL (a random member killed every `--kill-every` seconds and
/// restarted). Baseline: the one-member run (N members on one machine share its cores, so the ratio shows what a
/// second process adds there; on separate machines members add their own cores).
struct ScaleOutBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaleout",
        abstract: "Jobs/s with 1..N daemon processes in one consumer group, and redeliveries per SIGKILL.")

    @Option(help: "Member counts to measure, comma-separated.") var members = "1,2,3"
    @Option(help: "Jobs per throughput run.") var jobs = 60
    @Option(help: "Input image side in pixels (output is 4x).") var size = 16
    @Option(help: "max_in_flight of each member.") var maxInFlight = 2
    @Option(help: "Input topic partitions.") var partitions = 6
    @Option(help: "Kill runs: SIGKILLs of a random member (0: none).") var kills = 0
    @Option(help: "Seconds between kills.") var killEvery = 10.0
    @Option(help: "Jobs in the kill run.") var killJobs = 300
    @Option(help: "Folder with the fetched models.") var modelsDir = "models"
    @Option(help: "Folder with the dreamsr and dreamsr-mock-kafka binaries (default: next to this one).") var binDir: String?

    struct Failure: Error, CustomStringConvertible { let description: String }

    func binaries() -> String {
        binDir ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    }

    final class Member {
        let process: Process
        let log: String
        init(process: Process, log: String) {
            self.process = process
            self.log = log
        }
        /// Peak resident memory (VmHWM) in MiB while it runs.
        var peakRSSMiB: Double? {
            guard let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
                  let kib = Double(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
            return kib / 1024
        }
        /// Partitions of its latest assignment (from its JSON log).
        var assigned: Int {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            var count = 0
            let partition = try! NSRegularExpression(pattern: #"\w\[\d+\]"#)
            for line in text.split(separator: "\n").map(String.init) {
                let n = partition.numberOfMatches(in: line, range: NSRange(line.startIndex..., in: line))
                if line.contains("\"partitions assigned\"") { count += n }
                if line.contains("\"partitions revoked\"") { count -= n }
            }
            return count
        }
    }

    func waitUntil(_ what: String, timeout: Double, _ condition: () async throws -> Bool) async throws {
        let deadline = Date() + timeout
        while try await !condition() {
            if Date() > deadline { throw Failure(description: "timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    func run() async throws {
        let counts = members.split(separator: ",").compactMap { Int($0) }
        let root = NSTemporaryDirectory() + "dreamsr-scaleout-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root + "/in", withIntermediateDirectories: true)
        for i in 0..<max(jobs, killJobs) { try writeImage(root + "/in/j\(i).png", seed: i) }
        print("scaleout: \(jobs) jobs of \(size)x\(size) -> \(4 * size)x\(4 * size), \(partitions) partitions, "
              + "max_in_flight \(maxInFlight), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        var baseline: Double?
        for count in counts {
            let (rate, rss) = try await throughput(members: count, root: root + "/m\(count)")
            baseline = baseline ?? rate
            print(String(format: "members %d: %.2f jobs/s (%.2f s/job), ratio to 1 member %.2f, peak RSS per member %@ MiB",
                         count, rate, 1 / rate, rate / (baseline ?? rate), rss.map { String(format: "%.0f", $0) }.joined(separator: "/")))
        }
        if kills > 0 { try await killRun(root: root + "/kills") }
    }

    func writeImage(_ path: String, seed: Int) throws {
        var img = PlanarImage(width: size, height: size, channels: 3)
        for c in 0..<3 { for y in 0..<size { for x in 0..<size { img[c, y, x] = Float((x * 7 + y * 13 + c * 50 + seed * 17) % 255) / 255 } } }
        try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: path)
    }

    struct Cluster {
        let broker: Process
        let bootstrap: String
        let topic = "bench"
        let config: String
        let output: String
        var members: [Member] = []
    }

    func startCluster(root: String) async throws -> Cluster {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let out = root + "/broker.out"
        FileManager.default.createFile(atPath: out, contents: nil)
        let broker = Process()
        broker.executableURL = URL(fileURLWithPath: binaries() + "/dreamsr-mock-kafka")
        broker.arguments = ["--topic", "bench:\(partitions)", "--topic", "bench.results:1", "--topic", "bench.dlq:1"]
        broker.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        broker.standardError = FileHandle.nullDevice
        try broker.run()
        var line = ""
        try await waitUntil("the broker", timeout: 20) {
            line = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            return line.contains("\n")
        }
        let bootstrap = line.trimmingCharacters(in: .whitespacesAndNewlines)
        let models = URL(fileURLWithPath: modelsDir).standardizedFileURL.path
        let config = root + "/member.yaml"
        try """
        log_level: info
        log_format: json
        models_dir: \(models)
        sources:
          kafka:
            bootstrap: \(bootstrap)
            topic: bench
            output_dir: \(root)/out
            max_in_flight: \(maxInFlight)
            session_timeout_ms: 4000
            max_poll_interval_ms: 60000
            commit_interval_ms: 200
            client_properties:
              heartbeat.interval.ms: 500
        """.write(toFile: config, atomically: true, encoding: .utf8)
        return Cluster(broker: broker, bootstrap: bootstrap, config: config, output: root + "/out")
    }

    func startMember(_ cluster: Cluster, name: String) throws -> Member {
        let log = (cluster.config as NSString).deletingLastPathComponent + "/\(name).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binaries() + "/dreamsr")
        p.arguments = ["serve", "--config", cluster.config]
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return Member(process: p, log: log)
    }

    func produce(_ cluster: Cluster, root: String, ids: Range<Int>) async throws {
        try await KafkaTools.produce(bootstrap: cluster.bootstrap, topic: cluster.topic, messages: ids.map { i in
            (key: Array("j\(i)".utf8), value: Array(#"{"id":"j\#(i)","source":"\#(root)/in/j\#(i).png"}"#.utf8), headers: [])
        })
    }

    func waitForCommitted(_ cluster: Cluster, timeout: Double) async throws {
        let high = try await KafkaTools.highWatermarks(bootstrap: cluster.bootstrap, topic: cluster.topic, partitions: partitions)
        try await waitUntil("committed offsets at \(high)", timeout: timeout) {
            try await KafkaTools.committedOffsets(bootstrap: cluster.bootstrap, group: "dreamsr", topic: cluster.topic,
                                                  partitions: partitions) == high
        }
    }

    func stop(_ cluster: Cluster) {
        for member in cluster.members where member.process.isRunning {
            member.process.terminate()
            member.process.waitUntilExit()
        }
        cluster.broker.terminate()
        cluster.broker.waitUntilExit()
    }

    /// Jobs/s from the first produce to committed offsets at the partition ends, once every member has its
    /// partitions (models loaded, group settled).
    func throughput(members count: Int, root: String) async throws -> (Double, [Double]) {
        var cluster = try await startCluster(root: root)
        defer { stop(cluster) }
        for n in 0..<count { cluster.members.append(try startMember(cluster, name: "member\(n)")) }
        let members = cluster.members
        try await waitUntil("all \(partitions) partitions assigned", timeout: 120) {
            members.reduce(0) { $0 + $1.assigned } == partitions && members.allSatisfy { $0.assigned > 0 || count > partitions }
        }
        let start = Date()
        try await produce(cluster, root: (root as NSString).deletingLastPathComponent, ids: 0..<jobs)
        try await waitForCommitted(cluster, timeout: 3600)
        let seconds = Date().timeIntervalSince(start)
        return (Double(jobs) / seconds, cluster.members.compactMap(\.peakRSSMiB))
    }

    /// Three members, `killJobs` jobs, a random member SIGKILLed every `killEvery` seconds and restarted: ok results
    /// beyond one per job are redeliveries.
    func killRun(root: String) async throws {
        var cluster = try await startCluster(root: root)
        defer { stop(cluster) }
        for n in 0..<3 { cluster.members.append(try startMember(cluster, name: "member\(n)-0")) }
        let members = cluster.members
        try await waitUntil("partitions assigned", timeout: 120) { members.reduce(0) { $0 + $1.assigned } == partitions }
        let start = Date()
        try await produce(cluster, root: (root as NSString).deletingLastPathComponent, ids: 0..<killJobs)
        var rng = SystemRandomNumberGenerator()
        for k in 0..<kills {
            try await Task.sleep(for: .seconds(killEvery))
            let slot = Int.random(in: 0..<3, using: &rng)
            kill(cluster.members[slot].process.processIdentifier, SIGKILL)
            cluster.members[slot].process.waitUntilExit()
            cluster.members[slot] = try startMember(cluster, name: "member\(slot)-\(k + 1)")
        }
        try await waitForCommitted(cluster, timeout: 3600)
        let seconds = Date().timeIntervalSince(start)
        let results = try await KafkaTools.read(bootstrap: cluster.bootstrap, topic: "bench.results", partitions: 1,
                                                count: 1_000_000, timeout: .seconds(5))
        let ok = results.compactMap { try? JSONDecoder().decode(ResultMessage.self, from: Data($0.value ?? [])) }
            .filter { $0.status == "ok" }
        let unique = Set(ok.map(\.id)).count
        print(String(format: "kills: %d jobs, %d SIGKILLs every %.0f s: %.1f s, %d ok results for %d jobs: "
                     + "%d redeliveries (%.1f per kill)", killJobs, kills, killEvery, seconds, ok.count, unique,
                     ok.count - unique, Double(ok.count - unique) / Double(kills)))
    }
}
