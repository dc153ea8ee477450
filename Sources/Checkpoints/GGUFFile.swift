import Foundation
import Tensor

/// Value types of GGUF metadata (gguf.h `enum gguf_type`).
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7, string = 8
    case array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one value of a fixed-size type; nil for string and array.
    var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64: 8
        case .string, .array: nil
        }
    }

    /// The fewest bytes one value can take in a file (a bound for counts read from the header).
    var minimumSize: Int { fixedSize ?? (self == .string ? 8 : 12) }
}

/// One GGUF metadata value.
public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32), float32(Float)
    case bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    /// Element type and elements (arrays may nest).
    case array(GGUFValueType, [GGUFValue])

    /// The value as an integer, for any integer type that fits an `Int`.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(v)
        default: nil
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}

/// A parsed GGUF (v2 / v3, little-endian) header: metadata, tensor table and data-section placement.
///
/// Layout (gguf.h): magic "GGUF", version u32, tensor count u64, metadata count u64, then each metadata entry
/// (key string, value type u32, value), then each tensor info (name string, n_dims u32, dims u64 × n_dims in ggml
/// order — ne[0] first, the contiguous one —, type u32, offset u64 relative to the data section). The data section
/// starts at the next multiple of `general.alignment` (default 32) and every tensor offset is a multiple of it.
/// Strings are a u64 byte count and UTF-8 bytes.
public struct GGUFHeader: Sendable {
    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4
    /// Nesting limit for metadata arrays (files in the wild use one level).
    public static let maxArrayDepth = 4
    /// Limits on header counts and lengths, far above real files (FLUX ~800 tensors, LLM vocabularies ~256k
    /// strings), so that a hostile header fails fast instead of building a structure many times the file's size.
    public static let maxTensors = 1 << 20, maxMetadataEntries = 1 << 20, maxArrayElements = 1 << 24
    public static let maxStringBytes = 1 << 26

    public let version: UInt32
    /// Metadata keys in file order, and their values.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensors in file order; shapes are row-major (ggml's dims reversed); begin/end are data-section offsets.
    public let tensors: [TensorInfo]
    public let alignment: Int
    /// Absolute file offset of the data section.
    public let dataStart: Int
    private let index: [String: Int]

    public subscript(name: String) -> TensorInfo? { index[name].map { tensors[$0] } }
    public var names: [String] { tensors.map(\.name) }

