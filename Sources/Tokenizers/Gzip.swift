import CZlib

/// gzip (RFC 1952) decoding through zlib's inflate, enough to read open_clip's `bpe_simple_vocab_16e6.txt.gz`.
/// Whole member in, bytes out; optionally only the head of a large text file.
enum Gzip {
    /// Output produced per inflate call.
    private static let chunk = 64 << 10

    /// Decompresses the first gzip member. With `stopAfterLines`, decoding ends once that many newlines have been
    /// produced (callers that need only the head of a large text file); the bytes after them may be cut anywhere.
    static func decompress(_ data: [UInt8], name: String, stopAfterLines: Int? = nil) throws -> [UInt8] {
        guard data.count >= 18, data[0] == 0x1F, data[1] == 0x8B, data[2] == 8 else {
            throw TokenizerError(.malformedFile, "\(name): not a gzip (deflate) file")
        }
        var stream = z_stream()
        // 16 + 15: a gzip wrapper (header and CRC-32/ISIZE trailer checked by zlib), 32 KiB window.
        guard dreamsr_inflate_init2(&stream, 16 + MAX_WBITS) == Z_OK else {
            throw TokenizerError(.malformedFile, "\(name): zlib could not start inflating (out of memory?)")
        }
        defer { inflateEnd(&stream) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: chunk)
        var newlines = 0
        var input = data
        let status: Int32 = input.withUnsafeMutableBufferPointer { inBuffer in
            stream.next_in = inBuffer.baseAddress
            stream.avail_in = uInt(inBuffer.count)
            while true {
                let (rc, produced) = buffer.withUnsafeMutableBufferPointer { outBuffer -> (Int32, Int) in
                    stream.next_out = outBuffer.baseAddress
                    stream.avail_out = uInt(outBuffer.count)
                    let rc = inflate(&stream, Z_NO_FLUSH)
                    return (rc, outBuffer.count - Int(stream.avail_out))
                }
                let fresh = buffer[0..<produced]
                out.append(contentsOf: fresh)
                if let limit = stopAfterLines {
                    newlines += fresh.lazy.filter { $0 == 0x0A }.count
                    if newlines >= limit { return Z_STREAM_END }
                }
                // Z_BUF_ERROR with output room left: the input ended before the stream did.
                if rc != Z_OK || (produced == 0 && stream.avail_in == 0) { return rc == Z_OK ? Z_BUF_ERROR : rc }
            }
        }
        switch status {
        case Z_STREAM_END: return out
        case Z_MEM_ERROR: throw TokenizerError(.malformedFile, "\(name): zlib ran out of memory")
        default: throw truncated(name)
        }
    }

    static func truncated(_ name: String) -> TokenizerError {
        TokenizerError(.malformedFile, "\(name): truncated or corrupt gzip data")
    }
}
