import CKernels

/// How a stored tensor's elements are encoded: the safetensors dtypes (raw values are their header names, FP8
/// included) and GGUF's ggml block types (raw values are ggml's type names; never valid in a safetensors header).
///
/// Elementwise types have `blockSize == 1`; block types pack `blockSize` values into `blockBytes` bytes
/// (ggml-common.h layouts), so a row of `n` values takes `n / blockSize * blockBytes` bytes.
public enum TensorDType: String, Sendable, CaseIterable {
    // safetensors
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    /// float8_e4m3fn (no infinities; 0x7f / 0xff are NaN; max 448) and float8_e5m2.
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    // ggml block types (GGUF)
    case q4_0 = "Q4_0", q4_1 = "Q4_1", q5_0 = "Q5_0", q5_1 = "Q5_1", q8_0 = "Q8_0"
    case q2_K = "Q2_K", q3_K = "Q3_K", q4_K = "Q4_K", q5_K = "Q5_K", q6_K = "Q6_K"

    /// Whether a safetensors header may use this dtype.
    public var isSafeTensors: Bool { blockSize == 1 }

    /// ggml's type id (`enum ggml_type`), for the types a GGUF file may hold here; nil for the others.
    public var ggmlTypeID: Int32? {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q5_0: 6
        case .q5_1: 7
        case .q8_0: 8
        case .q2_K: 10
        case .q3_K: 11
        case .q4_K: 12
        case .q5_K: 13
        case .q6_K: 14
        case .bf16: 30
        default: nil
        }
    }

    /// The dtype of a ggml type id, or nil when dreamsr does not read that type.
    public init?(ggmlTypeID id: Int32) {
        guard let t = TensorDType.allCases.first(where: { $0.ggmlTypeID == id }) else { return nil }
        self = t
    }

    /// Values per block (1 for elementwise types).
    public var blockSize: Int {
        if let id = ggmlTypeID { return Int(ck_qtype_block_size(id)) }
        return 1
    }

    /// Bytes per block (bytes per element for elementwise types).
    public var blockBytes: Int {
        if let id = ggmlTypeID { return Int(ck_qtype_block_bytes(id)) }
        switch self {
        case .f64, .i64: return 8
        case .i32: return 4
        case .i16: return 2
        default: return 1
        }
    }

    /// Bytes per element of an elementwise type; 0 for block types (use `byteCount(elements:)`).
    public var byteSize: Int { blockSize == 1 ? blockBytes : 0 }

    /// Bytes taken by `elements` values (nil when not a whole number of blocks or on overflow).
    public func byteCount(elements: Int) -> Int? {
        guard elements >= 0, elements % blockSize == 0 else { return nil }
        let (n, overflow) = (elements / blockSize).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : n
    }
}
