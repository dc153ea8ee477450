import Checkpoints
import Foundation

/// Key layouts of FLUX VAE checkpoints.
public enum VAELayout: String, Sendable {
    /// Black Forest Labs `ae.safetensors` (`encoder.down.0.block.0.norm1`, `decoder.up.3` = lowest resolution).
    case bfl
    /// diffusers `AutoencoderKL` (`encoder.down_blocks.0.resnets.0.norm1`, `decoder.up_blocks.0` = lowest resolution).
    case diffusers
}

/// Maps canonical VAE tensor names (BFL layout) to the names in a checkpoint of either layout
/// (flux-and-tiling-spec §3.2; diffusers `single_file_utils.convert_ldm_vae_checkpoint`).
///
/// The mapping is a pure function canonical key → source key; the only value transform is the attention
/// projections' shape ([C, C, 1, 1] in BFL, [C, C] in diffusers), which is a reshape of identical bytes.
public enum VAEWeightMap {
    /// Layout from tensor names (anchor: `encoder.down_blocks.` for diffusers, `encoder.down.` for BFL), with any
    /// prefix (e.g. `vae.` or `first_stage_model.`).
    public static func detect(names: [String]) throws -> (layout: VAELayout, prefix: String) {
        let anchors: [(String, VAELayout)] = [
            ("encoder.down_blocks.0.resnets.0.conv1.weight", .diffusers),
            ("encoder.down.0.block.0.conv1.weight", .bfl),
        ]
        for (anchor, layout) in anchors {
            if let k = names.filter({ $0 == anchor || $0.hasSuffix("." + anchor) }).min(by: { $0.count < $1.count }) {
                return (layout, String(k.dropLast(anchor.count)))
            }
        }
        throw CheckpointError(.unknownLayout,
            "not a VAE checkpoint: neither 'encoder.down.0.block.0.conv1.weight' (BFL) nor 'encoder.down_blocks.0.resnets.0.conv1.weight' (diffusers) among \(names.count) keys")
    }

    /// Canonical (BFL) names and shapes of every tensor of a config.
    public static func canonicalShapes(_ c: VAEConfig) -> [(String, [Int])] {
        var out: [(String, [Int])] = []
        func conv(_ n: String, _ o: Int, _ i: Int, _ k: Int = 3) {
            out.append(("\(n).weight", [o, i, k, k])); out.append(("\(n).bias", [o]))
        }
        func norm(_ n: String, _ ch: Int) { out.append(("\(n).weight", [ch])); out.append(("\(n).bias", [ch])) }
        func res(_ p: String, _ i: Int, _ o: Int) {
            norm(p + ".norm1", i); conv(p + ".conv1", o, i); norm(p + ".norm2", o); conv(p + ".conv2", o, o)
            if i != o { conv(p + ".nin_shortcut", o, i, 1) }
        }
        func mid(_ p: String, _ ch: Int) {
            res(p + ".mid.block_1", ch, ch)
            if c.midBlockAttention {
                norm(p + ".mid.attn_1.norm", ch)
                for n in ["q", "k", "v", "proj_out"] { conv(p + ".mid.attn_1.\(n)", ch, ch, 1) }
            }
            res(p + ".mid.block_2", ch, ch)
        }
        let ch = c.blockOutChannels, top = ch[ch.count - 1]
        conv("encoder.conv_in", ch[0], c.inChannels)
        var prev = ch[0]
        for i in 0..<c.levels {
            for j in 0..<c.layersPerBlock { res("encoder.down.\(i).block.\(j)", j == 0 ? prev : ch[i], ch[i]) }
            if i < c.levels - 1 { conv("encoder.down.\(i).downsample.conv", ch[i], ch[i]) }
            prev = ch[i]
        }
        mid("encoder", top)
        norm("encoder.norm_out", top)
        conv("encoder.conv_out", 2 * c.latentChannels, top)

        conv("decoder.conv_in", top, c.latentChannels)
        mid("decoder", top)
        prev = top
        for i in stride(from: c.levels - 1, through: 0, by: -1) {
            for j in 0...c.layersPerBlock { res("decoder.up.\(i).block.\(j)", j == 0 ? prev : ch[i], ch[i]) }
            if i > 0 { conv("decoder.up.\(i).upsample.conv", ch[i], ch[i]) }
            prev = ch[i]
        }
        norm("decoder.norm_out", ch[0])
        conv("decoder.conv_out", c.outChannels, ch[0])
        return out
    }

    /// The checkpoint key holding canonical tensor `name` in `layout` (without prefix).
    public static func sourceKey(_ name: String, layout: VAELayout, levels: Int) -> String {
        guard layout == .diffusers else { return name }
        var parts = name.split(separator: ".").map(String.init)
        // parts[0] is encoder/decoder
        var out: [String] = [parts[0]]
        parts.removeFirst()
        switch parts.first {
        case "down":
            out += ["down_blocks", parts[1]]
            if parts[2] == "block" { out += ["resnets", parts[3]]; parts.removeFirst(4) }
            else { out += ["downsamplers", "0"]; parts.removeFirst(3) }  // downsample.conv -> downsamplers.0.conv
            out += parts
        case "up":
            out += ["up_blocks", String(levels - 1 - Int(parts[1])!)]
            if parts[2] == "block" { out += ["resnets", parts[3]]; parts.removeFirst(4) }
            else { out += ["upsamplers", "0"]; parts.removeFirst(3) }
            out += parts
        case "mid":
            switch parts[1] {
            case "block_1": out += ["mid_block", "resnets", "0"] + parts.dropFirst(2)
            case "block_2": out += ["mid_block", "resnets", "1"] + parts.dropFirst(2)
            default:  // attn_1.<n>.<weight|bias>
                let m = ["norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"]
                out += ["mid_block", "attentions", "0", m[parts[2]] ?? parts[2]] + parts.dropFirst(3)
            }
        case "norm_out": out += ["conv_norm_out"] + parts.dropFirst()
        default: out += parts
        }
        return out.joined(separator: ".").replacingOccurrences(of: ".nin_shortcut.", with: ".conv_shortcut.")
    }
}
