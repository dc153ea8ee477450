import Checkpoints
import Foundation
import Testing
@testable import Models
import Tensor

/// The general ncnn runner on hand-written graphs: refusals name the layer, and small layers compute what ncnn
/// computes (checked by hand here; the real models are checked against the ncnn wheel in NCNNZooParityTests).
@Suite("ncnn graph runner", .timeLimit(.minutes(2)))
struct NCNNGraphTests {
    /// float32-tagged weights, as an ncnn .bin stores them.
    static func tagged(_ v: [Float]) -> Data {
        var d = Data([0, 0, 0, 0])
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        return d
    }

    static func raw(_ v: [Float]) -> Data {
        var d = Data()
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        return d
    }

    static func graph(_ text: String, _ bin: Data = Data()) throws -> NCNNGraph {
        var b = NCNNModelBin(data: bin)
        return try NCNNGraph(param: NCNNParam(text: text), bin: &b, source: "test.param", threads: 1)
    }

    @Test("an unsupported layer type is refused with its type, name and .param line")
    func unsupportedLayerType() throws {
        let text = """
        7767517
        3 3
        Input            in0    0 1 in0
        Softmax          soft1  1 1 in0 a
        Sigmoid          sig    1 1 a out
        """
        do {
            _ = try Self.graph(text)
            Issue.record("the graph was accepted")
        } catch let e as NCNNGraphError {
            #expect(e.code == .unsupportedLayer)
            #expect(e.message.contains("line 4"), "\(e)")
            #expect(e.message.contains("'soft1'"), "\(e)")
            #expect(e.message.contains("'Softmax'"), "\(e)")
        }
    }

