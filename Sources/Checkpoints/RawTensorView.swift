import CKernels
import Foundation
import Tensor

/// A memory-mapped weight file whose tensors are read in place and converted to float32 one at a time
/// (`SafeTensorsFile`, `GGUFFile`). `TensorInfo.begin/end` are relative to the file's data section.
public protocol TensorFile: AnyObject, Sendable {
    var url: URL { get }
    /// Every tensor, in data order.
    var tensorInfos: [TensorInfo] { get }
    subscript(name: String) -> TensorInfo? { get }
    /// Whether `view` can give a zero-copy float32 view of the tensor (F32, aligned).
    func canView(_ info: TensorInfo) -> Bool
    /// A zero-copy, READ-ONLY float32 view of an F32 tensor, or nil.
    func view(_ info: TensorInfo) -> Tensor?
    /// Converts the tensor to float32 into `dst` (`info.elementCount` floats).
    func convert(_ info: TensorInfo, into dst: UnsafeMutablePointer<Float>)
    /// The tensor's stored bytes as a typed view (no copy).
    func rawView(_ info: TensorInfo) -> RawTensorView
}

extension TensorFile {
    /// Converts the tensor to float32 into `dst` starting at flat index `offset` (bounds-checked).
    public func convert(_ info: TensorInfo, into dst: Tensor, at offset: Int = 0) {
        precondition(offset >= 0 && offset + info.elementCount <= dst.count,
                     "\(info.name): \(info.elementCount) values at \(offset) do not fit \(dst.shape)")
        dst.withUnsafeMutablePointer { convert(info, into: $0 + offset) }
    }
}

/// A tensor's stored bytes, borrowed from a memory-mapped file (no copy): its encoding, row-major shape and byte
/// range, plus the per-tensor scale of ComfyUI-scaled FP8 weights (1 otherwise). The last dimension is contiguous
/// and, for block types, a whole number of blocks, so row `r` starts at byte `r * rowBytes`.
///
/// Low-precision kernels dequantize rows (or panels) straight from `bytes` with `ck_dequantize_row`; `dequantized()`
/// is the float32 copy for small tensors (norms, biases) and tests.
///
/// `@unchecked Sendable`: the bytes are read-only and `owner` (the file) keeps the mapping alive.
public struct RawTensorView: @unchecked Sendable {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer
    /// Multiplies every dequantized value (ComfyUI `scale_weight` for FP8; 1 for everything else).
    public let scale: Float
    private let owner: AnyObject

    public init(name: String, dtype: TensorDType, shape: [Int], bytes: UnsafeRawBufferPointer, scale: Float = 1,
                owner: AnyObject) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.scale = scale
        self.owner = owner
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Values per row (the contiguous last dimension; 1 for a scalar).
    public var rowLength: Int { shape.last ?? 1 }
    public var rowCount: Int { rowLength == 0 ? 0 : elementCount / rowLength }
    public var rowBytes: Int { rowLength / dtype.blockSize * dtype.blockBytes }
    /// ggml's type id for `ck_dequantize_row` (nil for FP8 and integer dtypes).
    public var ggmlTypeID: Int32? { dtype.ggmlTypeID }

    /// Dequantizes rows `rows` into `dst` (`rows.count * rowLength` floats).
    public func dequantizeRows(_ rows: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= rowCount, "rows \(rows) outside 0..<\(rowCount) of \(name)")
        let sub = UnsafeRawBufferPointer(rebasing: bytes[(rows.lowerBound * rowBytes)..<(rows.upperBound * rowBytes)])
        if dtype.ggmlTypeID != nil || dtype == .f8e4m3 || dtype == .f8e5m2 {
            Self.dequantize(dtype, sub, elements: rows.count * rowLength, scale: scale, into: dst)
        } else {
            let info = TensorInfo(name: name, dtype: dtype, shape: [rows.count, rowLength], begin: 0, end: sub.count)
            SafeTensorsFile.convertElementwise(info, sub, into: dst)
        }
    }

    /// All values (`elementCount` floats) into `dst`.
    public func dequantize(into dst: UnsafeMutablePointer<Float>) {
        guard elementCount > 0 else { return }
        dequantizeRows(0..<rowCount, into: dst)
    }

    /// A new float32 tensor with the values, in `shape`.
    public func dequantized() -> Tensor {
        let t = Tensor(zeros: shape)
        t.withUnsafeMutablePointer { dequantize(into: $0) }
        return t
    }

    /// Dequantizes `elements` values of a ggml or FP8 dtype from `raw` (whole blocks).
    static func dequantize(_ dtype: TensorDType, _ raw: UnsafeRawBufferPointer, elements: Int, scale: Float,
                           into dst: UnsafeMutablePointer<Float>) {
        guard elements > 0, let src = raw.baseAddress else { return }
        switch dtype {
        case .f8e4m3: ck_dequantize_row_fp8_e4m3(src.assumingMemoryBound(to: UInt8.self), dst, Int64(elements), scale)
        case .f8e5m2: ck_dequantize_row_fp8_e5m2(src.assumingMemoryBound(to: UInt8.self), dst, Int64(elements), scale)
        default:
            guard let id = dtype.ggmlTypeID else { preconditionFailure("\(dtype) has no dequantizer") }
            ck_dequantize_row(id, src, dst, Int64(elements))
        }
    }
}
