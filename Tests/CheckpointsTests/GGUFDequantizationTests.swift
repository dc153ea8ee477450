import CKernels
import Checkpoints
import Foundation
import Tensor
import Testing
import DreamsrTestKit

/// Exact dequantization: our values equal `gguf.quants.dequantize` (the fixture's expected float32) bit for bit, for
/// every supported type, under every kernel ISA this CPU has; and each SIMD variant equals the scalar reference.
@Suite("GGUF dequantization: bit-exact with gguf.quants", .serialized, .timeLimit(.minutes(2)))
struct GGUFDequantizationTests {
    static let ggmlTypes: [TensorDType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
                                           .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    var isas: [KernelISA] { [.scalar, .avx2, .avx512].filter { $0.rawValue <= KernelISA.detected.rawValue } }

    @Test func everyTypeEqualsGGUFBitForBit() throws {
        let file = try GGUFFile(url: ggufFixtures.appendingPathComponent("quants.gguf"))
        let expected = try SafeTensorsFile(url: ggufFixtures.appendingPathComponent("quants-expected.safetensors"))
        // The fixture covers every type we claim, each with its edge-scale blocks.
        let stored = Set(file.tensorInfos.map(\.dtype))
        #expect(stored == Set(Self.ggmlTypes), "fixture types \(stored)")
        let previous = KernelISA.active
        defer { KernelISA.force(previous) }
        for isa in isas {
            #expect(KernelISA.force(isa) == isa)
            for info in file.tensorInfos {
                let want = try expected.tensor(named: info.name)
                let got = try file.tensor(named: info.name)
                #expect(got.shape == want.shape, "\(info.name)")
                let bad = bitMismatches(got, want)
                #expect(bad.isEmpty, "\(info.name) (\(info.dtype.rawValue)) under \(isa): \(bad)")
            }
        }
    }

    /// Offsets of the fp16 scale fields per block (kept finite in the random blocks below).
    static let halfFields: [TensorDType: [Int]] = [
        .q4_0: [0], .q4_1: [0, 2], .q5_0: [0], .q5_1: [0, 2], .q8_0: [0],
        .q2_K: [80, 82], .q3_K: [108], .q4_K: [0, 2], .q5_K: [0, 2], .q6_K: [208],
    ]

    /// Random blocks of `dtype` (seeded), fp16 scales finite.
    static func randomBlocks(_ dtype: TensorDType, blocks: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededGenerator(seed: seed)
        var bytes = (0..<(blocks * dtype.blockBytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for b in 0..<blocks {
            for off in halfFields[dtype] ?? [] where bytes[b * dtype.blockBytes + off + 1] & 0x7C == 0x7C {
                bytes[b * dtype.blockBytes + off + 1] &= 0xBF // exponent 31 (inf / NaN) -> finite
            }
        }
        return bytes
    }

    @Test func simdVariantsEqualScalarReference() throws {
        let scalarRefs: [TensorDType: (UnsafeRawPointer, UnsafeMutablePointer<Float>, Int64) -> Void] = [
            .q8_0: { ck_dequantize_row_q8_0($0, $1, $2) }, .q4_K: { ck_dequantize_row_q4_k($0, $1, $2) },
            .q6_K: { ck_dequantize_row_q6_k($0, $1, $2) }, .bf16: { ck_dequantize_row_bf16($0, $1, $2) },
            .q4_0: { ck_dequantize_row_q4_0($0, $1, $2) }, .q5_K: { ck_dequantize_row_q5_k($0, $1, $2) },
        ]
        let previous = KernelISA.active
        defer { KernelISA.force(previous) }
        for (dtype, ref) in scalarRefs {
            let blocks = dtype.blockSize == 1 ? 1000 : 4096 / dtype.blockSize + 3 // odd counts: tails too
            // +1 byte of offset: the kernels must not assume aligned blocks.
            let raw: [UInt8] = [0x55] + Self.randomBlocks(dtype, blocks: blocks, seed: 7 &* UInt64(dtype.blockBytes))
            let n = blocks * dtype.blockSize
            var want = [Float](repeating: .nan, count: n)
            raw.withUnsafeBytes { ref($0.baseAddress! + 1, &want, Int64(n)) }
            for isa in isas {
                KernelISA.force(isa)
                var got = [Float](repeating: .nan, count: n)
                raw.withUnsafeBytes { ck_dequantize_row(dtype.ggmlTypeID!, $0.baseAddress! + 1, &got, Int64(n)) }
                let bad = (0..<n).first { got[$0].bitPattern != want[$0].bitPattern }
                #expect(bad == nil, "\(dtype.rawValue) under \(isa): first mismatch at \(bad ?? -1)")
            }
        }
    }

    @Test func blockGeometryMatchesGGML() {
        // (block size, bytes) from ggml-common.h.
        let ggml: [TensorDType: (Int, Int)] = [
            .f32: (1, 4), .f16: (1, 2), .bf16: (1, 2), .q4_0: (32, 18), .q4_1: (32, 20), .q5_0: (32, 22),
            .q5_1: (32, 24), .q8_0: (32, 34), .q2_K: (256, 84), .q3_K: (256, 110), .q4_K: (256, 144),
            .q5_K: (256, 176), .q6_K: (256, 210),
        ]
        for (t, (bs, bb)) in ggml {
            #expect(t.blockSize == bs && t.blockBytes == bb, "\(t.rawValue): \(t.blockSize)/\(t.blockBytes)")
            #expect(TensorDType(ggmlTypeID: t.ggmlTypeID!) == t)
        }
        #expect(ck_qtype_block_size(16) == 0 && ck_qtype_block_bytes(16) == 0, "IQ2_XXS is unsupported")
        #expect(TensorDType(ggmlTypeID: 99) == nil)
    }
}

@Suite("FP8 safetensors (plain and ComfyUI scaled)", .timeLimit(.minutes(1)))
struct FP8SafeTensorsTests {
    @Test func allByteValuesDecodeExactly() throws {
        let file = try SafeTensorsFile(url: ggufFixtures.appendingPathComponent("fp8.safetensors"))
        let expected = try SafeTensorsFile(url: ggufFixtures.appendingPathComponent("fp8-expected.safetensors"))
        for name in ["e4m3.all", "e5m2.all", "layer.weight"] {
            let got = try file.tensor(named: name)
            let bad = bitMismatches(got, try expected.tensor(named: name))
            #expect(bad.isEmpty, "\(name): \(bad)")
        }
        let e4 = try file.tensor(named: "e4m3.all"), e5 = try file.tensor(named: "e5m2.all")
        #expect(e4[flat: 0x7E] == 448 && e4[flat: 0x7F].isNaN && e4[flat: 0xFF].isNaN && e4[flat: 0x38] == 1)
        #expect(e5[flat: 0x7C] == .infinity && e5[flat: 0xFC] == -.infinity && e5[flat: 0x7B] == 57344)
    }

    @Test func scaledWeightCarriesItsScale() throws {
        let file = try SafeTensorsFile(url: ggufFixtures.appendingPathComponent("fp8.safetensors"))
        let info = try #require(file["layer.weight"])
        let raw = file.rawView(info)
        #expect(raw.dtype == .f8e4m3 && raw.shape == [4, 32] && raw.bytes.count == 128 && raw.rowBytes == 32)
        #expect(raw.scale == Float(0.0173))
        #expect(file.rawView(try #require(file["e4m3.all"])).scale == 1, "plain FP8 has no scale")
        // Row-wise dequantization equals the whole-tensor one.
        let whole = raw.dequantized()
        var rows = [Float](repeating: 0, count: 64)
        raw.dequantizeRows(2..<4, into: &rows)
        #expect((0..<64).allSatisfy { rows[$0].bitPattern == whole[flat: 64 + $0].bitPattern })
        // The same through a CheckpointSet / WeightSource (what models use).
        let set = try CheckpointSet(url: ggufFixtures.appendingPathComponent("fp8.safetensors"))
        let (f, i) = try #require(set.locate("layer.weight"))
        let w = WeightSource(name: "layer.weight", parts: [.init(file: f, info: i)], transform: .none)
        #expect(bitMismatches(w.materialize(), whole).isEmpty)
        #expect(w.rawView?.scale == Float(0.0173) && w.dtypes == [.f8e4m3])
    }

    @Test func badScaleTensorIsAClearError() throws {
        let dir = try ScratchFolder()
        let url = dir.url.appendingPathComponent("bad.safetensors")
        try SafeTensorsWriter.write([
            .init(name: "x.weight", dtype: .f8e4m3, shape: [2, 2]) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0x38) },
            .init(name: "x.scale_weight", dtype: .f32, shape: [2]) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) },
        ], to: url)
        #expect {
            try SafeTensorsFile(url: url)
        } throws: { e in
            let err = e as? CheckpointError
            return err?.code == .badHeader && err!.message.contains("x.scale_weight") && err!.message.contains("x.weight")
        }
    }

    @Test func ggmlBlockTypesAreRejectedInSafeTensors() throws {
        let dir = try ScratchFolder()
        let header = #"{"w":{"dtype":"Q8_0","shape":[32],"data_offsets":[0,34]}}"#
        var len = UInt64(header.utf8.count).littleEndian
        let url = try dir.write(Array(Data(bytes: &len, count: 8)) + Array(header.utf8) + [UInt8](repeating: 0, count: 34),
                                name: "q.safetensors")
        #expect {
            try SafeTensorsFile(url: url)
        } throws: { e in
            (e as? CheckpointError)?.code == .unsupportedDType && "\(e)".contains("'w'")
        }
    }
}
