import Foundation

/// SentencePiece Unigram tokenizer read from a HF `tokenizer.json` (T5 v1.1 / FLUX's `tokenizer_2/`).
///
/// Implements what such files specify, as HF `tokenizers` runs it: added (special) tokens split out of the raw
/// text; normalizers `Precompiled` (SentencePiece charsmap), `Replace`, `NFC`/`NFKC`/`NFD`/`NFKD`, `Lowercase`,
/// `Sequence`; pre-tokenizers `Metaspace` (legacy `add_prefix_space` or `prepend_scheme`, `split`),
/// `WhitespaceSplit`, `Sequence`; the Unigram model (Viterbi over piece log-probabilities, unknown characters scored
/// `min_score - 10` and consecutive unknowns fused into one `unk`); `TemplateProcessing` for the specials around the
/// sequence (T5: `$A </s>`). `encode` truncates to `maxLength` keeping the trailing EOS; `encodePadded` pads with
/// `padID` (0).
public final class T5Tokenizer: Sendable {
    public static let defaultMaxLength = 512

    /// How whitespace is pre-tokenised.
    public enum WhitespaceMode: String, Sendable, CaseIterable {
        /// Exactly what the file says (HF `tokenizers`, and transformers 4.x `T5TokenizerFast` loading the file):
        /// for T5 `Replace(" {2,}", " ")` + `Metaspace`, so trailing whitespace becomes a lone "▁" token.
        case asFile = "file"
        /// What transformers ≥ 5 `T5Tokenizer` builds from the same file, and what SentencePiece itself does:
        /// `Replace` normalizers dropped, `WhitespaceSplit` then `Metaspace(prepend always, split)`, so leading,
        /// trailing and repeated whitespace vanish. The `Precompiled` charsmap is kept.
        case sentencePiece = "sentencepiece"
    }

    public let maxLength: Int
    public let padID: Int
    public let unkID: Int
    public let eosID: Int
    public let vocabularySize: Int

    private let pieces: [[UInt8]: (id: Int32, score: Double)]
    private let maxPieceBytes: Int
    private let unkScore: Double
    private let normalizers: [Normalizer]
    private let preTokenizers: [PreTokenizer]
    private let added: AddedTokenMatcher
    private let prefixIDs: [Int]
    private let suffixIDs: [Int]

    enum Normalizer: Sendable {
        case precompiled(PrecompiledCharsmap)
        case replace(RepeatPattern, String)
        case nfc, nfkc, nfd, nfkd, lowercase
    }

    enum PrependScheme: Sendable { case always, first, never }

    enum PreTokenizer: Sendable {
        case metaspace(replacement: Character, prepend: PrependScheme, split: Bool)
        case whitespaceSplit
    }

    /// The regex forms `Replace` normalizers use in practice: a literal string, or `X+` / `X{n,}` where X is one
    /// character or `\s`.
    struct RepeatPattern: Sendable {
        let atom: Unicode.Scalar?  // nil: \s
        let minCount: Int
        let literal: [Unicode.Scalar]?

        init(literal: String) {
            self.literal = Array(literal.unicodeScalars)
            atom = nil
            minCount = 0
        }

        init?(regex: String) {
            literal = nil
            var s = Substring(regex)
            if s.hasPrefix("\\s") {
                atom = nil
                s = s.dropFirst(2)
            } else if let first = s.unicodeScalars.first, !"\\[](){}.*+?|^$".unicodeScalars.contains(first) {
                atom = first
                s = Substring(s.unicodeScalars.dropFirst())
            } else {
                return nil
            }
            if s == "+" {
                minCount = 1
            } else if s.hasPrefix("{"), s.hasSuffix(",}"), let n = Int(s.dropFirst().dropLast(2)) {
                minCount = n
            } else {
                return nil
            }
        }

        func apply(_ text: [Unicode.Scalar], _ content: [Unicode.Scalar]) -> [Unicode.Scalar] {
            var out: [Unicode.Scalar] = []
            out.reserveCapacity(text.count)
            var i = 0
            if let literal {
                guard !literal.isEmpty else { return text }
                while i < text.count {
                    if i + literal.count <= text.count, text[i..<(i + literal.count)].elementsEqual(literal) {
                        out.append(contentsOf: content)
                        i += literal.count
                    } else {
                        out.append(text[i])
                        i += 1
                    }
                }
                return out
            }
            while i < text.count {
                var j = i
                while j < text.count, atom.map({ text[j] == $0 }) ?? UnicodeClasses.isSpace(text[j]) { j += 1 }
                if j - i >= max(minCount, 1) {
                    out.append(contentsOf: content)
                    i = j
                } else if j > i {
                    out.append(contentsOf: text[i..<j])
                    i = j
                } else {
                    out.append(text[i])
                    i += 1
                }
            }
            return out
        }
    }

