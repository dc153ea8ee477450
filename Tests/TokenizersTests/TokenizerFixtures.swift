import Foundation
import Testing
@testable import Tokenizers

/// Locations of the fetched tokenizer data and the committed parity fixture.
enum TokenizerFixtures {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `DREAMSR_TOKENIZERS_DIR` or `<repo>/models/tokenizers` (written by scripts/fetch-tokenizers.sh).
    static var dataDir: URL {
        if let env = ProcessInfo.processInfo.environment["DREAMSR_TOKENIZERS_DIR"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return repoRoot.appendingPathComponent("models/tokenizers")
    }

    struct Case: Decodable {
        let text: String
        let clip: [Int]
        let t5: [Int]
        let t5_sp: [Int]
    }

    struct Document: Decodable {
        let cases: [Case]
    }

    static let cases: [Case] = {
        let url = repoRoot.appendingPathComponent("Tests/Fixtures/tokenizers/tokenizer_parity.json")
        guard let data = FileManager.default.contents(atPath: url.path),
              let doc = try? JSONDecoder().decode(Document.self, from: data) else { return [] }
        return doc.cases
    }()

    /// Fails the test (never skips) when the data is missing.
    static func requireData(_ relative: String) throws -> String {
        let path = dataDir.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("missing tokenizer data \(path): run scripts/fetch-tokenizers.sh first")
            throw TokenizerError(.fileNotFound, path)
        }
        return path
    }

    // Loaded once per test process; `nil` when the data is missing (tests then fail via requireData).
    static let clipFromJSON: CLIPTokenizer? = try? CLIPTokenizer.load(from: dataDir.appendingPathComponent("clip").path)
    static let clipFromGzip: CLIPTokenizer? = try? CLIPTokenizer.load(
        bpeFile: dataDir.appendingPathComponent("clip/bpe_simple_vocab_16e6.txt.gz").path)
    static let t5: T5Tokenizer? = try? T5Tokenizer.load(from: dataDir.appendingPathComponent("t5/tokenizer.json").path)
    static let t5SentencePiece: T5Tokenizer? = try? T5Tokenizer.load(
        from: dataDir.appendingPathComponent("t5/tokenizer.json").path, whitespace: .sentencePiece)
}