    /// Parses and validates a header. `bytes` is the whole file; `source` names the file in errors.
    /// Every count and length is checked against the bytes that remain before anything is allocated for it, so a
    /// hostile header cannot cause a giant allocation; every tensor must lie inside the file, aligned, without
    /// overlapping another, with a byte size that matches its shape and type.
    public static func parse(_ bytes: UnsafeRawBufferPointer, source: String) throws -> GGUFHeader {
        var r = Reader(buf: bytes, source: source)
        let magic = try r.fixed(UInt32.self, "the magic")
        guard magic == 0x4655_4747 else { // "GGUF" little-endian
            let shown = (0..<4).map { i in String(format: "%02x", Int((magic >> (8 * UInt32(i))) & 0xFF)) }.joined(separator: " ")
            throw CheckpointError(.badHeader, "\(source): not a GGUF file (magic bytes \(shown), expected 47 47 55 46 \"GGUF\")")
        }
        let version = try r.fixed(UInt32.self, "the version")
        guard version == 2 || version == 3 else {
            let hint = version > 0xFFFF ? " (a big-endian file?)" : ""
            throw CheckpointError(.badHeader, "\(source): GGUF version \(version) is not supported (2 or 3)\(hint)")
        }
        let tensorCount = try r.fixed(UInt64.self, "the tensor count")
        let kvCount = try r.fixed(UInt64.self, "the metadata count")
        // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least
        // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
        guard kvCount <= UInt64(r.remaining / 13), kvCount <= maxMetadataEntries else {
            throw CheckpointError(.badHeader, "\(source): header claims \(kvCount) metadata entries, but only \(r.remaining) bytes "
                + "follow (at least 13 each; at most \(maxMetadataEntries) entries)")
        }
        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        for i in 0..<Int(kvCount) {
            let key = try r.string("the key of metadata entry \(i)")
            let rawType = try r.fixed(UInt32.self, "the type of metadata '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw CheckpointError(.badHeader, "\(source): metadata '\(key)' has unknown value type \(rawType)")
            }
            let value = try r.value(type, what: "metadata '\(key)'", depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw CheckpointError(.badHeader, "\(source): metadata key '\(key)' appears twice")
            }
            keys.append(key)
        }
        var alignment = defaultAlignment
        if let a = metadata["general.alignment"] {
            guard case .uint32(let v) = a, v > 0, v & (v - 1) == 0 else {
                throw CheckpointError(.badHeader, "\(source): general.alignment must be a u32 power of two, is \(a)")
            }
            alignment = Int(v)
        }
        guard tensorCount <= UInt64(r.remaining / 24), tensorCount <= maxTensors else {
            throw CheckpointError(.badHeader, "\(source): header claims \(tensorCount) tensors, but only \(r.remaining) bytes "
                + "follow (at least 24 each; at most \(maxTensors) tensors)")
        }
        var raw: [(name: String, dtype: TensorDType, shape: [Int], offset: Int, bytes: Int)] = []
        for i in 0..<Int(tensorCount) {
            let name = try r.string("the name of tensor \(i)")
            let nDims = try r.fixed(UInt32.self, "the dimension count of tensor '\(name)'")
            guard nDims <= maxDimensions else {
                throw CheckpointError(.badHeader, "\(source): tensor '\(name)' has \(nDims) dimensions (at most \(maxDimensions))")
            }
            var ne: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let v = try r.fixed(UInt64.self, "dimension \(d) of tensor '\(name)'")
                guard let n = Int(exactly: v), case (let p, false) = elements.multipliedReportingOverflow(by: n) else {
                    throw CheckpointError(.badHeader, "\(source): tensor '\(name)' has an absurd dimension \(v)")
                }
                elements = p
                ne.append(n)
            }
            let typeID = try r.fixed(UInt32.self, "the type of tensor '\(name)'")
            let offset = try r.fixed(UInt64.self, "the data offset of tensor '\(name)'")
            guard let t = Int32(exactly: typeID), let dtype = TensorDType(ggmlTypeID: t) else {
                let known = ggmlTypeNames[typeID].map { "ggml type \($0) (\(typeID)), which dreamsr does not read" }
                    ?? "unknown ggml type id \(typeID)"
                throw CheckpointError(.unsupportedDType, "\(source): tensor '\(name)' has \(known)")
            }
            let rowLength = ne.first ?? 1
            guard rowLength % dtype.blockSize == 0, let nbytes = dtype.byteCount(elements: elements) else {
                throw CheckpointError(.shapeDTypeMismatch, "\(source): tensor '\(name)' has rows of \(rowLength) values, "
                    + "not a multiple of \(dtype.rawValue)'s block of \(dtype.blockSize)")
            }
            guard let off = Int(exactly: offset), off % alignment == 0 else {
                throw CheckpointError(.offsetsOutOfRange, "\(source): tensor '\(name)' data offset \(offset) is not a multiple "
                    + "of the alignment \(alignment)")
            }
            raw.append((name, dtype, Array(ne.reversed()), off, nbytes))
        }
        let headerEnd = r.pos
        let dataStart = (headerEnd + alignment - 1) / alignment * alignment
        let dataSize = max(0, bytes.count - dataStart)
        var tensors: [TensorInfo] = []
        var index: [String: Int] = [:]
        for t in raw {
            guard index[t.name] == nil else {
                throw CheckpointError(.badHeader, "\(source): tensor '\(t.name)' appears twice")
            }
            guard case (let end, false) = t.offset.addingReportingOverflow(t.bytes), end <= dataSize else {
                throw CheckpointError(.truncated, "\(source): tensor '\(t.name)' (\(t.dtype.rawValue) \(t.shape)) needs data bytes "
                    + "\(t.offset)..<\(t.offset &+ t.bytes), but the data section has \(dataSize) bytes (truncated file?)")
            }
            index[t.name] = tensors.count
            tensors.append(TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, begin: t.offset, end: end))
        }
        let byStart = tensors.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for i in byStart.indices.dropFirst() where byStart[i].begin < byStart[i - 1].end {
            throw CheckpointError(.offsetsOutOfRange, "\(source): tensors '\(byStart[i - 1].name)' and '\(byStart[i].name)' overlap")
        }
        return GGUFHeader(version: version, metadataKeys: keys, metadata: metadata, tensors: tensors, alignment: alignment,
                          dataStart: dataStart, index: index)
    }

    /// Names of the ggml types dreamsr does not read, for error messages.
    static let ggmlTypeNames: [UInt32: String] = [
        9: "Q8_1", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
        22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0",
        35: "TQ2_0", 39: "MXFP4",
    ]

    /// Bounds-checked little-endian reads over the mapped header.
    private struct Reader {
        let buf: UnsafeRawBufferPointer
        var pos = 0
        let source: String
        var remaining: Int { buf.count - pos }

        init(buf: UnsafeRawBufferPointer, source: String) {
            self.buf = buf
            self.source = source
        }

        func truncated(_ what: String, needs n: Int) -> CheckpointError {
            CheckpointError(.truncated, "\(source): file ends inside \(what) (needs \(n) bytes at offset \(pos), file is "
                + "\(buf.count) bytes)")
        }

        mutating func fixed<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
            let n = MemoryLayout<T>.size
            guard remaining >= n else { throw truncated(what(), needs: n) }
            let v = T(littleEndian: buf.loadUnaligned(fromByteOffset: pos, as: T.self))
            pos += n
            return v
        }

        mutating func string(_ what: @autoclosure () -> String) throws -> String {
            let n = try fixed(UInt64.self, what())
            guard n <= UInt64(remaining) else { throw truncated(what(), needs: Int(clamping: n)) }
            guard n <= GGUFHeader.maxStringBytes else {
                throw CheckpointError(.badHeader, "\(source): \(what()) is a string of \(n) bytes (at most \(GGUFHeader.maxStringBytes))")
            }
            let s = String(decoding: UnsafeRawBufferPointer(rebasing: buf[pos..<(pos + Int(n))]), as: UTF8.self)
            pos += Int(n)
            return s
        }

        mutating func value(_ type: GGUFValueType, what: String, depth: Int) throws -> GGUFValue {
            switch type {
            case .uint8: return .uint8(try fixed(UInt8.self, what))
            case .int8: return .int8(try fixed(Int8.self, what))
            case .uint16: return .uint16(try fixed(UInt16.self, what))
            case .int16: return .int16(try fixed(Int16.self, what))
            case .uint32: return .uint32(try fixed(UInt32.self, what))
            case .int32: return .int32(try fixed(Int32.self, what))
            case .float32: return .float32(Float(bitPattern: try fixed(UInt32.self, what)))
            case .uint64: return .uint64(try fixed(UInt64.self, what))
            case .int64: return .int64(try fixed(Int64.self, what))
            case .float64: return .float64(Double(bitPattern: try fixed(UInt64.self, what)))
            case .bool:
                let b = try fixed(UInt8.self, what)
                guard b <= 1 else { throw CheckpointError(.badHeader, "\(source): \(what) is a bool with byte value \(b)") }
                return .bool(b == 1)
            case .string: return .string(try string(what))
            case .array:
                guard depth < GGUFHeader.maxArrayDepth else {
                    throw CheckpointError(.badHeader, "\(source): \(what) nests arrays deeper than \(GGUFHeader.maxArrayDepth)")
                }
                let rawType = try fixed(UInt32.self, "the element type of \(what)")
                guard let elem = GGUFValueType(rawValue: rawType) else {
                    throw CheckpointError(.badHeader, "\(source): \(what) is an array of unknown value type \(rawType)")
                }
                let count = try fixed(UInt64.self, "the length of \(what)")
                guard count <= UInt64(remaining / elem.minimumSize), count <= GGUFHeader.maxArrayElements else {
                    throw CheckpointError(.badHeader, "\(source): \(what) claims \(count) elements, but only \(remaining) bytes follow "
                        + "(at most \(GGUFHeader.maxArrayElements) elements)")
                }
                var items: [GGUFValue] = []
                items.reserveCapacity(Int(count))
                for i in 0..<Int(count) { items.append(try value(elem, what: "\(what)[\(i)]", depth: depth + 1)) }
                return .array(elem, items)
            }
        }
    }

    private init(version: UInt32, metadataKeys: [String], metadata: [String: GGUFValue], tensors: [TensorInfo],
                 alignment: Int, dataStart: Int, index: [String: Int]) {
        self.version = version
        self.metadataKeys = metadataKeys
        self.metadata = metadata
        self.tensors = tensors
        self.alignment = alignment
        self.dataStart = dataStart
        self.index = index
    }
}

