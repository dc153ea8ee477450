import Checkpoints
import Tensor

/// One convolution of the RRDBNet, with its weights and fused activation, as read from the ncnn file.
struct RRDBConv: Sendable {
    let name: String
    let weight: Tensor
    let bias: Tensor?
    let activation: Activation

    var inChannels: Int { weight.shape[1] }
    var outChannels: Int { weight.shape[0] }
}

/// The Real-ESRGAN RRDBNet (ESRGAN generator: conv_first, N residual-in-residual dense blocks of 3 dense blocks of 5
/// convs, conv_body, two nearest-2x + conv upsampling steps, conv_hr, conv_last), recovered from an ncnn graph.
///
/// `RRDBNetGraph.match` walks the ncnn layers in file order and checks that each one is exactly the next step of this
/// architecture (types, which blobs feed which layer, parameters), so the typed forward pass computes what the file
/// describes. Anything else fails with the layer's name and line.
struct RRDBNetGraph: Sendable {
    struct DenseBlock: Sendable {
        /// conv1...conv5; conv k reads the concatenation of x and the outputs of conv 1..k-1.
        var convs: [RRDBConv]
        /// out = coeffConv * conv5 + coeffInput * x
        var coeffConv: Float
        var coeffInput: Float
    }
    struct RRDB: Sendable {
        var blocks: [DenseBlock]
        /// out = coeffBlocks * blocks(x) + coeffInput * x
        var coeffBlocks: Float
        var coeffInput: Float
    }

    var convFirst: RRDBConv
    var body: [RRDB]
    var convBody: RRDBConv
    var convUp1: RRDBConv
    var convUp2: RRDBConv
    var convHR: RRDBConv
    var convLast: RRDBConv
    var inputBlob: String
    var outputBlob: String

    var numFeatures: Int { convFirst.outChannels }

    /// Layer types this engine implements (anything else in a .param is refused up front).
    static let supportedLayerTypes: Set<String> = ["Input", "Convolution", "Split", "Concat", "Eltwise", "BinaryOp",
                                                    "Interp"]

    static func load(param: NCNNParam, bin: inout NCNNModelBin, source: String) throws -> RRDBNetGraph {
        for layer in param.layers where !supportedLayerTypes.contains(layer.type) {
            throw RealESRGANError(.unsupportedLayer,
                                  "\(source): layer '\(layer.name)' (line \(layer.line)) has type '\(layer.type)'; "
                                  + "this engine runs only \(supportedLayerTypes.sorted().joined(separator: ", "))")
        }
        var m = Matcher(layers: param.layers, source: source)
        return try m.match(bin: &bin)
    }

    /// Walks the layers in order; Split layers only create aliases of their input blob.
    struct Matcher {
        let layers: [NCNNLayer]
        let source: String
        var index = 0
        var alias: [String: String] = [:]

        init(layers: [NCNNLayer], source: String) {
            self.layers = layers
            self.source = source
        }

        func root(_ blob: String) -> String { alias[blob] ?? blob }

        func fail(_ layer: NCNNLayer?, _ expectation: String) -> RealESRGANError {
            if let layer {
                return RealESRGANError(.unexpectedGraph, "\(source): layer '\(layer.name)' (\(layer.type), line "
                                       + "\(layer.line)) is not what an RRDBNet needs here: expected \(expectation)")
            }
            return RealESRGANError(.unexpectedGraph, "\(source): the graph ends early: expected \(expectation)")
        }

        /// The next non-Split layer (Splits are folded into aliases).
        mutating func next(_ expectation: String) throws -> NCNNLayer {
            while index < layers.count {
                let l = layers[index]
                index += 1
                if l.type == "Split" {
                    guard l.inputs.count == 1 else { throw fail(l, "a Split with one input") }
                    for o in l.outputs { alias[o] = root(l.inputs[0]) }
                    continue
                }
                return l
            }
            throw fail(nil, expectation)
        }

