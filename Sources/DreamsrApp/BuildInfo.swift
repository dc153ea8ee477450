import CBuildInfo
import Tensor

/// What this binary is: version, the commit it was built from, the kernel ISA and BLAS it runs on. Printed by
/// `dreamsr --version`, logged at start-up and exported as `dreamsr_build_info`.
public enum BuildInfo {
    /// The release version (CHANGELOG.md).
    public static let version = "0.2.0"
    /// The git commit (set by scripts/build-release.sh; "unknown" for development builds).
    public static var commit: String { String(cString: dreamsr_build_commit()) }
    /// The SIMD variant the C kernels dispatch to on this CPU.
    public static var kernelISA: String { KernelISA.active.description }
    /// The OpenBLAS kernel family (e.g. "SkylakeX"; "Prescott" where OpenBLAS does not know the CPU).
    public static var blas: String { "OpenBLAS \(BLASRuntime.coreName)" }

    /// One line: `dreamsr 0.2.0 (commit abc1234; kernels avx512; OpenBLAS SkylakeX)`.
    public static var versionLine: String {
        "dreamsr \(version) (commit \(commit); kernels \(kernelISA); \(blas))"
    }
}
