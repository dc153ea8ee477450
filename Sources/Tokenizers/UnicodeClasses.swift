/// Character classes as the Oniguruma regexes of HF `tokenizers` see them (`\s`, `\p{L}`, `\p{N}`), and the
/// per-character lower-casing of its `Lowercase` normalizer (Rust `char::to_lowercase`: full mappings, no context).
enum UnicodeClasses {
    /// `\s`: the Unicode White_Space property (Oniguruma's Unicode `\s` is exactly that set).
    @inline(__always)
    static func isSpace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x20, 0x09...0x0D: return true
        case 0..<0x80: return false
        default: return s.properties.isWhitespace
        }
    }

    /// `\p{L}`: general category L (Lu, Ll, Lt, Lm, Lo).
    @inline(__always)
    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x41...0x5A, 0x61...0x7A: return true
        case 0..<0x80: return false
        default:
            switch s.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
            default: return false
            }
        }
    }

    /// `\p{N}`: general category N (Nd, Nl, No).
    @inline(__always)
    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x30...0x39: return true
        case 0..<0x80: return false
        default:
            switch s.properties.generalCategory {
            case .decimalNumber, .letterNumber, .otherNumber: return true
            default: return false
            }
        }
    }

    static func lowercased(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(scalars.count)
        for s in scalars {
            if s.value < 0x80 {
                out.append((0x41...0x5A).contains(s.value) ? Unicode.Scalar(s.value + 32)! : s)
            } else {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }
}

/// Leftmost-longest matching of literal "added tokens" (special tokens such as `</s>` or `<|endoftext|>`) in raw
/// text, as HF `tokenizers` does for added tokens marked `normalized: false` before normalisation.
struct AddedTokenMatcher: Sendable {
    /// Token UTF-8 bytes grouped by first byte, longest first.
    private let byFirstByte: [UInt8: [([UInt8], Int)]]

    init(_ tokens: [(content: String, id: Int)]) {
        var map: [UInt8: [([UInt8], Int)]] = [:]
        for (content, id) in tokens where !content.isEmpty {
            let bytes = Array(content.utf8)
            map[bytes[0], default: []].append((bytes, id))
        }
        for k in map.keys { map[k]!.sort { $0.0.count > $1.0.count } }
        byFirstByte = map
    }

    enum Segment: Equatable {
        case text([UInt8])
        case token(Int)
    }

    /// Splits UTF-8 text into plain-text runs and added-token ids.
    func split(_ utf8: [UInt8]) -> [Segment] {
        if byFirstByte.isEmpty { return [.text(utf8)] }
        var segments: [Segment] = []
        var runStart = 0
        var i = 0
        outer: while i < utf8.count {
            if let candidates = byFirstByte[utf8[i]] {
                for (bytes, id) in candidates where i + bytes.count <= utf8.count {
                    if utf8[i..<(i + bytes.count)].elementsEqual(bytes) {
                        if runStart < i { segments.append(.text(Array(utf8[runStart..<i]))) }
                        segments.append(.token(id))
                        i += bytes.count
                        runStart = i
                        continue outer
                    }
                }
            }
            i += 1
        }
        if runStart < utf8.count { segments.append(.text(Array(utf8[runStart..<utf8.count]))) }
        return segments
    }
}
