import Checkpoints
import Foundation
import Tensor
import Testing
@testable import Models

/// DreamSR checkpoints stored narrower than float32 (bf16 safetensors, GGUF Q8_0) are read in place: every Linear the
/// checkpoint supplies (ControlNet, image MLPs, Context Cross-Attention, LoRA A and B) runs the low-precision kernels
/// on the mapped bytes, never a float32 copy, and computes what the float32 model on the same values computes.
@Suite(.serialized, .timeLimit(.minutes(5)))
final class DreamSRInPlaceTests {
    let scratch: URL

    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-inplace-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: scratch) }

    static var fixture: URL { DreamSRModelTests.fixtures.appendingPathComponent("dreamsr-tiny.safetensors") }

    static func flux() throws -> FluxTransformer {
        try FluxTransformer.load(from: CheckpointSet(url: DreamSRModelTests.fixtures.appendingPathComponent("flux-tiny.safetensors")))
    }

    /// The tiny DreamSR fixture's tensors in file order, and its metadata.
    static func fixtureTensors() throws -> ([(String, Tensor)], [String: String]) {
        let f = try SafeTensorsFile(url: fixture)
        return (try f.header.names.map { ($0, try f.tensor(named: $0)) }, f.metadata)
    }

    /// A float32 safetensors copy of every tensor of `set` as the loaders see it (dequantized), same metadata.
    func float32Copy(of set: CheckpointSet, metadata: [String: String], name: String) throws -> URL {
        let url = scratch.appendingPathComponent(name)
        try SafeTensorsWriter.write(tensors: try set.names.map { ($0, try set.tensor(named: $0)) }, metadata: metadata, to: url)
        return url
    }

    /// Runs the step (LoRA off) and restore (LoRA on) passes of the reference fixtures.
    static func outputs(_ m: DreamSRModel) throws -> [Tensor] {
        let s = try DreamSRModelTests.tensors("step.safetensors")
        let step = try m.velocity(DreamSRModelTests.inputs(s, hidden: s["hidden_states"]!, timestep: s["timestep"]!.toArray()),
                                  lora: false)
        let r = try DreamSRModelTests.tensors("restore.safetensors")
        let (v, z) = try m.restore(DreamSRModelTests.inputs(r, hidden: r["cond_latents"]!, timestep: []))
        return [step, v, z]
    }

    /// Every checkpoint Linear reads its stored bytes in place and ran only in place.
    static func expectAllInPlace(_ m: DreamSRModel, type: String) {
        let linears = m.checkpointLinears
        // 9 embedders, 2 ControlNet blocks of 10, 2 image MLPs of 2, 2 Context Cross-Attentions of 4; A and B of 14
        // LoRA parts per double block (main 2, ControlNet 2) and 6 per single block (main 2).
        #expect(linears.count == 9 + 2 * 10 + 2 * 2 + 2 * 4 + 2 * (2 * 14 + 2 * 6 + 2 * 14),
                "every ControlNet / injection Linear and every LoRA A and B")
        for l in linears {
            #expect(l.kernelPath.contains("in place"), "\(l.name): \(l.kernelPath)")
            #expect(l.kernelPath.contains(type) || l.kernelPath.contains("F16"), "\(l.name): \(l.kernelPath)")
            #expect(l.calls.converted == 0, "\(l.name) converted its weight to float32 \(l.calls.converted) time(s)")
            #expect(l.calls.inPlace > 0, "\(l.name) never ran")
        }
        // Fused q/k/v from diffusers' separate tensors: three stored row blocks, no fused float32 copy.
        #expect(m.controlnet.blocks[0].imgQKV.kernelPath.hasSuffix("(3 stored row blocks)"), "\(m.controlnet.blocks[0].imgQKV.kernelPath)")
    }

    /// A bf16 checkpoint runs in place and matches the float32 model on the same (bf16-exact) values.
    @Test func bf16CheckpointRunsInPlace() throws {
        let (tensors, metadata) = try Self.fixtureTensors()
        let bf16URL = scratch.appendingPathComponent("dreamsr-bf16.safetensors")
        try SafeTensorsWriter.write(tensors.map { Self.bf16Entry($0.0, $0.1) }, metadata: metadata, to: bf16URL)
        let bf16Set = try CheckpointSet(url: bf16URL)
        let f32URL = try float32Copy(of: bf16Set, metadata: metadata, name: "dreamsr-bf16-as-f32.safetensors")

        let flux = try Self.flux()
        let lowp = try DreamSRModel.load(checkpoint: bf16URL, flux: flux)
        let ref = try DreamSRModel.load(checkpoint: f32URL, flux: flux)
        #expect(ref.checkpointLinears.allSatisfy { $0.kernelPath == "sgemm f32" })
        let (a, b) = (try Self.outputs(lowp), try Self.outputs(ref))
        for (x, y) in zip(a, b) { #expect(DreamSRModelTests.relError(x, y) <= 1e-5) }
        Self.expectAllInPlace(lowp, type: "BF16")
        // Zeroed output layers and LoRA B still give plain FLUX exactly.
        let zeroed = lowp.zeroingOutputLayers()
        let s = try DreamSRModelTests.tensors("step.safetensors")
        let inp = DreamSRModelTests.inputs(s, hidden: s["hidden_states"]!, timestep: s["timestep"]!.toArray())
        #expect(try zeroed.velocity(inp, lora: true).maxAbsDifference(try zeroed.velocity(inp, lora: false, useControlNet: false)) == 0)
    }

    /// In bf16 precision (the FLUX model's, which the DreamSR loader follows) the bf16 checkpoint's Linears run the
    /// bf16 kernel on the stored bytes; the result stays near the fp32 one.
    @Test func bf16PrecisionRunsTheBF16Kernel() throws {
        let (tensors, metadata) = try Self.fixtureTensors()
        let url = scratch.appendingPathComponent("dreamsr-bf16.safetensors")
        try SafeTensorsWriter.write(tensors.map { Self.bf16Entry($0.0, $0.1) }, metadata: metadata, to: url)
        let fluxURL = DreamSRModelTests.fixtures.appendingPathComponent("flux-tiny.safetensors")
        let m = try DreamSRModel.load(checkpoint: url, flux: try FluxTransformer.load(from: CheckpointSet(url: fluxURL), precision: .bf16))
        let ref = try DreamSRModel.load(checkpoint: url, flux: try Self.flux())
        let (a, b) = (try Self.outputs(m), try Self.outputs(ref))
        for (x, y) in zip(a, b) {
            let e = DreamSRModelTests.relError(x, y)
            #expect(e <= 2e-2 && e > 0, "bf16 vs fp32 activations: \(e)")
        }
        for l in m.checkpointLinears {
            #expect(l.kernelPath.contains("BF16 in place: bf16 kernel"), "\(l.name): \(l.kernelPath)")
            #expect(l.calls.converted == 0 && l.calls.inPlace > 0, "\(l.name): \(l.calls.inPlace) in place, \(l.calls.converted) converted")
        }
    }

    /// A bf16 entry with round-to-nearest-even values of `t`.
    static func bf16Entry(_ name: String, _ t: Tensor) -> SafeTensorsWriter.Entry {
        SafeTensorsWriter.Entry(name: name, dtype: .bf16, shape: t.shape) { buf in
            for (i, x) in t.toArray().enumerated() {
                let b = x.bitPattern
                buf.storeBytes(of: UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16).littleEndian,
                               toByteOffset: 2 * i, as: UInt16.self)
            }
        }
    }

    /// A GGUF v3 checkpoint (2-D weights Q8_0 where rows are whole blocks, else F16; 1-D F32; `dreamsr_config` as a
    /// string key) loads, runs in place and matches the float32 model on its dequantized weights.
    @Test func ggufQ8CheckpointRunsInPlace() throws {
        let (tensors, metadata) = try Self.fixtureTensors()
        let ggufURL = scratch.appendingPathComponent("dreamsr-q8_0.gguf")
        try Data(TinyGGUFWriter.bytes(tensors: tensors, strings: [("general.architecture", "dreamsr"),
                                                                 (DreamSRConfig.metadataKey, metadata[DreamSRConfig.metadataKey]!)]))
            .write(to: ggufURL)
        let set = try CheckpointSet(url: ggufURL)
        #expect(set.metadata[DreamSRConfig.metadataKey] == metadata[DreamSRConfig.metadataKey])
        #expect(set.names.contains { set[$0]?.dtype == .q8_0 } && set.names.contains { set[$0]?.dtype == .f16 })
        let f32URL = try float32Copy(of: set, metadata: metadata, name: "dreamsr-q8_0-as-f32.safetensors")

        let flux = try Self.flux()
        let lowp = try DreamSRModel.load(checkpoint: ggufURL, flux: flux)
        let ref = try DreamSRModel.load(checkpoint: f32URL, flux: flux)
        #expect(lowp.config.controlnetDepth == 2 && lowp.config.loraRank == 4)
        let (a, b) = (try Self.outputs(lowp), try Self.outputs(ref))
        for (x, y) in zip(a, b) { #expect(DreamSRModelTests.relError(x, y) <= 1e-5) }
        Self.expectAllInPlace(lowp, type: "Q8_0")
        // Quantization did change the weights (the comparison above is not against the original float32 file).
        let orig = try Self.outputs(try DreamSRModelTests.loadModel())
        #expect(DreamSRModelTests.relError(a[1], orig[1]) > 1e-5)
    }
}

