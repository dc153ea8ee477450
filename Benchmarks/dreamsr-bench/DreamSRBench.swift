import ArgumentParser
import Checkpoints
import Foundation
import Models
import Tensor

/// `dreamsr-bench dreamsr-step`: one DreamSR step (main DiT + ControlNet + context cross-attention, LoRA off) at full
/// FLUX width on one 512 px patch (1024 image tokens, 512 T5 tokens per prompt), random weights, against the PyTorch
/// reference (tools/dreamsr_step_bench_reference.py, fp32 CPU) run first in the same invocation with the same thread
/// count. Depths are configurable because full FLUX + ControlNet in fp32 needs ~60 GB; the ratio is per step.
struct DreamSRStepBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dreamsr-step",
        abstract: "One DreamSR step: Swift engine vs the PyTorch reference (ratio printed).")

    @Option(help: "Main double blocks.") var double = 1
    @Option(help: "Main single blocks.") var single = 1
    @Option(help: "ControlNet depth.") var depth = 1
    @Option(help: "Image tokens (1024 = 512 px patch).") var imgTokens = 1024
    @Option(help: "T5 tokens per prompt.") var txtTokens = 512
    @Option(help: "Threads for both engines (0: library default).") var threads = 0
    @Option(help: "Timed repeats (after one warm-up).") var repeats = 2
    @Option(help: "Python with torch + diffusers.") var python = ReferencePython.defaultPath
    @Option(help: "Scratch folder for weights and tensors.") var dir = NSTemporaryDirectory() + "dreamsr-step-bench"

    func run() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/dreamsr_step_bench_reference.py")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script.path, "--dir", dir, "--double", "\(double)", "--single", "\(single)", "--depth", "\(depth)",
                       "--img-tokens", "\(imgTokens)", "--txt-tokens", "\(txtTokens)", "--threads", "\(threads)",
                       "--repeats", "\(repeats)"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ValidationError("baseline script failed (\(p.terminationStatus))") }
        let timing = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/timing.json"))) as! [String: Any]
        let torchTimes = (timing["seconds"] as! [Double])

        if threads > 0 { BLASRuntime.setThreads(threads) }
        let flux = try FluxTransformer.load(from: CheckpointSet(url: URL(fileURLWithPath: dir + "/flux.safetensors")))
        let model = try DreamSRModel.load(checkpoint: URL(fileURLWithPath: dir + "/dreamsr.safetensors"), flux: flux)
        let f = try SafeTensorsFile(url: URL(fileURLWithPath: dir + "/inputs.safetensors"))
        func t(_ n: String) throws -> Tensor { try f.tensor(named: n) }
        let inp = DreamSRInputs(
            hiddenStates: try t("hidden_states"), condLatents: try t("cond_latents"),
            encoderHiddenStates: try t("encoder_hidden_states"), pooledProjections: try t("pooled_projections"),
            localEncoderHiddenStates: try t("local_encoder_hidden_states"),
            localPooledProjections: try t("local_pooled_projections"), timestep: try t("timestep").toArray(),
            guidance: try t("guidance").toArray(), imgIds: try t("img_ids"), txtIds: try t("txt_ids"),
            localTxtIds: try t("local_txt_ids"))
        var swiftTimes: [Double] = []
        var out: Tensor?
        for i in 0...repeats {
            let t0 = Date()
            out = try model.velocity(inp, lora: false)
            if i > 0 { swiftTimes.append(Date().timeIntervalSince(t0)) }
        }
        let ref = try SafeTensorsFile(url: URL(fileURLWithPath: dir + "/outputs.safetensors")).tensor(named: "sample")
        let v = ref.toArray()
        let relErr = out!.maxAbsDifference(ref) / max((v.max() ?? 0) - (v.min() ?? 0), 1e-12)
        let s = swiftTimes.min()!, r = torchTimes.min()!
        print(String(format: "dreamsr-step (double %d, single %d, controlnet %d, img %d, txt %d, threads %@): "
                     + "swift %.3f s, pytorch %.3f s, ratio swift/pytorch %.2f (max rel err %.1e; kernels %@, BLAS %@)",
                     double, single, depth, imgTokens, txtTokens, threads > 0 ? "\(threads)" : "default", s, r, s / r,
                     relErr, KernelISA.active.description, BLASRuntime.coreName))
    }
}
