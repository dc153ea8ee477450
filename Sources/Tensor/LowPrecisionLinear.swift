import CKernels

/// Converts one weight row of `count` values from its stored type to float32; a C function such as a GGUF block
/// dequantizer. Rows are `blockBytes` per `blockElements` values (FP8: 1 and 1; Q4_K: 144 and 256).
public struct RowDequantizer: Sendable {
    public typealias Function = @convention(c) (UnsafeRawPointer?, UnsafeMutablePointer<Float>?, Int64) -> Void
    public let name: String
    public let blockElements: Int
    public let blockBytes: Int
    public let function: Function

    public init(name: String, blockElements: Int, blockBytes: Int, function: Function) {
        self.name = name
        self.blockElements = blockElements
        self.blockBytes = blockBytes
        self.function = function
    }
}

/// A bad low-precision weight description (shape, format or bounds), with a message naming the weight.
public struct WeightMatrixError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(description: String) { self.description = description }
}

/// A `[rows, cols]` weight matrix (PyTorch Linear layout: `rows` = out features, `cols` = in features) stored in a
/// low-precision format and read in place: from a memory-mapped file (`owner` keeps the mapping alive) or from a
/// buffer made by `encoded(_:as:)`. No float32 copy of the whole matrix is ever made.
///
/// `@unchecked Sendable`: `base` is a raw pointer into read-only bytes that `owner` keeps alive; nothing writes them.
public struct WeightMatrix: @unchecked Sendable {
    public enum Format: Sendable, CustomStringConvertible {
        /// bfloat16, 2 bytes per value.
        case bf16
        /// ggml Q8_0 blocks: half scale + 32 int8 (34 bytes per 32 values); `cols` must be a multiple of 32.
        case q8_0
        /// Any other type, dequantized a panel of rows at a time inside the GEMM.
        case dequantized(RowDequantizer)

        public var description: String {
            switch self {
            case .bf16: "bf16"
            case .q8_0: "q8_0"
            case .dequantized(let d): d.name
            }
        }

        /// Bytes of one row of `cols` values, or nil when `cols` does not fill whole blocks.
        func rowBytes(cols: Int) -> Int? {
            switch self {
            case .bf16: return cols * 2
            case .q8_0: return cols % 32 == 0 ? cols / 32 * 34 : nil
            case .dequantized(let d):
                guard d.blockElements > 0, d.blockBytes > 0, cols % d.blockElements == 0 else { return nil }
                return cols / d.blockElements * d.blockBytes
            }
        }
    }

    public let name: String
    public let format: Format
    public let rows: Int
    public let cols: Int
    /// Bytes from the start of one row to the next (at least one row's size).
    public let rowStride: Int
    let base: UnsafeRawPointer
    /// Keeps `base` valid (the mapped file, or the buffer of an encoded matrix).
    let owner: AnyObject

    /// Describes `rows` x `cols` weights in `bytes` (owned by `owner`), rows `rowStride` bytes apart (default: packed).
    /// Throws when the shape does not fit the format or the rows would reach past `bytes`.
    public init(
        name: String, format: Format, rows: Int, cols: Int, bytes: UnsafeRawBufferPointer, owner: AnyObject,
        rowStride: Int? = nil
    ) throws {
        guard rows > 0, cols > 0 else {
            throw WeightMatrixError(description: "\(name): empty \(format) weight [\(rows), \(cols)]")
        }
        guard let rowBytes = format.rowBytes(cols: cols) else {
            throw WeightMatrixError(
                description: "\(name): \(cols) columns is not a whole number of \(format) blocks")
        }
        let stride = rowStride ?? rowBytes
        guard stride >= rowBytes else {
            throw WeightMatrixError(description: "\(name): row stride \(stride) < row size \(rowBytes) bytes")
        }
        let (span, overflow) = (rows - 1).multipliedReportingOverflow(by: stride)
        guard !overflow, span + rowBytes <= bytes.count, let base = bytes.baseAddress else {
            throw WeightMatrixError(
                description: "\(name): \(format) [\(rows), \(cols)] needs \(overflow ? "more than Int.max" : "\(span + rowBytes)") bytes, have \(bytes.count)")
        }
        if case .bf16 = format, UInt(bitPattern: base) % 2 != 0 || stride % 2 != 0 {
            throw WeightMatrixError(description: "\(name): bf16 rows must be 2-byte aligned")
        }
        self.name = name
        self.format = format
        self.rows = rows
        self.cols = cols
        self.rowStride = stride
        self.base = base
        self.owner = owner
    }

