import ArgumentParser
import Foundation
import Models
import Tensor

/// `dreamsr-bench text-encoders`: full-size CLIP-L text encode (77 tokens) and one full-size T5-XXL encoder block at
/// 512 tokens (random weights) in our engine versus PyTorch fp32 CPU in the same run with the same thread count.
struct TextEncodersBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text-encoders",
        abstract: "CLIP-L text encode + one T5-XXL block at 512 tokens: dreamsr engine vs PyTorch fp32 CPU (ratio printed)."
    )

    @Option(help: "Threads for OpenBLAS and torch.set_num_threads.") var threads: Int = 2
    @Option(help: "T5 tokens.") var t5Tokens: Int = 512
    @Option(help: "Timed repetitions (median; one warm-up run first).") var repeats: Int = 3
    @Option(help: "Python with torch + transformers for the baseline.") var python: String = ReferencePython.defaultPath
    @Option(help: "Baseline script.") var script: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("text_encoders_baseline.py").path
    @Flag(help: "Skip the PyTorch baseline.") var skipBaseline = false

    func run() throws {
        BLASRuntime.setThreads(threads)
        print("text-encoders: CLIP-L 77 tokens, T5-XXL 1 block at \(t5Tokens) tokens, \(threads) threads, "
              + "kernels \(KernelISA.active), OpenBLAS \(BLASRuntime.coreName)")
        var state: UInt64 = 0x9E37_79B9
        func random(_ shape: [Int], scale: Float) -> Tensor {
            Tensor(shape: shape) { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
        }
        func ones(_ n: Int) -> Tensor { Tensor(shape: [n]) { _ in 1 } }

        // CLIP-L
        let c = CLIPTextConfig.clipL
        var clipW: [String: Tensor] = [
            "embeddings.token_embedding.weight": random([c.vocabSize, c.hiddenSize], scale: 0.02),
            "embeddings.position_embedding.weight": random([c.maxPositions, c.hiddenSize], scale: 0.02),
            "final_layer_norm.weight": ones(c.hiddenSize), "final_layer_norm.bias": Tensor(zeros: [c.hiddenSize]),
        ]
        for i in 0..<c.numLayers {
            let p = "encoder.layers.\(i)."
            for n in ["layer_norm1", "layer_norm2"] {
                clipW[p + n + ".weight"] = ones(c.hiddenSize)
                clipW[p + n + ".bias"] = Tensor(zeros: [c.hiddenSize])
            }
            for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                clipW[p + "self_attn." + n + ".weight"] = random([c.hiddenSize, c.hiddenSize], scale: 0.036)
                clipW[p + "self_attn." + n + ".bias"] = Tensor(zeros: [c.hiddenSize])
            }
            clipW[p + "mlp.fc1.weight"] = random([c.intermediateSize, c.hiddenSize], scale: 0.036)
            clipW[p + "mlp.fc1.bias"] = Tensor(zeros: [c.intermediateSize])
            clipW[p + "mlp.fc2.weight"] = random([c.hiddenSize, c.intermediateSize], scale: 0.018)
            clipW[p + "mlp.fc2.bias"] = Tensor(zeros: [c.hiddenSize])
        }
        let clip = try CLIPTextEncoder(tensors: clipW, config: c)
        clipW = [:]
        var ids = [49406] + (0..<19).map { _ in Int.random(in: 0..<49000) }
        ids += Array(repeating: 49407, count: 77 - ids.count)

        // One T5-XXL block.
        var t = T5EncoderConfig.xxl
        t.numLayers = 1
        t.vocabSize = 128
        let p = "encoder.block.0.layer."
        var t5W: [String: Tensor] = [
            "shared.weight": random([t.vocabSize, t.dModel], scale: 1),
            "encoder.final_layer_norm.weight": ones(t.dModel),
            p + "0.layer_norm.weight": ones(t.dModel), p + "1.layer_norm.weight": ones(t.dModel),
            p + "0.SelfAttention.relative_attention_bias.weight": random([t.relativeAttentionNumBuckets, t.numHeads], scale: 1),
            p + "1.DenseReluDense.wi_0.weight": random([t.dFF, t.dModel], scale: 0.016),
            p + "1.DenseReluDense.wi_1.weight": random([t.dFF, t.dModel], scale: 0.016),
            p + "1.DenseReluDense.wo.weight": random([t.dModel, t.dFF], scale: 0.01),
        ]
        for n in ["q", "k", "v", "o"] { t5W[p + "0.SelfAttention." + n + ".weight"] = random([t.inner, t.dModel], scale: 0.016) }
        let t5 = try T5Encoder(tensors: t5W, config: t)
        t5W = [:]
        let t5IDs = (0..<t5Tokens).map { _ in Int.random(in: 0..<128) }

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
        let oursCLIP = timed { _ = clip.encode(ids) }
        let oursT5 = timed { _ = t5.encode(t5IDs) }
        print(String(format: "dreamsr  CLIP-L encode %.3f s   T5 block %.3f s", oursCLIP, oursT5))
        guard !skipBaseline else { return }

        let obj = try BaselineProcess.lastLineJSON(python, [script, "--threads", "\(threads)", "--t5-tokens", "\(t5Tokens)",
                                                            "--repeats", "\(repeats)"])
        guard let pc = obj["clip_fp32"] as? Double, let pt = obj["t5_block_fp32"] as? Double else {
            throw ValidationError("baseline result lacks clip_fp32/t5_block_fp32: \(obj)")
        }
        print(String(format: "torch    CLIP-L encode %.3f s   T5 block %.3f s   (fp32, torch %@)", pc, pt,
                     obj["torch"] as? String ?? "?"))
        print(String(format: "ratio (dreamsr / torch fp32): CLIP-L %.2fx  T5 block %.2fx", oursCLIP / pc, oursT5 / pt))
    }
}
