import ArgumentParser
import Foundation
import Models
import Tensor
import Upscaling

/// `dreamsr-bench ncnn-zoo`: every installed catalog model (or `--model NAME...`) on one tile, dreamsr vs the PyPI
/// `ncnn` wheel in fp32, same .param/.bin, same threads, same run; prints a Markdown table with the ratio and the
/// estimated seconds for a 12 MP output photo (tile time per input pixel x 12e6 / scale^2, tiling overhead ignored).
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
        print("| model | scale | engine | dreamsr s/tile | ncnn fp32 s/tile | ratio | dreamsr s per 12 MP output |")
        print("|---|---|---|---|---|---|---|")
        let lane = ComputeLane(label: "bench")
        var skipped: [String] = []
        for m in models {
            guard let located = ModelLocator.installed(m) else { skipped.append(m.name); continue }
            let size = self.size, runs = self.runs, threads = self.threads
            let (engine, ours, general) = try await lane.run { () -> (String, Double, Double?) in
                let r = try NCNNModelRestorer(located, threads: threads)
                let input = Tensor(shape: [1, 3, size, size]) { Float(($0 * 7919) % 1000) / 1000 }
                func best(_ body: () throws -> Void) rethrows -> Double {
                    try body()  // warm-up
                    var b = Double.infinity
                    for _ in 0..<runs {
                        let t = DispatchTime.now()
                        try body()
                        b = min(b, Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9)
                    }
                    return b
                }
                let ours = try best { _ = try r.restore(input) }
                // RRDBNet models: also the general runner on the same graph (why the specialised engine is kept).
                var general: Double?
                if r.engine == "rrdbnet" {
                    let g = try NCNNGraph(paramPath: located.paramPath, binPath: located.binPath, threads: threads)
                    general = try best { _ = try g.forward(input) }
                }
                return (r.engine, ours, general)
            }
            // ncnn runs the same padded graph input our restorer builds.
            let p = m.networkPad, mult = max(1, m.sizeMultiple)
            let side = size + 2 * p + (mult - (size + 2 * p) % mult) % mult
            let json = try BaselineProcess.lastLineJSON("/usr/bin/env", [python, baselineScript, "--param", located.paramPath,
                                                                         "--bin", located.binPath, "--height", "\(side)",
                                                                         "--width", "\(side)", "--threads", "\(threads)",
                                                                         "--runs", "\(runs)"])
            let ncnn = json["fp32_s"] as? Double ?? .nan
            let photo = ours / Double(size * size) * 12e6 / Double(m.scale * m.scale)
            print(String(format: "| %@ | %dx | %@ | %.3f | %.3f | %.2fx | %.0f |", m.name, m.scale, engine, ours, ncnn,
                         ours / ncnn, photo))
            if let general {
                print(String(format: "| %@ | %dx | ncnn-graph (not used) | %.3f | %.3f | %.2fx | %.0f |", m.name, m.scale,
                             general, ncnn, general / ncnn, general / Double(size * size) * 12e6 / Double(m.scale * m.scale)))
            }
        }
        if !skipped.isEmpty { print("not installed (skipped): \(skipped.joined(separator: ", "))") }
    }
}