    /// Encodes float32 weights `[rows, cols]` as bf16 (round to nearest even) or Q8_0 (ggml's quantize_row_q8_0:
    /// d = max|w| / 127 stored as half, q = round(w / d)); for tests, benchmarks and weights converted at load.
    public static func encoded(_ weights: Tensor, as format: Format, name: String = "weight") throws -> WeightMatrix {
        precondition(weights.rank == 2, "encoded: weights must be 2-D, got \(weights.shape)")
        let rows = weights.shape[0], cols = weights.shape[1]
        guard let rowBytes = format.rowBytes(cols: cols) else {
            throw WeightMatrixError(description: "\(name): \(cols) columns is not a whole number of \(format) blocks")
        }
        let buffer = OwnedWeightBytes(count: rows * rowBytes)
        let dst = buffer.pointer
        switch format {
        case .bf16:
            let out = dst.bindMemory(to: UInt16.self, capacity: rows * cols)
            for i in 0..<(rows * cols) { out[i] = ck_f32_to_bf16_rne(weights.data[i]) }
        case .q8_0:
            for r in 0..<rows {
                for b in 0..<(cols / 32) {
                    let src = weights.data + r * cols + b * 32
                    let blk = dst + r * rowBytes + b * 34
                    var amax: Float = 0
                    var finite = true
                    for i in 0..<32 {
                        amax = max(amax, abs(src[i]))
                        finite = finite && src[i].isFinite
                    }
                    guard finite else {
                        throw WeightMatrixError(description: "\(name): row \(r), block \(b): non-finite value for q8_0")
                    }
                    guard amax / 127 <= Float(Float16.greatestFiniteMagnitude) else {
                        throw WeightMatrixError(
                            description: "\(name): row \(r), block \(b): scale \(amax / 127) exceeds the half range of q8_0")
                    }
                    let d = amax / 127
                    let id: Float = d != 0 ? 1 / d : 0
                    blk.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
                    for i in 0..<32 {
                        blk.storeBytes(of: Int8((src[i] * id).rounded()), toByteOffset: 2 + i, as: Int8.self)
                    }
                }
            }
        case .dequantized:
            throw WeightMatrixError(description: "\(name): encoding to \(format) is not supported")
        }
        return try WeightMatrix(name: name, format: format, rows: rows, cols: cols,
                                bytes: UnsafeRawBufferPointer(start: dst, count: rows * rowBytes), owner: buffer)
    }

    /// Calls `body` with the bytes of all rows (from the first row to the end of the last), e.g. to check or hash them.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let rowBytes = format.rowBytes(cols: cols)!
        return try withExtendedLifetime(owner) {
            try body(UnsafeRawBufferPointer(start: base, count: (rows - 1) * rowStride + rowBytes))
        }
    }

    /// The kernel variant `isa` runs for this format (e.g. "avx512-bf16", "avx512-vnni", "avx2", "scalar").
    public func kernelVariant(_ isa: KernelISA = .active) -> String {
        switch format {
        case .q8_0: String(cString: ck_lp_q8_0_variant(isa.ck))
        case .bf16, .dequantized: String(cString: ck_lp_bf16_variant(isa.ck))
        }
    }
}

/// A 64-byte aligned byte buffer owned by an encoded `WeightMatrix`.
private final class OwnedWeightBytes: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(count: Int) {
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    }
    deinit { pointer.deallocate() }
}

extension KernelISA {
    var ck: ck_isa { ck_isa(rawValue: UInt32(rawValue)) }
}

/// How the generic (`.dequantized`) path multiplies a dequantized panel.
public enum PanelPrecision: Sendable {
    /// Panel rounded to bf16, bf16 kernel (activations in bf16 too).
    case bf16
    /// Panel kept in float32, OpenBLAS sgemm (activations in float32).
    case float32
}

