import Foundation
import Tensor

/// Writes safetensors files (header JSON padded to 8 bytes, then each tensor's bytes in order). Tensors are produced
/// one at a time by their `fill` closures, so large files can be written without holding them in memory.
public enum SafeTensorsWriter {
    public struct Entry {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Fills exactly `shape.product × dtype.byteSize` bytes (little-endian).
        public let fill: (UnsafeMutableRawBufferPointer) -> Void

        public init(name: String, dtype: SafeTensorsDType, shape: [Int], fill: @escaping (UnsafeMutableRawBufferPointer) -> Void) {
            precondition(dtype.isSafeTensors, "\(dtype.rawValue) is a GGUF block type, not a safetensors dtype")
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.fill = fill
        }

        /// A float32 entry copied from a tensor.
        public static func f32(_ name: String, _ tensor: Tensor) -> Entry {
            Entry(name: name, dtype: .f32, shape: tensor.shape) { buf in
                tensor.withUnsafeBufferPointer { buf.copyMemory(from: UnsafeRawBufferPointer($0)) }
            }
        }

        var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    }

    /// Writes `entries` (in order) and `metadata` to `url`, replacing any existing file.
    public static func write(_ entries: [Entry], metadata: [String: String] = [:], to url: URL) throws {
        var names = Set<String>()
        var header = "{"
        var first = true
        func append(_ s: String) {
            if !first { header += "," }
            header += s
            first = false
        }
        if !metadata.isEmpty {
            let keys = metadata.keys.sorted()
            append("\"__metadata__\":{" + keys.map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",") + "}")
        }
        var offset = 0
        for e in entries {
            guard names.insert(e.name).inserted else {
                throw CheckpointError(.badHeader, "\(url.lastPathComponent): duplicate tensor name '\(e.name)'")
            }
            let end = offset + e.byteCount
            append("\(jsonString(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

        guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
            throw CheckpointError(.io, "\(url.path): cannot create")
        }
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        do {
            var len = UInt64(headerBytes.count).littleEndian
            try handle.write(contentsOf: Data(bytes: &len, count: 8))
            try handle.write(contentsOf: Data(headerBytes))
            for e in entries where e.byteCount > 0 {
                let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: e.byteCount, alignment: 64)
                defer { buf.deallocate() }
                e.fill(buf)
                try handle.write(contentsOf: Data(bytesNoCopy: buf.baseAddress!, count: e.byteCount, deallocator: .none))
            }
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(.io, "\(url.path): write failed (\(error.localizedDescription))")
        }
    }

    /// Convenience: writes float32 tensors by name (in the given order).
    public static func write(tensors: [(String, Tensor)], metadata: [String: String] = [:], to url: URL) throws {
        try write(tensors.map { Entry.f32($0.0, $0.1) }, metadata: metadata, to: url)
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
