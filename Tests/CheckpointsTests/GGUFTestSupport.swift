import Checkpoints
import Foundation
import Tensor

/// Committed weight-format fixtures (tools/make_gguf_fixtures.py).
let ggufFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/gguf")

/// A scratch folder removed when the value is dropped.
final class ScratchFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    func write(_ bytes: [UInt8], name: String = "\(UUID().uuidString).gguf") throws -> URL {
        let u = url.appendingPathComponent(name)
        try Data(bytes).write(to: u)
        return u
    }
}

/// Positions of the first differing bit patterns (empty when equal bit for bit).
func bitMismatches(_ a: Tensor, _ b: Tensor, limit: Int = 3) -> [String] {
    guard a.shape == b.shape else { return ["shape \(a.shape) vs \(b.shape)"] }
    var out: [String] = []
    let (av, bv) = (a.toArray(), b.toArray())
    for i in 0..<av.count where av[i].bitPattern != bv[i].bitPattern {
        out.append("[\(i)] \(av[i]) (0x\(String(av[i].bitPattern, radix: 16))) vs \(bv[i]) "
                   + "(0x\(String(bv[i].bitPattern, radix: 16)))")
        if out.count == limit { break }
    }
    return out
}

/// Writes GGUF files by hand, valid or deliberately broken (the reader's error paths).
struct GGUFBuilder {
    struct TensorEntry {
        var name: String
        /// ggml order (ne[0] first).
        var dims: [UInt64]
        var type: UInt32
        var offset: UInt64
    }

    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    /// Encoded metadata entries (key, type, payload).
    var kv: [(String, UInt32, [UInt8])] = []
    var tensors: [TensorEntry] = []
    var alignment = 32
    var data: [UInt8] = []
    var tensorCountOverride: UInt64?
    var kvCountOverride: UInt64?

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }

    /// One F32 tensor `norm` (row-major [2, 4]) and one Q8_0 tensor `w` ([2, 32]: two blocks, scales 0.5 and -2).
    static func valid() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.kv.append(("general.architecture", 8, str("flux")))
        var data: [UInt8] = []
        for i in 0..<8 { data += (Float(i) * 0.25 - 1).bitPattern.littleEndianBytes }
        while data.count % 32 != 0 { data.append(0) }
        let wOffset = UInt64(data.count)
        for (scale, base) in [(UInt16(0x3800), Int8(-16)), (UInt16(0xC000), Int8(3))] { // 0.5, -2.0
            data += withUnsafeBytes(of: scale.littleEndian) { Array($0) }
            data += (0..<32).map { UInt8(bitPattern: base &+ Int8($0)) }
        }
        b.tensors = [TensorEntry(name: "norm", dims: [4, 2], type: 0, offset: 0),
                     TensorEntry(name: "w", dims: [32, 2], type: 8, offset: wOffset)]
        b.data = data
        return b
    }

    func bytes() -> [UInt8] {
        var out = magic + Self.u32(version) + Self.u64(tensorCountOverride ?? UInt64(tensors.count))
            + Self.u64(kvCountOverride ?? UInt64(kv.count))
        for (k, t, payload) in kv { out += Self.str(k) + Self.u32(t) + payload }
        for t in tensors {
            out += Self.str(t.name) + Self.u32(UInt32(t.dims.count))
            for d in t.dims { out += Self.u64(d) }
            out += Self.u32(t.type) + Self.u64(t.offset)
        }
        while out.count % alignment != 0 { out.append(0) }
        return out + data
    }
}

private extension UInt32 {
    var littleEndianBytes: [UInt8] { withUnsafeBytes(of: littleEndian) { Array($0) } }
}
