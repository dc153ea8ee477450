import ArgumentParser
import Foundation
import Tokenizers

/// `dreamsr tokenize clip|t5 --tokenizer DIR_OR_FILE TEXT...`: one JSON array of token ids per TEXT, one per line.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids FLUX's text encoders would get, one JSON array per text.",
        discussion: """
            clip: a directory with vocab.json + merges.txt (or its tokenizer/ subdirectory), or open_clip's \
            bpe_simple_vocab_16e6.txt[.gz]. t5: a tokenizer.json, or a directory holding it (or tokenizer_2/). \
            scripts/fetch-tokenizers.sh puts both under models/tokenizers/.
            """
    )

    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case clip, t5
    }

    @Argument(help: "Which tokenizer: clip or t5.")
    var kind: Kind

    @Option(help: "Tokenizer directory or file.")
    var tokenizer: String

    @Option(help: "Maximum length including specials (default: 77 for clip, 512 for t5).")
    var maxLength: Int?

    @Option(help: "t5 whitespace handling: file (HF tokenizers, exactly the file) or sentencepiece (transformers >= 5).")
    var whitespace: String = T5Tokenizer.WhitespaceMode.asFile.rawValue

    @Flag(help: "Pad every line to the maximum length (49407 for clip, 0 for t5), as FLUX does.")
    var pad = false

    @Argument(help: "Texts to tokenize.")
    var texts: [String] = []

    func run() throws {
        var lines: [[Int]] = []
        switch kind {
        case .clip:
            let tok = try CLIPTokenizer.load(from: tokenizer, maxLength: maxLength ?? CLIPTokenizer.defaultMaxLength)
            lines = texts.map { pad ? tok.encodePadded($0) : tok.encode($0) }
        case .t5:
            guard let mode = T5Tokenizer.WhitespaceMode(rawValue: whitespace) else {
                throw ValidationError("--whitespace must be one of: "
                    + T5Tokenizer.WhitespaceMode.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let tok = try T5Tokenizer.load(from: tokenizer, maxLength: maxLength ?? T5Tokenizer.defaultMaxLength,
                                           whitespace: mode)
            lines = texts.map { pad ? tok.encodePadded($0) : tok.encode($0) }
        }
        for ids in lines {
            print("[" + ids.map { String($0) }.joined(separator: ",") + "]")
        }
    }
}
