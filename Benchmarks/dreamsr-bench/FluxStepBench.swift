import ArgumentParser
import Checkpoints
import Foundation
import Models
import Tensor

#if canImport(Glibc)
import Glibc
#endif

/// `dreamsr-bench flux-step`: one full-depth FLUX sampling step (one transformer forward) on a GGUF / safetensors
/// file, in our engine and — with `--sdcpp` — in stable-diffusion.cpp on the SAME diffusion-model file, same
/// threads, same run (issue 14, benchmark 1). sd.cpp runs first as a child process (`sd-cli -M img_gen ... --steps N`,
/// cfg 1 so one forward per step); its per-step time is the one its progress bar prints (s/it), its peak RSS the
/// child's maximum resident set. Then our engine: load (mmap), prefetch of the mapped pages (the part of loading
/// sd.cpp does by copying the weights into RAM), `--repeats` forwards at the token counts of `--inputs` (sd.cpp pads
/// T5 to 256 tokens: write the inputs with `tools/make_flux_inputs.py --text-tokens 256`), our peak RSS the
/// process's high-water mark (mapped weights + activations). Prints the ratio of the step times.
struct FluxStepBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flux-step",
        abstract: "One full-depth FLUX step: dreamsr vs stable-diffusion.cpp on the same GGUF file (ratio printed)."
    )

    @Option(help: "FLUX transformer weights (GGUF or safetensors, BFL names).") var weights: String
    @Option(help: "Forward inputs (safetensors, `dreamsr forward flux` names; tools/make_flux_inputs.py).") var inputs: String
    @Option(help: "Our precision(s), comma-separated: fp32, bf16.") var precision: String = "bf16"
    @Option(help: "Threads (OpenBLAS, our kernels, sd.cpp -t).") var threads: Int = 2
    @Option(help: "Our timed forwards per precision (median printed).") var repeats: Int = 1
    @Option(help: "stable-diffusion.cpp's sd-cli binary (omit to time ours only).") var sdcpp: String?
    @Option(help: "Folder with sd.cpp's other models: ae.gguf, clip_l.gguf, t5.gguf.") var sdcppModels: String?
    @Option(help: "sd.cpp sampling steps (its s/it is the mean over them).") var sdcppSteps: Int = 1
    @Option(help: "Write our last output (`sample`) here, safetensors.") var out: String?

    func run() throws {
        let precisions = try precision.split(separator: ",").map {
            try ComputePrecision(parsing: String($0), key: "--precision")
        }
        print("flux-step: \(weights), inputs \(inputs), \(threads) threads, kernels \(KernelISA.active), "
              + "OpenBLAS \(BLASRuntime.coreName), load \(loadAverage())")
        var sd: (step: Double, rssKiB: Int)?
        if let sdcpp {
            sd = try runSDcpp(sdcpp)
            print(String(format: "sd.cpp   step %.2f s (its s/it over %d step(s))   peak RSS %.2f GiB   load %@", sd!.step,
                         sdcppSteps, Double(sd!.rssKiB) / 1048576, loadAverage()))
        }
        BLASRuntime.setThreads(threads)
        let inp = try Self.fluxInputs(try SafeTensorsFile(url: URL(fileURLWithPath: inputs)).allTensors())
        print("tokens: \(inp.hiddenStates.shape[1]) image + \(inp.encoderHiddenStates.shape[1]) text")
        for p in precisions {
            let t0 = now()
            let set = try CheckpointSet(url: URL(fileURLWithPath: weights))
            let model = try FluxTransformer.load(from: set, precision: p)
            let t1 = now()
            let bytes = set.prefetch()
            let t2 = now()
            print(String(format: "dreamsr %@: load %.1f s, prefetch %.1f GiB in %.1f s; path %@", p.description, t1 - t0,
                         Double(bytes) / 1073741824, t2 - t1, model.doubleBlocks[0].imgQKV.kernelPath))
            var times: [Double] = []
            var last: Tensor?
            for _ in 0..<max(1, repeats) {
                let s = now()
                last = try model.forward(inp)
                times.append(now() - s)
            }
            let step = times.sorted()[times.count / 2]
            let finite = last!.withUnsafeBufferPointer { $0.allSatisfy(\.isFinite) }
            let rss = Self.peakRSSKiB()
            print(String(format: "dreamsr %@: step %.2f s (median of %d: %@)   peak RSS %.2f GiB   output finite: %@   load %@",
                         p.description, step, times.count, times.map { String(format: "%.1f", $0) }.joined(separator: " "),
                         Double(rss) / 1048576, finite ? "yes" : "NO", loadAverage()))
            if let sd {
                print(String(format: "ratio %@ (dreamsr / sd.cpp step time, target <= 0.8): %.2fx   peak RSS ratio %.2fx (target <= 1.10)",
                             p.description, step / sd.step, Double(rss) / Double(sd.rssKiB)))
            }
            if let out, let last {
                try SafeTensorsWriter.write(tensors: [("sample", last)], metadata: ["precision": p.description],
                                            to: URL(fileURLWithPath: out))
            }
        }
    }

    private func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3)
            .joined(separator: " ") ?? "?"
    }

    /// Runs sd-cli once; returns its per-step time (the last progress-bar value) and the child's peak RSS.
    private func runSDcpp(_ binary: String) throws -> (step: Double, rssKiB: Int) {
        guard let dir = sdcppModels else { throw ValidationError("--sdcpp needs --sdcpp-models DIR (ae.gguf, clip_l.gguf, t5.gguf)") }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("flux-step-\(getpid())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let log = tmp.appendingPathComponent("sdcpp.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["-M", "img_gen", "--diffusion-model", weights, "--vae", "\(dir)/ae.gguf", "--clip_l", "\(dir)/clip_l.gguf",
                       "--t5xxl", "\(dir)/t5.gguf", "-p", "a photo", "--cfg-scale", "1.0", "--sampling-method", "euler",
                       "--steps", "\(sdcppSteps)", "-W", "512", "-H", "512", "-t", "\(threads)",
                       "-o", tmp.appendingPathComponent("out.png").path, "-v"]
        print("sd.cpp: \(binary) \(p.arguments!.joined(separator: " "))")
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        p.waitUntilExit()
        try handle.close()
        let text = String(decoding: try Data(contentsOf: log), as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw BaselineError(description: "sd-cli exited \(p.terminationStatus):\n\(text.suffix(3000))")
        }
        // Progress bar: "\r|====| 1/1 - 155.23s/it" (or "it/s" under one second per step).
        let pieces = text.replacingOccurrences(of: "\r", with: "\n").split(separator: "\n")
        var step: Double?
        for line in pieces {
            guard let r = line.range(of: #"[0-9]+/[0-9]+ - [0-9.]+(s/it|it/s)"#, options: .regularExpression) else { continue }
            let m = line[r]
            let value = m.split(separator: " ").last!
            if value.hasSuffix("s/it"), let v = Double(value.dropLast(4)) { step = v }
            if value.hasSuffix("it/s"), let v = Double(value.dropLast(4)), v > 0 { step = 1 / v }
        }
        for line in pieces where line.contains("sampling completed") || line.contains("loading tensors completed")
            || line.contains("get_learned_condition completed") || line.contains("decode_first_stage completed") {
            print("sd.cpp: \(line.trimmingCharacters(in: .whitespaces))")
        }
        guard let step else { throw BaselineError(description: "no s/it progress line in sd.cpp's output:\n\(text.suffix(3000))") }
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        return (step, usage.ru_maxrss)
    }

    static func peakRSSKiB() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss
    }

    /// FluxInputs from `dreamsr forward flux`'s tensor names.
    static func fluxInputs(_ t: [String: Tensor]) throws -> FluxInputs {
        for n in ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids"]
        where t[n] == nil {
            throw ValidationError("inputs lack '\(n)'")
        }
        func ids(_ x: Tensor) -> Tensor { x.rank == 3 ? x.reshaped([x.shape[1], x.shape[2]]) : x }
        return FluxInputs(hiddenStates: t["hidden_states"]!, encoderHiddenStates: t["encoder_hidden_states"]!,
                          pooledProjections: t["pooled_projections"]!, timestep: t["timestep"]!.toArray(),
                          guidance: t["guidance"]?.toArray(), imgIds: ids(t["img_ids"]!), txtIds: ids(t["txt_ids"]!))
    }
}
