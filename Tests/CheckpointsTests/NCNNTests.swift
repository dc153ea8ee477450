import Foundation
import Testing
import Checkpoints
import Tensor

@Suite("ncnn .param parser", .timeLimit(.minutes(5)))
struct NCNNParamTests {
    static let sample = """
    7767517
    4 5
    Input                    input.1                  0 1 data
    Convolution              Conv_1                   1 1 data 705 0=32 1=3 4=1 5=1 6=864 9=2 -23310=1,2.000000e-01
    Eltwise                  Add_16                   2 1 705 data 719 0=1 -23301=2,2.000000e-01,1.000000e+00
    Interp                   Resize_1177              1 1 719 1883 0=1 1=2.000000e+00 2=2.000000e+00

    """

    @Test("layers, blobs, int/float/array parameters")
    func parsesSample() throws {
        let p = try NCNNParam(text: Self.sample)
        #expect(p.layers.count == 4)
        #expect(p.blobCount == 5)
        let conv = p.layers[1]
        #expect(conv.type == "Convolution" && conv.name == "Conv_1")
        #expect(conv.inputs == ["data"] && conv.outputs == ["705"])
        #expect(conv.params.int(0, default: 0) == 32)
        #expect(conv.params.int(6, default: 0) == 864)
        #expect(conv.params.int(11, default: -1) == -1)
        #expect(conv.params.floats(10) == [0.2])
        #expect(conv.line == 4)
        let elt = p.layers[2]
        #expect(elt.inputs == ["705", "data"])
        #expect(elt.params.floats(1) == [0.2, 1.0])
        #expect(p.layers[3].params.float(1, default: 0) == 2.0)
        #expect(p.layers[3].params.int(0, default: 0) == 1)
    }

    @Test("bad magic, wrong layer count and malformed parameters are clear errors")
    func errors() {
        #expect { try NCNNParam(text: "1234\n0 0\n") } throws: { ($0 as? NCNNFormatError)?.code == .badMagic }
        #expect { try NCNNParam(text: "7767517\n2 1\nInput in 0 1 data\n") } throws: {
            guard let e = $0 as? NCNNFormatError else { return false }
            return e.code == .malformedHeader && e.message.contains("2 layers")
        }
        #expect { try NCNNParam(text: "7767517\n1 1\nInput in 0 1 data 0=abc\n") } throws: {
            ($0 as? NCNNFormatError)?.code == .malformedParam
        }
        #expect { try NCNNParam(text: "7767517\n1 1\nConvolution c 1 1 x\n") } throws: {
            ($0 as? NCNNFormatError)?.code == .malformedLayer
        }
        #expect { try NCNNParam(contentsOf: "/nonexistent/x.param") } throws: {
            ($0 as? NCNNFormatError)?.code == .fileNotFound
        }
    }
}

/// Little-endian writer for synthetic .bin files.
struct NCNNBinWriter {
    var data = Data()
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func f32(_ values: [Float]) { for v in values { u32(v.bitPattern) } }
    mutating func taggedF32(_ values: [Float]) { u32(0); f32(values) }
    mutating func taggedF16(_ values: [Float]) {
        u32(0x0130_6B47)
        for v in values { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        while data.count % 4 != 0 { data.append(0) }
    }
}

@Suite("ncnn .bin reader", .timeLimit(.minutes(5)))
struct NCNNModelBinTests {
    @Test("float16 (padded to 4 bytes), float32 and raw blobs, read in order")
    func readsBlobs() throws {
        var w = NCNNBinWriter()
        w.taggedF16([1.0, -2.5, 0.5])  // 4 + 6 bytes, padded to 12
        w.taggedF32([3.25, -1])
        w.f32([7, 8])
        var bin = NCNNModelBin(data: w.data)
        let a = try bin.readTagged(count: 3, shape: [3], what: "a")
        #expect(a.toArray() == [1.0, -2.5, 0.5])
        #expect(bin.offset == 12)
        let b = try bin.readTagged(count: 2, shape: [1, 2], what: "b")
        #expect(b.toArray() == [3.25, -1])
        let c = try bin.readRaw(count: 2, shape: [2], what: "c")
        #expect(c.toArray() == [7, 8])
        try bin.expectEnd()
    }

    @Test("unknown tag, truncation and trailing bytes are clear errors")
    func errors() throws {
        var w = NCNNBinWriter()
        w.u32(0x000D_4B38)  // int8
        w.f32([1])
        var bin = NCNNModelBin(data: w.data)
        #expect { try bin.readTagged(count: 1, shape: [1], what: "q") } throws: {
            guard let e = $0 as? NCNNFormatError else { return false }
            return e.code == .unsupportedWeightType && e.message.contains("q")
        }
        var t = NCNNBinWriter()
        t.taggedF16([1, 2])
        var short = NCNNModelBin(data: t.data)
        #expect { try short.readTagged(count: 10, shape: [10], what: "w") } throws: {
            ($0 as? NCNNFormatError)?.code == .truncatedWeights
        }
        let left = NCNNModelBin(data: t.data)
        #expect { try left.expectEnd() } throws: { ($0 as? NCNNFormatError)?.code == .trailingWeights }
    }

    @Test("Convolution layer: shape from weight_data_size, bias, fused LeakyReLU params")
    func convolution() throws {
        let p = try NCNNParam(text: "7767517\n1 2\nConvolution c 1 1 x y 0=2 1=3 4=1 5=1 6=36 9=2 -23310=1,1.000000e-01\n")
        var w = NCNNBinWriter()
        w.taggedF16((0..<36).map { Float($0) / 8 })
        w.f32([0.5, -0.5])
        var bin = NCNNModelBin(data: w.data)
        let c = try NCNNConvolution(layer: p.layers[0], bin: &bin)
        #expect(c.weight.shape == [2, 2, 3, 3])
        #expect(c.weight[flat: 35] == 35.0 / 8)
        #expect(c.bias?.toArray() == [0.5, -0.5])
        #expect(c.activationType == 2 && c.activationParams == [0.1])
        #expect(c.padTop == 1 && c.padBottom == 1 && c.strideH == 1)
        try bin.expectEnd()
    }
}