    @Test("an unsupported parameter of a known type is refused naming the layer and line")
    func unsupportedParameter() throws {
        let text = """
        7767517
        2 2
        Input            in0    0 1 in0
        Pooling          pool3  1 1 in0 out 0=0 1=2 2=2
        """
        #expect {
            _ = try Self.graph(text)
        } throws: { e in
            let m = "\(e)"
            return (e as? NCNNGraphError)?.code == .unsupportedLayer && m.contains("line 4") && m.contains("pool3")
                && m.contains("global pooling")
        }
    }

    @Test("a blob no layer produces is refused")
    func danglingBlob() throws {
        let text = """
        7767517
        2 3
        Input            in0    0 1 in0
        BinaryOp         add    2 1 in0 ghost out 0=0
        """
        #expect(throws: NCNNGraphError.self) { _ = try Self.graph(text) }
    }

    @Test("layers listed out of order run in topological order; Split, Crop, per-channel BinaryOp, PixelShuffle")
    func smallGraph() throws {
        // out = PixelShuffle2(crop(x) * mean_hw(x))  with x [4, 3, 4]; the layers are listed out of order.
        let text = """
        7767517
        6 7
        Input            in0    0 1 in0
        PixelShuffle     ps     1 1 m out 0=2
        BinaryOp         mul    2 1 c g m 0=2
        Split            sp     1 2 in0 a b
        Crop             crop   1 1 a c -23309=2,1,1 -23310=2,-1,-1 -23311=2,-2,-1
        Pooling          gap    1 1 b g 0=1 4=1
        """
        let g = try Self.graph(text)
        let x = Tensor(shape: [1, 4, 3, 4]) { Float($0) }
        let out = try g.forward(x)
        #expect(out.shape == [1, 1, 2, 4])
        // channel k: values 12k...12k+11, mean 12k+5.5; crop keeps (1,1),(1,2): 12k+5, 12k+6.
        func v(_ k: Int, _ j: Int) -> Float { Float(12 * k + 5 + j) * Float(12 * k) + Float(12 * k + 5 + j) * 5.5 }
        // PixelShuffle: out[0][y*2+sh][x*2+sw] = in[sh*2+sw][y][x]; y = 0, x in 0..<2.
        let expected: [Float] = [v(0, 0), v(1, 0), v(0, 1), v(1, 1), v(2, 0), v(3, 0), v(2, 1), v(3, 1)]
        #expect(out.toArray() == expected)
    }

    @Test("Deconvolution: stride 2, kernel 4 padding 1 and kernel 2 = stride (P16 phase GEMMs), dilated kernel 3 (planar scatter), bias and LeakyReLU, against a direct scatter",
          arguments: [(4, 1, 1), (2, 0, 1), (3, 1, 2)])
    func deconvolution(k: Int, pad: Int, dilation d: Int) throws {
        let cin = 2, cout = 3, s = 2, h = 3, w = 5
        let weights = (0..<(cout * cin * k * k)).map { Float(($0 * 7) % 11) / 10 - 0.5 }
        let bias: [Float] = [0.1, -0.2, 0.3]
        let text = """
        7767517
        2 2
        Input            in0    0 1 in0
        Deconvolution    up     1 1 in0 out 0=\(cout) 1=\(k) 2=\(d) 3=\(s) 4=\(pad) 5=1 6=\(weights.count) 9=2 -23310=1,0.1
        """
        let g = try Self.graph(text, Self.tagged(weights) + Self.raw(bias))
        guard case .deconvolution(let op) = g.steps[1].op else { Issue.record("not a deconvolution"); return }
        #expect((op.packed != nil) == (d == 1))
        let x = Tensor(shape: [1, cin, h, w]) { Float(($0 * 5) % 9) / 8 - 0.4 }
        let out = try g.forward(x)
        let oh = (h - 1) * s + d * (k - 1) + 1 - 2 * pad, ow = (w - 1) * s + d * (k - 1) + 1 - 2 * pad
        #expect(out.shape == [1, cout, oh, ow])
        var ref = [Float](repeating: 0, count: cout * oh * ow)
        for o in 0..<cout {
            for i in 0..<(oh * ow) { ref[o * oh * ow + i] = bias[o] }
            for c in 0..<cin { for y in 0..<h { for xx in 0..<w { for ky in 0..<k { for kx in 0..<k {
                let oy = y * s + ky * d - pad, ox = xx * s + kx * d - pad
                guard oy >= 0, oy < oh, ox >= 0, ox < ow else { continue }
                ref[(o * oh + oy) * ow + ox] += x[flat: (c * h + y) * w + xx] * weights[((o * cin + c) * k + ky) * k + kx]
            } } } } }
        }
        for i in ref.indices where ref[i] < 0 { ref[i] *= 0.1 }
        let got = out.toArray()
        let err = zip(got, ref).map { abs($0 - $1) }.max()!
        #expect(err < 1e-5, "max abs error \(err)")
    }

    @Test("Concat and nearest Interp on 16-channel blobs (feeding a 2x2 stride-2 convolution) give the planar path's result")
    func packedConcatInterp() throws {
        // cat: 16 + 7 channels (P16 block copy: only the last input may be ragged); cat2: 7 + 16 (planar fallback).
        let text = """
        7767517
        12 16
        Input        in0  0 1 in0
        Convolution  c1   1 1 in0 a 0=16 1=3 4=1 5=1 6=432 9=1
        Split        sp   1 3 a a1 a2 a3
        Convolution  c2   1 1 a1 b 0=7 1=3 4=1 5=1 6=1008
        Split        spb  1 2 b b1 b2
        Concat       cat  2 1 a2 b1 c
        Concat       cat2 2 1 b2 a3 c2
        Eltwise      el   2 1 c c2 e 0=1
        Interp       up   1 1 e f 0=1 1=2.0 2=2.0
        Interp       up3  1 1 f g 0=1 1=1.5 2=0.5
        Convolution  down 1 1 g h 0=17 1=2 3=2 5=1 6=1564 9=2 -23310=1,0.1
        Convolution  c3   1 1 h out 0=5 1=3 4=1 5=1 6=765
        """
        var seed: UInt32 = 11
        func values(_ n: Int) -> [Float] {
            (0..<n).map { _ in seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 8) / Float(1 << 24) - 0.5 }
        }
        let bin = Self.tagged(values(432)) + Self.raw(values(16)) + Self.tagged(values(1008)) + Self.raw(values(7))
            + Self.tagged(values(1564)) + Self.raw(values(17)) + Self.tagged(values(765)) + Self.raw(values(5))
        let g = try Self.graph(text, bin)
        let x = Tensor(shape: [1, 3, 9, 14]) { Float(($0 * 37) % 101) / 50 - 1 }
        let packed = try g.forward(x)
        let planar = try g.forward(x, keepPacked: false)
        // 9x14 -> 18x28 -> 27x14 -> (2x2 stride 2) 13x7 -> 13x7
        #expect(packed.shape == [1, 5, 13, 7])
        #expect(packed.shape == planar.shape)
        let err = zip(packed.toArray(), planar.toArray()).map { abs($0 - $1) }.max()!
        #expect(err < 1e-5, "max abs difference \(err)")
        #expect(planar.toArray().contains { $0 != 0 })
    }

    /// A graph of every P16 layer kind, with Split aliases (`packedBlobsMatchPlanar`, `buffersRetainedBetweenForwards`).
    static func mixedGraph(threads: Int = 1) throws -> NCNNGraph {
        let text = """
        7767517
        16 23
        Input        in0  0 1 in0
        Convolution  c1   1 1 in0 a 0=17 1=3 4=1 5=1 6=459 9=2 -23310=1,0.1
        PReLU        pr   1 1 a b 0=17
        Split        sp   1 3 b b1 b2 b3
        Convolution  c2   1 1 b1 c 0=17 1=3 5=1 6=2601
        Crop         cr   1 1 b2 d -23309=2,1,1 -23310=2,-1,-1 -23311=2,-2,-1
        Split        sp3  1 2 d d1 d2
        BinaryOp     sub  2 1 d1 c e 0=1
        Pooling      gap  1 1 b3 g 0=1 4=1
        InnerProduct ip   1 1 g s 0=17 1=1 2=289 9=4
        Split        sp2  1 2 s s1 s2
        BinaryOp     mul  2 1 e s1 f 0=2
        Scale        sc   2 1 f s2 h 0=-233
        Eltwise      el   2 1 h d2 x 0=1 -23301=2,0.5,2.0
        BinaryOp     add  2 1 x d2 y 0=0
        Convolution  c3   1 1 y out 0=5 1=3 4=1 5=1 6=765
        """
        var seed: UInt32 = 7
        func values(_ n: Int) -> [Float] {
            (0..<n).map { _ in seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 8) / Float(1 << 24) - 0.5 }
        }
        let bin = Self.tagged(values(459)) + Self.raw(values(17)) + Self.raw(values(17))
            + Self.tagged(values(2601)) + Self.raw(values(17)) + Self.tagged(values(289)) + Self.raw(values(17))
            + Self.tagged(values(765)) + Self.raw(values(5))
        var b = NCNNModelBin(data: bin)
        return try NCNNGraph(param: NCNNParam(text: text), bin: &b, source: "test.param", threads: threads)
    }

    @Test("blobs kept in the 16-channel layout between convolutions give the planar path's result; in-place layers leave Split aliases intact")
    func packedBlobsMatchPlanar() throws {
        // 17 channels: the second 16-channel block is mostly padding lanes. `sub` reads d1 first, whose Split alias d2
        // is read later by `el` (must not be overwritten); `pr`, `add`, `mul` may work in place.
        let g = try Self.mixedGraph()
        let threaded = try Self.mixedGraph(threads: 3)
        let x = Tensor(shape: [1, 3, 11, 13]) { Float(($0 * 37) % 101) / 50 - 1 }
        let packed = try g.forward(x)
        let planar = try g.forward(x, keepPacked: false)
        #expect(packed.shape == [1, 5, 9, 11])
        #expect(packed.shape == planar.shape)
        let err = zip(packed.toArray(), planar.toArray()).map { abs($0 - $1) }.max()!
        #expect(err < 1e-5, "max abs difference \(err)")
        #expect(planar.toArray().contains { $0 != 0 })
        // The layers' worker-thread split (3 threads, 2 channel blocks) gives the same values.
        let errThreads = zip(try threaded.forward(x).toArray(), packed.toArray()).map { abs($0 - $1) }.max()!
        #expect(errThreads < 1e-5, "3 threads vs 1: max abs difference \(errThreads)")
    }

    @Test("blob buffers kept between forwards (reused whole or as prefixes by inputs of other sizes) give a fresh graph's results")
    func buffersRetainedBetweenForwards() throws {
        let g = try Self.mixedGraph(threads: 2)
        #expect(g.retained.bytes == 0)
        let sizes = [(11, 13), (15, 9), (7, 8), (11, 13), (20, 21), (11, 13)]
        for (n, (h, w)) in sizes.enumerated() {
            let x = Tensor(shape: [1, 3, h, w]) { Float(($0 * 37 + n) % 101) / 50 - 1 }
            let got = try g.forward(x)
            let fresh = try Self.mixedGraph(threads: 2).forward(x)
            #expect(got.shape == fresh.shape)
            #expect(got.toArray() == fresh.toArray(), "forward \(n) (\(h)x\(w)) after \(n) earlier forwards")
            #expect(g.retained.bytes > 0 && g.retained.bytes <= NCNNRunContext.poolBudgetBytes)
        }
    }

    @Test("3x3 convolutions match a direct convolution on maps that take F(6x6,3x3) tiles and on small ones (F(4x4,3x3)), padding 0 and 1, 1 and 2 threads")
    func winogradTileSelection() throws {
        // 30x28 outputs: 25 8x8 tiles (1600 products) vs 56 6x6 tiles (2016): F(6,3). 8x8 outputs: 256 vs 144: F(4,3).
        #expect(NCNNConvOp.prefersLargeTiles(height: 30, width: 28))
        #expect(!NCNNConvOp.prefersLargeTiles(height: 8, width: 8))
        #expect(!NCNNConvOp.prefersLargeTiles(height: 20, width: 20))
        let cin = 17, cout = 19
        var seed: UInt32 = 5
        func values(_ n: Int) -> [Float] {
            (0..<n).map { _ in seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 8) / Float(1 << 24) - 0.5 }
        }
        let weight = values(cout * cin * 9), bias = values(cout)
        for (pad, h, w) in [(1, 30, 28), (0, 32, 30), (1, 8, 8), (0, 10, 10)] {
            let text = """
            7767517
            2 2
            Input        in0  0 1 in0
            Convolution  c1   1 1 in0 out 0=\(cout) 1=3 4=\(pad) 5=1 6=\(cout * cin * 9) 9=2 -23310=1,0.1
            """
            let x = Tensor(shape: [1, cin, h, w]) { Float(($0 * 37) % 101) / 50 - 1 }
            let xs = x.toArray()
            let oh = h + 2 * pad - 2, ow = w + 2 * pad - 2
            var ref = [Float](repeating: 0, count: cout * oh * ow)
            for co in 0..<cout {
                for y in 0..<oh {
                    for xx in 0..<ow {
                        var acc = Double(bias[co])
                        for ci in 0..<cin {
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let iy = y + ky - pad, ix = xx + kx - pad
                                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                    acc += Double(weight[((co * cin + ci) * 3 + ky) * 3 + kx]) * Double(xs[(ci * h + iy) * w + ix])
                                }
                            }
                        }
                        ref[(co * oh + y) * ow + xx] = Float(acc >= 0 ? acc : 0.1 * acc)
                    }
                }
            }
            for threads in [1, 2] {
                var b = NCNNModelBin(data: Self.tagged(weight) + Self.raw(bias))
                let g = try NCNNGraph(param: NCNNParam(text: text), bin: &b, source: "test.param", threads: threads)
                let out = try g.forward(x)
                #expect(out.shape == [1, cout, oh, ow])
                let err = zip(out.toArray(), ref).map { abs($0 - $1) }.max()!
                print("ncnn 3x3 conv pad \(pad) \(h)x\(w), \(threads) threads: max abs error \(err) (output max abs \(ref.map(abs).max()!))")
                // outputs reach about 7; measured max abs error 1.4e-5 to 1.6e-5 on the F(4,3) maps, 1.5e-5 to 4.8e-5 on F(6,3)'s
                #expect(err < 1e-4, "pad \(pad) \(h)x\(w), \(threads) threads: max abs difference \(err)")
            }
        }
    }
}
