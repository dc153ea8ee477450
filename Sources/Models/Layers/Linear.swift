import Checkpoints
import Tensor

/// Where a layer's weight lives: already in memory as float32, or lazily in a checkpoint (converted per call, so a
/// bf16 model never has a whole f32 copy in memory).
public enum LayerWeight: Sendable {
    case resident(Tensor)
    case lazy(WeightSource)

    public var shape: [Int] {
        switch self {
        case .resident(let t): t.shape
        case .lazy(let s): s.shape
        }
    }

    /// float32 values (a view or a temporary copy; drop it after use).
    public func materialize() -> Tensor {
        switch self {
        case .resident(let t): t
        case .lazy(let s): s.materialize()
        }
    }

    /// Converts a lazy weight to a resident float32 tensor now (no-op for resident ones).
    public func resident() -> LayerWeight { .resident(materialize()) }
}

/// An unmerged low-rank adapter on a Linear: `y[:, range] += scale · (x Aᵀ) Bᵀ` for each part. A fused layer (FLUX
/// qkv, linear1) carries one part per original projection, each writing its own output row block. A and B are
/// bias-free Linears over the stored weights (`LayerWeight.stored`): bf16 / f16 / FP8 / GGUF tensors run the
/// low-precision kernels on the mapped bytes, float32 files are zero-copy views.
public struct LoRAAdapter: Sendable {
    public struct Part: Sendable {
        /// First output feature this part writes.
        public let outputOffset: Int
        /// `lora_A` / `lora_down`: `[rank, in]`.
        public let downLayer: Linear
        /// `lora_B` / `lora_up`: `[outCount, rank]`.
        public let upLayer: Linear
        public let scale: Float

        public init(outputOffset: Int, down: Linear, up: Linear, scale: Float) {
            precondition(down.outFeatures == up.inFeatures && down.bias == nil && up.bias == nil,
                         "LoRA shapes down \(down.weight.shape) / up \(up.weight.shape) do not chain")
            self.outputOffset = outputOffset
            self.downLayer = down
            self.upLayer = up
            self.scale = scale
        }

        /// A part over resident float32 tensors.
        public init(outputOffset: Int, down: Tensor, up: Tensor, scale: Float) {
            precondition(down.rank == 2 && up.rank == 2 && down.shape[0] == up.shape[1],
                         "LoRA shapes down \(down.shape) / up \(up.shape) do not chain")
            self.init(outputOffset: outputOffset, down: Linear(name: "lora_A", weight: .resident(down), bias: nil),
                      up: Linear(name: "lora_B", weight: .resident(up), bias: nil), scale: scale)
        }

        public var rank: Int { downLayer.outFeatures }
        /// float32 values of A (a view, or a temporary copy of a stored narrower weight).
        public var down: Tensor { downLayer.weight.materialize() }
        /// float32 values of B (a view, or a temporary copy of a stored narrower weight).
        public var up: Tensor { upLayer.weight.materialize() }
    }

    public var parts: [Part]
    public init(parts: [Part]) { self.parts = parts }
}

/// Supplies LoRA adapters by canonical Linear name (e.g. `double_blocks.3.img_attn.qkv`), or nil for none.
public protocol LoRAProvider: Sendable {
    func adapter(for linear: String) -> LoRAAdapter?
}

/// A PyTorch-layout Linear (`weight [out, in]`, optional bias); optionally with a LoRA adapter. Float32 weights run
/// sgemm; a lazy weight stored narrower than float32 in a mapped file (GGUF blocks, FP8, bf16, f16) runs the
/// low-precision GEMM on the stored bytes (`kernelPath` says which), in `precision`.
public struct Linear: @unchecked Sendable {
    /// Canonical name without `.weight` (used for LoRA lookup and errors).
    public let name: String
    public let weight: LayerWeight
    public let bias: Tensor?
    /// Activation precision of the low-precision kernels (float32 weights always run sgemm in float32).
    public let precision: ComputePrecision
    /// How the calls ran so far (shared by copies of this layer).
    public let calls = LinearCallCounts()
    let lowPrecision: InPlaceWeight?

    public init(name: String, weight: LayerWeight, bias: Tensor?, precision: ComputePrecision = .fp32) {
        precondition(weight.shape.count == 2, "\(name): weight must be 2-D, got \(weight.shape)")
        if let bias { precondition(bias.count == weight.shape[0], "\(name): bias \(bias.shape) vs weight \(weight.shape)") }
        self.name = name
        self.weight = weight
        self.bias = bias
        self.precision = precision
        if case .lazy(let source) = weight {
            lowPrecision = InPlaceWeight(source, precision: precision)
        } else {
            lowPrecision = nil
        }
    }

    /// The kernel each call runs: `sgemm f32` (resident float32), `<type> converted to f32 per call + sgemm` (a lazy
    /// weight the low-precision GEMM cannot read in place), or the in-place low-precision path.
    public var kernelPath: String {
        if let lowPrecision { return lowPrecision.kernelPath }
        if case .lazy(let s) = weight {
            return "\(s.dtypes.map(\.rawValue).sorted().joined(separator: "+")) converted to f32 per call + sgemm"
        }
        return "sgemm f32"
    }

