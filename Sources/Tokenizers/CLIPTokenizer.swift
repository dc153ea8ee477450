import Foundation

/// CLIP's byte-level BPE tokenizer (openai/clip-vit-large-patch14, FLUX's `tokenizer/`).
///
/// Matches HF `tokenizers` as transformers builds it for `CLIPTokenizer`: NFC, whitespace runs → one space,
/// lower-case, the CLIP regex pre-split (`'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`), GPT-2 byte→unicode
/// mapping, BPE with the word-final suffix `</w>`, then `<|startoftext|>` … `<|endoftext|>`.
/// `encode` truncates to `maxLength` keeping the EOS; `encodePadded` pads with `padID` (49407 for SD1/SDXL/FLUX).
public final class CLIPTokenizer: Sendable {
    public static let defaultMaxLength = 77

    public let bosID: Int
    public let eosID: Int
    public let padID: Int
    public let maxLength: Int
    public let vocabularySize: Int

    /// Symbol id of each byte as a non-final and as a word-final (`</w>`) symbol.
    private let byteID: [Int32]
    private let byteEndID: [Int32]
    /// (left id, right id) → (rank, merged id).
    private let merges: [UInt64: (rank: Int32, id: Int32)]
    private let special: AddedTokenMatcher

    /// Builds from a vocab (token → id) and merges in rank order, as in HF `vocab.json` + `merges.txt`.
    public init(vocab: [String: Int], merges mergePairs: [(String, String)], maxLength: Int = defaultMaxLength,
                padToken: String = "<|endoftext|>", source: String = "vocab") throws {
        func id(_ token: String) throws -> Int {
            guard let v = vocab[token] else {
                throw TokenizerError(.malformedFile, "\(source): token \(token.debugDescription) missing from the vocab")
            }
            return v
        }
        bosID = try id("<|startoftext|>")
        eosID = try id("<|endoftext|>")
        padID = try id(padToken)
        self.maxLength = maxLength
        vocabularySize = vocab.count
        guard maxLength >= 2 else { throw TokenizerError(.malformedFile, "\(source): maxLength \(maxLength) < 2") }

        let table = Self.bytesToUnicode
        var byteID = [Int32](repeating: 0, count: 256)
        var byteEndID = [Int32](repeating: 0, count: 256)
        for b in 0..<256 {
            let ch = String(table[b])
            byteID[b] = Int32(try id(ch))
            byteEndID[b] = Int32(try id(ch + "</w>"))
        }
        self.byteID = byteID
        self.byteEndID = byteEndID

        var m: [UInt64: (rank: Int32, id: Int32)] = [:]
        m.reserveCapacity(mergePairs.count)
        for (rank, (a, b)) in mergePairs.enumerated() {
            let key = Self.pairKey(Int32(try id(a)), Int32(try id(b)))
            if m[key] == nil { m[key] = (Int32(rank), Int32(try id(a + b))) }
        }
        merges = m
        special = AddedTokenMatcher([("<|startoftext|>", bosID), ("<|endoftext|>", eosID)])
    }

