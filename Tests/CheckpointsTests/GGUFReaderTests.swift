import Checkpoints
import Foundation
import Tensor
import Testing

@Suite("GGUF reader: header, metadata, tensors, WeightSource", .timeLimit(.minutes(1)))
struct GGUFReaderTests {
    @Test func fixtureHeaderAndMetadata() throws {
        let file = try GGUFFile(url: ggufFixtures.appendingPathComponent("quants.gguf"))
        let h = file.header
        #expect(h.version == 3 && h.alignment == 64 && h.dataStart % 64 == 0)
        let m = h.metadata
        #expect(m["test.u8"] == .uint8(200) && m["test.i8"] == .int8(-100))
        #expect(m["test.u16"] == .uint16(60000) && m["test.i16"] == .int16(-30000))
        #expect(m["test.u32"] == .uint32(4_000_000_000) && m["test.i32"] == .int32(-2_000_000_000))
        #expect(m["test.u64"] == .uint64(18_000_000_000_000_000_000) && m["test.i64"] == .int64(-9_000_000_000_000_000_000))
        #expect(m["test.f32"] == .float32(0.15625) && m["test.f64"] == .float64(-2.5e-300) && m["test.bool"] == .bool(true))
        #expect(m["test.string"] == .string("héllo GGUF") && m["general.architecture"]?.stringValue == "dreamsr-test")
        #expect(m["test.array.i32"] == .array(.int32, [.int32(1), .int32(-2), .int32(3)]))
        #expect(m["test.array.f32"] == .array(.float32, [.float32(0.5), .float32(-1.25)]))
        #expect(m["test.array.string"] == .array(.string, [.string("a"), .string(""), .string("ünï")]))
        if case .array(.array, let inner) = m["test.array.nested"] {
            #expect(inner.count == 2 && inner[1].intValueArray == [3])
        } else {
            Issue.record("nested array: \(String(describing: m["test.array.nested"]))")
        }
        #expect(h.metadataKeys.count == m.count && Set(h.metadataKeys) == Set(m.keys))
        // Shapes: ggml dims reversed into row-major; byte ranges inside the aligned data section.
        let norm = try #require(file["norm.3d"])
        #expect(norm.shape == [2, 3, 32] && norm.dtype == .f32 && norm.byteCount == 2 * 3 * 32 * 4)
        let q4k = try #require(file["t.Q4_K"])
        #expect(q4k.shape == [8, 512] && q4k.byteCount == 8 * 2 * 144 && q4k.begin % 64 == 0)
        let raw = file.rawView(q4k)
        #expect(raw.rowCount == 8 && raw.rowLength == 512 && raw.rowBytes == 288 && raw.ggmlTypeID == 12 && raw.scale == 1)
        // F32 tensors are viewed in place.
        #expect(file.canView(norm) && file.view(norm)?.shape == [2, 3, 32])
        #expect(file.view(q4k) == nil)
        // Row ranges dequantize like the whole tensor.
        let whole = raw.dequantized()
        var rows = [Float](repeating: 0, count: 3 * 512)
        raw.dequantizeRows(5..<8, into: &rows)
        #expect((0..<rows.count).allSatisfy { rows[$0].bitPattern == whole[flat: 5 * 512 + $0].bitPattern })
    }

    @Test func checkpointSetAndWeightSourceReadGGUF() throws {
        let url = ggufFixtures.appendingPathComponent("quants.gguf")
        let set = try CheckpointSet(url: url)
        let expected = try SafeTensorsFile(url: ggufFixtures.appendingPathComponent("quants-expected.safetensors"))
        #expect(set.ggufFiles.count == 1 && set.files.isEmpty && Set(set.names) == Set(expected.header.names))
        #expect(set.metadata["test.string"] == "héllo GGUF")
        #expect(set["t.Q6_K"]?.shape == [8, 512])
        // Small tensors as float32 (norms, biases), by their stored names.
        #expect(bitMismatches(try set.tensor(named: "norm.3d"), try expected.tensor(named: "norm.3d")).isEmpty)
        // Big ones: a lazy WeightSource that exposes the quantized blocks, or dequantizes when asked.
        let (f, info) = try #require(set.locate("t.Q8_0"))
        let w = WeightSource(name: "t.Q8_0", parts: [.init(file: f, info: info)], transform: .none)
        #expect(w.dtypes == [.q8_0] && !w.isZeroCopy && w.shape == [8, 128])
        let raw = try #require(w.rawView)
        #expect(raw.dtype == .q8_0 && raw.bytes.count == 8 * 4 * 34)
        #expect(bitMismatches(w.materialize(), try expected.tensor(named: "t.Q8_0")).isEmpty)
        // Fused parts (concatRows) dequantize part by part; no single raw view then.
        let (f2, info2) = try #require(set.locate("t.Q4_0"))
        let fused = WeightSource(name: "qkv", parts: [.init(file: f, info: info), .init(file: f2, info: info2)],
                                 transform: .concatRows)
        #expect(fused.rawView == nil && fused.shape == [16, 128])
        let m = fused.materialize()
        let want = try expected.tensor(named: "t.Q4_0")
        #expect((0..<want.count).allSatisfy { m[flat: 8 * 128 + $0].bitPattern == want[flat: $0].bitPattern })
        #expect(throws: CheckpointError.self) { try set.tensor(named: "absent") }
    }

