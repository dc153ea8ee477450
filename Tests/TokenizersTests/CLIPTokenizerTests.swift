import Foundation
import Testing
@testable import Tokenizers

@Suite(.timeLimit(.minutes(5))) struct CLIPTokenizerTests {
    @Test func fixtureHas200Cases() {
        #expect(TokenizerFixtures.cases.count == 200,
                "Tests/Fixtures/tokenizers/tokenizer_parity.json missing or short (tools/make_tokenizer_fixtures.py)")
    }

    @Test func matchesHFTokenizerFromVocabJSONAndMerges() throws {
        _ = try TokenizerFixtures.requireData("clip/vocab.json")
        let tok = try #require(TokenizerFixtures.clipFromJSON)
        #expect(tok.vocabularySize == 49408)
        var mismatches = 0
        for c in TokenizerFixtures.cases {
            let ids = tok.encode(c.text)
            if ids != c.clip {
                mismatches += 1
                if mismatches <= 5 { Issue.record("CLIP \(c.text.debugDescription): got \(ids), want \(c.clip)") }
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(TokenizerFixtures.cases.count) CLIP strings differ")
    }

    @Test func openCLIPGzipFormGivesTheSameIDs() throws {
        _ = try TokenizerFixtures.requireData("clip/bpe_simple_vocab_16e6.txt.gz")
        let tok = try #require(TokenizerFixtures.clipFromGzip)
        #expect(tok.vocabularySize == 49408)
        for c in TokenizerFixtures.cases { #expect(tok.encode(c.text) == c.clip, "\(c.text.debugDescription)") }
    }

    @Test func specialsPaddingAndTruncation() throws {
        _ = try TokenizerFixtures.requireData("clip/vocab.json")
        let tok = try #require(TokenizerFixtures.clipFromJSON)
        #expect(tok.bosID == 49406 && tok.eosID == 49407 && tok.padID == 49407)
        #expect(tok.encode("") == [49406, 49407])
        let padded = tok.encodePadded("a photo of a cat")
        #expect(padded.count == 77)
        #expect(padded.first == 49406)
        #expect(Array(padded[..<7]) == tok.encode("a photo of a cat"))
        #expect(padded[7...].allSatisfy { $0 == 49407 })
        let long = tok.encodePadded(String(repeating: "dog ", count: 200))
        #expect(long.count == 77 && long[0] == 49406 && long[76] == 49407)
        #expect(long[1..<76].allSatisfy { $0 != 49407 })
    }

    @Test func preSplitFollowsTheCLIPRegex() {
        let pieces = CLIPTokenizer.preSplit(CLIPTokenizer.normalize("It's  2 cats!!, ok"))
            .map { String(String.UnicodeScalarView($0)) }
        #expect(pieces == ["it", "'s", "2", "cats", "!!,", "ok"])
    }

    @Test func missingDirectoryNamesTheFetchScript() {
        #expect {
            try CLIPTokenizer.load(from: "/nonexistent/tokenizer")
        } throws: { error in
            guard let e = error as? TokenizerError else { return false }
            return e.code == .fileNotFound && e.message.contains("fetch-tokenizers.sh")
        }
    }
}
