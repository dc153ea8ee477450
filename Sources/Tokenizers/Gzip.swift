/// Minimal gzip (RFC 1952) + DEFLATE (RFC 1951) decoder, enough to read open_clip's
/// `bpe_simple_vocab_16e6.txt.gz` without linking zlib. Not streaming; whole member in, bytes out.
enum Gzip {
    /// Decompresses the first gzip member. With `stopAfterLines`, decoding ends after the deflate block in which that
    /// many newlines have been produced (callers that need only the head of a large text file).
    static func decompress(_ data: [UInt8], name: String, stopAfterLines: Int? = nil) throws -> [UInt8] {
        guard data.count >= 18, data[0] == 0x1F, data[1] == 0x8B, data[2] == 8 else {
            throw TokenizerError(.malformedFile, "\(name): not a gzip (deflate) file")
        }
        let flags = data[3]
        var pos = 10
        if flags & 0x04 != 0 {  // FEXTRA
            guard pos + 2 <= data.count else { throw truncated(name) }
            pos += 2 + Int(data[pos]) | (Int(data[pos + 1]) << 8)
        }
        if flags & 0x08 != 0 { pos = try skipZeroTerminated(data, pos, name) }  // FNAME
        if flags & 0x10 != 0 { pos = try skipZeroTerminated(data, pos, name) }  // FCOMMENT
        if flags & 0x02 != 0 { pos += 2 }  // FHCRC
        guard pos < data.count else { throw truncated(name) }
        var inflater = Inflater(data: data, bytePosition: pos, name: name)
        return try inflater.run(stopAfterLines: stopAfterLines)
    }

    private static func skipZeroTerminated(_ data: [UInt8], _ start: Int, _ name: String) throws -> Int {
        var p = start
        while p < data.count, data[p] != 0 { p += 1 }
        guard p < data.count else { throw truncated(name) }
        return p + 1
    }

    static func truncated(_ name: String) -> TokenizerError {
        TokenizerError(.malformedFile, "\(name): truncated or corrupt gzip data")
    }
}

private struct Huffman {
    // Canonical Huffman decoding table: counts per length and symbols sorted by code.
    var counts = [Int](repeating: 0, count: 16)
    var symbols: [Int] = []

    init(lengths: [Int]) {
        for l in lengths { counts[l] += 1 }
        counts[0] = 0
        var offsets = [Int](repeating: 0, count: 16)
        for i in 1..<16 { offsets[i] = offsets[i - 1] + counts[i - 1] }
        symbols = [Int](repeating: 0, count: lengths.count)
        for (sym, l) in lengths.enumerated() where l != 0 {
            symbols[offsets[l]] = sym
            offsets[l] += 1
        }
    }
}

private struct Inflater {
    let data: [UInt8]
    var bytePosition: Int
    var bitBuffer: UInt32 = 0
    var bitCount = 0
    let name: String
    var out: [UInt8] = []

    init(data: [UInt8], bytePosition: Int, name: String) {
        self.data = data
        self.bytePosition = bytePosition
        self.name = name
        out.reserveCapacity(data.count * 4)
    }

    mutating func bits(_ n: Int) throws -> Int {
        while bitCount < n {
            guard bytePosition < data.count else { throw Gzip.truncated(name) }
            bitBuffer |= UInt32(data[bytePosition]) << UInt32(bitCount)
            bytePosition += 1
            bitCount += 8
        }
        let v = Int(bitBuffer & ((1 << UInt32(n)) - 1))
        bitBuffer >>= UInt32(n)
        bitCount -= n
        return v
    }

    mutating func decode(_ h: Huffman) throws -> Int {
        var code = 0, first = 0, index = 0
        for len in 1..<16 {
            code |= try bits(1)
            let count = h.counts[len]
            if code - count < first { return h.symbols[index + (code - first)] }
            index += count
            first += count
            first <<= 1
            code <<= 1
        }
        throw TokenizerError(.malformedFile, "\(name): invalid Huffman code in deflate stream")
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
                             131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
                           2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
                            13, 13]

    mutating func run(stopAfterLines: Int?) throws -> [UInt8] {
        var last = 0
        var lines = 0, scanned = 0
        repeat {
            last = try bits(1)
            switch try bits(2) {
            case 0: try stored()
            case 1:
                var lengths = [Int](repeating: 8, count: 288)
                for i in 144..<256 { lengths[i] = 9 }
                for i in 256..<280 { lengths[i] = 7 }
                try block(Huffman(lengths: lengths), Huffman(lengths: [Int](repeating: 5, count: 30)))
            case 2: try dynamic()
            default: throw TokenizerError(.malformedFile, "\(name): invalid deflate block type")
            }
            if let stopAfterLines {
                while scanned < out.count {
                    if out[scanned] == 0x0A { lines += 1 }
                    scanned += 1
                }
                if lines >= stopAfterLines { break }
            }
        } while last == 0
        return out
    }

    mutating func stored() throws {
        bitBuffer = 0
        bitCount = 0
        guard bytePosition + 4 <= data.count else { throw Gzip.truncated(name) }
        let len = Int(data[bytePosition]) | Int(data[bytePosition + 1]) << 8
        bytePosition += 4
        guard bytePosition + len <= data.count else { throw Gzip.truncated(name) }
        out.append(contentsOf: data[bytePosition..<(bytePosition + len)])
        bytePosition += len
    }

    mutating func dynamic() throws {
        let nlen = try bits(5) + 257, ndist = try bits(5) + 1, ncode = try bits(4) + 4
        let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
        var codeLengths = [Int](repeating: 0, count: 19)
        for i in 0..<ncode { codeLengths[order[i]] = try bits(3) }
        let codeHuffman = Huffman(lengths: codeLengths)
        var lengths: [Int] = []
        while lengths.count < nlen + ndist {
            let sym = try decode(codeHuffman)
            switch sym {
            case 0..<16: lengths.append(sym)
            case 16:
                guard let prev = lengths.last else { throw Gzip.truncated(name) }
                lengths += [Int](repeating: prev, count: 3 + (try bits(2)))
            case 17: lengths += [Int](repeating: 0, count: 3 + (try bits(3)))
            default: lengths += [Int](repeating: 0, count: 11 + (try bits(7)))
            }
        }
        guard lengths.count == nlen + ndist else { throw Gzip.truncated(name) }
        try block(Huffman(lengths: Array(lengths[0..<nlen])), Huffman(lengths: Array(lengths[nlen...])))
    }

    mutating func block(_ lit: Huffman, _ dist: Huffman) throws {
        while true {
            let sym = try decode(lit)
            if sym < 256 {
                out.append(UInt8(sym))
            } else if sym == 256 {
                return
            } else {
                let li = sym - 257
                guard li < 29 else { throw Gzip.truncated(name) }
                let length = Self.lengthBase[li] + (try bits(Self.lengthExtra[li]))
                let di = try decode(dist)
                guard di < 30 else { throw Gzip.truncated(name) }
                let distance = Self.distBase[di] + (try bits(Self.distExtra[di]))
                guard distance <= out.count else { throw Gzip.truncated(name) }
                let start = out.count - distance
                for k in 0..<length { out.append(out[start + k]) }
            }
        }
    }
}
