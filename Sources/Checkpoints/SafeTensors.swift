import CKernels
import Foundation
import Tensor

/// Element types of the safetensors format (a safetensors header may use only those with `isSafeTensors`).
public typealias SafeTensorsDType = TensorDType

/// One tensor's entry in a safetensors or GGUF header: name, dtype, row-major shape and byte range within the file's
/// data section.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte offsets relative to the start of the data section (after the header).
    public let begin: Int
    public let end: Int

    public init(name: String, dtype: SafeTensorsDType, shape: [Int], begin: Int, end: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.begin = begin
        self.end = end
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { end - begin }
}

/// A parsed safetensors header: the tensor table (in file order) and the `__metadata__` string map.
public struct SafeTensorsHeader: Sendable {
    public let tensors: [TensorInfo]
    public let metadata: [String: String]
    /// Absolute file offset of the data section (8 + header length).
    public let dataStart: Int
    private let index: [String: Int]

    public subscript(name: String) -> TensorInfo? { index[name].map { tensors[$0] } }
    public var names: [String] { tensors.map(\.name) }

    /// Parses and validates a header. `fileSize` is the whole file's size; `source` names the file in errors.
    /// Checks: header length within the file, JSON object, known dtypes, shape × dtype size = byte range,
    /// ranges inside the data section and not overlapping.
    public static func parse(prefix: UnsafeRawBufferPointer, fileSize: Int, source: String) throws -> SafeTensorsHeader {
        guard fileSize >= 8, prefix.count >= 8 else {
            throw CheckpointError(.truncated, "\(source): file is \(fileSize) bytes, shorter than the 8-byte header length")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(prefix[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(fileSize - 8), n <= 100_000_000 else {
            throw CheckpointError(.truncated, "\(source): header length \(n) exceeds the file (\(fileSize) bytes)")
        }
        let headerLen = Int(n)
        guard prefix.count >= 8 + headerLen else {
            throw CheckpointError(.truncated, "\(source): header needs \(8 + headerLen) bytes, have \(prefix.count)")
        }
        let json = Data(prefix[8..<(8 + headerLen)])
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: json, options: [])
        } catch {
            throw CheckpointError(.badHeader, "\(source): header is not valid JSON (\(error.localizedDescription))")
        }
        guard let obj = parsed as? [String: Any] else {
            throw CheckpointError(.badHeader, "\(source): header JSON is not an object")
        }
        let dataSize = fileSize - 8 - headerLen
        var metadata: [String: String] = [:]
        var tensors: [TensorInfo] = []
        for (name, value) in obj {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw CheckpointError(.badHeader, "\(source): __metadata__ is not an object")
                }
                for (k, v) in m {
                    guard let s = v as? String else {
                        throw CheckpointError(.badHeader, "\(source): __metadata__[\(k)] is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any], let dt = entry["dtype"] as? String,
                  let shapeAny = entry["shape"] as? [Any], let offs = entry["data_offsets"] as? [Any], offs.count == 2
            else {
                throw CheckpointError(.badHeader, "\(source): entry '\(name)' lacks dtype / shape / data_offsets")
            }
            guard let dtype = SafeTensorsDType(rawValue: dt), dtype.isSafeTensors else {
                throw CheckpointError(.unsupportedDType, "\(source): tensor '\(name)' has unsupported dtype \(dt)")
            }
            var shape: [Int] = []
            for s in shapeAny {
                guard let d = (s as? NSNumber)?.intValue, d >= 0 else {
                    throw CheckpointError(.badHeader, "\(source): tensor '\(name)' has a bad shape \(shapeAny)")
                }
                shape.append(d)
            }
            guard let b = (offs[0] as? NSNumber)?.intValue, let e = (offs[1] as? NSNumber)?.intValue, b >= 0, e >= b
            else {
                throw CheckpointError(.badHeader, "\(source): tensor '\(name)' has bad data_offsets \(offs)")
            }
            let info = TensorInfo(name: name, dtype: dtype, shape: shape, begin: b, end: e)
            let (expected, overflow) = info.elementCount.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, expected == e - b else {
                throw CheckpointError(.shapeDTypeMismatch,
                    "\(source): tensor '\(name)' shape \(shape) × \(dt) needs \(expected) bytes, offsets give \(e - b)")
            }
            guard e <= dataSize else {
                throw CheckpointError(.offsetsOutOfRange,
                    "\(source): tensor '\(name)' ends at data byte \(e), data section is \(dataSize) bytes (truncated file?)")
            }
            tensors.append(info)
        }
        tensors.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        for i in tensors.indices.dropFirst() where tensors[i].begin < tensors[i - 1].end {
            throw CheckpointError(.offsetsOutOfRange,
                "\(source): tensors '\(tensors[i - 1].name)' and '\(tensors[i].name)' overlap")
        }
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        return SafeTensorsHeader(tensors: tensors, metadata: metadata, dataStart: 8 + headerLen, index: index)
    }

    private init(tensors: [TensorInfo], metadata: [String: String], dataStart: Int, index: [String: Int]) {
        self.tensors = tensors
        self.metadata = metadata
        self.dataStart = dataStart
        self.index = index
    }
}

/// A memory-mapped safetensors file. Opening parses the header only; tensor bytes are paged in on first use and
/// converted to float32 one tensor at a time (`tensor(named:)`), so a bf16 model never has a whole f32 copy.
///
/// FP8 tensors (F8_E4M3 / F8_E5M2) may be ComfyUI "scaled": a weight `<prefix>weight` comes with a one-element
/// `<prefix>scale_weight`, and its float32 values are `decode(byte) * scale_weight`. The scale is read at open and
/// applied by `convert`, `tensor(named:)` and `rawView(_:).dequantized()`; the raw view carries it as `scale`.
///
/// `@unchecked Sendable`: the mapping is read-only and immutable after `init`.
public final class SafeTensorsFile: TensorFile, @unchecked Sendable {
    public let header: SafeTensorsHeader
    private let mapping: MappedFile
    /// Reads the whole file's pages into memory now (`MappedFile.prefetch`); returns the bytes.
    @discardableResult
    public func prefetch() -> Int { mapping.prefetch() }
    /// Per-tensor FP8 scales (`scale_weight`) by weight name.
    public let fp8Scales: [String: Float]

    public var url: URL { mapping.url }
    public var fileSize: Int { mapping.size }
    private var base: UnsafeRawPointer? { mapping.base }

    public init(url: URL) throws {
        let mapping = try MappedFile(url: url)
        let header = try SafeTensorsHeader.parse(prefix: mapping.bytes, fileSize: mapping.size, source: url.lastPathComponent)
        self.mapping = mapping
        self.header = header
        var scales: [String: Float] = [:]
        for t in header.tensors where t.dtype == .f8e4m3 || t.dtype == .f8e5m2 {
            guard t.name.hasSuffix("weight") else { continue }
            let scaleName = String(t.name.dropLast("weight".count)) + "scale_weight"
            guard let s = header[scaleName] else { continue }
            guard s.elementCount == 1, [.f32, .f16, .bf16].contains(s.dtype) else {
                throw CheckpointError(.badHeader, "\(url.lastPathComponent): FP8 scale '\(scaleName)' of tensor '\(t.name)' "
                    + "must be one F32/F16/BF16 value, is \(s.dtype.rawValue) \(s.shape)")
            }
            var v: Float = 0
            Self.convertElementwise(s, UnsafeRawBufferPointer(start: mapping.base.map { $0 + header.dataStart + s.begin }, count: s.byteCount),
                                    into: &v)
            scales[t.name] = v
        }
        fp8Scales = scales
    }

    public var tensorInfos: [TensorInfo] { header.tensors }
    public var metadata: [String: String] { header.metadata }
    public subscript(name: String) -> TensorInfo? { header[name] }

    /// The raw bytes of a tensor inside the mapping (read-only).
    public func bytes(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base.map { $0 + header.dataStart + info.begin }, count: info.byteCount)
    }

    /// Whether `info` can be viewed in place as float32 (F32 and 4-byte aligned in the mapping).
    public func canView(_ info: TensorInfo) -> Bool {
        info.dtype == .f32 && (header.dataStart + info.begin) % 4 == 0 && base != nil
    }

    /// A zero-copy, READ-ONLY float32 view of an F32 tensor (the mapping is read-only: writing crashes).
    /// Returns nil when the tensor is not F32 or not aligned.
    public func view(_ info: TensorInfo) -> Tensor? {
        guard canView(info) else { return nil }
        return Tensor(viewing: mapping, byteOffset: header.dataStart + info.begin, shape: info.shape)
    }

    /// The tensor's stored bytes as a typed view (no copy), with its FP8 scale if any.
    public func rawView(_ info: TensorInfo) -> RawTensorView {
        RawTensorView(name: info.name, dtype: info.dtype, shape: info.shape, bytes: bytes(info),
                      scale: fp8Scales[info.name] ?? 1, owner: self)
    }

    /// Every tensor of the file as float32, by name (small files: fixtures, `dreamsr forward` inputs).
    public func allTensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for n in header.names { out[n] = try tensor(named: n) }
        return out
    }

    /// A new float32 tensor with the values of `name` (converted from F16 / BF16 / F64 / integer types).
    public func tensor(named name: String) throws -> Tensor {
        guard let info = header[name] else {
            throw CheckpointError(.missingTensor, "\(url.lastPathComponent): no tensor named '\(name)'")
        }
        let t = Tensor(zeros: info.shape)
        convert(info, into: t)
        return t
    }

    /// Converts the tensor's elements to float32 into `dst` (which must hold `info.elementCount` floats).
    public func convert(_ info: TensorInfo, into dst: UnsafeMutablePointer<Float>) {
        switch info.dtype {
        case .f8e4m3, .f8e5m2: rawView(info).dequantize(into: dst)
        default: Self.convertElementwise(info, bytes(info), into: dst)
        }
    }

    /// float32 values of an elementwise (non-FP8) tensor from its raw bytes.
    static func convertElementwise(_ info: TensorInfo, _ raw: UnsafeRawBufferPointer, into dst: UnsafeMutablePointer<Float>) {
        let n = info.elementCount
        guard n > 0, let src = raw.baseAddress else { return }
        func halves(_ body: (UnsafePointer<UInt16>) -> Void) {
            if Int(bitPattern: src) % 2 == 0 {
                body(src.assumingMemoryBound(to: UInt16.self))
            } else {
                let tmp = UnsafeMutablePointer<UInt16>.allocate(capacity: n)
                defer { tmp.deallocate() }
                UnsafeMutableRawPointer(tmp).copyMemory(from: src, byteCount: n * 2)
                body(tmp)
            }
        }
        switch info.dtype {
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
        case .f16: halves { ck_f16_to_f32(dst, $0, n) }
        case .bf16: halves { ck_bf16_to_f32(dst, $0, n) }
        case .f64: for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .i64: for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .i32: for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .i16: for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .i8: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .u8, .bool: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        default: RawTensorView.dequantize(info.dtype, raw, elements: n, scale: 1, into: dst)
        }
    }
}