    // MARK: Loading

    /// Loads `tokenizer.json` from a file path, or from a directory holding it directly or in `tokenizer_2/`.
    public static func load(from path: String, maxLength: Int = defaultMaxLength,
                            whitespace: WhitespaceMode = .asFile) throws -> T5Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TokenizerError(.fileNotFound, "\(path): no such file or directory (run scripts/fetch-tokenizers.sh)")
        }
        var file = path
        if isDir.boolValue {
            let url = URL(fileURLWithPath: path)
            guard let found = [url, url.appendingPathComponent("tokenizer_2")]
                .map({ $0.appendingPathComponent("tokenizer.json").path })
                .first(where: { FileManager.default.fileExists(atPath: $0) })
            else {
                throw TokenizerError(.fileNotFound, "\(path): no tokenizer.json (also looked in tokenizer_2/)")
            }
            file = found
        }
        return try T5Tokenizer(tokenizerJSON: try readFile(file), source: file, maxLength: maxLength,
                               whitespace: whitespace)
    }

    public init(tokenizerJSON data: Data, source: String = "tokenizer.json", maxLength: Int = defaultMaxLength,
                whitespace: WhitespaceMode = .asFile) throws {
        func bad(_ what: String) -> TokenizerError { TokenizerError(.malformedFile, "\(source): \(what)") }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw bad("not a JSON object")
        }
        guard let model = root["model"] as? [String: Any] else { throw bad("missing key 'model'") }
        guard (model["type"] as? String) == "Unigram" else {
            throw TokenizerError(.unsupported, "\(source): model.type \(model["type"] ?? "nil") (only Unigram is implemented)")
        }
        if (model["byte_fallback"] as? Bool) == true {
            throw TokenizerError(.unsupported, "\(source): model.byte_fallback = true is not implemented")
        }
        guard let vocab = model["vocab"] as? [[Any]] else { throw bad("model.vocab is not a list of [piece, score]") }
        guard let unk = (model["unk_id"] as? NSNumber)?.intValue, unk >= 0, unk < vocab.count else {
            throw bad("model.unk_id missing or out of range")
        }
        var pieces: [[UInt8]: (id: Int32, score: Double)] = [:]
        pieces.reserveCapacity(vocab.count)
        var minScore = Double.infinity
        var maxBytes = 1
        var idOf: [String: Int] = [:]
        for (i, entry) in vocab.enumerated() {
            guard entry.count == 2, let piece = entry[0] as? String, let score = (entry[1] as? NSNumber)?.doubleValue
            else { throw bad("model.vocab[\(i)] is not [piece, score]") }
            let bytes = Array(piece.utf8)
            pieces[bytes] = (Int32(i), score)  // a duplicate piece keeps its last id, as tokenizers does
            idOf[piece] = i
            minScore = min(minScore, score)
            maxBytes = max(maxBytes, bytes.count)
        }
        self.pieces = pieces
        maxPieceBytes = maxBytes
        unkScore = minScore - 10.0
        unkID = unk
        vocabularySize = vocab.count
        self.maxLength = maxLength

        var addedTokens: [(content: String, id: Int)] = []
        for (i, t) in ((root["added_tokens"] as? [[String: Any]]) ?? []).enumerated() {
            guard let content = t["content"] as? String, let id = (t["id"] as? NSNumber)?.intValue else {
                throw bad("added_tokens[\(i)] lacks content/id")
            }
            addedTokens.append((content, id))
            idOf[content] = id
        }
        added = AddedTokenMatcher(addedTokens)

        let fileNormalizers = try Self.parseNormalizer(root["normalizer"], source: source)
        let filePreTokenizers = try Self.parsePreTokenizer(root["pre_tokenizer"], source: source)
        switch whitespace {
        case .asFile:
            normalizers = fileNormalizers
            preTokenizers = filePreTokenizers
        case .sentencePiece:
            normalizers = fileNormalizers.filter {
                if case .replace = $0 { return false }
                return true
            }
            var replacement: Character = "\u{2581}"
            for case .metaspace(let r, _, _) in filePreTokenizers { replacement = r }
            preTokenizers = [.whitespaceSplit, .metaspace(replacement: replacement, prepend: .always, split: true)]
        }

        // Post-processor: which special ids go before/after the sequence.
        var prefix: [Int] = [], suffix: [Int] = []
        if let post = root["post_processor"] as? [String: Any] {
            guard (post["type"] as? String) == "TemplateProcessing", let single = post["single"] as? [[String: Any]] else {
                throw TokenizerError(.unsupported, "\(source): post_processor \(post["type"] ?? "nil") (only TemplateProcessing)")
            }
            let specials = post["special_tokens"] as? [String: Any] ?? [:]
            var seenSequence = false
            for item in single {
                if item["Sequence"] != nil {
                    seenSequence = true
                } else if let sp = item["SpecialToken"] as? [String: Any], let name = sp["id"] as? String {
                    var ids: [Int] = []
                    if let entry = specials[name] as? [String: Any], let list = entry["ids"] as? [NSNumber] {
                        ids = list.map(\.intValue)
                    } else if let id = idOf[name] {
                        ids = [id]
                    } else {
                        throw bad("post_processor special token \(name) has no id")
                    }
                    if seenSequence { suffix += ids } else { prefix += ids }
                }
            }
        }
        prefixIDs = prefix
        suffixIDs = suffix
        eosID = suffix.last ?? idOf["</s>"] ?? 1
        padID = idOf["<pad>"] ?? 0
        guard maxLength > prefix.count + suffix.count else { throw bad("maxLength \(maxLength) leaves no room for text") }
    }

    private static func parseNormalizer(_ any: Any?, source: String) throws -> [Normalizer] {
        guard let n = any as? [String: Any] else { return [] }
        let type = n["type"] as? String ?? "nil"
        switch type {
        case "Sequence":
            return try ((n["normalizers"] as? [Any]) ?? []).flatMap { try parseNormalizer($0, source: source) }
        case "Precompiled":
            guard let b64 = n["precompiled_charsmap"] as? String else { return [] }
            return [.precompiled(try PrecompiledCharsmap(base64: b64, source: source))]
        case "Replace":
            let content = n["content"] as? String ?? ""
            let pattern = n["pattern"] as? [String: Any] ?? [:]
            if let s = pattern["String"] as? String { return [.replace(RepeatPattern(literal: s), content)] }
            if let r = pattern["Regex"] as? String, let p = RepeatPattern(regex: r) { return [.replace(p, content)] }
            throw TokenizerError(.unsupported, "\(source): Replace normalizer pattern \(pattern) is not implemented")
        case "NFC": return [.nfc]
        case "NFKC": return [.nfkc]
        case "NFD": return [.nfd]
        case "NFKD": return [.nfkd]
        case "Lowercase": return [.lowercase]
        default: throw TokenizerError(.unsupported, "\(source): normalizer \(type) is not implemented")
        }
    }

    private static func parsePreTokenizer(_ any: Any?, source: String) throws -> [PreTokenizer] {
        guard let p = any as? [String: Any] else { return [] }
        let type = p["type"] as? String ?? "nil"
        switch type {
        case "Sequence":
            return try ((p["pretokenizers"] as? [Any]) ?? []).flatMap { try parsePreTokenizer($0, source: source) }
        case "WhitespaceSplit": return [.whitespaceSplit]
        case "Metaspace":
            let replacement = (p["replacement"] as? String).flatMap(\.first) ?? "\u{2581}"
            var scheme = PrependScheme.always
            if let s = p["prepend_scheme"] as? String {
                scheme = s == "first" ? .first : s == "never" ? .never : .always
            } else if let add = p["add_prefix_space"] as? Bool {
                scheme = add ? .always : .never
            }
            return [.metaspace(replacement: replacement, prepend: scheme, split: p["split"] as? Bool ?? true)]
        default: throw TokenizerError(.unsupported, "\(source): pre_tokenizer \(type) is not implemented")
        }
    }

    // MARK: Encoding

    /// Ids with the template's specials (T5: EOS appended), truncated to `maxLength` keeping them, unpadded.
    public func encode(_ text: String) -> [Int] {
        let room = maxLength - prefixIDs.count - suffixIDs.count
        return prefixIDs + encodeWithoutSpecials(text).prefix(room) + suffixIDs
    }

    /// `encode` padded with `padID` to exactly `maxLength` ids (FLUX: 512; no attention mask is used).
    public func encodePadded(_ text: String) -> [Int] {
        var ids = encode(text)
        ids.append(contentsOf: repeatElement(padID, count: maxLength - ids.count))
        return ids
    }

    /// Content ids only: no template specials, no truncation.
    public func encodeWithoutSpecials(_ text: String) -> [Int] {
        var ids: [Int] = []
        var isFirst = true
        for segment in added.split(Array(text.utf8)) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let bytes):
                let normalized = normalize(String(decoding: bytes, as: UTF8.self))
                for word in preTokenize(normalized, isFirstSegment: isFirst) { viterbi(Array(word.utf8), into: &ids) }
            }
            isFirst = false
        }
        return ids
    }

    func normalize(_ text: String) -> String {
        var s = text
        for n in normalizers {
            switch n {
            case .precompiled(let map): s = map.normalize(s)
            case .replace(let pattern, let content):
                var scalars = String.UnicodeScalarView()
                scalars.append(contentsOf: pattern.apply(Array(s.unicodeScalars), Array(content.unicodeScalars)))
                s = String(scalars)
            case .nfc: s = s.precomposedStringWithCanonicalMapping
            case .nfkc: s = s.precomposedStringWithCompatibilityMapping
            case .nfd: s = s.decomposedStringWithCanonicalMapping
            case .nfkd: s = s.decomposedStringWithCompatibilityMapping
            case .lowercase:
                var scalars = String.UnicodeScalarView()
                scalars.append(contentsOf: UnicodeClasses.lowercased(Array(s.unicodeScalars)))
                s = String(scalars)
            }
        }
        return s
    }

    func preTokenize(_ text: String, isFirstSegment: Bool) -> [String] {
        var words: [[Unicode.Scalar]] = [Array(text.unicodeScalars)]
        for p in preTokenizers {
            var next: [[Unicode.Scalar]] = []
            for w in words {
                switch p {
                case .whitespaceSplit:
                    var cur: [Unicode.Scalar] = []
                    for s in w {
                        if s.properties.isWhitespace {
                            if !cur.isEmpty { next.append(cur); cur = [] }
                        } else {
                            cur.append(s)
                        }
                    }
                    if !cur.isEmpty { next.append(cur) }
                case .metaspace(let replacement, let prepend, let split):
                    let r = replacement.unicodeScalars.first!
                    var s = w.map { $0 == " " ? r : $0 }
                    if !s.isEmpty, s.first != r, prepend == .always || (prepend == .first && isFirstSegment) {
                        s.insert(r, at: 0)
                    }
                    guard split else {
                        if !s.isEmpty { next.append(s) }
                        continue
                    }
                    var cur: [Unicode.Scalar] = []
                    for c in s {  // MergedWithNext: each replacement char starts a new word
                        if c == r, !cur.isEmpty { next.append(cur); cur = [] }
                        cur.append(c)
                    }
                    if !cur.isEmpty { next.append(cur) }
                }
            }
            words = next
        }
        return words.map { w in
            var v = String.UnicodeScalarView()
            v.append(contentsOf: w)
            return String(v)
        }
    }

    /// Best segmentation of one pre-token (tokenizers' `Unigram::encode_optimized`), ids appended.
    private func viterbi(_ bytes: [UInt8], into ids: inout [Int]) {
        let n = bytes.count
        guard n > 0 else { return }
        var bestScore = [Double](repeating: 0, count: n + 1)
        var startsAt = [Int](repeating: -1, count: n + 1)
        var nodeID = [Int32](repeating: 0, count: n + 1)
        var start = 0
        while start < n {
            let base = bestScore[start]
            let lead = bytes[start]
            let charLen = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
            var hasSingle = false
            var end = start + 1
            let limit = min(n, start + maxPieceBytes)
            while end <= limit {
                if let piece = pieces[Array(bytes[start..<end])] {
                    let candidate = base + piece.score
                    if startsAt[end] < 0 || candidate > bestScore[end] {
                        bestScore[end] = candidate
                        startsAt[end] = start
                        nodeID[end] = piece.id
                    }
                    if end - start == charLen { hasSingle = true }
                }
                end += 1
            }
            let charEnd = min(n, start + charLen)
            if !hasSingle {
                let candidate = base + unkScore
                if startsAt[charEnd] < 0 || candidate > bestScore[charEnd] {
                    bestScore[charEnd] = candidate
                    startsAt[charEnd] = start
                    nodeID[charEnd] = Int32(unkID)
                }
            }
            start = charEnd
        }
        // Backtrack; consecutive unknown pieces fuse into one unk.
        var reversed: [Int] = []
        var end = n
        var lastWasUnk = false
        while end > 0 {
            let s = startsAt[end]
            let id = Int(nodeID[end])
            if id == unkID {
                if !lastWasUnk { reversed.append(unkID) }
                lastWasUnk = true
            } else {
                reversed.append(id)
                lastWasUnk = false
            }
            end = s
        }
        ids.append(contentsOf: reversed.reversed())
    }
}
