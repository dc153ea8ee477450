import ArgumentParser
import Checkpoints
import Foundation
import Models
import Tensor
#if canImport(Glibc)
import Glibc
#endif

/// `dreamsr-bench vae-decode`: full-size FLUX VAE decode (random weights) in our engine vs PyTorch fp32 on the CPU in
/// the same run (Benchmarks/vae_decode_baseline.py writes the weights and latent and times diffusers), then the peak
/// RSS of a tiled decode in a child process (disk tile storage: memory bounded by the tile, not the image).
struct VAEDecodeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae-decode",
        abstract: "FLUX VAE decode: dreamsr vs PyTorch fp32 CPU (same weights, same latent), plus tiled-decode peak RSS.")

    @Option(help: "Image size in pixels (square) for the timed comparison.") var size = 1024
    @Option(help: "Python with torch + diffusers for the baseline.") var python: String = ReferencePython.defaultPath
    @Option(help: "Baseline script.") var script = "Benchmarks/vae_decode_baseline.py"
    @Option(help: "Scratch directory for weights, latent and tile states.") var workDir = "/tmp/dreamsr-vae-bench"
    @Option(help: "Threads for both engines (0 = OpenBLAS default).") var threads = 0
    @Option(help: "Image size for the tiled peak-RSS run (0 = skip).") var rssSize = 2048
    @Option(help: "Latent tile size (core) for the tiled run (0 = untiled: the working set of one padded tile).")
    var rssTile = 64
    @Option(help: "Tiled RSS run: MiB of tile states kept in memory before spilling to disk (0: all on disk).")
    var rssMemoryMb = 0
    @Flag(help: "Skip the timed comparison (only the RSS run).") var skipCompare = false
    @Flag(help: .hidden) var rssChild = false

    func run() throws {
        if threads > 0 { BLASRuntime.setThreads(threads) }
        let dir = URL(fileURLWithPath: workDir)
        if rssChild { return try runRSSChild(dir: dir) }
        print("OpenBLAS core: \(BLASRuntime.coreName), threads \(BLASRuntime.threads), kernel ISA \(KernelISA.active)")
        if !skipCompare { try compare(dir: dir) }
        if rssSize > 0 { try measureRSS(dir: dir) }
    }

    private func compare(dir: URL) throws {
        let nThreads = threads > 0 ? threads : BLASRuntime.threads
        print("baseline: \(python) \(script) --size \(size) --threads \(nThreads)")
        let out = try runProcess(python, [script, "--size", "\(size)", "--threads", "\(nThreads)", "--out", dir.path])
        guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let torchSeconds = json["torch_seconds"] as? Double else {
            throw ValidationError("baseline printed no result:\n\(out)")
        }
        let (model, _) = try AutoencoderKL.load(from: dir.appendingPathComponent("flux_vae_random.safetensors"))
        let io = try SafeTensorsFile(url: dir.appendingPathComponent("latent.safetensors"))
        let z = try io.tensor(named: "latent")
        _ = try model.decode(Tensor(zeros: [1, 16, 8, 8]))  // warm-up, as the baseline
        let t0 = Date()
        let y = try model.decode(z)
        let ours = Date().timeIntervalSince(t0)
        let ref = try io.tensor(named: "sample")
        let v = ref.toArray()
        let range = v.max()! - v.min()!
        let err = y.maxAbsDifference(ref)
        print(String(format: "vae-decode %dx%d: dreamsr %.2f s, PyTorch %@ fp32 %.2f s, ratio %.2fx (dreamsr/PyTorch); "
                     + "max abs diff %.2e (%.2e of range)", size, size, ours, (json["torch"] as? String) ?? "?",
                     torchSeconds, ours / torchSeconds, err, err / range))
    }

    private func measureRSS(dir: URL) throws {
        let weights = dir.appendingPathComponent("flux_vae_random.safetensors")
        if !FileManager.default.fileExists(atPath: weights.path) {
            _ = try runProcess(python, [script, "--size", "64", "--out", dir.path, "--skip-run"])
        }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var args = ["vae-decode", "--rss-child", "--rss-size", "\(rssSize)", "--rss-tile", "\(rssTile)",
                    "--rss-memory-mb", "\(rssMemoryMb)", "--work-dir", dir.path]
        if threads > 0 { args += ["--threads", "\(threads)"] }
        let out = try runProcess(exe, args)
        print(out.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private func runRSSChild(dir: URL) throws {
        let (model, _) = try AutoencoderKL.load(from: dir.appendingPathComponent("flux_vae_random.safetensors"))
        let h = rssSize / 8
        var s: UInt64 = 42
        let z = Tensor(shape: [1, 16, h, h]) { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2_000_000) / 1_000_000 - 1
        }
        let scratch = dir.appendingPathComponent("tiles")
        let storage: VAETiling.StateStorage = rssMemoryMb > 0 ? .spill(scratch, memoryBytes: rssMemoryMb << 20)
            : .disk(scratch)
        let tiling = rssTile > 0 ? VAETiling(tileSize: rssTile, attention: .perTile, storage: storage) : .untiled
        let t0 = Date()
        let y = try model.decode(z, tiling: tiling)
        let secs = Date().timeIntervalSince(t0)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let weightsMB = Double(VAEWeightMap.canonicalShapes(model.config).reduce(0) { $0 + $1.1.reduce(1, *) }) * 4 / 1e6
        let mode = rssTile > 0 ? "tiled, latent tile \(rssTile) + auto pad, "
            + (rssMemoryMb > 0 ? "tile states in memory up to \(rssMemoryMb) MiB, then disk" : "disk tile states")
            : "untiled"
        print(String(format: "vae-decode %dx%d (%@): %.1f s, peak RSS %.0f MB (weights %.0f MB, output %.0f MB)",
                     rssSize, rssSize, mode, secs,
                     Double(usage.ru_maxrss) / 1024, weightsMB, Double(y.count * 4) / 1e6))
    }

    private func runProcess(_ exe: String, _ args: [String]) throws -> String {
        try BaselineProcess.run(exe, args)
    }
}
