import Foundation
import Tensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory (pages are read on first touch). Shared by the safetensors and GGUF
/// readers; the mapping lives as long as this object.
///
/// `@unchecked Sendable`: the mapping is read-only and immutable after `init`.
public final class MappedFile: TensorStorage, @unchecked Sendable {
    public let url: URL
    public let size: Int
    /// Start of the mapping; nil for an empty file.
    public let base: UnsafeRawPointer?

    public init(url: URL) throws {
        self.url = url
        let path = url.path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CheckpointError(.io, "\(path): cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CheckpointError(.io, "\(path): cannot stat") }
        size = Int(st.st_size)
        if size > 0 {
            guard let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
                throw CheckpointError(.io, "\(path): mmap of \(size) bytes failed (\(String(cString: strerror(errno))))")
            }
            base = UnsafeRawPointer(p)
        } else {
            base = nil
        }
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// The whole file's bytes.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}
