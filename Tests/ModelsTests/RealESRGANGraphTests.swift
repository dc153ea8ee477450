import DreamsrTestKit
import Foundation
import Testing
import Models
import Tensor

/// Builds a tiny RRDBNet as ncnn .param/.bin (random weights, fp16 and fp32 blobs) and a plain NCHW reference.
struct TinyRRDBNet {
    var layers: [String] = []
    var bin = Data()
    var seed: UInt64 = 1
    let nf = 16, gc = 16

    mutating func random(_ n: Int, scale: Float) -> [Float] {
        (0..<n).map { _ in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return (Float(seed >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    /// Appends a Convolution layer and its blobs; returns the Conv2D reference.
    mutating func conv(_ name: String, _ input: String, _ output: String, cin: Int, cout: Int, leaky: Bool,
                       fp16: Bool) -> Conv2D {
        let w = random(cout * cin * 9, scale: 1 / Float(cin * 3)).map { Float(Float16($0)) }
        let b = random(cout, scale: 0.05)
        var line = "Convolution \(name) 1 1 \(input) \(output) 0=\(cout) 1=3 4=1 5=1 6=\(cout * cin * 9)"
        if leaky { line += " 9=2 -23310=1,2.000000e-01" }
        layers.append(line)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bin.append(contentsOf: $0) } }
        if fp16 {
            u32(0x0130_6B47)
            for v in w { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { bin.append(contentsOf: $0) } }
            while bin.count % 4 != 0 { bin.append(0) }
        } else {
            u32(0)
            for v in w { u32(v.bitPattern) }
        }
        for v in b { u32(v.bitPattern) }
        return Conv2D.same(weight: Tensor(shape: [cout, cin, 3, 3], values: w), bias: Tensor(shape: [cout], values: b),
                           activation: leaky ? .leakyReLU(slope: 0.2) : .none)
    }

    /// Writes the files and returns a reference forward function.
    mutating func build(blocks: Int, replacing: (String, String)? = nil) -> (param: String, bin: Data,
                                                                                reference: (Tensor) -> Tensor) {
        layers = ["Input input 0 1 data"]
        let first = conv("conv_first", "data", "feat", cin: 3, cout: nf, leaky: false, fp16: true)
        layers.append("Split sp_feat 1 2 feat feat_0 feat_1")
        var x = "feat_0"
        var rrdbs: [[[Conv2D]]] = []
        for r in 0..<blocks {
            let rrdbIn = x
            var rdbs: [[Conv2D]] = []
            for k in 0..<3 {
                var feats = [x]
                var convs: [Conv2D] = []
                for i in 1...5 {
                    let cin = nf + (i - 1) * gc
                    let input = i == 1 ? x : "b\(r)_\(k)_cat\(i - 1)"
                    convs.append(conv("b\(r)_\(k)_conv\(i)", input, "b\(r)_\(k)_c\(i)", cin: cin,
                                      cout: i == 5 ? nf : gc, leaky: i < 5, fp16: (i + k) % 2 == 0))
                    if i < 5 {
                        feats.append("b\(r)_\(k)_c\(i)")
                        layers.append("Concat b\(r)_\(k)_concat\(i) \(feats.count) 1 \(feats.joined(separator: " ")) "
                                      + "b\(r)_\(k)_cat\(i)")
                    }
                }
                layers.append("Eltwise b\(r)_\(k)_add 2 1 b\(r)_\(k)_c5 \(x) b\(r)_\(k)_y 0=1 "
                              + "-23301=2,2.000000e-01,1.000000e+00")
                x = "b\(r)_\(k)_y"
                rdbs.append(convs)
            }
            layers.append("Eltwise b\(r)_add 2 1 \(x) \(rrdbIn) b\(r)_out 0=1 -23301=2,2.000000e-01,1.000000e+00")
            x = "b\(r)_out"
            rrdbs.append(rdbs)
        }
        let body = conv("conv_body", x, "body", cin: nf, cout: nf, leaky: false, fp16: true)
        layers.append("BinaryOp add 2 1 feat_1 body trunk 0=0")
        layers.append("Interp up1 1 1 trunk u1 0=1 1=2.000000e+00 2=2.000000e+00")
        let up1 = conv("conv_up1", "u1", "c1", cin: nf, cout: nf, leaky: true, fp16: false)
        layers.append("Interp up2 1 1 c1 u2 0=1 1=2.000000e+00 2=2.000000e+00")
        let up2 = conv("conv_up2", "u2", "c2", cin: nf, cout: nf, leaky: true, fp16: true)
        let hr = conv("conv_hr", "c2", "hr", cin: nf, cout: nf, leaky: true, fp16: true)
        let last = conv("conv_last", "hr", "output", cin: nf, cout: 3, leaky: false, fp16: true)
        var text = "7767517\n\(layers.count) 999\n" + layers.joined(separator: "\n") + "\n"
        if let (a, b) = replacing { text = text.replacingOccurrences(of: a, with: b) }
        let reference: (Tensor) -> Tensor = { input in
            let feat = first(input)
            var x = feat
            for rdbs in rrdbs {
                let rrdbIn = x
                for convs in rdbs {
                    var cat = x
                    for i in 0..<4 { cat = Tensor.concatChannels([cat, convs[i](cat)]) }
                    let y = convs[4](cat)
                    y.axpby(x, a: 0.2, b: 1)
                    x = y
                }
                x.axpby(rrdbIn, a: 0.2, b: 1)
            }
            let t = body(x)
            t.add(feat)
            let h = hr(up2(up1(t.upsampledNearest2x()).upsampledNearest2x()))
            return last(h)
        }
        return (text, bin, reference)
    }
}

private func writeModel(_ param: String, _ bin: Data) throws -> (String, String) {
    let dir = URL(fileURLWithPath: try ScratchFiles.makeDirectory(prefix: "dreamsr-tiny-rrdb-"))
    let p = dir.appendingPathComponent("tiny.param"), b = dir.appendingPathComponent("tiny.bin")
    try param.write(to: p, atomically: true, encoding: .utf8)
    try bin.write(to: b)
    return (p.path, b.path)
}

@Suite("Real-ESRGAN graph loading (synthetic ncnn files)")
struct RealESRGANGraphTests {
    @Test("a tiny 2-block RRDBNet runs and matches the plain NCHW reference (im2col convs, concat, upsample)")
    func tinyModelMatchesReference() throws {
        var tiny = TinyRRDBNet()
        let (param, bin, reference) = tiny.build(blocks: 2)
        let (p, b) = try writeModel(param, bin)
        let model = try RealESRGAN(paramPath: p, binPath: b)
        #expect(model.blockCount == 2)
        // 37 rows -> 148 output rows: three bands of the 4x stage
        let input = Tensor(shape: [1, 3, 37, 6]) { Float(($0 * 37) % 101) / 100 }
        let out = try model.forward(input)
        let ref = reference(input)
        #expect(out.shape == [1, 3, 148, 24])
        #expect(out.maxAbsDifference(ref) < 1e-4, "max diff \(out.maxAbsDifference(ref)), ref max \(ref.maxAbs())")
    }

    @Test("an unknown layer type is refused with its name")
    func unknownLayer() throws {
        var tiny = TinyRRDBNet()
        let (param, bin, _) = tiny.build(blocks: 1, replacing: ("BinaryOp add", "Softmax add"))
        let (p, b) = try writeModel(param, bin)
        #expect { try RealESRGAN(paramPath: p, binPath: b) } throws: {
            guard let e = $0 as? RealESRGANError else { return false }
            return e.code == .unsupportedLayer && e.message.contains("Softmax") && e.message.contains("'add'")
        }
    }

    @Test("a supported but different topology is refused, naming the layer")
    func wrongTopology() throws {
        var tiny = TinyRRDBNet()
        // conv2 of the first dense block reads conv1's output only, not the concatenation
        let (param, bin, _) = tiny.build(blocks: 1, replacing: ("b0_0_conv2 1 1 b0_0_cat1", "b0_0_conv2 1 1 b0_0_c1"))
        let (p, b) = try writeModel(param, bin)
        #expect { try RealESRGAN(paramPath: p, binPath: b) } throws: {
            guard let e = $0 as? RealESRGANError else { return false }
            return e.code == .unexpectedGraph && e.message.contains("b0_0_conv2")
        }
    }

