import ArgumentParser
import Foundation
import Models
import Tensor
import Upscaling

/// `dreamsr-bench ncnn-zoo`: every installed catalog model (or `--model NAME...`) on one tile, dreamsr vs the PyPI
/// `ncnn` wheel in fp32, same .param/.bin, same threads, same run; prints a Markdown table with the ratio and the
/// estimated seconds for a 12 MP output photo (tile time per input pixel x 12e6 / scale^2, tiling overhead ignored).
/// The last two columns are process CPU seconds of the same best runs: at `--threads 1` they are the compute time
/// with the machine's other load taken out (wall time under load measures the load too); at more threads ncnn's
/// spin-waiting OpenMP threads inflate its CPU time.
struct NCNNZooBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ncnn-zoo",
        abstract: "The model zoo: dreamsr (general ncnn runner / RRDBNet engine) vs the ncnn wheel, per model.")

    @Option(help: "Tile size in input pixels (square, before the model's own padding).") var size = 96
    @Option(help: "Threads for both engines.") var threads = 2
    @Option(help: "Timed runs per engine (best is reported) after one warm-up run.") var runs = 2
    @Option(help: "Only these models (default: every installed one).") var model: [String] = []
    @Option(help: "Python interpreter with numpy + ncnn (default: $DREAMSR_REF_PYTHON, else .venv-ref/bin/python).")
    var python = ReferencePython.defaultPath
    @Option(help: "Baseline script.") var baselineScript = "Benchmarks/ncnn_zoo_baseline.py"

    func run() async throws {
        BLASRuntime.setThreads(threads)
        let models = model.isEmpty ? ModelCatalog.models : try model.map { n in
            guard let m = ModelCatalog.model(named: n) else { throw ValidationError("unknown model \(n)") }
            return m
        }
        print("ncnn zoo, \(size)x\(size) input tiles, threads \(threads), OpenBLAS core \(BLASRuntime.coreName), "
              + "kernels \(KernelISA.active)")
        print("| model | scale | engine | dreamsr s/tile | ncnn fp32 s/tile | ratio | dreamsr s per 12 MP output "
              + "| dreamsr CPU s | ncnn CPU s |")
        print("|---|---|---|---|---|---|---|---|---|")
        let lane = ComputeLane(label: "bench")
        var skipped: [String] = []
        for m in models {
            guard let located = ModelLocator.installed(m) else { skipped.append(m.name); continue }
            let size = self.size, runs = self.runs, threads = self.threads
            let (engine, ours, oursCPU, general) = try await lane.run { () -> (String, Double, Double, (Double, Double)?) in
                let r = try NCNNModelRestorer(located, threads: threads)
                let input = Tensor(shape: [1, 3, size, size]) { Float(($0 * 7919) % 1000) / 1000 }
                func cpuSeconds() -> Double {
                    var ts = timespec()
                    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
                    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
                }
                /// Best wall and best CPU seconds.
                func best(_ body: () throws -> Void) rethrows -> (Double, Double) {
                    try body()  // warm-up
                    var b = Double.infinity, c = Double.infinity
                    for _ in 0..<runs {
                        let t = DispatchTime.now(), c0 = cpuSeconds()
                        try body()
                        b = min(b, Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9)
                        c = min(c, cpuSeconds() - c0)
                    }
                    return (b, c)
                }
                let (ours, oursCPU) = try best { _ = try r.restore(input) }
                // RRDBNet models: also the general runner on the same graph (why the specialised engine is kept).
                var general: (Double, Double)?
                if r.engine == "rrdbnet" {
                    let g = try NCNNGraph(paramPath: located.paramPath, binPath: located.binPath, threads: threads)
                    general = try best { _ = try g.forward(input) }
                }
                return (r.engine, ours, oursCPU, general)
            }
            // ncnn runs the same padded graph input our restorer builds.
            let p = m.networkPad, mult = max(1, m.sizeMultiple)
            let side = size + 2 * p + (mult - (size + 2 * p) % mult) % mult
            let json = try BaselineProcess.lastLineJSON("/usr/bin/env", [python, baselineScript, "--param", located.paramPath,
                                                                         "--bin", located.binPath, "--height", "\(side)",
                                                                         "--width", "\(side)", "--threads", "\(threads)",
                                                                         "--runs", "\(runs)"])
            let ncnn = json["fp32_s"] as? Double ?? .nan, ncnnCPU = json["fp32_cpu_s"] as? Double ?? .nan
            let photo = ours / Double(size * size) * 12e6 / Double(m.scale * m.scale)
            print("| \(m.name) | \(m.scale)x | \(engine) | "
                  + String(format: "%.3f | %.3f | %.2fx | %.0f | %.3f | %.3f |", ours, ncnn, ours / ncnn, photo, oursCPU, ncnnCPU))
            if let general {
                let (g, gCPU) = general
                print("| \(m.name) | \(m.scale)x | ncnn-graph (not used) | "
                      + String(format: "%.3f | %.3f | %.2fx | %.0f | %.3f | %.3f |", g, ncnn, g / ncnn,
                               g / Double(size * size) * 12e6 / Double(m.scale * m.scale), gCPU, ncnnCPU))
            }
        }
        if !skipped.isEmpty { print("not installed (skipped): \(skipped.joined(separator: ", "))") }
    }
}
