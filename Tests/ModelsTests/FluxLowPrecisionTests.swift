import CKernels
import Checkpoints
import Foundation
import Models
import Tensor
import Testing

/// FLUX Linears on GGUF / FP8 / bf16 weights run the low-precision GEMM on the mapped bytes (no float32 copy of a
/// weight), in `fp32` or `bf16` precision; on the tiny committed fixtures (tools/make_flux_gguf_fixtures.py).
@Suite(.timeLimit(.minutes(2))) struct FluxLowPrecisionTests {
    static let gguf = fluxFixtures.appendingPathComponent("gguf")

    static func inputs(_ batch: Int) throws -> FluxInputs {
        fluxInputs(try loadTensors(fluxFixtures.appendingPathComponent("guidance/inputs_b\(batch).safetensors")))
    }

    /// Every Linear of the model (embedders, blocks, final layer).
    static func linears(_ m: FluxTransformer) -> [Linear] {
        var out = [m.imgIn, m.txtIn, m.timeIn.inLayer, m.timeIn.outLayer, m.vectorIn.inLayer, m.vectorIn.outLayer,
                   m.finalModulation, m.finalLinear]
        if let g = m.guidanceIn { out += [g.inLayer, g.outLayer] }
        for b in m.doubleBlocks {
            out += [b.imgMod, b.txtMod, b.imgQKV, b.txtQKV, b.imgProj, b.txtProj, b.imgMLP0, b.imgMLP2, b.txtMLP0, b.txtMLP2]
        }
        for b in m.singleBlocks { out += [b.modulation, b.linear1, b.linear2] }
        return out
    }

    /// A bf16-weight copy of the tiny BFL model (2-D weights BF16, the rest F32) and the float32 file of the same
    /// (bf16-rounded) values.
    static func writeBF16Model(in dir: URL) throws -> (bf16: URL, f32: URL) {
        let src = try loadTensors(fluxFixtures.appendingPathComponent("guidance/flux-bfl.safetensors"))
        var entries: [SafeTensorsWriter.Entry] = [], rounded: [(String, Tensor)] = []
        for name in src.keys.sorted() {
            let t = src[name]!
            guard t.rank == 2 else {
                entries.append(.f32(name, t))
                rounded.append((name, t))
                continue
            }
            let bits = t.toArray().map { ck_f32_to_bf16_rne($0) }
            entries.append(SafeTensorsWriter.Entry(name: name, dtype: .bf16, shape: t.shape) { buf in
                bits.withUnsafeBytes { buf.copyMemory(from: $0) }
            })
            rounded.append((name, Tensor(shape: t.shape, values: bits.map { Float(bitPattern: UInt32($0) << 16) })))
        }
        let bf16 = dir.appendingPathComponent("flux-bf16.safetensors"), f32 = dir.appendingPathComponent("flux-f32.safetensors")
        try SafeTensorsWriter.write(entries, to: bf16)
        try SafeTensorsWriter.write(tensors: rounded, to: f32)
        return (bf16, f32)
    }

    /// Q8_0 GGUF, scaled FP8 and bf16 weights: every Linear whose weight is stored narrow runs in place (never
    /// converted to a float32 tensor), and the output equals the float32 forward on the dequantized weights.
    @Test(arguments: ["flux-q8_0.gguf", "flux-fp8-scaled.safetensors", "bf16"])
    func narrowWeightsRunInPlaceInFloat32(_ file: String) throws {
        let dir = try TemporaryFolder()
        let weights: URL, reference: URL
        if file == "bf16" {
            let written = try Self.writeBF16Model(in: dir.url)
            weights = written.bf16
            reference = written.f32
        } else {
            weights = Self.gguf.appendingPathComponent(file)
            reference = Self.gguf.appendingPathComponent(file.replacingOccurrences(of: ".gguf", with: "-dequantized.safetensors")
                .replacingOccurrences(of: "scaled.safetensors", with: "scaled-dequantized.safetensors"))
        }
        let model = try FluxTransformer.load(from: CheckpointSet(url: weights))
        let ref = try FluxTransformer.load(from: CheckpointSet(url: reference))
        let inp = try Self.inputs(2)
        let out = try model.forward(inp)
        #expect(relativeL2(out, try ref.forward(inp)) <= 1e-5, "\(file)")
        let layers = Self.linears(model)
        let narrow = layers.filter { if case .lazy = $0.weight { true } else { false } }
        // Q8_0 / FP8 / bf16 2-D weights are lazy (the 16-row F16 / bf16 img_in too).
        #expect(narrow.count >= layers.count - 2, "\(file): \(narrow.count) of \(layers.count) lazy")
        for l in narrow {
            #expect(l.kernelPath.hasSuffix("in place: float32 panels + sgemm"), "\(file) \(l.name): \(l.kernelPath)")
            #expect(l.calls.inPlace > 0 && l.calls.converted == 0, "\(file) \(l.name): \(l.calls.inPlace) / \(l.calls.converted)")
        }
        #expect(model.doubleBlocks[0].imgQKV.kernelPath.hasPrefix(file == "bf16" ? "BF16" : file.hasPrefix("flux-q8") ? "Q8_0" : "F8_E4M3"))
    }

    /// `precision: bf16`: the Linears take the bf16 kernel (bf16 weights read directly, FP8 in bf16 panels), Q8_0 the
    /// int8 kernel on activations quantized per block, and
    /// attention runs in bf16; the output stays within 2e-2 relative L2 of the fp32 forward.
    @Test(arguments: ["flux-q8_0.gguf", "flux-fp8-scaled.safetensors", "bf16"])
    func bf16PrecisionTakesTheBF16PathWithinBound(_ file: String) throws {
        let dir = try TemporaryFolder()
        let weights = try file == "bf16" ? Self.writeBF16Model(in: dir.url).bf16 : Self.gguf.appendingPathComponent(file)
        let set = try CheckpointSet(url: weights)
        let fp32 = try FluxTransformer.load(from: set)
        let bf16 = try FluxTransformer.load(from: set, precision: .bf16)
        #expect(bf16.doubleBlocks.allSatisfy { $0.precision == .bf16 } && bf16.singleBlocks.allSatisfy { $0.precision == .bf16 })
        #expect(fp32.doubleBlocks.allSatisfy { $0.precision == .fp32 })
        let qkv = bf16.doubleBlocks[0].imgQKV
        #expect(qkv.precision == .bf16)
        let expectedPath = file == "bf16" ? "in place: bf16 kernel"
            : file.hasPrefix("flux-q8") ? "in place: int8 kernel" : "in place: bf16 panels + bf16 kernel"
        #expect(qkv.kernelPath.contains(expectedPath), "\(qkv.kernelPath)")
        for batch in [1, 2] {
            let inp = try Self.inputs(batch)
            let a = try fp32.forward(inp), b = try bf16.forward(inp)
            let e = relativeL2(b, a)
            print("FluxLowPrecisionTests: \(file) batch \(batch) bf16 vs fp32 relative L2 \(e)")
            #expect(b.toArray().allSatisfy { $0.isFinite })
            // bf16 differs from fp32 (it really rounds), but within the bf16 bound.
            #expect(e > 0 && e <= 2e-2, "\(file) batch \(batch): bf16 vs fp32 relative L2 \(e)")
        }
        #expect(qkv.calls.inPlace == 2 && qkv.calls.converted == 0)
    }

    /// A bad precision value is refused with the setting's name.
    @Test func badPrecisionNamesTheKey() throws {
        #expect(throws: CheckpointError.self) { try ComputePrecision(parsing: "fp16", key: "precision") }
        do {
            _ = try ComputePrecision(parsing: "fp16", key: "stages.texture.precision")
        } catch let e as CheckpointError {
            #expect(e.message.contains("stages.texture.precision") && e.message.contains("fp16"))
        } catch {
            Issue.record("unexpected \(error)")
        }
        let parsed = try ComputePrecision(parsing: "BF16", key: "k")
        #expect(parsed == .bf16)
    }
}

/// ‖a − b‖₂ / ‖b‖₂.
func relativeL2(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count, "relativeL2: \(a.shape) vs \(b.shape)")
    let x = a.toArray(), y = b.toArray()
    var num = 0.0, den = 0.0
    for i in 0..<x.count {
        let d = Double(x[i]) - Double(y[i])
        num += d * d
        den += Double(y[i]) * Double(y[i])
    }
    return Float((num / max(den, 1e-300)).squareRoot())
}