    public var outFeatures: Int { weight.shape[0] }
    public var inFeatures: Int { weight.shape[1] }

    /// `x [m, in] → [m, out]`.
    public func callAsFunction(_ x: Tensor, lora: LoRAAdapter? = nil) -> Tensor {
        let m = x.count / inFeatures
        precondition(m * inFeatures == x.count, "\(name): input \(x.shape) does not have \(inFeatures) features")
        if let lowPrecision {
            calls.record(inPlace: true)
            let y = lowPrecision.linear(x.reshaped([m, inFeatures]), bias: bias)
            if let lora {
                x.withUnsafePointer { xp in
                    y.withUnsafeMutablePointer { yp in
                        applyLoRA(x: xp, ldx: inFeatures, rows: m, y: yp, ldy: outFeatures, lora: lora)
                    }
                }
            }
            return y
        }
        let y = Tensor(zeros: [m, outFeatures])
        x.withUnsafePointer { xp in
            y.withUnsafeMutablePointer { yp in apply(x: xp, ldx: inFeatures, rows: m, y: yp, ldy: outFeatures, lora: lora) }
        }
        return y
    }

    /// Pointer form with row strides.
    public func apply(x: UnsafePointer<Float>, ldx: Int, rows: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                      lora: LoRAAdapter? = nil) {
        if let lowPrecision {
            calls.record(inPlace: true)
            // Gather strided rows into a contiguous input and scatter the result (O(rows·(in+out)), next to the GEMM).
            let (inF, outF) = (inFeatures, outFeatures)
            let xc = Tensor(zeros: [rows, inF])
            xc.withUnsafeMutablePointer { d in
                for r in 0..<rows { (d + r * inF).update(from: x + r * ldx, count: inF) }
            }
            let yc = lowPrecision.linear(xc, bias: bias)
            yc.withUnsafePointer { s in
                for r in 0..<rows { (y + r * ldy).update(from: s + r * outF, count: outF) }
            }
        } else {
            if case .lazy = weight { calls.record(inPlace: false) }
            let w = weight.materialize()
            w.withUnsafePointer { wp in
                let run = { (b: UnsafePointer<Float>?) in
                    TransformerOps.linear(x: x, ldx: ldx, rows: rows, weight: wp, inFeatures: inFeatures,
                                          outFeatures: outFeatures, bias: b, y: y, ldy: ldy)
                }
                if let bias { bias.withUnsafePointer { run($0) } } else { run(nil) }
            }
        }
        guard let lora else { return }
        applyLoRA(x: x, ldx: ldx, rows: rows, y: y, ldy: ldy, lora: lora)
    }

    /// `y[:, part] += scale · (x Aᵀ) Bᵀ` for each part of `lora`. Float32 B accumulates into y with sgemm (β = 1);
    /// a stored narrower B runs in place into a temporary that is scaled and added.
    private func applyLoRA(x: UnsafePointer<Float>, ldx: Int, rows: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                           lora: LoRAAdapter) {
        for p in lora.parts {
            let r = p.rank, n = p.upLayer.outFeatures
            precondition(p.downLayer.inFeatures == inFeatures && p.outputOffset + n <= outFeatures,
                         "\(name): LoRA part \(p.downLayer.weight.shape)/\(p.upLayer.weight.shape) at \(p.outputOffset) does not fit \(weight.shape)")
            let t = Tensor(zeros: [rows, r])
            t.withUnsafeMutablePointer { tp in p.downLayer.apply(x: x, ldx: ldx, rows: rows, y: tp, ldy: r) }
            if case .resident(let up) = p.upLayer.weight {
                t.withUnsafePointer { tp in
                    up.withUnsafePointer { upp in
                        BLAS.sgemm(transA: false, transB: true, m: rows, n: n, k: r, alpha: p.scale,
                                   a: tp, lda: r, b: upp, ldb: r, beta: 1, c: y + p.outputOffset, ldc: ldy)
                    }
                }
            } else {
                t.scale(by: p.scale)
                let u = p.upLayer(t)
                u.withUnsafePointer { up in
                    for row in 0..<rows {
                        let dst = y + row * ldy + p.outputOffset, src = up + row * n
                        for j in 0..<n { dst[j] += src[j] }
                    }
                }
            }
        }
    }

    /// The same layer with its weight converted to resident float32.
    public func makingResident() -> Linear {
        Linear(name: name, weight: weight.resident(), bias: bias, precision: precision)
    }
}

/// FLUX's MLPEmbedder / diffusers TimestepEmbedding: Linear → SiLU → Linear.
public struct MLPEmbedder: Sendable {
    public let inLayer: Linear
    public let outLayer: Linear

    public init(inLayer: Linear, outLayer: Linear) {
        self.inLayer = inLayer
        self.outLayer = outLayer
    }

    public func callAsFunction(_ x: Tensor, lora: (any LoRAProvider)? = nil) -> Tensor {
        let h = inLayer(x, lora: lora?.adapter(for: inLayer.name))
        TransformerOps.silu(h)
        return outLayer(h, lora: lora?.adapter(for: outLayer.name))
    }
}
