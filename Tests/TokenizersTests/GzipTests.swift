import Foundation
import Testing
@testable import Tokenizers

@Suite struct GzipTests {
    @Test func inflatesOpenCLIPVocabHead() throws {
        let path = try TokenizerFixtures.requireData("clip/bpe_simple_vocab_16e6.txt.gz")
        let data = [UInt8](try #require(FileManager.default.contents(atPath: path)))
        let text = try Gzip.decompress(data, name: path, stopAfterLines: 3)
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count >= 3)
        #expect(lines[1] == "i n" && lines[2] == "t h")
    }

    @Test func rejectsNonGzip() {
        #expect(throws: TokenizerError.self) { try Gzip.decompress(Array("hello, not gzip at all".utf8), name: "x") }
    }
}
