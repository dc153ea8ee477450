import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// The C heap's hold on freed memory. glibc keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold in
/// per-thread arenas, so a process that frees gigabytes of activations keeps them resident. A full-size DreamSR job
/// frees that much at known points (text encoders released, every sampler pass), and peak RSS is what limits it on
/// a 24 GB machine: there it hands the free pages back (`malloc_trim`, which also returns free pages inside arena
/// heaps). The cost is the page faults of the next pass touching them again, well under 1 % of a full-size pass.
public enum HeapMemory {
    /// Returns the heap's free pages to the system; true when any were returned. No-op (false) without glibc.
    @discardableResult
    public static func returnFreedPages() -> Bool {
        ck_heap_trim() == 1
    }

    /// This process's resident set (VmRSS of /proc/self/status) in bytes, nil where there is none.
    public static func residentBytes() -> Int? {
        #if canImport(Glibc)
        guard let f = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = String(cString: line)
            if s.hasPrefix("VmRSS:") {
                let kb = s.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) }
                return kb.map { $0 * 1024 }
            }
        }
        return nil
        #else
        return nil
        #endif
    }
}