    @Test("a .bin that does not belong to the .param is refused")
    func truncatedBin() throws {
        var tiny = TinyRRDBNet()
        let (param, bin, _) = tiny.build(blocks: 1)
        let (p, b) = try writeModel(param, bin.prefix(bin.count - 100))
        #expect(throws: (any Error).self) { try RealESRGAN(paramPath: p, binPath: b) }
    }

    @Test("missing model files: the error says to run scripts/fetch-models.sh")
    func missingModel() {
        #expect { try RealESRGAN.locateModel(explicit: "/nonexistent/models") } throws: {
            guard let e = $0 as? RealESRGANError else { return false }
            return e.code == .modelNotFound && e.message.contains("scripts/fetch-models.sh")
                && e.message.contains("/nonexistent/models")
        }
        #expect(RealESRGAN.defaultSearchPaths.last?.hasSuffix("models/realesrgan-x4plus") == true)
    }

    @Test("bad input shapes are errors")
    func badInput() throws {
        var tiny = TinyRRDBNet()
        let (param, bin, _) = tiny.build(blocks: 1)
        let (p, b) = try writeModel(param, bin)
        let model = try RealESRGAN(paramPath: p, binPath: b)
        #expect(throws: RealESRGANError.self) { try model.forward(Tensor(zeros: [1, 4, 8, 8])) }
        #expect(throws: RealESRGANError.self) { try model.forward(Tensor(zeros: [3, 8, 8])) }
    }
}

@Suite("Real-ESRGAN model location")
struct RealESRGANLocateTests {
    @Test("a folder, its parent models folder, or the .param path itself are accepted")
    func explicitForms() throws {
        var tiny = TinyRRDBNet()
        let (param, bin, _) = tiny.build(blocks: 1)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-models-\(UUID().uuidString)")
        let dir = root.appendingPathComponent(RealESRGAN.modelFolderName)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let p = dir.appendingPathComponent(RealESRGAN.paramFileName).path
        let b = dir.appendingPathComponent(RealESRGAN.binFileName).path
        try param.write(toFile: p, atomically: true, encoding: .utf8)
        try bin.write(to: URL(fileURLWithPath: b))
        #expect(try RealESRGAN.locateModel(explicit: dir.path) == (p, b))
        #expect(try RealESRGAN.locateModel(explicit: root.path) == (p, b))
        #expect(try RealESRGAN.locateModel(explicit: p) == (p, b))
        #expect(try RealESRGAN(modelPath: root.path, threads: 2).threads == 2)
    }
}
