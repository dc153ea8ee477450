import Testing
@testable import Tensor
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized, .timeLimit(.minutes(2))) struct HeapMemoryTests {
    /// Under AddressSanitizer malloc is ASan's, and glibc's trim has nothing to return.
    static var underAddressSanitizer: Bool {
        #if canImport(Glibc)
        return dlsym(nil, "__asan_init") != nil
        #else
        return true
        #endif
    }

    /// 3072 blocks of 64 KiB (below glibc's mmap threshold, so they live in an arena), every 16th kept: the freed
    /// runs between the kept blocks stay resident after `free` (they are neither at the arena's top nor a whole
    /// heap), and `returnFreedPages` hands them back.
    @Test(.disabled(if: HeapMemoryTests.underAddressSanitizer, "AddressSanitizer's allocator, not glibc's"))
    func freedArenaPagesGoBackToTheSystem() throws {
        #if canImport(Glibc)
        let mib = 1 << 20
        var blocks: [[UInt8]] = (0..<3072).map { i in [UInt8](repeating: UInt8(truncatingIfNeeded: i | 1), count: 64 << 10) }
        let full = try #require(HeapMemory.residentBytes())
        #expect(blocks.reduce(0) { $0 + Int($1[100]) } > 0)
        for i in blocks.indices where i % 16 != 15 { blocks[i] = [] }
        let freed = try #require(HeapMemory.residentBytes())
        #expect(HeapMemory.returnFreedPages())
        let trimmed = try #require(HeapMemory.residentBytes())
        #expect(freed - trimmed >= 96 * mib, "RSS \(full / mib) MiB full, \(freed / mib) after free, \(trimmed / mib) after trim")
        #expect(blocks.count == 3072 && blocks[15].count == 64 << 10)
        #endif
    }

    @Test func residentBytesReadsThisProcess() throws {
        let rss = try #require(HeapMemory.residentBytes())
        #expect(rss > 1 << 20 && rss < 1 << 40)
    }
}
