import Checkpoints
import Foundation
import Models
import Tensor
import Testing

/// FULL-WIDTH FLUX (FLUX.1-dev's 3072 width, 24 heads, MLP 12288, guidance; 1 double + 1 single block) with Q8_0
/// weights read in place, against the float32 streaming reference (tools/flux_streaming_reference.py) stored by
/// tools/make_flux_fullwidth_fixture.py. The ~580 MB GGUF is not committed: the test writes it into its temp folder
/// from the generator the tool documents (and implements identically in numpy), so both read the same weights.
@Suite(.timeLimit(.minutes(5))) struct FluxFullWidthTests {
    static let fixtures = fluxFixtures.appendingPathComponent("fullwidth")

    @Test func fullWidthQ8_0MatchesStreamingReference() throws {
        let dir = try TemporaryFolder()
        let url = dir.url.appendingPathComponent("flux-fullwidth-q8_0.gguf")
        try FullWidthFluxWriter.write(to: url)
        let set = try CheckpointSet(url: url)
        var expected = FluxConfig.dev
        expected.depth = 1
        expected.depthSingle = 1
        #expect(try FluxConfig.inferred(from: set) == expected)
        let inputs = try loadTensors(Self.fixtures.appendingPathComponent("inputs.safetensors"))
        let reference = try loadTensors(Self.fixtures.appendingPathComponent("reference.safetensors"))["sample"]!
        #expect(reference.shape == [1, 16, 64])
        for (precision, bound) in [(ComputePrecision.fp32, Float(1e-4)), (.bf16, 2e-2)] {
            let model = try FluxTransformer.load(from: set, precision: precision)
            #expect(model.config == expected)
            let out = try model.forward(fluxInputs(inputs))
            let e = relativeL2(out, reference)
            print("FluxFullWidthTests: \(precision) relative L2 \(e) vs the streaming reference")
            #expect(e <= bound, "\(precision): relative L2 \(e) vs the streaming reference (bound \(bound))")
            #expect(model.singleBlocks[0].linear1.kernelPath.hasPrefix("Q8_0 in place"))
            #expect(model.singleBlocks[0].linear1.calls.inPlace == 1 && model.singleBlocks[0].linear1.calls.converted == 0)
        }
    }
}

/// The deterministic full-width FLUX of tools/make_flux_fullwidth_fixture.py (see its docstring for the definition).
enum FullWidthFluxWriter {
    static let seed: UInt64 = 14, poolSize = 1 << 20
    static let outStd = 0.02 / Double(57).squareRoot()

    static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z ^= z >> 30
        z = z &* 0xBF58_476D_1CE4_E5B9
        z ^= z >> 27
        z = z &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    enum Kind { case input, output, bias, norm }

    static func kind(_ name: String) -> Kind {
        if name.hasSuffix(".bias") { return .bias }
        if name.hasSuffix(".scale") { return .norm }
        let outputs = ["_attn.proj.weight", "_mlp.2.weight", "linear2.weight", "final_layer.linear.weight"]
        return outputs.contains { name.hasSuffix($0) } ? .output : .input
    }

    static func write(to url: URL) throws {
        var config = FluxConfig.dev
        config.depth = 1
        config.depthSingle = 1
        let tensors = FluxWeightMap.canonicalShapes(config).sorted { $0.0 < $1.0 }
        try writeSparseGGUF(tensors.map { ($0.0, $0.1.count == 2 ? TensorDType.q8_0 : .f32, $0.1) }, to: url)
        let layout = try GGUFFile(url: url)
        let dataStart = layout.header.dataStart
        let infos = tensors.map { layout[$0.0]! }

        var pool = [Int8](repeating: 0, count: poolSize)
        for i in 0..<poolSize {
            pool[i] = Int8(Int(mix(seed &+ UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15) % 255) - 127)
        }
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        try pool.withUnsafeBytes { poolBytes in
            for (t, (name, shape)) in tensors.enumerated() {
                let rows = shape.count == 2 ? shape[0] : 1, k = shape.count == 2 ? shape[1] : shape[0]
                let rowStart = { (r: Int) in Int(mix((UInt64(t) << 40) &+ UInt64(r)) % UInt64(poolSize - k)) }
                var bytes: [UInt8]
                if shape.count == 2 {
                    let std = kind(name) == .output ? outStd : 1 / Double(k).squareRoot()
                    let d = Float16(Float(3.0.squareRoot() * std) / 127).bitPattern
                    let rowBytes = k / 32 * 34
                    bytes = [UInt8](repeating: 0, count: rows * rowBytes)
                    bytes.withUnsafeMutableBytes { dst in
                        for r in 0..<rows {
                            let src = poolBytes.baseAddress! + rowStart(r)
                            for b in 0..<(k / 32) {
                                let blk = dst.baseAddress! + r * rowBytes + b * 34
                                blk.storeBytes(of: d.littleEndian, as: UInt16.self)
                                (blk + 2).copyMemory(from: src + b * 32, byteCount: 32)
                            }
                        }
                    }
                } else {
                    let amp = Float(3.0.squareRoot() * (kind(name) == .bias ? 0.02 : 0.05))
                    let start = rowStart(0)
                    let values = (0..<k).map { i -> Float in
                        let v = Float(pool[start + i]) / 127 * amp
                        return kind(name) == .norm ? v + 1 : v
                    }
                    bytes = values.withUnsafeBytes { Array($0) }
                }
                precondition(bytes.count == infos[t].byteCount, "\(name): \(bytes.count) bytes vs \(infos[t].byteCount)")
                try handle.seek(toOffset: UInt64(dataStart + infos[t].begin))
                try handle.write(contentsOf: bytes)
            }
        }
    }
}