    /// Loads from a directory holding `vocab.json` + `merges.txt` (or its `tokenizer/` subdirectory, as shipped beside
    /// diffusers weights), or from open_clip's `bpe_simple_vocab_16e6.txt[.gz]`, or from a `merges.txt` file.
    public static func load(from path: String, maxLength: Int = defaultMaxLength) throws -> CLIPTokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TokenizerError(.fileNotFound, "\(path): no such file or directory (run scripts/fetch-tokenizers.sh)")
        }
        if isDir.boolValue {
            let url = URL(fileURLWithPath: path)
            for dir in [url, url.appendingPathComponent("tokenizer")] {
                let vocabURL = dir.appendingPathComponent("vocab.json")
                let mergesURL = dir.appendingPathComponent("merges.txt")
                if FileManager.default.fileExists(atPath: vocabURL.path),
                   FileManager.default.fileExists(atPath: mergesURL.path) {
                    return try load(vocabJSON: vocabURL.path, mergesTXT: mergesURL.path, maxLength: maxLength)
                }
            }
            for name in ["bpe_simple_vocab_16e6.txt.gz", "bpe_simple_vocab_16e6.txt"] {
                let f = url.appendingPathComponent(name).path
                if FileManager.default.fileExists(atPath: f) { return try load(bpeFile: f, maxLength: maxLength) }
            }
            throw TokenizerError(.fileNotFound,
                                 "\(path): no vocab.json + merges.txt (also looked in tokenizer/) nor bpe_simple_vocab_16e6.txt.gz")
        }
        return try load(bpeFile: path, maxLength: maxLength)
    }

    /// HF form: `vocab.json` (token → id) and `merges.txt` (`#version` header, one "a b" pair per line).
    public static func load(vocabJSON: String, mergesTXT: String, maxLength: Int = defaultMaxLength) throws -> CLIPTokenizer {
        let data = try readFile(vocabJSON)
        guard let object = try? JSONSerialization.jsonObject(with: data), let dict = object as? [String: Any] else {
            throw TokenizerError(.malformedFile, "\(vocabJSON): not a JSON object of token → id")
        }
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(dict.count)
        for (k, v) in dict {
            guard let n = v as? NSNumber else {
                throw TokenizerError(.malformedFile, "\(vocabJSON): id of \(k.debugDescription) is not a number")
            }
            vocab[k] = n.intValue
        }
        let pairs = try parseMerges(Array(try readFile(mergesTXT)), name: mergesTXT, limit: nil)
        return try CLIPTokenizer(vocab: vocab, merges: pairs, maxLength: maxLength, source: vocabJSON)
    }

    /// open_clip / openai CLIP form: the merges file alone (optionally gzipped); the vocab is rebuilt as CLIP does
    /// (256 byte symbols, the same with `</w>`, the first 48,894 merges, then the two specials).
    public static func load(bpeFile: String, maxLength: Int = defaultMaxLength) throws -> CLIPTokenizer {
        let mergeCount = 49152 - 256 - 2
        var bytes = Array(try readFile(bpeFile))
        if bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B {
            bytes = try Gzip.decompress(bytes, name: bpeFile, stopAfterLines: mergeCount + 1)
        }
        let pairs = try parseMerges(bytes, name: bpeFile, limit: mergeCount, skipFirstLine: true)
        guard pairs.count == mergeCount else {
            throw TokenizerError(.malformedFile, "\(bpeFile): \(pairs.count) merges, CLIP needs \(mergeCount)")
        }
        let symbols = byteOrder.map { String(bytesToUnicode[$0]) }  // CLIP's order: printable bytes first
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(49408)
        var next = 0
        func add(_ t: String) {
            if vocab[t] == nil { vocab[t] = next }
            next += 1
        }
        for s in symbols { add(s) }
        for s in symbols { add(s + "</w>") }
        for (a, b) in pairs { add(a + b) }
        add("<|startoftext|>")
        add("<|endoftext|>")
        return try CLIPTokenizer(vocab: vocab, merges: pairs, maxLength: maxLength, source: bpeFile)
    }

    // MARK: Encoding

    /// Token ids with BOS/EOS, truncated to `maxLength` (the EOS is kept), unpadded.
    public func encode(_ text: String) -> [Int] {
        var ids = [bosID]
        ids.append(contentsOf: encodeWithoutSpecials(text).prefix(maxLength - 2))
        ids.append(eosID)
        return ids
    }

    /// `encode` padded with `padID` to exactly `maxLength` ids (what FLUX feeds CLIP-L).
    public func encodePadded(_ text: String) -> [Int] {
        var ids = encode(text)
        ids.append(contentsOf: repeatElement(padID, count: maxLength - ids.count))
        return ids
    }

    /// Content ids only: no BOS/EOS, no truncation.
    public func encodeWithoutSpecials(_ text: String) -> [Int] {
        var ids: [Int] = []
        for segment in special.split(Array(text.utf8)) {
            switch segment {
            case .token(let id): ids.append(id)
            case .text(let bytes):
                let normalized = Self.normalize(String(decoding: bytes, as: UTF8.self))
                for piece in Self.preSplit(normalized) { bpe(piece, into: &ids) }
            }
        }
        return ids
    }

    /// NFC, every `\s+` run → " ", per-character lower-case.
    static func normalize(_ text: String) -> [Unicode.Scalar] {
        let nfc = text.precomposedStringWithCanonicalMapping
        var collapsed: [Unicode.Scalar] = []
        collapsed.reserveCapacity(nfc.unicodeScalars.count)
        var inSpace = false
        for s in nfc.unicodeScalars {
            if UnicodeClasses.isSpace(s) {
                if !inSpace { collapsed.append(" ") }
                inSpace = true
            } else {
                collapsed.append(s)
                inSpace = false
            }
        }
        return UnicodeClasses.lowercased(collapsed)
    }

    private static let contractions: [[Unicode.Scalar]] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map {
        Array($0.unicodeScalars)
    }

    /// The CLIP regex split with `behavior: removed, invert: true`: keeps the matches, drops the rest (whitespace).
    static func preSplit(_ s: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var pieces: [ArraySlice<Unicode.Scalar>] = []
        var i = 0
        let n = s.count
        scan: while i < n {
            let c = s[i]
            if UnicodeClasses.isSpace(c) { i += 1; continue }
            if c == "'" {
                for con in contractions where i + con.count <= n && s[i..<(i + con.count)].elementsEqual(con) {
                    pieces.append(s[i..<(i + con.count)])
                    i += con.count
                    continue scan
                }
            }
            var j = i + 1
            if UnicodeClasses.isLetter(c) {
                while j < n, UnicodeClasses.isLetter(s[j]) { j += 1 }
            } else if UnicodeClasses.isNumber(c) {
                // one digit per piece
            } else {
                while j < n, !UnicodeClasses.isSpace(s[j]), !UnicodeClasses.isLetter(s[j]), !UnicodeClasses.isNumber(s[j]) {
                    j += 1
                }
            }
            pieces.append(s[i..<j])
            i = j
        }
        return pieces
    }

    /// Byte-level BPE of one pre-token; appends the ids.
    private func bpe(_ piece: ArraySlice<Unicode.Scalar>, into ids: inout [Int]) {
        var bytes: [UInt8] = []
        for s in piece { bytes.append(contentsOf: utf8Bytes(s)) }
        guard !bytes.isEmpty else { return }
        var symbols = [Int32]()
        symbols.reserveCapacity(bytes.count)
        for (k, b) in bytes.enumerated() {
            symbols.append(k == bytes.count - 1 ? byteEndID[Int(b)] : byteID[Int(b)])
        }
        // Repeatedly merge the lowest-ranked adjacent pair (leftmost first among equal ranks).
        while symbols.count > 1 {
            var bestRank = Int32.max, bestAt = -1, bestID: Int32 = 0
            for k in 0..<(symbols.count - 1) {
                if let m = merges[Self.pairKey(symbols[k], symbols[k + 1])], m.rank < bestRank {
                    bestRank = m.rank
                    bestAt = k
                    bestID = m.id
                }
            }
            if bestAt < 0 { break }
            symbols[bestAt] = bestID
            symbols.remove(at: bestAt + 1)
        }
        for s in symbols { ids.append(Int(s)) }
    }

    @inline(__always)
    private static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    /// Byte values in the order GPT-2's `bytes_to_unicode()` lists them (printable ones first).
    static let byteOrder: [Int] = {
        let printable = Array(33...126) + Array(161...172) + Array(174...255)
        return printable + (0..<256).filter { !printable.contains($0) }
    }()

    /// GPT-2's reversible byte → printable-unicode table, indexed by byte value.
    static let bytesToUnicode: [Character] = {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()

    /// Parses "left right" lines. Line 1 is skipped when it is a `#version` header, or always with `skipFirstLine`
    /// (open_clip's file starts with a header line that CLIP drops unread).
    static func parseMerges(_ bytes: [UInt8], name: String, limit: Int?, skipFirstLine: Bool = false) throws
        -> [(String, String)] {
        var pairs: [(String, String)] = []
        var lineNumber = 0
        var start = 0
        let n = bytes.count
        while start < n {
            var end = start
            while end < n, bytes[end] != 0x0A { end += 1 }
            lineNumber += 1
            var line = bytes[start..<end]
            if line.last == 0x0D { line = line.dropLast() }
            start = end + 1
            if lineNumber == 1, skipFirstLine || line.first == UInt8(ascii: "#") { continue }
            if line.isEmpty { continue }
            guard let space = line.firstIndex(of: 0x20), space > line.startIndex, space < line.endIndex - 1 else {
                throw TokenizerError(.malformedFile, "\(name):\(lineNumber): expected \"left right\" merge pair")
            }
            pairs.append((String(decoding: line[..<space], as: UTF8.self),
                          String(decoding: line[(space + 1)...], as: UTF8.self)))
            if let limit, pairs.count >= limit { break }
        }
        return pairs
    }
}

func readFile(_ path: String) throws -> Data {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw TokenizerError(.fileNotFound, "\(path): cannot read file (run scripts/fetch-tokenizers.sh)")
    }
    return data
}
