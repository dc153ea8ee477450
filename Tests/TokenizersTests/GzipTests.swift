import Foundation
import Testing
@testable import Tokenizers

@Suite(.timeLimit(.minutes(5))) struct GzipTests {
    @Test func inflatesOpenCLIPVocabHead() throws {
        let path = try TokenizerFixtures.requireData("clip/bpe_simple_vocab_16e6.txt.gz")
        let data = [UInt8](try #require(FileManager.default.contents(atPath: path)))
        let text = try Gzip.decompress(data, name: path, stopAfterLines: 3)
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count >= 3)
        #expect(lines[1] == "i n" && lines[2] == "t h")
    }

    @Test func inflatesTheWholeFileToItsStoredSizeAndRefusesDamage() throws {
        let path = try TokenizerFixtures.requireData("clip/bpe_simple_vocab_16e6.txt.gz")
        let data = [UInt8](try #require(FileManager.default.contents(atPath: path)))
        let whole = try Gzip.decompress(data, name: path)
        // ISIZE: the trailer's last 4 bytes, the uncompressed size mod 2^32 (zlib also checks the CRC-32).
        let n = data.count
        let isize = Int(data[n - 4]) | Int(data[n - 3]) << 8 | Int(data[n - 2]) << 16 | Int(data[n - 1]) << 24
        #expect(whole.count == isize)
        #expect(whole.starts(with: Array("\"bpe_simple_vocab_16e6.txt#version: 0.2\n".utf8)))
        // Cut short: refused, not returned half-done.
        let cut = Array(data[0..<(n / 2)])
        #expect(throws: TokenizerError.self) { try Gzip.decompress(cut, name: "cut.gz") }
        // A byte changed in the middle: the stream or its CRC-32 no longer checks out.
        var damaged = data
        damaged[n / 2] ^= 0x5A
        #expect(throws: TokenizerError.self) { try Gzip.decompress(damaged, name: "damaged.gz") }
    }

    @Test func rejectsNonGzip() {
        #expect(throws: TokenizerError.self) { try Gzip.decompress(Array("hello, not gzip at all".utf8), name: "x") }
    }
}
