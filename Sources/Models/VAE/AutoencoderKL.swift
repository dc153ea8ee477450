import Checkpoints
import Foundation
import Tensor

/// Errors of the VAE: bad input shapes and tiling settings (weight-file problems are `CheckpointError`s).
public struct VAEError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case badInput, badTiling, io }
    public let code: Code
    public let message: String
    public let file: String
    public let line: Int
    /// Scratch-file I/O (disk tile storage) may succeed on retry; shape errors cannot.
    public var isRetriable: Bool { code == .io }

    public init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { "VAEError.\(code.rawValue): \(message)" }
}

/// The FLUX autoencoder (AutoencoderKL, 16 latent channels; flux-and-tiling-spec §3): encoder to the raw latent mean,
/// decoder from a raw latent. Latent scaling/shift (`config.scalingFactor`, `shiftFactor`) is the pipeline's job.
///
/// Weights are held in float32 under canonical (BFL) names; BFL `ae.safetensors` and diffusers `AutoencoderKL`
/// checkpoints both load. `encode`/`decode` run untiled or tiled (`VAETiling`): tiled runs share GroupNorm statistics
/// across tiles, so they match the untiled result (exactly, with global mid-block attention).
public final class AutoencoderKL: Sendable {
    public let config: VAEConfig
    let convs: [String: Conv2D]
    let norms: [String: (gamma: Tensor, beta: Tensor)]
    /// Attention projections as [C, C] matrices with biases, keyed `<prefix>.q` etc.
    let projections: [String: (weight: Tensor, bias: Tensor)]
    let encoderOps: [VAEOp]
    let decoderOps: [VAEOp]

    /// Builds the model from canonical (BFL-named) float32 tensors; every tensor of `VAEWeightMap.canonicalShapes`
    /// must be present with its shape (attention projections may be [C, C] or [C, C, 1, 1]).
    public init(config: VAEConfig, canonical weights: [String: Tensor]) throws {
        try config.validate()
        self.config = config
        var missing: [String] = []
        var convs: [String: Conv2D] = [:]
        var norms: [String: (Tensor, Tensor)] = [:]
        var projections: [String: (Tensor, Tensor)] = [:]
        let expected = VAEWeightMap.canonicalShapes(config)
        for (name, shape) in expected {
            guard let t = weights[name] else { missing.append(name); continue }
            guard t.count == shape.reduce(1, *), t.shape == shape || (shape.count == 4 && t.shape == Array(shape.prefix(2))) else {
                throw CheckpointError(.shapeMismatch, "VAE tensor '\(name)' has shape \(t.shape), expected \(shape)")
            }
        }
        guard missing.isEmpty else {
            throw CheckpointError(.missingKeys, "VAE checkpoint lacks \(missing.count) tensors, e.g. \(missing.prefix(5).joined(separator: ", "))")
        }
        for (name, shape) in expected where name.hasSuffix(".weight") {
            let layer = String(name.dropLast(".weight".count))
            let w = weights[name]!, b = weights[layer + ".bias"]!
            if shape.count == 1 {
                norms[layer] = (w, b)
            } else if layer.contains(".attn_1.") {
                projections[layer] = (w.reshaped([shape[0], shape[1]]), b)
            } else if layer.hasSuffix("downsample.conv") {
                convs[layer] = Conv2D(weight: w, bias: b, stride: (2, 2), padding: (0, 0, 1, 1))
            } else if layer == "encoder.conv_out" {
                // Only the mean half of the (mean | logvar) output is computed.
                let l = config.latentChannels
                let wm = w.view(shape: [l, shape[1], 3, 3])
                let bm = b.view(shape: [l])
                convs[layer] = Conv2D.same(weight: wm, bias: bm)
            } else {
                convs[layer] = Conv2D.same(weight: w, bias: b)
            }
        }
        self.convs = convs
        self.norms = norms
        self.projections = projections
        self.encoderOps = VAEProgram.encoder(config)
        self.decoderOps = VAEProgram.decoder(config)
    }

