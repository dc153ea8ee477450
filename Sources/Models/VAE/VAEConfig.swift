import Checkpoints
import Foundation

/// Hyper-parameters of a FLUX-style AutoencoderKL (flux-and-tiling-spec §3.1). Layer counts come only from here.
///
/// Defaults are FLUX.1's `ae.safetensors`: ch 128, ch_mult (1,2,4,4), 2 res blocks per encoder level (3 per decoder
/// level), 16 latent channels, GroupNorm 32 groups eps 1e-6, mid-block attention, no quant convs.
public struct VAEConfig: Sendable, Equatable {
    public var inChannels: Int = 3
    public var outChannels: Int = 3
    /// Output channels of each resolution level, highest resolution first (diffusers `block_out_channels`).
    public var blockOutChannels: [Int] = [128, 256, 512, 512]
    /// Res blocks per encoder level; the decoder uses one more (diffusers `layers_per_block`).
    public var layersPerBlock: Int = 2
    public var latentChannels: Int = 16
    public var normGroups: Int = 32
    public var normEps: Float = 1e-6
    public var midBlockAttention: Bool = true
    /// Pipeline latent scaling (not applied by `encode`/`decode`): z = scaling * (raw - shift).
    public var scalingFactor: Float = 0.3611
    public var shiftFactor: Float = 0.1159

    public init() {}

    /// FLUX.1 (dev / schnell) autoencoder.
    public static let flux = VAEConfig()

    public var levels: Int { blockOutChannels.count }
    /// Total down/up-sampling factor between pixels and latents.
    public var downsampleFactor: Int { 1 << (levels - 1) }

    /// Reads a diffusers `config.json` (`AutoencoderKL`). Keys not given keep the FLUX defaults.
    public init(diffusersConfigJSON data: Data, source: String = "config.json") throws {
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError(.badConfig, "\(source): not a JSON object")
        }
        self.init()
        func int(_ k: String) throws -> Int? {
            guard let v = obj[k], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber else { throw CheckpointError(.badConfig, "\(source): '\(k)' is not a number") }
            return n.intValue
        }
        func float(_ k: String) throws -> Float? {
            guard let v = obj[k], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber else { throw CheckpointError(.badConfig, "\(source): '\(k)' is not a number") }
            return n.floatValue
        }
        if let v = try int("in_channels") { inChannels = v }
        if let v = try int("out_channels") { outChannels = v }
        if let v = obj["block_out_channels"] {
            guard let a = v as? [NSNumber], !a.isEmpty else {
                throw CheckpointError(.badConfig, "\(source): 'block_out_channels' must be a non-empty list of integers")
            }
            blockOutChannels = a.map(\.intValue)
        }
        if let v = try int("layers_per_block") { layersPerBlock = v }
        if let v = try int("latent_channels") { latentChannels = v }
        if let v = try int("norm_num_groups") { normGroups = v }
        if let v = try float("scaling_factor") { scalingFactor = v }
        if let v = try float("shift_factor") { shiftFactor = v }
        if let v = obj["mid_block_add_attention"] as? Bool { midBlockAttention = v }
        if let v = obj["act_fn"] as? String, v != "silu" {
            throw CheckpointError(.badConfig, "\(source): act_fn '\(v)' is not supported (FLUX VAE uses silu)")
        }
        for k in ["use_quant_conv", "use_post_quant_conv"] where (obj[k] as? Bool) == true {
            throw CheckpointError(.badConfig, "\(source): \(k)=true is not supported (FLUX VAE has no quant convs)")
        }
        try validate()
    }

    public init(diffusersConfigAt url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CheckpointError(.io, "\(url.path): \(error.localizedDescription)")
        }
        try self.init(diffusersConfigJSON: data, source: url.path)
    }

    /// Reads the channel layout from canonical (BFL-named) tensor shapes; `normGroups` cannot be seen in shapes and
    /// keeps `base.normGroups`.
    public init(detectingFrom shapes: [String: [Int]], base: VAEConfig = .flux) throws {
        self = base
        guard let convIn = shapes["encoder.conv_in.weight"], convIn.count == 4,
              let decIn = shapes["decoder.conv_in.weight"], decIn.count == 4 else {
            throw CheckpointError(.unknownLayout, "not a VAE checkpoint: encoder.conv_in / decoder.conv_in missing")
        }
        inChannels = convIn[1]
        latentChannels = decIn[1]
        var chans: [Int] = []
        while let w = shapes["encoder.down.\(chans.count).block.0.conv1.weight"] { chans.append(w[0]) }
        guard !chans.isEmpty else { throw CheckpointError(.unknownLayout, "no encoder.down.0.block.0.conv1.weight") }
        blockOutChannels = chans
        var blocks = 0
        while shapes["encoder.down.0.block.\(blocks).conv1.weight"] != nil { blocks += 1 }
        layersPerBlock = blocks
        midBlockAttention = shapes["encoder.mid.attn_1.q.weight"] != nil
        if let out = shapes["decoder.conv_out.weight"] { outChannels = out[0] }
        try validate()
    }

    public func validate() throws {
        guard levels >= 1, layersPerBlock >= 1, latentChannels >= 1, normGroups >= 1 else {
            throw CheckpointError(.badConfig, "VAE config has empty levels/blocks/channels: \(self)")
        }
        for c in blockOutChannels where c % normGroups != 0 {
            throw CheckpointError(.badConfig, "VAE channels \(c) not divisible by norm_num_groups \(normGroups)")
        }
    }
}
