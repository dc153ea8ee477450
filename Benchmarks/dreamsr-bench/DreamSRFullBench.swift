import ArgumentParser
import Checkpoints
import DreamSRPipeline
import Foundation
import Models
import Tensor

/// `dreamsr-bench dreamsr-full`: the full-depth DreamSR model (FLUX transformer from any supported file + the DreamSR
/// checkpoint: 9-block dual-branch ControlNet, image MLPs, Context Cross-Attention, rank-256 LoRA) on one 512x512
/// patch (1024 image tokens; `--txt-tokens` T5 tokens for the global and for the local prompt): the restore pass
/// (LoRA on) and one texture step (LoRA off), seconds and peak RSS per precision, and from them the transformer time
/// of a whole job (`--job-lr WxH` at the checkpoint's scale): patches of its MultiDiffusion plan x (1 restore + steps
/// texture forwards). Issue 14, benchmark 3. Inputs are seeded random (the weights are too, from
/// tools/make_full_size_flux.py); no baseline exists (nothing else runs DreamSR).
struct DreamSRFullBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dreamsr-full",
        abstract: "Full-depth DreamSR restore + texture step on one 512x512 patch: seconds, peak RSS, job estimate."
    )

    @Option(help: "FLUX transformer weights (GGUF / safetensors).") var flux: String
    @Option(help: "DreamSR checkpoint (safetensors with dreamsr_config metadata).") var dreamsr: String
    @Option(help: "Precision(s), comma-separated: fp32, bf16.") var precision: String = "bf16"
    @Option(help: "Threads (OpenBLAS and our kernels).") var threads: Int = 2
    @Option(help: "T5 tokens per prompt (global and local).") var txtTokens: Int = 512
    @Option(help: "Image tokens (1024 = one 512x512 patch).") var imgTokens: Int = 1024
    @Option(help: "Job to estimate, LR width x height.") var jobLr: String = "640x360"
    @Option(help: "Texture steps of the job estimate.") var steps: Int = 16

    func run() throws {
        BLASRuntime.setThreads(threads)
        let precisions = try precision.split(separator: ",").map {
            try ComputePrecision(parsing: String($0), key: "--precision")
        }
        let lr = jobLr.split(separator: "x").compactMap { Int($0) }
        guard lr.count == 2 else { throw ValidationError("--job-lr must be WxH, got \(jobLr)") }
        print("dreamsr-full: \(flux) + \(dreamsr), \(imgTokens) img + 2 x \(txtTokens) txt tokens, \(threads) threads, "
              + "kernels \(KernelISA.active), OpenBLAS \(BLASRuntime.coreName)")
        var inp = Self.inputs(imgTokens: imgTokens, txtTokens: txtTokens)
        for p in precisions {
            let t0 = now()
            let fluxSet = try CheckpointSet(url: URL(fileURLWithPath: flux))
            let transformer = try FluxTransformer.load(from: fluxSet, precision: p)
            let model = try DreamSRModel.load(checkpoint: URL(fileURLWithPath: dreamsr), flux: transformer)
            inp.guidance = [Float(model.config.guidance)]
            let t1 = now()
            let bytes = fluxSet.prefetch() + (try CheckpointSet(url: URL(fileURLWithPath: dreamsr))).prefetch()
            let t2 = now()
            print(String(format: "%@: load %.1f s (peak RSS so far %.2f GiB), prefetch %.1f GiB in %.1f s", p.description,
                         t1 - t0, Double(FluxStepBench.peakRSSKiB()) / 1048576, Double(bytes) / 1073741824, t2 - t1))
            var s = now()
            let (_, zDR) = try model.restore(inp)
            let restore = now() - s
            var step = inp
            step.hiddenStates = zDR
            step.timestep = [Float(model.config.textureT)]
            s = now()
            let v = try model.velocity(step, lora: false)
            let texture = now() - s
            let finite = v.withUnsafeBufferPointer { $0.allSatisfy(\.isFinite) }
            let geometry = try DreamSRImageGeometry(lrWidth: lr[0], lrHeight: lr[1], scale: model.config.scale)
            let plan = try DreamSRPatchPlan(latentWidth: geometry.latentWidth, latentHeight: geometry.latentHeight,
                                            config: model.config)
            let job = Double(plan.count) * (restore + Double(steps) * texture)
            print(String(format: "%@: restore %.1f s, texture step %.1f s, peak RSS %.2f GiB, output finite: %@",
                         p.description, restore, texture, Double(FluxStepBench.peakRSSKiB()) / 1048576, finite ? "yes" : "NO"))
            print(String(format: "%@: job %dx%d -> %dx%d: %d patches x (1 restore + %d steps) = %.0f s = %.1f h of transformer time",
                         p.description, lr[0], lr[1], geometry.outWidth, geometry.outHeight, plan.count, steps, job, job / 3600))
        }
    }

    private func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Seeded inputs of one patch: normal latents, T5 states and CLIP pooled vectors; FLUX position ids.
    static func inputs(imgTokens: Int, txtTokens: Int) -> DreamSRInputs {
        var state: UInt64 = 0x5EED_0014
        func randn(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape) { _ in
                // Box-Muller on two uniform draws.
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let u1 = max(Float(state >> 40) / Float(1 << 24), 1e-7)
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let u2 = Float(state >> 40) / Float(1 << 24)
                return (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2)
            }
        }
        let side = Int(Double(imgTokens).squareRoot())
        let imgIds = Tensor(zeros: [imgTokens, 3])
        for i in 0..<imgTokens {
            imgIds[flat: i * 3 + 1] = Float(i / max(side, 1))
            imgIds[flat: i * 3 + 2] = Float(i % max(side, 1))
        }
        return DreamSRInputs(
            hiddenStates: randn([1, imgTokens, 64]), condLatents: randn([1, imgTokens, 64]),
            encoderHiddenStates: randn([1, txtTokens, 4096]), pooledProjections: randn([1, 768]),
            localEncoderHiddenStates: randn([1, txtTokens, 4096]), localPooledProjections: randn([1, 768]),
            timestep: [0.8], guidance: nil, imgIds: imgIds, txtIds: Tensor(zeros: [txtTokens, 3]),
            localTxtIds: Tensor(zeros: [txtTokens, 3]))
    }
}
