import Foundation
import Tensor

/// One or more weight files seen as a single key space: safetensors files (e.g. diffusers' sharded
/// `diffusion_pytorch_model-0000N-of-0000M.safetensors`) or one GGUF file (tensor names as stored).
public final class CheckpointSet: Sendable {
    /// Every file, in order.
    public let tensorFiles: [any TensorFile]
    /// The safetensors files among them.
    public var files: [SafeTensorsFile] { tensorFiles.compactMap { $0 as? SafeTensorsFile } }
    /// The GGUF files among them.
    public var ggufFiles: [GGUFFile] { tensorFiles.compactMap { $0 as? GGUFFile } }
    /// The folder holding the files (where a `config.json` may sit).
    public let directory: URL
    private let index: [String: (Int, TensorInfo)]

    /// Reads every file's pages into memory now (see `MappedFile.prefetch`); returns the bytes.
    @discardableResult
    public func prefetch() -> Int {
        files.reduce(0) { $0 + $1.prefetch() } + ggufFiles.reduce(0) { $0 + $1.prefetch() }
    }

    public convenience init(files: [SafeTensorsFile]) throws {
        try self.init(tensorFiles: files)
    }

    public init(tensorFiles files: [any TensorFile]) throws {
        precondition(!files.isEmpty, "CheckpointSet needs at least one file")
        self.tensorFiles = files
        self.directory = files[0].url.deletingLastPathComponent()
        var idx: [String: (Int, TensorInfo)] = [:]
        for (i, f) in files.enumerated() {
            for t in f.tensorInfos {
                if idx[t.name] != nil {
                    throw CheckpointError(.badHeader, "tensor '\(t.name)' appears in more than one file (\(f.url.lastPathComponent))")
                }
                idx[t.name] = (i, t)
            }
        }
        index = idx
    }

    /// A single `.safetensors` or `.gguf` file, or every `.safetensors` file in a directory (sorted by name).
    public convenience init(url: URL) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw CheckpointError(.io, "\(url.path): no such file or directory")
        }
        if isDir.boolValue {
            let names = try FileManager.default.contentsOfDirectory(atPath: url.path)
                .filter { $0.hasSuffix(".safetensors") }.sorted()
            guard !names.isEmpty else { throw CheckpointError(.io, "\(url.path): no .safetensors files") }
            try self.init(files: names.map { try SafeTensorsFile(url: url.appendingPathComponent($0)) })
        } else if url.pathExtension.lowercased() == "gguf" {
            try self.init(tensorFiles: [GGUFFile(url: url)])
        } else {
            try self.init(files: [SafeTensorsFile(url: url)])
        }
    }

    public var names: [String] { tensorFiles.flatMap { $0.tensorInfos.map(\.name) } }
    public subscript(name: String) -> TensorInfo? { index[name]?.1 }

    /// Metadata of all files merged (first file wins on conflicts); for GGUF files, the string-valued keys.
    public var metadata: [String: String] {
        var m: [String: String] = [:]
        for f in tensorFiles.reversed() {
            if let st = f as? SafeTensorsFile { m.merge(st.metadata) { _, new in new } }
            if let g = f as? GGUFFile { m.merge(g.metadata.compactMapValues(\.stringValue)) { _, new in new } }
        }
        return m
    }

    public func locate(_ name: String) -> (file: any TensorFile, info: TensorInfo)? {
        guard let (i, info) = index[name] else { return nil }
        return (tensorFiles[i], info)
    }

    /// A float32 copy of a tensor.
    public func tensor(named name: String) throws -> Tensor {
        guard let (f, info) = locate(name) else {
            throw CheckpointError(.missingTensor, "no tensor named '\(name)' in \(tensorFiles.map(\.url.lastPathComponent))")
        }
        let t = Tensor(zeros: info.shape)
        f.convert(info, into: t)
        return t
    }
}

/// A weight as it will be used by a layer, described lazily: which file bytes it comes from and how they are
/// combined (concatenated rows for fused q/k/v, swapped halves for diffusers' final-layer modulation). Nothing is
/// read until `materialize()`, which returns a zero-copy view for a single aligned F32 part and otherwise a fresh
/// float32 tensor that the caller drops after use.
public struct WeightSource: Sendable {
    public enum Transform: Sendable, Equatable {
        /// One part used as is.
        case none
        /// Parts stacked along dimension 0 (fused qkv / linear1 from split diffusers tensors).
        case concatRows
        /// One part whose two halves along dimension 0 are exchanged (shift|scale ↔ scale|shift).
        case swapHalves
    }

    public struct Part: Sendable {
        public let file: any TensorFile
        public let info: TensorInfo
        public init(file: any TensorFile, info: TensorInfo) {
            self.file = file
            self.info = info
        }
    }

    public let name: String
    public let parts: [Part]
    public let transform: Transform
    public let shape: [Int]

    public init(name: String, parts: [Part], transform: Transform) {
        precondition(!parts.isEmpty, "weight \(name) has no parts")
        self.name = name
        self.parts = parts
        self.transform = transform
        var s = parts[0].info.shape
        if transform == .concatRows, !s.isEmpty { s[0] = parts.reduce(0) { $0 + ($1.info.shape.first ?? 1) } }
        self.shape = s
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Whether `materialize` is free (a view of an F32 mapping).
    public var isZeroCopy: Bool { transform == .none && parts[0].file.canView(parts[0].info) }
    public var dtypes: Set<TensorDType> { Set(parts.map(\.info.dtype)) }

    /// The stored bytes of a single-part, untransformed weight (a GGUF block type, FP8, bf16 ...), for kernels that
    /// dequantize in place; nil when the weight is assembled from several parts or transformed.
    public var rawView: RawTensorView? {
        guard transform == .none, parts.count == 1 else { return nil }
        return parts[0].file.rawView(parts[0].info)
    }

    /// The weight as float32 values in `shape`.
    public func materialize() -> Tensor {
        if transform == .none, let v = parts[0].file.view(parts[0].info) { return v }
        let out = Tensor(zeros: shape)
        switch transform {
        case .none:
            parts[0].file.convert(parts[0].info, into: out)
        case .concatRows:
            var off = 0
            for p in parts {
                p.file.convert(p.info, into: out, at: off)
                off += p.info.elementCount
            }
        case .swapHalves:
            let p = parts[0]
            let tmp = Tensor(zeros: p.info.shape)
            p.file.convert(p.info, into: tmp)
            let half = tmp.count / 2
            out.copyValues(from: tmp, at: half, count: half, to: 0)
            out.copyValues(from: tmp, at: 0, count: half, to: half)
        }
        return out
    }
}
