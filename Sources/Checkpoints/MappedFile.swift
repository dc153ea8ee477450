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

    /// Reads every page of the mapping into memory now (advised `MADV_WILLNEED`, then one byte per page touched), so
    /// later reads do not fault on disk or page cache; what a loader that copies weights into RAM pays at load time.
    /// Returns the bytes made resident.
    @discardableResult
    public func prefetch() -> Int {
        guard let base, size > 0 else { return 0 }
        let start = UnsafeMutableRawPointer(mutating: base)
        // MADV_POPULATE_READ (Linux 5.14+) faults every page in; older kernels: advise, then touch one byte per page.
        if madvise(start, size, 22 /* MADV_POPULATE_READ */) != 0 {
            _ = madvise(start, size, MADV_WILLNEED)
            let page = max(Int(sysconf(Int32(_SC_PAGESIZE))), 4096)
            var sum: UInt8 = 0
            var offset = 0
            while offset < size {
                sum &+= base.load(fromByteOffset: offset, as: UInt8.self)
                offset += page
            }
            prefetchChecksum = sum  // observable, so the reads are not optimised away
        }
        return size
    }

    /// The byte sum of the last touch-based prefetch (kept only so the compiler keeps the reads).
    private(set) var prefetchChecksum: UInt8 = 0

    /// The whole file's bytes.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}