        func checkInputs(_ l: NCNNLayer, _ expected: [String], _ what: String) throws {
            let got = l.inputs.map(root)
            guard got == expected else { throw fail(l, "\(what) reading \(expected), it reads \(got)") }
            guard l.outputs.count == 1 else { throw fail(l, "\(what) with one output") }
        }

        mutating func conv(_ input: String, bin: inout NCNNModelBin, what: String,
                           inChannels: Int? = nil, outChannels: Int? = nil, leaky: Bool) throws -> (RRDBConv, String) {
            let l = try next("\(what) (Convolution)")
            guard l.type == "Convolution" else { throw fail(l, "\(what) (Convolution)") }
            try checkInputs(l, [input], what)
            let c = try NCNNConvolution(layer: l, bin: &bin)
            guard c.kernelW == 3, c.kernelH == 3, c.strideW == 1, c.strideH == 1, c.dilationW == 1, c.dilationH == 1,
                  c.padLeft == 1, c.padTop == 1, c.padRight == 1, c.padBottom == 1 else {
                throw fail(l, "\(what): a 3x3 stride 1 pad 1 convolution")
            }
            if let inChannels, c.inChannels != inChannels { throw fail(l, "\(what) with \(inChannels) input channels, it has \(c.inChannels)") }
            if let outChannels, c.outChannels != outChannels { throw fail(l, "\(what) with \(outChannels) output channels, it has \(c.outChannels)") }
            let act: Activation
            switch c.activationType {
            case 0: act = .none
            case 1: act = .relu
            case 2: act = .leakyReLU(slope: c.activationParams.first ?? 0)
            default: throw fail(l, "\(what) with no activation, ReLU or LeakyReLU (activation_type \(c.activationType))")
            }
            if leaky != (c.activationType != 0) {
                throw fail(l, "\(what) \(leaky ? "with" : "without") a fused activation")
            }
            return (RRDBConv(name: c.name, weight: c.weight, bias: c.bias, activation: act), l.outputs[0])
        }

        mutating func concat(_ inputs: [String], what: String) throws -> String {
            let l = try next("\(what) (Concat)")
            guard l.type == "Concat", l.params.int(0, default: 0) == 0 else { throw fail(l, "\(what) (Concat on channels)") }
            try checkInputs(l, inputs, what)
            return l.outputs[0]
        }

        /// An Eltwise sum of (first, second) with coefficients; returns (coefficient of first, of second, output).
        mutating func eltwiseSum(_ first: String, _ second: String, what: String) throws -> (Float, Float, String) {
            let l = try next("\(what) (Eltwise sum)")
            guard l.type == "Eltwise", l.params.int(0, default: 1) == 1 else { throw fail(l, "\(what) (Eltwise sum)") }
            let coeffs = l.params.floats(1) ?? [1, 1]
            guard coeffs.count == 2 else { throw fail(l, "\(what) with 2 coefficients") }
            let ins = l.inputs.map(root)
            guard l.outputs.count == 1 else { throw fail(l, "\(what) with one output") }
            if ins == [first, second] { return (coeffs[0], coeffs[1], l.outputs[0]) }
            if ins == [second, first] { return (coeffs[1], coeffs[0], l.outputs[0]) }
            throw fail(l, "\(what) reading \(first) and \(second), it reads \(ins)")
        }

        mutating func interpNearest2x(_ input: String, what: String) throws -> String {
            let l = try next("\(what) (Interp)")
            guard l.type == "Interp", l.params.int(0, default: 0) == 1,
                  l.params.float(1, default: 1) == 2, l.params.float(2, default: 1) == 2,
                  l.params.int(3, default: 0) == 0, l.params.int(4, default: 0) == 0 else {
                throw fail(l, "\(what): Interp nearest (0=1) with scale 2 (1=2.0 2=2.0)")
            }
            try checkInputs(l, [input], what)
            return l.outputs[0]
        }