/// A memory-mapped GGUF file (stable-diffusion.cpp / ComfyUI-GGUF / llama.cpp). Opening parses and validates the
/// header only; tensors are used in place: `rawView` gives the stored blocks (for low-precision kernels), and
/// `tensor(named:)` / `convert` dequantize to float32 (small tensors, tests). Tensor names are as stored (FLUX GGUFs
/// use BFL names).
///
/// `@unchecked Sendable`: the mapping is read-only and immutable after `init`.
public final class GGUFFile: TensorFile, @unchecked Sendable {
    public let header: GGUFHeader
    private let mapping: MappedFile
    /// Reads the whole file's pages into memory now (`MappedFile.prefetch`); returns the bytes.
    @discardableResult
    public func prefetch() -> Int { mapping.prefetch() }

    public init(url: URL) throws {
        let mapping = try MappedFile(url: url)
        header = try GGUFHeader.parse(mapping.bytes, source: url.lastPathComponent)
        self.mapping = mapping
    }

    public var url: URL { mapping.url }
    public var fileSize: Int { mapping.size }
    public var tensorInfos: [TensorInfo] { header.tensors }
    public var metadata: [String: GGUFValue] { header.metadata }
    public subscript(name: String) -> TensorInfo? { header[name] }

    /// The tensor's bytes inside the mapping (read-only).
    public func bytes(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mapping.base.map { $0 + header.dataStart + info.begin }, count: info.byteCount)
    }

    public func canView(_ info: TensorInfo) -> Bool {
        info.dtype == .f32 && (header.dataStart + info.begin) % 4 == 0 && mapping.base != nil
    }

    public func view(_ info: TensorInfo) -> Tensor? {
        guard canView(info) else { return nil }
        return Tensor(viewing: mapping, byteOffset: header.dataStart + info.begin, shape: info.shape)
    }

    public func rawView(_ info: TensorInfo) -> RawTensorView {
        RawTensorView(name: info.name, dtype: info.dtype, shape: info.shape, bytes: bytes(info), owner: self)
    }

    public func convert(_ info: TensorInfo, into dst: UnsafeMutablePointer<Float>) {
        rawView(info).dequantize(into: dst)
    }

    /// A new float32 tensor with the dequantized values of `name`.
    public func tensor(named name: String) throws -> Tensor {
        guard let info = header[name] else {
            throw CheckpointError(.missingTensor, "\(url.lastPathComponent): no tensor named '\(name)'")
        }
        return rawView(info).dequantized()
    }
}