    @Test func builderFileReadsBack() throws {
        let dir = try ScratchFolder()
        let file = try GGUFFile(url: try dir.write(GGUFBuilder.valid().bytes()))
        #expect(file.tensorInfos.map(\.name) == ["norm", "w"])
        let norm = try file.tensor(named: "norm")
        #expect(norm.shape == [2, 4] && (0..<8).allSatisfy { norm[flat: $0] == Float($0) * 0.25 - 1 })
        let w = try file.tensor(named: "w")
        #expect(w.shape == [2, 32] && w[flat: 0] == -8 && w[flat: 31] == 7.5 && w[flat: 32] == -6 && w[flat: 63] == -68)
    }

    // MARK: malformed files: each gives a CheckpointError naming the tensor or field, never a crash

    func expectError(_ bytes: [UInt8], _ code: CheckpointError.Code, mentions: [String],
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = try ScratchFolder()
        let url = try dir.write(bytes, name: "bad.gguf")
        do {
            _ = try GGUFFile(url: url)
            Issue.record("opened a malformed file", sourceLocation: sourceLocation)
        } catch let e as CheckpointError {
            #expect(e.code == code, "\(e)", sourceLocation: sourceLocation)
            for m in mentions + ["bad.gguf"] {
                #expect(e.message.contains(m), "'\(m)' not in: \(e.message)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func badMagicAndVersion() throws {
        var b = GGUFBuilder.valid()
        b.magic = Array("GGML".utf8)
        try expectError(b.bytes(), .badHeader, mentions: ["not a GGUF file", "47 47 4d 4c"])
        b = GGUFBuilder.valid()
        b.version = 1
        try expectError(b.bytes(), .badHeader, mentions: ["version 1"])
        b.version = 0x0300_0000
        try expectError(b.bytes(), .badHeader, mentions: ["big-endian"])
        try expectError([], .truncated, mentions: ["magic"])
    }

    @Test func truncatedHeaderAndData() throws {
        let good = GGUFBuilder.valid().bytes()
        // Cut inside the second tensor's info (its name is "w"): the error names what was being read.
        let b = GGUFBuilder.valid()
        let infoStart = 4 + 4 + 8 + 8 + b.kv.reduce(0) { $0 + 8 + $1.0.utf8.count + 4 + $1.2.count }
        let firstInfo = 8 + 4 + 4 + 2 * 8 + 4 + 8
        try expectError(Array(good.prefix(infoStart + firstInfo + 8 + 1 + 2)), .truncated, mentions: ["tensor 'w'"])
        // Cut in the data section: the tensor that does not fit is named.
        try expectError(Array(good.dropLast(5)), .truncated, mentions: ["tensor 'w'", "truncated"])
        // A string length past the end of the file.
        var s = GGUFBuilder.valid()
        s.kv.append(("general.name", 8, GGUFBuilder.u64(1 << 40)))
        try expectError(s.bytes(), .truncated, mentions: ["metadata 'general.name'"])
    }

    @Test func unknownAndUnsupportedTypes() throws {
        var b = GGUFBuilder.valid()
        b.tensors[1].type = 99
        try expectError(b.bytes(), .unsupportedDType, mentions: ["tensor 'w'", "unknown ggml type id 99"])
        b.tensors[1].type = 16
        try expectError(b.bytes(), .unsupportedDType, mentions: ["tensor 'w'", "IQ2_XXS"])
        var k = GGUFBuilder.valid()
        k.kv.append(("odd", 13, []))
        try expectError(k.bytes(), .badHeader, mentions: ["metadata 'odd'", "unknown value type 13"])
    }

    @Test func shapeByteSizeMismatch() throws {
        var b = GGUFBuilder.valid()
        b.tensors[1].dims = [30, 2] // Q8_0 rows must be whole 32-value blocks
        try expectError(b.bytes(), .shapeDTypeMismatch, mentions: ["tensor 'w'", "Q8_0", "32"])
        b = GGUFBuilder.valid()
        b.tensors[1].dims = [64, 2] // twice the bytes that are there
        try expectError(b.bytes(), .truncated, mentions: ["tensor 'w'"])
        b = GGUFBuilder.valid()
        b.tensors[1].dims = [32, 1 << 62, 8] // element count overflows
        try expectError(b.bytes(), .badHeader, mentions: ["tensor 'w'", "dimension"])
        b = GGUFBuilder.valid()
        b.tensors[0].dims = [1, 1, 1, 1, 8]
        try expectError(b.bytes(), .badHeader, mentions: ["tensor 'norm'", "5 dimensions"])
    }

    @Test func alignmentAndOverlap() throws {
        var b = GGUFBuilder.valid()
        b.tensors[1].offset = 33
        try expectError(b.bytes(), .offsetsOutOfRange, mentions: ["tensor 'w'", "alignment 32"])
        b = GGUFBuilder.valid()
        b.kv.append(("general.alignment", 4, GGUFBuilder.u32(24)))
        try expectError(b.bytes(), .badHeader, mentions: ["general.alignment"])
        b = GGUFBuilder.valid()
        b.tensors[1].offset = 0 // on top of "norm"
        try expectError(b.bytes(), .offsetsOutOfRange, mentions: ["'norm'", "'w'", "overlap"])
        b = GGUFBuilder.valid()
        b.tensors[1].name = "norm"
        try expectError(b.bytes(), .badHeader, mentions: ["tensor 'norm'", "twice"])
        // A custom alignment moves the data section: a file written for 64 reads back.
        var a = GGUFBuilder.valid()
        a.kv.append(("general.alignment", 4, GGUFBuilder.u32(64)))
        a.alignment = 64
        a.tensors[1].offset = 64
        a.data = Array(a.data.prefix(32)) + [UInt8](repeating: 0, count: 32) + Array(a.data.dropFirst(32))
        let dir = try ScratchFolder()
        let f = try GGUFFile(url: try dir.write(a.bytes()))
        let w = try f.tensor(named: "w")
        #expect(f.header.alignment == 64 && f.header.dataStart % 64 == 0 && w[flat: 0] == -8)
    }

    @Test func absurdCountsFailWithoutAllocating() throws {
        var b = GGUFBuilder.valid()
        b.tensorCountOverride = 1 << 40
        try expectError(b.bytes(), .badHeader, mentions: ["1099511627776 tensors"])
        b = GGUFBuilder.valid()
        b.kvCountOverride = UInt64.max
        try expectError(b.bytes(), .badHeader, mentions: ["metadata entries"])
        b = GGUFBuilder.valid()
        b.kv.append(("tokenizer.ggml.tokens", 9, GGUFBuilder.u32(8) + GGUFBuilder.u64(1 << 50)))
        try expectError(b.bytes(), .badHeader, mentions: ["metadata 'tokenizer.ggml.tokens'", "elements"])
        b = GGUFBuilder.valid()
        var nested = GGUFBuilder.u32(9) + GGUFBuilder.u64(1)
        for _ in 0..<10 { nested += GGUFBuilder.u32(9) + GGUFBuilder.u64(1) }
        b.kv.append(("deep", 9, nested + GGUFBuilder.u32(0) + GGUFBuilder.u64(0)))
        try expectError(b.bytes(), .badHeader, mentions: ["metadata 'deep'", "nests"])
    }

    /// A large file (sparse, 80 MB of zeros) whose header claims more tensors / array elements than any real file:
    /// refused by the count limits before parsing them, not by the file size.
    @Test func countLimitsHoldInLargeFiles() throws {
        let dir = try ScratchFolder()
        func big(_ b: GGUFBuilder) throws -> URL {
            let url = try dir.write(b.bytes(), name: "big.gguf")
            let h = try FileHandle(forWritingTo: url)
            try h.truncate(atOffset: 80 << 20)
            try h.close()
            return url
        }
        var b = GGUFBuilder.valid()
        b.tensorCountOverride = UInt64(GGUFHeader.maxTensors + 1)
        do { _ = try GGUFFile(url: try big(b)); Issue.record("opened") } catch let e as CheckpointError {
            #expect(e.code == .badHeader && e.message.contains("at most \(GGUFHeader.maxTensors) tensors"), "\(e)")
        }
        b = GGUFBuilder.valid()
        b.kv.append(("tokenizer.ggml.scores", 9, GGUFBuilder.u32(0) + GGUFBuilder.u64(UInt64(GGUFHeader.maxArrayElements + 1))))
        do { _ = try GGUFFile(url: try big(b)); Issue.record("opened") } catch let e as CheckpointError {
            #expect(e.code == .badHeader && e.message.contains("tokenizer.ggml.scores") && e.message.contains("at most"), "\(e)")
        }
    }
}

private extension GGUFValue {
    var intValueArray: [Int]? {
        guard case .array(_, let items) = self else { return nil }
        return items.compactMap(\.intValue)
    }
}