/// Writes a GGUF v3 file: 2-D tensors whose rows are whole 32-value blocks as Q8_0 (ggml's reference quantizer:
/// d = max|x| / 127 stored as f16, q = round(x / d)), other 2-D tensors F16, the rest F32; string metadata keys.
enum TinyGGUFWriter {
    static func bytes(tensors: [(String, Tensor)], strings: [(String, String)]) -> [UInt8] {
        func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func str(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }
        func f16(_ x: Float) -> [UInt8] { withUnsafeBytes(of: Float16(x).bitPattern.littleEndian) { Array($0) } }
        var out = Array("GGUF".utf8) + u32(3) + u64(UInt64(tensors.count)) + u64(UInt64(strings.count))
        for (k, v) in strings { out += str(k) + u32(8) + str(v) }
        var data: [UInt8] = []
        for (name, t) in tensors {
            while data.count % 32 != 0 { data.append(0) }
            let offset = data.count
            let v = t.toArray()
            let type: UInt32
            if t.rank == 2, t.shape[1] % 32 == 0 {
                type = 8
                for b in stride(from: 0, to: v.count, by: 32) {
                    let block = v[b..<b + 32]
                    let d = (block.map(abs).max() ?? 0) / 127
                    data += f16(d)
                    data += block.map { UInt8(bitPattern: Int8(d == 0 ? 0 : ($0 / d).rounded())) }
                }
            } else if t.rank == 2 {
                type = 1
                for x in v { data += f16(x) }
            } else {
                type = 0
                for x in v { data += withUnsafeBytes(of: x.bitPattern.littleEndian) { Array($0) } }
            }
            let dims = t.shape.isEmpty ? [1] : t.shape.reversed()
            out += str(name) + u32(UInt32(dims.count)) + dims.flatMap { u64(UInt64($0)) }
            out += u32(type) + u64(UInt64(offset))
        }
        while out.count % 32 != 0 { out.append(0) }
        return out + data
    }
}
