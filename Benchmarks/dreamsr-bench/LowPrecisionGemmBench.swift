import ArgumentParser
import Foundation
import Tensor

/// `dreamsr-bench lowprec-gemm`: FLUX linear-layer shapes with bf16 and Q8_0 weights (our kernels, split across
/// `--threads` workers) against OpenBLAS sgemm float32 on the same shapes and thread count, in the same run.
/// Run with `OPENBLAS_CORETYPE=SkylakeX` in the command's environment (OpenBLAS 0.3.21 otherwise picks its slow
/// Prescott kernels on this CPU; see platform-notes).
struct LowPrecisionGemmBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lowprec-gemm",
        abstract: "Linear layers with bf16 / Q8_0 weights vs OpenBLAS sgemm float32 (GFLOP/s and ratio printed)."
    )

    @Option(help: "Threads for OpenBLAS and for our kernels.") var threads: Int = 2
    @Option(help: "Rows of the activations (tokens): 1536 = 1024 image + 512 text.") var tokens: Int = 1536
    @Option(help: "Comma-separated KxN shapes (in x out features).")
    var shapes: String = "3072x3072,3072x9216,3072x12288,12288x3072"
    @Option(help: "Timed rounds (median; one warm-up round first).") var repeats: Int = 5
    @Option(help: "Attention heads x head dim for the attention line (0 heads: skip it).") var heads: Int = 24
    @Option(help: "Head dimension for the attention line.") var headDim: Int = 128

    func run() throws {
        let parsed = try shapes.split(separator: ",").map { s -> (k: Int, n: Int) in
            let p = s.split(separator: "x").compactMap { Int($0) }
            guard p.count == 2, p[0] > 0, p[1] > 0 else { throw ValidationError("bad shape '\(s)' (want KxN)") }
            return (p[0], p[1])
        }
        guard threads > 0, tokens > 0, repeats > 0 else { throw ValidationError("threads, tokens, repeats must be > 0") }
        BLASRuntime.setThreads(threads)
        let workers = ParallelWorkers(count: threads)
        defer { workers.shutdown() }
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?
            .split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
        let probe = try WeightMatrix.encoded(Tensor(zeros: [1, 32]), as: .q8_0)
        let probeBf16 = try WeightMatrix.encoded(Tensor(zeros: [1, 32]), as: .bf16)
        print("lowprec-gemm: M=\(tokens) tokens, \(threads) threads, kernels \(KernelISA.active) (bf16: "
              + "\(probeBf16.kernelVariant()), q8_0: \(probe.kernelVariant())), OpenBLAS \(BLASRuntime.coreName), "
              + "load average \(load)")
        if BLASRuntime.coreName.lowercased() == "prescott" {
            print("warning: OpenBLAS runs its Prescott kernels; set OPENBLAS_CORETYPE=SkylakeX for a fair baseline")
        }

        var state: UInt64 = 0x5EED
        func uniform(_ shape: [Int], scale: Float) -> Tensor {
            Tensor(shape: shape) { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
        }
        /// Median seconds of each body over `repeats` rounds, the bodies interleaved within a round (A B C, A B C,
        /// ...) so a burst of load from other processes hits all of them alike; one warm-up round first.
        func medians(_ bodies: [() -> Tensor]) -> [(seconds: Double, result: Tensor)] {
            var results = bodies.map { $0() }
            var ts = [[Double]](repeating: [], count: bodies.count)
            for _ in 0..<repeats {
                for (i, body) in bodies.enumerated() {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    results[i] = body()
                    ts[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                }
            }
            return zip(ts, results).map { ($0.sorted()[$0.count / 2], $1) }
        }
        func relL2(_ a: Tensor, _ b: Tensor) -> Double {
            var num = 0.0, den = 0.0
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    for i in 0..<a.count {
                        let d = Double(a[i] - b[i])
                        num += d * d
                        den += Double(b[i]) * Double(b[i])
                    }
                }
            }
            return (num / max(den, 1e-300)).squareRoot()
        }

        print("shape (MxKxN)          sgemm f32 s  GFLOP/s | bf16 s  GFLOP/s  ratio  relL2   | q8_0 s  GFLOP/s  ratio  relL2")
        for (k, n) in parsed {
            let x = uniform([tokens, k], scale: 1), w = uniform([n, k], scale: 1 / Float(k).squareRoot())
            let bias = uniform([n], scale: 0.1)
            let wBf16 = try WeightMatrix.encoded(w, as: .bf16, name: "bench.bf16")
            let wQ8 = try WeightMatrix.encoded(w, as: .q8_0, name: "bench.q8_0")
            let flops = 2.0 * Double(tokens) * Double(k) * Double(n)
            let m = medians([
                { TransformerOps.linear(x, weight: w, bias: bias) },
                { TransformerOps.linear(x, wBf16, bias: bias, workers: workers) },
                { TransformerOps.linear(x, wQ8, bias: bias, workers: workers) },
            ])
            let (f32, bf, q8) = (m[0], m[1], m[2])
            func g(_ s: Double) -> Double { flops / s / 1e9 }
            print(String(format: "%-22@ %8.3f  %7.1f | %6.3f  %7.1f  %5.2fx  %.1e | %6.3f  %7.1f  %5.2fx  %.1e",
                         "\(tokens)x\(k)x\(n)" as NSString, f32.seconds, g(f32.seconds),
                         bf.seconds, g(bf.seconds), bf.seconds / f32.seconds, relL2(bf.result, f32.result),
                         q8.seconds, g(q8.seconds), q8.seconds / f32.seconds, relL2(q8.result, f32.result)))
        }
        if heads > 0 {
            // joint attention over all tokens (q, k, v from one [tokens, 3 * heads * headDim] projection)
            let width = heads * headDim, ld = 3 * width
            let qkv = uniform([tokens, ld], scale: 1)
            func attend(bf16: Bool) -> Tensor {
                let out = Tensor(zeros: [tokens, width])
                qkv.withUnsafePointer { q in
                    out.withUnsafeMutablePointer { o in
                        if bf16 {
                            TransformerOps.attentionBF16(q: q, ldq: ld, k: q + width, ldk: ld, v: q + 2 * width,
                                                         ldv: ld, out: o, ldo: width, queries: tokens, keys: tokens,
                                                         heads: heads, headDim: headDim, workers: workers)
                        } else {
                            TransformerOps.attention(q: q, ldq: ld, k: q + width, ldk: ld, v: q + 2 * width,
                                                     ldv: ld, out: o, ldo: width, queries: tokens, keys: tokens,
                                                     heads: heads, headDim: headDim)
                        }
                    }
                }
                return out
            }
            let flops = 4.0 * Double(tokens) * Double(tokens) * Double(width)
            let m = medians([{ attend(bf16: false) }, { attend(bf16: true) }])
            let (f32, bf) = (m[0], m[1])
            print(String(format: "attention %d heads x %d, %d tokens: f32 %.3f s (%.1f GFLOP/s) | bf16 %.3f s (%.1f GFLOP/s)  %.2fx  relL2 %.1e",
                         heads, headDim, tokens, f32.seconds, flops / f32.seconds / 1e9, bf.seconds,
                         flops / bf.seconds / 1e9, bf.seconds / f32.seconds, relL2(bf.result, f32.result)))
        }
        print("ratio = our time / sgemm time (lower is faster); relL2 = relative L2 difference to the float32 result")
    }
}
