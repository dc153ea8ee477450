import Checkpoints
import Foundation

/// Hyper-parameters of a FLUX.1 transformer. Defaults are FLUX.1-dev (flux-and-tiling-spec §1.1).
public struct FluxConfig: Sendable, Equatable, Codable {
    /// Packed latent channels (16 latent channels × 2×2 patch).
    public var inChannels: Int = 64
    public var outChannels: Int = 64
    public var numHeads: Int = 24
    public var headDim: Int = 128
    /// Double-stream (MM-DiT) blocks.
    public var depth: Int = 19
    /// Single-stream blocks.
    public var depthSingle: Int = 38
    public var mlpRatio: Double = 4.0
    /// T5 hidden size.
    public var contextDim: Int = 4096
    /// CLIP pooled size.
    public var pooledDim: Int = 768
    public var guidanceEmbed: Bool = true
    /// RoPE axes (sum = headDim).
    public var axesDim: [Int] = [16, 56, 56]
    public var theta: Double = 10000
    /// Sinusoidal timestep embedding width.
    public var timestepDim: Int = 256

    public var hiddenSize: Int { numHeads * headDim }
    public var mlpHidden: Int { Int((Double(hiddenSize) * mlpRatio).rounded()) }

    public init() {}

    public static let dev = FluxConfig()
    public static var schnell: FluxConfig {
        var c = FluxConfig()
        c.guidanceEmbed = false
        return c
    }

    /// Checks internal consistency (axes sum to the head dim, positive sizes).
    public func validate() throws {
        guard axesDim.reduce(0, +) == headDim, axesDim.allSatisfy({ $0 % 2 == 0 }) else {
            throw CheckpointError(.badConfig, "axes_dims_rope \(axesDim) must be even and sum to head dim \(headDim)")
        }
        guard inChannels > 0, outChannels > 0, numHeads > 0, headDim > 0, depth >= 0, depthSingle >= 0,
              contextDim > 0, pooledDim > 0, mlpHidden > 0 else {
            throw CheckpointError(.badConfig, "non-positive size in FLUX config \(self)")
        }
    }

    /// Parses a diffusers `FluxTransformer2DModel` `config.json`; fields absent keep the FLUX.1-dev defaults.
    public init(diffusersConfigJSON data: Data) throws {
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError(.badConfig, "config.json is not a JSON object")
        }
        self.init()
        func int(_ k: String) -> Int? { (obj[k] as? NSNumber)?.intValue }
        if let v = int("in_channels") { inChannels = v; outChannels = v }
        if let v = int("out_channels") { outChannels = v }
        if let v = int("num_layers") { depth = v }
        if let v = int("num_single_layers") { depthSingle = v }
        if let v = int("attention_head_dim") { headDim = v }
        if let v = int("num_attention_heads") { numHeads = v }
        if let v = int("joint_attention_dim") { contextDim = v }
        if let v = int("pooled_projection_dim") { pooledDim = v }
        if let v = obj["guidance_embeds"] as? Bool { guidanceEmbed = v }
        if let v = obj["axes_dims_rope"] as? [NSNumber] { axesDim = v.map(\.intValue) }
        else if headDim != 128 { axesDim = Self.defaultAxes(headDim: headDim) }
        if let v = (obj["mlp_ratio"] as? NSNumber)?.doubleValue { mlpRatio = v }
        try validate()
    }

    /// FLUX's split of the head dim into RoPE axes (1/8, 7/16, 7/16), exact for 128 → (16, 56, 56).
    public static func defaultAxes(headDim: Int) -> [Int] {
        let a0 = headDim / 8
        let a1 = (headDim - a0) / 2
        return [a0, a1, headDim - a0 - a1]
    }

    /// The config of a FLUX transformer checkpoint inferred from its tensor names and shapes alone (any layout and
    /// prefix `FluxWeightMap.detect` knows; safetensors in any dtype, FP8 plain or scaled, or GGUF): depths from the
    /// block indices, width from `img_in`, heads from the q-norm scale, dev vs schnell from `guidance_in`.
    public static func inferred(from set: CheckpointSet) throws -> FluxConfig {
        let (layout, prefix) = try FluxWeightMap.detect(names: set.names)
        return try FluxConfig(detectingFrom: FluxWeightMap.canonicalShapes(of: set, layout: layout, prefix: prefix))
    }

    /// Infers the config from canonical (BFL) tensor shapes: widths from `img_in`, `txt_in`, `vector_in`, the head
    /// dim from the q-norm scale, depths from the block indices, guidance from `guidance_in`. RoPE axes cannot be
    /// seen in shapes: FLUX's split of the head dim is assumed.
    public init(detectingFrom shapes: [String: [Int]]) throws {
        self.init()
        func shape(_ k: String) throws -> [Int] {
            guard let s = shapes[k] else { throw CheckpointError(.missingKeys, "cannot detect FLUX config: no '\(k)'") }
            return s
        }
        let imgIn = try shape("img_in.weight")
        let hidden = imgIn[0]
        inChannels = imgIn[1]
        outChannels = try shape("final_layer.linear.weight")[0]
        contextDim = try shape("txt_in.weight")[1]
        pooledDim = try shape("vector_in.in_layer.weight")[1]
        timestepDim = try shape("time_in.in_layer.weight")[1]
        guidanceEmbed = shapes["guidance_in.in_layer.weight"] != nil
        func maxIndex(_ prefix: String) -> Int {
            var m = -1
            for k in shapes.keys where k.hasPrefix(prefix) {
                let rest = k.dropFirst(prefix.count)
                if let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) { m = max(m, i) }
            }
            return m + 1
        }
        depth = maxIndex("double_blocks.")
        depthSingle = maxIndex("single_blocks.")
        if let q = shapes["double_blocks.0.img_attn.norm.query_norm.scale"] ?? shapes["single_blocks.0.norm.query_norm.scale"] {
            headDim = q[0]
        } else {
            headDim = 128
        }
        guard hidden % headDim == 0 else {
            throw CheckpointError(.badConfig, "hidden size \(hidden) is not a multiple of head dim \(headDim)")
        }
        numHeads = hidden / headDim
        if let mlp = shapes["double_blocks.0.img_mlp.0.weight"] {
            mlpRatio = Double(mlp[0]) / Double(hidden)
        } else if let l1 = shapes["single_blocks.0.linear1.weight"] {
            mlpRatio = Double(l1[0] - 3 * hidden) / Double(hidden)
        }
        axesDim = headDim == 128 ? [16, 56, 56] : Self.defaultAxes(headDim: headDim)
        try validate()
    }
}
