import Foundation
import Testing
@testable import Tokenizers

@Suite(.timeLimit(.minutes(5))) struct T5TokenizerTests {
    @Test func matchesHFTokenizersOnTheFixture() throws {
        _ = try TokenizerFixtures.requireData("t5/tokenizer.json")
        let tok = try #require(TokenizerFixtures.t5)
        #expect(tok.vocabularySize == 32100)
        var mismatches = 0
        for c in TokenizerFixtures.cases {
            let ids = tok.encode(c.text)
            if ids != c.t5 {
                mismatches += 1
                if mismatches <= 5 { Issue.record("T5 \(c.text.debugDescription): got \(ids), want \(c.t5)") }
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(TokenizerFixtures.cases.count) T5 strings differ")
    }

    @Test func sentencePieceWhitespaceModeMatchesTransformers5() throws {
        _ = try TokenizerFixtures.requireData("t5/tokenizer.json")
        let tok = try #require(TokenizerFixtures.t5SentencePiece)
        var mismatches = 0
        for c in TokenizerFixtures.cases {
            let ids = tok.encode(c.text)
            if ids != c.t5_sp {
                mismatches += 1
                if mismatches <= 5 { Issue.record("T5 (sp) \(c.text.debugDescription): got \(ids), want \(c.t5_sp)") }
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(TokenizerFixtures.cases.count) T5 strings differ")
        #expect(tok.encode("a cat  ") == tok.encode("  a   cat"))
    }

    @Test func specialsPaddingAndTruncation() throws {
        _ = try TokenizerFixtures.requireData("t5/tokenizer.json")
        let tok = try #require(TokenizerFixtures.t5)
        #expect(tok.padID == 0 && tok.eosID == 1 && tok.unkID == 2)
        #expect(tok.encode("") == [1])
        let padded = tok.encodePadded("a photo of a cat")
        #expect(padded.count == 512)
        let unpadded = tok.encode("a photo of a cat")
        #expect(unpadded.last == 1)
        #expect(Array(padded[..<unpadded.count]) == unpadded)
        #expect(padded[unpadded.count...].allSatisfy { $0 == 0 })
        let long = tok.encodePadded(String(repeating: "mountain lake ", count: 400))
        #expect(long.count == 512 && long[511] == 1 && !long[..<511].contains(0))
    }

    @Test func unknownCharactersFuseIntoOneUnk() throws {
        _ = try TokenizerFixtures.requireData("t5/tokenizer.json")
        let tok = try #require(TokenizerFixtures.t5)
        // Hangul is absent from T5's vocab: a run of it is one <unk>.
        let ids = tok.encodeWithoutSpecials("한국어")
        #expect(ids.filter { $0 == 2 }.count == 1)
    }

    @Test func rejectsNonUnigramFiles() {
        let json = #"{"model": {"type": "BPE", "vocab": {}, "merges": []}}"#
        #expect(throws: TokenizerError.self) { try T5Tokenizer(tokenizerJSON: Data(json.utf8)) }
    }

    @Test func smallHandWrittenUnigram() throws {
        // Viterbi picks the best total log-probability, not the longest match.
        let json = """
        {"normalizer": null,
         "pre_tokenizer": {"type": "Metaspace", "replacement": "\\u2581", "add_prefix_space": true},
         "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}},
           {"SpecialToken": {"id": "</s>", "type_id": 0}}], "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
         "added_tokens": [{"id": 0, "content": "<pad>"}, {"id": 1, "content": "</s>"}, {"id": 2, "content": "<unk>"}],
         "model": {"type": "Unigram", "unk_id": 2, "vocab": [["<pad>", 0], ["</s>", 0], ["<unk>", 0],
           ["\\u2581", -3.0], ["\\u2581ab", -10.0], ["\\u2581a", -2.0], ["b", -2.0], ["c", -1.0]]}}
        """
        let tok = try T5Tokenizer(tokenizerJSON: Data(json.utf8), maxLength: 8)
        #expect(tok.encode("ab") == [5, 6, 1])  // ▁a + b (-4) beats ▁ab (-10)
        #expect(tok.encode("ab c") == [5, 6, 3, 7, 1])
        #expect(tok.encode("xyz") == [3, 2, 1])  // ▁ then one fused unk
        #expect(tok.encode("c c c c c c c c") == [3, 7, 3, 7, 3, 7, 3, 1])  // truncated, EOS kept
    }
}
