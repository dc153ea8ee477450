import ArgumentParser
import Checkpoints
import Foundation
import Models
import Tensor

/// `dreamsr-bench flux-blocks`: one full-size FLUX double block and one single block (random weights) in our engine
/// versus PyTorch (diffusers blocks, fp32 and bf16 on CPU) in the same run with the same thread count.
struct FluxBlocksBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flux-blocks",
        abstract: "FLUX double + single block: dreamsr engine vs PyTorch fp32 CPU (ratio printed)."
    )

    @Option(help: "Threads for OpenBLAS and torch.set_num_threads.") var threads: Int = 2
    @Option(help: "Image tokens.") var img: Int = 1024
    @Option(help: "Text tokens.") var txt: Int = 512
    @Option(help: "Timed repetitions (median; one warm-up run first).") var repeats: Int = 3
    @Option(help: "Python with torch + diffusers for the baseline.") var python: String = ReferencePython.defaultPath
    @Option(help: "Baseline script.") var script: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("flux_blocks_baseline.py").path
    @Option(help: "Our precision: fp32 (float32 weights, sgemm) or bf16 (the weights written as a bf16 safetensors file and read in place, bf16 kernels and attention).")
    var precision: String = "fp32"
    @Flag(help: "Skip the PyTorch bf16 timing.") var noBf16 = false
    @Flag(help: "Skip the PyTorch baseline.") var skipBaseline = false

    func run() throws {
        BLASRuntime.setThreads(threads)
        var config = FluxConfig.dev
        config.depth = 1
        config.depthSingle = 1
        print("flux-blocks: dim \(config.hiddenSize), \(config.numHeads) heads, \(img) img + \(txt) txt tokens, \(threads) threads, "
              + "kernels \(KernelISA.active), OpenBLAS \(BLASRuntime.coreName)")

        // Random weights (uniform, ±1/√fan_in), norm scales 1.
        var tensors: [String: Tensor] = [:]
        var state: UInt64 = 0x1234_5678
        for (name, shape) in FluxWeightMap.canonicalShapes(config)
        where name.hasPrefix("double_blocks.0.") || name.hasPrefix("single_blocks.0.") {
            if name.hasSuffix(".scale") { tensors[name] = Tensor(shape: shape) { _ in 1 }; continue }
            let fanIn = Float(shape.count == 2 ? shape[1] : config.hiddenSize)
            let a = 1 / fanIn.squareRoot()
            tensors[name] = Tensor(shape: shape) { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * a
            }
        }
        let ours = try ComputePrecision(parsing: precision, key: "--precision")
        let weights: FluxWeights
        var keepAlive: CheckpointSet?
        if ours == .bf16 {
            // The same weights as a bf16 file (2-D weights bf16, norms and biases f32), mapped and read in place.
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("flux-blocks-bf16-\(getpid()).safetensors")
            defer { try? FileManager.default.removeItem(at: file) }
            try SafeTensorsWriter.write(tensors.keys.sorted().map { name in
                let t = tensors[name]!
                guard t.rank == 2 else { return .f32(name, t) }
                return SafeTensorsWriter.Entry(name: name, dtype: .bf16, shape: t.shape) { buf in
                    t.withUnsafeBufferPointer { src in
                        let dst = buf.bindMemory(to: UInt16.self)
                        for i in 0..<src.count {  // round to nearest even (finite values)
                            let b = src[i].bitPattern
                            dst[i] = UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
                        }
                    }
                }
            }, to: file)
            let set = try CheckpointSet(url: file)
            keepAlive = set
            var sources: [String: WeightSource] = [:]
            for name in tensors.keys {
                let (f, info) = set.locate(name)!
                sources[name] = WeightSource(name: name, parts: [.init(file: f, info: info)], transform: .none)
            }
            weights = FluxWeights(sources: sources, residentWeights: false, precision: .bf16)
        } else {
            weights = FluxWeights(tensors: tensors)
        }
        defer { withExtendedLifetime(keepAlive) {} }
        let double = try FluxDoubleBlock(weights: weights, prefix: "double_blocks.0.", config: config)
        let single = try FluxSingleBlock(weights: weights, prefix: "single_blocks.0.", config: config)

        let d = config.hiddenSize
        let seq = FluxSequence(batch: 1, imgTokens: img, txtTokens: txt)
        func randn(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape) { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(state >> 40) / Float(1 << 24) * 2 - 1
            }
        }
        let img0 = randn([img, d]), txt0 = randn([txt, d]), vec = randn([1, d])
        TransformerOps.silu(vec)
        let side = Int(Double(img).squareRoot())
        let ids = Tensor(zeros: [txt + img, 3])
        for i in 0..<img {
            ids[flat: (txt + i) * 3 + 1] = Float(i / max(side, 1))
            ids[flat: (txt + i) * 3 + 2] = Float(i % max(side, 1))
        }
        let rope = RopeTables(ids: ids, config: config)

        func timed(_ body: () -> Void) -> Double {
            body()
            var ts: [Double] = []
            for _ in 0..<max(1, repeats) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                body()
                ts.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            return ts.sorted()[ts.count / 2]
        }
        let oursDouble = timed {
            double.forward(img: img0.copy(), txt: txt0.copy(), siluVec: vec, rope: rope, seq: seq)
        }
        let oursSingle = timed {
            let joint = Tensor(zeros: [txt + img, d])
            joint.copyValues(from: txt0, count: txt * d, to: 0)
            joint.copyValues(from: img0, count: img * d, to: txt * d)
            single.forward(joint, siluVec: vec, rope: rope, seq: seq)
        }
        print(String(format: "dreamsr  double block %.3f s   single block %.3f s   (%@: %@)", oursDouble, oursSingle,
                     ours.description, double.imgQKV.kernelPath))
        guard !skipBaseline else { return }

        let obj = try BaselineProcess.lastLineJSON(python, [script, "--threads", "\(threads)", "--img", "\(img)",
                                                            "--txt", "\(txt)", "--repeats", "\(repeats)"]
                                                           + (noBf16 ? ["--no-bf16"] : []))
        guard let pd = obj["double_fp32"] as? Double, let ps = obj["single_fp32"] as? Double else {
            throw ValidationError("baseline result lacks double_fp32/single_fp32: \(obj)")
        }
        print(String(format: "torch    double block %.3f s   single block %.3f s   (fp32, torch %@)", pd, ps, obj["torch"] as? String ?? "?"))
        if let bd = obj["double_bf16"] as? Double, let bs = obj["single_bf16"] as? Double {
            print(String(format: "torch    double block %.3f s   single block %.3f s   (bf16)", bd, bs))
            print(String(format: "ratio vs torch bf16: double %.2fx  single %.2fx", oursDouble / bd, oursSingle / bs))
        }
        print(String(format: "ratio vs torch fp32 (dreamsr / torch, target <= 1.3): double %.2fx  single %.2fx",
                     oursDouble / pd, oursSingle / ps))
    }
}