        mutating func match(bin: inout NCNNModelBin) throws -> RRDBNetGraph {
            let input = try next("the Input layer")
            guard input.type == "Input", input.outputs.count == 1 else { throw fail(input, "the Input layer") }
            let data = input.outputs[0]

            let (convFirst, feat) = try conv(data, bin: &bin, what: "conv_first", inChannels: 3, leaky: false)
            let nf = convFirst.outChannels
            var x = feat
            var body: [RRDB] = []
            // RRDB blocks until conv_body: an RRDB starts with a Convolution reading x followed by a Concat.
            while true {
                let save = (index, alias)
                let peek = try next("conv_body or an RRDB")
                let peek2 = index < layers.count ? layers[index...].first(where: { $0.type != "Split" }) : nil
                (index, alias) = save
                if peek.type == "Convolution", peek2?.type == "BinaryOp" { break }
                let rrdbIn = x
                var blocks: [DenseBlock] = []
                var bx = x
                for r in 0..<3 {
                    let tag = "body.\(body.count).rdb\(r + 1)"
                    var feats = [bx]
                    var convs: [RRDBConv] = []
                    var cat = bx
                    for k in 1...4 {
                        let (c, out) = try conv(cat, bin: &bin, what: "\(tag).conv\(k)",
                                                inChannels: k == 1 ? nf : nil, leaky: true)
                        if k > 1, c.outChannels != convs[0].outChannels {
                            throw fail(nil, "\(tag).conv\(k) with the growth channels of conv1")
                        }
                        convs.append(c)
                        feats.append(out)
                        cat = try concat(feats, what: "\(tag).cat\(k)")
                    }
                    let (c5, out5) = try conv(cat, bin: &bin, what: "\(tag).conv5", outChannels: nf, leaky: false)
                    convs.append(c5)
                    let (a, b, y) = try eltwiseSum(out5, bx, what: "\(tag) residual")
                    blocks.append(DenseBlock(convs: convs, coeffConv: a, coeffInput: b))
                    bx = y
                }
                let (a, b, y) = try eltwiseSum(bx, rrdbIn, what: "body.\(body.count) residual")
                body.append(RRDB(blocks: blocks, coeffBlocks: a, coeffInput: b))
                x = y
            }
            let (convBody, bodyOut) = try conv(x, bin: &bin, what: "conv_body", inChannels: nf, outChannels: nf,
                                               leaky: false)
            let add = try next("the trunk residual (BinaryOp add)")
            guard add.type == "BinaryOp", add.params.int(0, default: 0) == 0, add.params.int(1, default: 0) == 0,
                  Set(add.inputs.map(root)) == Set([feat, bodyOut]), add.inputs.count == 2, add.outputs.count == 1 else {
                throw fail(add, "the trunk residual: BinaryOp add of conv_first and conv_body outputs")
            }
            let up1 = try interpNearest2x(add.outputs[0], what: "upsample 1")
            let (convUp1, u1) = try conv(up1, bin: &bin, what: "conv_up1", inChannels: nf, leaky: true)
            let up2 = try interpNearest2x(u1, what: "upsample 2")
            let (convUp2, u2) = try conv(up2, bin: &bin, what: "conv_up2", inChannels: convUp1.outChannels, leaky: true)
            let (convHR, hr) = try conv(u2, bin: &bin, what: "conv_hr", inChannels: convUp2.outChannels, leaky: true)
            let (convLast, out) = try conv(hr, bin: &bin, what: "conv_last", inChannels: convHR.outChannels,
                                           outChannels: 3, leaky: false)
            while index < layers.count {
                let l = layers[index]
                index += 1
                guard l.type == "Split" else { throw fail(l, "nothing after conv_last") }
            }
            try bin.expectEnd()
            guard !body.isEmpty else { throw fail(nil, "at least one RRDB block") }
            return RRDBNetGraph(convFirst: convFirst, body: body, convBody: convBody, convUp1: convUp1,
                                convUp2: convUp2, convHR: convHR, convLast: convLast, inputBlob: data,
                                outputBlob: out)
        }
    }
}
