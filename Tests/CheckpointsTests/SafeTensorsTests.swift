import Checkpoints
import Foundation
import Tensor
import Testing

@Suite(.serialized, .timeLimit(.minutes(10)))
final class SafeTensorsTests {
    var tmp: URL!

    init() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: tmp)
    }

    /// A file with a hand-written header and the given data bytes.
    func raw(_ header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> URL {
        let url = tmp.appendingPathComponent("\(UUID().uuidString).safetensors")
        let h = Array(header.utf8)
        var len = (headerLength ?? UInt64(h.count)).littleEndian
        FileManager.default.createFile(atPath: url.path, contents: Data(bytes: &len, count: 8) + Data(h) + Data(data))
        return url
    }

    func expect(_ code: CheckpointError.Code, _ url: URL, mentions: String, sourceLocation: SourceLocation = #_sourceLocation) {
        if let e = #expect(throws: (any Error).self, sourceLocation: sourceLocation, performing: { _ = try SafeTensorsFile(url: url) }) {
            guard let err = e as? CheckpointError else { Issue.record("\(e)", sourceLocation: sourceLocation); return }
            #expect(err.code == code, "\(err)", sourceLocation: sourceLocation)
            #expect(err.message.contains(mentions), "\(err.message) should mention \(mentions)", sourceLocation: sourceLocation)
            #expect(!err.isRetriable, sourceLocation: sourceLocation)
        }
    }

    @Test func roundTripWithMetadata() throws {
        let a = Tensor(shape: [2, 3], values: [1, -2, 3.5, 0, 1e-3, -7])
        let b = Tensor(shape: [4], values: [9, 8, 7, 6])
        let url = tmp.appendingPathComponent("rt.safetensors")
        try SafeTensorsWriter.write(tensors: [("a", a), ("b.weight", b)],
                                    metadata: ["dreamsr_config": "{\"texture_steps\":16}", "format": "pt"], to: url)
        let f = try SafeTensorsFile(url: url)
        #expect(f.header.names == ["a", "b.weight"])
        #expect(f.metadata["dreamsr_config"] == "{\"texture_steps\":16}")
        #expect(f.metadata["format"] == "pt")
        #expect((f["a"]?.shape) == [2, 3])
        #expect((f["a"]?.dtype) == .f32)
        #expect(try f.tensor(named: "a").toArray() == a.toArray())
        #expect((f.view(f["b.weight"]!)?.toArray()) == b.toArray())
        #expect(f.header.dataStart % 8 == 0)
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try f.tensor(named: "c") }) { #expect(((thrown as? CheckpointError)?.code) == .missingTensor) }
    }

    @Test func halfPrecisionConversion() throws {
        // f16: 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF, smallest subnormal 2^-24 = 0x0001
        // bf16: 1.0 = 0x3F80, -3.0 = 0xC040, 0.15625 = 0x3E20
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001]
        let bf16: [UInt16] = [0x3F80, 0xC040, 0x3E20]
        let url = tmp.appendingPathComponent("half.safetensors")
        try SafeTensorsWriter.write([
            .init(name: "h", dtype: .f16, shape: [4]) { buf in f16.withUnsafeBytes { buf.copyMemory(from: $0) } },
            .init(name: "b", dtype: .bf16, shape: [3]) { buf in bf16.withUnsafeBytes { buf.copyMemory(from: $0) } },
        ], to: url)
        let f = try SafeTensorsFile(url: url)
        #expect(try f.tensor(named: "h").toArray() == [1, -2, 65504, Float(pow(2.0, -24.0))])
        #expect(try f.tensor(named: "b").toArray() == [1, -3, 0.15625])
        #expect(f.view(f["h"]!) == nil, "only F32 can be viewed in place")
    }

    @Test func truncatedFile() throws {
        let url = tmp.appendingPathComponent("short.safetensors")
        FileManager.default.createFile(atPath: url.path, contents: Data([1, 2, 3]))
        expect(.truncated, url, mentions: "short.safetensors")
        expect(.truncated, raw("{}", headerLength: 500), mentions: "header length 500")
        // data section shorter than the offsets claim
        expect(.offsetsOutOfRange, raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data: [0, 0, 0, 0]),
               mentions: "'w'")
    }

    @Test func badJSON() throws {
        expect(.badHeader, raw("{\"w\": {\"dtype\": \"F32\""), mentions: "not valid JSON")
        expect(.badHeader, raw("[1,2]"), mentions: "not an object")
        expect(.badHeader, raw("{\"w\":{\"dtype\":\"F32\"}}"), mentions: "'w'")
        expect(.unsupportedDType, raw("{\"w\":{\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[0,1]}}", data: [0]),
               mentions: "F8_E8M0")
    }

    @Test func shapeDTypeMismatchAndOverlap() throws {
        expect(.shapeDTypeMismatch, raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data: .init(repeating: 0, count: 8)),
               mentions: "needs 12 bytes")
        expect(.offsetsOutOfRange,
               raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   data: .init(repeating: 0, count: 12)),
               mentions: "overlap")
    }

    @Test func checkpointSetMergesShardsAndRejectsDuplicates() throws {
        let d = tmp.appendingPathComponent("shards")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(tensors: [("a", Tensor(zeros: [2]))], metadata: ["k": "1"], to: d.appendingPathComponent("m-1.safetensors"))
        try SafeTensorsWriter.write(tensors: [("b", Tensor(shape: [1], values: [5]))], to: d.appendingPathComponent("m-2.safetensors"))
        let set = try CheckpointSet(url: d)
        #expect(Set(set.names) == ["a", "b"])
        #expect(try set.tensor(named: "b").toArray() == [5])
        #expect(set.metadata["k"] == "1")
        try SafeTensorsWriter.write(tensors: [("a", Tensor(zeros: [2]))], to: d.appendingPathComponent("m-3.safetensors"))
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try CheckpointSet(url: d) }) { #expect(((thrown as? CheckpointError)?.code) == .badHeader) }
    }

    /// ~1 GB of bf16 weights (2 GB as f32) loaded lazily: converting and using one layer at a time must not grow the
    /// process's anonymous memory by anything near a whole-model f32 copy.
    @Test func lazyBF16LoadingDoesNotHoldWholeF32Copy() throws {
        let layers = 8, rows = 8192, cols = 8192 // 8 × 128 MiB bf16 = 1 GiB; f32 would be 2 GiB
        let url = tmp.appendingPathComponent("big-bf16.safetensors")
        try SafeTensorsWriter.write((0..<layers).map { i in
            SafeTensorsWriter.Entry(name: "layer\(i).weight", dtype: .bf16, shape: [rows, cols]) { buf in
                let p = buf.bindMemory(to: UInt16.self)
                let v: UInt16 = 0x3C00 &+ UInt16(i) // ≈ 2^-7 .. small positive values
                p.update(repeating: v)
            }
        }, to: url)
        let baseline = anonymousRSS()
        let set = try CheckpointSet(url: url)
        let sources = set.names.sorted().map { n -> WeightSource in
            let (f, info) = set.locate(n)!
            return WeightSource(name: n, parts: [.init(file: f, info: info)], transform: .none)
        }
        #expect(abs(anonymousRSS() - baseline - (0)) <= 64 << 20, "opening must not read the tensors")
        var peak = 0
        let x = Tensor(shape: [1, cols]) { _ in 1 }
        for s in sources {
            let w = s.materialize()
            let y = Tensor(zeros: [1, rows])
            TransformerOps.linear(x, weight: w, bias: nil, into: y)
            #expect(y[flat: 0] > 0)
            peak = max(peak, anonymousRSS() - baseline)
        }
        let f32Model = layers * rows * cols * 4
        #expect(peak < f32Model / 4, "peak anonymous growth \(peak >> 20) MiB vs whole f32 model \(f32Model >> 20) MiB")
    }

    /// RssAnon from /proc/self/status in bytes (file-backed mapped pages are not counted).
    func anonymousRSS() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix("RssAnon:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }
}
