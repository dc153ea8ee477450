import CKernels
import COpenBLAS

/// The SIMD instruction set the C kernels dispatch to, chosen once at start-up (overridable with
/// `DREAMSR_KERNEL_ISA=avx512|avx2|scalar` or `KernelISA.force`).
public enum KernelISA: Int, Sendable, CustomStringConvertible {
    case scalar = 0, avx2 = 1, avx512 = 2

    public static var detected: KernelISA { KernelISA(rawValue: Int(ck_isa_detect().rawValue)) ?? .scalar }
    public static var active: KernelISA { KernelISA(rawValue: Int(ck_isa_active().rawValue)) ?? .scalar }

    /// Forces an ISA (clamped to what the CPU supports) and returns the one now active.
    @discardableResult
    public static func force(_ isa: KernelISA) -> KernelISA {
        KernelISA(rawValue: Int(ck_isa_force(ck_isa(rawValue: UInt32(isa.rawValue))).rawValue)) ?? .scalar
    }

    public var description: String { String(cString: ck_isa_name(ck_isa(rawValue: UInt32(rawValue)))) }

    /// Whether the bf16 / int8 kernels run on their dot-product instructions (AVX512_BF16 `vdpbf16ps`, with the
    /// AVX-512 variant active): where they do not, they emulate them and are slower than float32 sgemm.
    public static var hasBF16DotProducts: Bool { active == .avx512 && ck_cpu_has_avx512_bf16() != 0 }
}

/// OpenBLAS facts and settings for start-up logs and the `--threads` option.
public enum BLASRuntime {
    /// The OpenBLAS kernel family in use (e.g. "Prescott", "SkylakeX").
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }
    public static var threads: Int { Int(openblas_get_num_threads()) }
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
}
