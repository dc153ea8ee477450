import ArgumentParser
import Foundation
import Models
import Tensor

/// `dreamsr-bench realesrgan`: Real-ESRGAN x4plus on one input, dreamsr engine vs the PyPI `ncnn` wheel (same
/// weights, same thread count, same run). Prints both times and the ratio (ours / ncnn fp32).
struct RealESRGANBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "realesrgan",
        abstract: "Real-ESRGAN x4plus: dreamsr engine vs the ncnn Python wheel (CPU), same weights and threads.")

    @Option(help: "Input size in pixels (square).") var size = 128
    @Option(help: "Threads for both engines (OpenBLAS threads for ours, num_threads for ncnn).") var threads = 2
    @Option(help: "Timed runs per engine (best is reported) after one warm-up run.") var runs = 3
    @Option(help: "Model folder or .param file (default: $DREAMSR_MODELS_DIR or ./models).") var model: String?
    @Option(help: "Python interpreter with numpy + ncnn.") var python = "python3"
    @Option(help: "Baseline script.") var baselineScript = "Benchmarks/realesrgan_ncnn_baseline.py"
    @Flag(help: "Only time our engine.") var skipBaseline = false
    @Flag(help: "Do not time ncnn in fp16 mode.") var noFP16 = false

    func run() async throws {
        BLASRuntime.setThreads(threads)
        let (paramPath, binPath) = try RealESRGAN.locateModel(explicit: model)
        print("Real-ESRGAN x4plus \(size)x\(size) -> \(size * 4)x\(size * 4), threads \(threads), "
              + "OpenBLAS core \(BLASRuntime.coreName), kernels \(KernelISA.active)")
        let lane = ComputeLane(label: "bench")
        let size = self.size, runs = self.runs, threads = self.threads
        let (loadS, oursS, oursCPU, output) = try await lane.run { () -> (Double, Double, Double, Tensor) in
            let t0 = DispatchTime.now()
            let net = try RealESRGAN(paramPath: paramPath, binPath: binPath, threads: threads)
            let load = Self.seconds(since: t0)
            // same deterministic pattern as the baseline script
            let input = Tensor(shape: [1, 3, size, size]) { Float(($0 * 7919) % 1000) / 1000 }
            var best = Double.infinity, bestCPU = Double.infinity
            var out = try net.forward(input)  // warm-up
            for _ in 0..<runs {
                let t = DispatchTime.now()
                let c = Self.processCPUSeconds()
                out = try net.forward(input)
                best = min(best, Self.seconds(since: t))
                bestCPU = min(bestCPU, Self.processCPUSeconds() - c)
            }
            return (load, best, bestCPU, out)
        }
        print(String(format: "dreamsr: %.3f s wall, %.3f s CPU (best of %d; model load %.2f s)", oursS, oursCPU, runs,
                     loadS))
        if skipBaseline { return }

        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-bench-ncnn-\(getpid()).f32")
        defer { try? FileManager.default.removeItem(at: tmp) }
        var args = [baselineScript, "--param", paramPath, "--bin", binPath, "--size", "\(size)",
                    "--threads", "\(threads)", "--runs", "\(runs)", "--save-output", tmp.path]
        if noFP16 { args.append("--no-fp16") }
        let line = try Self.runPython(python, args)
        guard let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let fp32 = json["fp32_s"] as? Double else {
            throw ValidationError("baseline printed no result: \(line)")
        }
        let version = json["ncnn_version"] as? String ?? "?"
        let fp32CPU = json["fp32_cpu_s"] as? Double ?? .nan
        print(String(format: "ncnn %@ fp32: %.3f s wall, %.3f s CPU", version, fp32, fp32CPU))
        if let fp16 = json["fp16_s"] as? Double {
            print(String(format: "ncnn %@ fp16: %.3f s wall, %.3f s CPU", version, fp16, json["fp16_cpu_s"] as? Double ?? .nan))
        }
        print(String(format: "ratio dreamsr / ncnn-fp32: %.2fx wall (target <= 1.5x), %.2fx CPU time", oursS / fp32,
                     oursCPU / fp32CPU))
        if let fp16 = json["fp16_s"] as? Double {
            print(String(format: "ratio dreamsr / ncnn-fp16: %.2fx", oursS / fp16))
        }
        if let ref = try? Data(contentsOf: tmp), ref.count == output.count * 4 {
            var maxErr: Float = 0
            ref.withUnsafeBytes { raw in
                for i in 0..<output.count {
                    maxErr = max(maxErr, abs(raw.loadUnaligned(fromByteOffset: i * 4, as: Float.self) - output[flat: i]))
                }
            }
            print(String(format: "max |dreamsr - ncnn fp32| = %.5f (%.2f/255)", maxErr, maxErr * 255))
        }
    }

    static func seconds(since t: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9
    }

    /// User + system CPU seconds of this process (all threads).
    static func processCPUSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    static func runPython(_ python: String, _ args: [String]) throws -> String {
        let text = try BaselineProcess.run("/usr/bin/env", [python] + args)
        return text.split(separator: "\n").last.map(String.init) ?? ""
    }
}