    /// Loads a BFL or diffusers checkpoint (file or directory of safetensors). Without `config`, the channel layout is
    /// read from the tensor shapes and GroupNorm uses 32 groups (FLUX); a diffusers `config.json` next to the weights
    /// is used when present. Returns the model and the checkpoint keys it did not use (for the caller to log).
    public static func load(from url: URL, config: VAEConfig? = nil) throws -> (model: AutoencoderKL, unusedKeys: [String]) {
        let set = try CheckpointSet(url: url)
        let (layout, prefix) = try VAEWeightMap.detect(names: set.names)
        var cfg = config
        if cfg == nil {
            let sidecar = set.directory.appendingPathComponent("config.json")
            if FileManager.default.fileExists(atPath: sidecar.path) { cfg = try VAEConfig(diffusersConfigAt: sidecar) }
        }
        // Encoder level keys do not depend on the level count, so they can be probed before it is known.
        let levelsGuess = (0..<16).prefix(while: { i in
            set[prefix + VAEWeightMap.sourceKey("encoder.down.\(i).block.0.conv1.weight", layout: layout, levels: 1)] != nil
        }).count
        if cfg == nil {
            var shapes: [String: [Int]] = [:]
            for i in 0..<levelsGuess {
                for j in 0..<8 {
                    let n = "encoder.down.\(i).block.\(j).conv1.weight"
                    if let info = set[prefix + VAEWeightMap.sourceKey(n, layout: layout, levels: levelsGuess)] { shapes[n] = info.shape }
                }
            }
            for n in ["encoder.conv_in.weight", "decoder.conv_in.weight", "decoder.conv_out.weight", "encoder.mid.attn_1.q.weight"] {
                if let info = set[prefix + VAEWeightMap.sourceKey(n, layout: layout, levels: levelsGuess)] { shapes[n] = info.shape }
            }
            cfg = try VAEConfig(detectingFrom: shapes)
        }
        let c = cfg!
        var weights: [String: Tensor] = [:]
        var used = Set<String>()
        for (name, _) in VAEWeightMap.canonicalShapes(c) {
            let key = prefix + VAEWeightMap.sourceKey(name, layout: layout, levels: c.levels)
            guard set[key] != nil else {
                throw CheckpointError(.missingKeys, "\(url.lastPathComponent) (\(layout.rawValue) layout) lacks '\(key)' (canonical \(name))")
            }
            weights[name] = try set.tensor(named: key)
            used.insert(key)
        }
        let unused = set.names.filter { $0.hasPrefix(prefix) && !used.contains($0) }.sorted()
        return (try AutoencoderKL(config: c, canonical: weights), unused)
    }

    /// Encodes `[B, inChannels, H, W]` pixels in [-1, 1] to the raw latent mean `[B, latent, H/8, W/8]`
    /// (diffusers `encode(x).latent_dist.mean`).
    public func encode(_ sample: Tensor, tiling: VAETiling = .untiled) throws -> Tensor {
        guard sample.rank == 4, sample.shape[1] == config.inChannels, sample.shape[2] >= 2, sample.shape[3] >= 2 else {
            throw VAEError(.badInput, "vae encode expects [B, \(config.inChannels), H, W], got \(sample.shape)")
        }
        let f = config.downsampleFactor
        var (oh, ow) = (sample.shape[2], sample.shape[3])
        for _ in 1..<config.levels { oh /= 2; ow /= 2 }
        if tiling.isTiled, sample.shape[2] % f != 0 || sample.shape[3] % f != 0 {
            throw VAEError(.badTiling, "tiled encode needs H and W divisible by \(f), got \(sample.shape[2])x\(sample.shape[3])")
        }
        let out = Tensor(zeros: [sample.shape[0], config.latentChannels, oh, ow])
        try VAEExecutor(model: self, ops: encoderOps, tiling: tiling, alignment: f)
            .run(sample, into: out)
        return out
    }

    /// Decodes a raw latent `[B, latent, h, w]` to pixels `[B, outChannels, 8h, 8w]` (diffusers `decode(z).sample`).
    public func decode(_ latent: Tensor, tiling: VAETiling = .untiled) throws -> Tensor {
        guard latent.rank == 4, latent.shape[1] == config.latentChannels else {
            throw VAEError(.badInput, "vae decode expects [B, \(config.latentChannels), h, w], got \(latent.shape)")
        }
        let f = config.downsampleFactor
        let out = Tensor(zeros: [latent.shape[0], config.outChannels, latent.shape[2] * f, latent.shape[3] * f])
        try VAEExecutor(model: self, ops: decoderOps, tiling: tiling, alignment: 1).run(latent, into: out)
        return out
    }
}