extension TransformerOps {
    /// `y[m, rows] = x[m, cols] · Wᵀ + b` with low-precision weights read in place. Activations are converted once
    /// per call (bf16, or Q8_0 blocks for Q8_0 weights); the output columns are split across `workers` (nil: this
    /// thread). `isa` picks the kernel (tests compare each against the scalar reference).
    public static func linear(
        _ x: Tensor, _ w: WeightMatrix, bias: Tensor?, workers: ParallelWorkers? = nil,
        isa: KernelISA = .active, panelPrecision: PanelPrecision = .bf16
    ) -> Tensor {
        let k = w.cols, n = w.rows
        let m = x.count / k
        precondition(x.shape.last == k && m * k == x.count, "linear input \(x.shape) vs \(w.name) [\(n), \(k)]")
        precondition(bias == nil || bias!.count == n, "linear bias \(bias!.shape) vs \(w.name) [\(n), \(k)]")
        let y = Tensor(zeros: [m, n])
        guard m > 0 else { return y }
        let threads = workers?.count ?? 1
        func parallel(_ count: Int, align: Int, _ body: (Int, Int) -> Void) {
            let per = ((count + threads - 1) / threads + align - 1) / align * align
            if let workers, threads > 1 {
                workers.run { t in
                    let lo = min(count, t * per), hi = min(count, lo + per)
                    if lo < hi { body(lo, hi) }
                }
            } else {
                body(0, count)
            }
        }
        let biasPtr = bias.map { UnsafePointer($0.data) }
        let ck = isa.ck
        withExtendedLifetime(w.owner) {
            switch w.format {
            case .bf16, .dequantized:
                if case .dequantized(let d) = w.format, panelPrecision == .float32 {
                    linearFloat32Panels(x, w, d, bias: bias, y: y, m: m)
                    return
                }
                let ld = ck_lp_bf16_ld(k)
                let xb = UnsafeMutablePointer<UInt16>.allocate(capacity: m * ld)
                defer { xb.deallocate() }
                parallel(m, align: 1) { lo, hi in ck_lp_prepare_bf16(xb + lo * ld, ld, x.data + lo * k, k, hi - lo, k) }
                if case .dequantized(let d) = w.format {
                    parallel(n, align: 32) { lo, hi in
                        let rc = ck_lp_gemm_dequant_bf16(xb, ld, m, k, w.base, w.rowStride, d.function, 64, lo, hi,
                                                         biasPtr, y.data, n, ck)
                        precondition(rc == 0, "linear \(w.name): out of memory for the dequantization panel")
                    }
                } else {
                    parallel(n, align: 32) { lo, hi in
                        ck_lp_gemm_bf16(xb, ld, m, k, w.base, w.rowStride, lo, hi, biasPtr, y.data, n, ck)
                    }
                }
            case .q8_0:
                let nb = k / 32
                let xq = UnsafeMutablePointer<Int8>.allocate(capacity: m * k)
                let xd = UnsafeMutablePointer<Float>.allocate(capacity: m * nb)
                defer { xq.deallocate(); xd.deallocate() }
                parallel(m, align: 1) { lo, hi in
                    ck_lp_prepare_q8_0(xq + lo * k, xd + lo * nb, x.data + lo * k, k, hi - lo, k)
                }
                parallel(n, align: 32) { lo, hi in
                    ck_lp_gemm_q8_0(xq, xd, m, k, w.base, w.rowStride, lo, hi, biasPtr, y.data, n, ck)
                }
            }
        }
        return y
    }

    /// The float32 generic path: a panel of rows at a time dequantized to float32 (at most 8 MiB: 512 rows of 4096
    /// values, 170 of 12288; 64 rows at least), then sgemm (OpenBLAS threads). Wider panels keep sgemm efficient
    /// (64-row panels ran at about a third of its speed on 1280-token FLUX activations).
    private static func linearFloat32Panels(_ x: Tensor, _ w: WeightMatrix, _ d: RowDequantizer, bias: Tensor?,
                                            y: Tensor, m: Int) {
        let k = w.cols, n = w.rows
        let panelRows = min(n, max(64, (8 << 20) / (4 * k) / 16 * 16))
        let panel = UnsafeMutablePointer<Float>.allocate(capacity: panelRows * k)
        defer { panel.deallocate() }
        var r0 = 0
        while r0 < n {
            let rows = min(panelRows, n - r0)
            ck_lp_dequant_panel_f32(panel, w.base, w.rowStride, k, d.function, r0, rows)
            linear(x: x.data, ldx: k, rows: m, weight: panel, inFeatures: k, outFeatures: rows,
                   bias: bias.map { UnsafePointer($0.data + r0) }, y: y.data + r0, ldy: n)
            r0 += rows
        }
    }
}
