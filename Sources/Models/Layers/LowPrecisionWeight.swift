import CKernels
import Checkpoints
import Foundation
import Tensor

/// Activation precision of a model's matrix products: `fp32` (float32 activations; low-precision weights are
/// dequantized a panel at a time and multiplied with sgemm) or `bf16` (activations rounded to bf16, weights in bf16
/// panels or read directly when stored as bf16, `vdpbf16ps` where the CPU has it; Q8_0 weights with the int8 kernel,
/// activations quantized per block of 32 as ggml does, `vpdpbusd`; attention in bf16 too; float32 accumulation and
/// softmax everywhere).
public enum ComputePrecision: String, Sendable, CaseIterable, CustomStringConvertible {
    case fp32, bf16

    public var description: String { rawValue }

    /// Parses a setting's value (`fp32`, `bf16`, or `auto`: `forThisCPU`); the error names `key` and the accepted
    /// values.
    public init(parsing value: String, key: String) throws {
        if value.lowercased() == "auto" { self = .forThisCPU; return }
        guard let p = ComputePrecision(rawValue: value.lowercased()) else {
            throw CheckpointError(.badConfig, "\(key): '\(value)' is not a precision (fp32, bf16 or auto)")
        }
        self = p
    }

    /// `bf16` where the bf16 / int8 kernels have their dot-product instructions (AVX512_BF16), `fp32` elsewhere (on
    /// AVX2-only CPUs they are slower than float32 sgemm: BENCHMARKS.md, issue 14).
    public static var forThisCPU: ComputePrecision { KernelISA.hasBF16DotProducts ? .bf16 : .fp32 }
}

/// A Linear weight stored narrower than float32 (GGUF block types, FP8, bf16, f16) in a memory-mapped file, read in
/// place by `TransformerOps.linear`: each call dequantizes panels of rows inside the GEMM, never the whole matrix.
struct LowPrecisionWeight: @unchecked Sendable {
    let matrix: WeightMatrix
    let panelPrecision: PanelPrecision
    /// Per-tensor scale of ComfyUI-scaled FP8 (`scale_weight`); it multiplies the activations (1: none).
    let scale: Float
    let dtype: TensorDType

    /// The in-place form of `source` for `precision`, or nil when the weight is not a single untransformed 2-D tensor
    /// of a supported narrow type (then the Linear converts it per call as before).
    init?(_ source: WeightSource, precision: ComputePrecision) {
        guard source.shape.count == 2, let view = source.rawView, view.shape == source.shape else { return nil }
        let dtype = view.dtype
        let dequantizer: RowDequantizer
        switch dtype {
        case .f8e4m3:
            dequantizer = RowDequantizer(name: dtype.rawValue, blockElements: 1, blockBytes: 1,
                                         function: ck_lp_dequant_row_fp8_e4m3)
        case .f8e5m2:
            dequantizer = RowDequantizer(name: dtype.rawValue, blockElements: 1, blockBytes: 1,
                                         function: ck_lp_dequant_row_fp8_e5m2)
        default:
            guard dtype != .f32, let id = dtype.ggmlTypeID, let f = ck_lp_row_dequantizer(id) else { return nil }
            dequantizer = RowDequantizer(name: dtype.rawValue, blockElements: dtype.blockSize,
                                         blockBytes: dtype.blockBytes, function: f)
        }
        // bf16 precision reads bf16 weights directly and Q8_0 weights with the int8 kernel (activations quantized per
        // block of 32 as ggml does, `vpdpbusd`); every other type goes through dequantized panels.
        let format: WeightMatrix.Format = switch (precision, dtype) {
        case (.bf16, .bf16): .bf16
        case (.bf16, .q8_0): .q8_0
        default: .dequantized(dequantizer)
        }
        guard let m = try? WeightMatrix(name: source.name, format: format, rows: source.shape[0], cols: source.shape[1],
                                        bytes: view.bytes, owner: source.parts[0].file) else { return nil }
        matrix = m
        panelPrecision = precision == .bf16 ? .bf16 : .float32
        scale = view.scale
        self.dtype = dtype
    }

    /// `x [m, cols] → [m, rows]` (+ bias).
    func linear(_ x: Tensor, bias: Tensor?) -> Tensor {
        var inp = x
        if scale != 1 {
            let scaled = x.copy(), count = x.count, s = scale
            scaled.withUnsafeMutablePointer { ck_scale_inplace($0, s, count) }
            inp = scaled
        }
        let k = matrix.cols
        let m = inp.count / k
        let x2 = inp.shape.count == 2 ? inp : inp.reshaped([m, k])
        if panelPrecision == .float32 {
            // sgemm per panel (OpenBLAS threads); our workers would only add a second pool.
            return TransformerOps.linear(x2, matrix, bias: bias, panelPrecision: .float32)
        }
        return ComputeWorkers.shared.run { workers in
            TransformerOps.linear(x2, matrix, bias: bias, workers: workers, panelPrecision: .bf16)
        }
    }

    /// How the product runs, e.g. `Q8_0 in place: float32 panels + sgemm` or `BF16 in place: bf16 kernel avx512-bf16`.
    var kernelPath: String {
        switch (panelPrecision, matrix.format) {
        case (.float32, _): "\(dtype.rawValue) in place: float32 panels + sgemm"
        case (.bf16, .bf16): "\(dtype.rawValue) in place: bf16 kernel \(matrix.kernelVariant())"
        case (.bf16, .q8_0): "\(dtype.rawValue) in place: int8 kernel \(matrix.kernelVariant()) (activations Q8_0 per block)"
        case (.bf16, _): "\(dtype.rawValue) in place: bf16 panels + bf16 kernel \(matrix.kernelVariant())"
        }
    }
}

/// One process-wide pool of compute threads for the bf16 kernels (as many as OpenBLAS uses, read at first use).
/// A caller that finds it busy (another model running at the same time) runs on its own thread instead of waiting.
final class ComputeWorkers: @unchecked Sendable {
    static let shared = ComputeWorkers()
    private let lock = NSLock()
    private var pool: ParallelWorkers?

    func run<R>(_ body: (ParallelWorkers?) -> R) -> R {
        guard lock.try() else { return body(nil) }
        defer { lock.unlock() }
        if pool == nil {
            let n = max(1, min(BLASRuntime.threads, ProcessInfo.processInfo.activeProcessorCount))
            if n > 1 { pool = ParallelWorkers(count: n) }
        }
        return body(pool)
    }
}

/// Counts of how a Linear's calls ran (shared by copies of the layer): in place on stored low-precision bytes, or
/// through a float32 copy of a lazily converted weight.
public final class LinearCallCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var inPlaceCount = 0
    private var convertedCount = 0

    public init() {}

    /// Calls that ran the low-precision kernel on the stored bytes.
    public var inPlace: Int { lock.withLock { inPlaceCount } }
    /// Calls that first converted a stored (non-float32-view) weight to a float32 tensor.
    public var converted: Int { lock.withLock { convertedCount } }

    func record(inPlace: Bool) {
        lock.withLock { if inPlace { inPlaceCount += 1 } else { convertedCount += 1 } }
    }
}
