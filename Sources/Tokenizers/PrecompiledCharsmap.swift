import Foundation

/// SentencePiece's precompiled normalisation map (`precompiled_charsmap` in a `tokenizer.json`, e.g. nmt_nfkc for
/// T5): a darts-clone double-array trie over UTF-8 keys whose values index NUL-terminated replacement strings.
///
/// Applied as HF `tokenizers` applies it: per extended grapheme cluster; a cluster shorter than 6 bytes is looked up
/// whole first, otherwise (or when absent) each character is replaced or kept.
struct PrecompiledCharsmap: Sendable {
    private let units: [UInt32]
    private let normalized: [UInt8]

    init(base64: String, source: String) throws {
        guard let data = Data(base64Encoded: base64) else {
            throw TokenizerError(.malformedFile, "\(source): precompiled_charsmap is not base64")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= 4 else { throw TokenizerError(.malformedFile, "\(source): precompiled_charsmap too short") }
        let trieSize = Int(UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
        guard trieSize % 4 == 0, 4 + trieSize <= bytes.count else {
            throw TokenizerError(.malformedFile, "\(source): precompiled_charsmap trie size \(trieSize) out of range")
        }
        var units = [UInt32](repeating: 0, count: trieSize / 4)
        for i in 0..<units.count {
            let p = 4 + 4 * i
            units[i] = UInt32(bytes[p]) | UInt32(bytes[p + 1]) << 8 | UInt32(bytes[p + 2]) << 16 | UInt32(bytes[p + 3]) << 24
        }
        self.units = units
        normalized = Array(bytes[(4 + trieSize)...])
    }

    // darts-clone unit fields
    @inline(__always) private static func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
    @inline(__always) private static func value(_ u: UInt32) -> Int { Int(u & ((1 << 31) - 1)) }
    @inline(__always) private static func label(_ u: UInt32) -> UInt32 { u & ((1 << 31) | 0xFF) }
    @inline(__always) private static func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }

    /// The replacement for `key` if some prefix of it is in the map (the shortest such prefix wins, and the whole
    /// key is replaced, exactly as `spm_precompiled::Precompiled::transform`).
    func transform<C: Collection>(_ key: C) -> ArraySlice<UInt8>? where C.Element == UInt8 {
        guard !units.isEmpty else { return nil }
        var nodePos = Self.offset(units[0])
        for c in key {
            if c == 0 { break }
            nodePos ^= Int(c)
            guard nodePos < units.count else { return nil }
            let unit = units[nodePos]
            if Self.label(unit) != UInt32(c) { return nil }
            nodePos ^= Self.offset(unit)
            if Self.hasLeaf(unit) {
                guard nodePos < units.count else { return nil }
                let start = Self.value(units[nodePos])
                guard start <= normalized.count else { return nil }
                var end = start
                while end < normalized.count, normalized[end] != 0 { end += 1 }
                return normalized[start..<end]
            }
        }
        return nil
    }

    func normalize(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for grapheme in text {
            let g = Array(String(grapheme).utf8)
            if g.count < 6, let r = transform(g) {
                out.append(contentsOf: r)
                continue
            }
            for scalar in grapheme.unicodeScalars {
                let part = utf8Bytes(scalar)
                if let r = transform(part) { out.append(contentsOf: r) } else { out.append(contentsOf: part) }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

@inline(__always)
func utf8Bytes(_ s: Unicode.Scalar) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(4)
    UTF8.encode(s) { out.append($0) }
    return out
}
