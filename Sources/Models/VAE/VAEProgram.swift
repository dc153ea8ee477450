import Tensor

/// The VAE forward pass as a flat list of ops (the encoder's or decoder's layer order), run by `VAEExecutor` on one
/// or many tiles. GroupNorm (and global attention) are the only ops that need the whole image; every other op is
/// local, so a tile padded by `receptiveRadius` computes its core exactly.
enum VAEOp: Sendable {
    /// 3x3 convolution, stride 1, zero padding 1 (conv_in, conv1/2, conv_out).
    case conv(String)
    /// `residual = h`, or `nin_shortcut(h)` when `shortcut` names a 1x1 conv (computed here, so the wider input can
    /// be normalised in place and freed early).
    case beginResidual(shortcut: String?)
    /// GroupNorm `name` on `h` (statistics over the whole image), optionally followed by SiLU.
    case norm(String, silu: Bool)
    /// `h = h + residual`.
    case endResidual
    /// Single-head self-attention of `h` (already normalised): `h = proj_out(softmax(q kᵀ/√C) v)`.
    case attention(String)
    /// Zero pad right and bottom by 1, then 3x3 conv with stride 2 (BFL/diffusers `Downsample`).
    case downsample(String)
    /// Nearest 2x upsampling, then 3x3 conv with padding 1.
    case upsample(String)
}

enum VAEProgram {
    static func resBlock(_ p: String, _ inCh: Int, _ outCh: Int, into ops: inout [VAEOp]) {
        ops += [.beginResidual(shortcut: inCh != outCh ? p + ".nin_shortcut" : nil), .norm(p + ".norm1", silu: true),
                .conv(p + ".conv1"), .norm(p + ".norm2", silu: true), .conv(p + ".conv2"), .endResidual]
    }

    static func mid(_ p: String, _ ch: Int, attention: Bool, into ops: inout [VAEOp]) {
        resBlock(p + ".mid.block_1", ch, ch, into: &ops)
        if attention {
            ops += [.beginResidual(shortcut: nil), .norm(p + ".mid.attn_1.norm", silu: false),
                    .attention(p + ".mid.attn_1"), .endResidual]
        }
        resBlock(p + ".mid.block_2", ch, ch, into: &ops)
    }

    static func encoder(_ c: VAEConfig) -> [VAEOp] {
        var ops: [VAEOp] = [.conv("encoder.conv_in")]
        let ch = c.blockOutChannels
        var prev = ch[0]
        for i in 0..<c.levels {
            for j in 0..<c.layersPerBlock { resBlock("encoder.down.\(i).block.\(j)", j == 0 ? prev : ch[i], ch[i], into: &ops) }
            if i < c.levels - 1 { ops.append(.downsample("encoder.down.\(i).downsample.conv")) }
            prev = ch[i]
        }
        mid("encoder", ch[c.levels - 1], attention: c.midBlockAttention, into: &ops)
        ops += [.norm("encoder.norm_out", silu: true), .conv("encoder.conv_out")]
        return ops
    }

    static func decoder(_ c: VAEConfig) -> [VAEOp] {
        var ops: [VAEOp] = [.conv("decoder.conv_in")]
        let ch = c.blockOutChannels
        mid("decoder", ch[c.levels - 1], attention: c.midBlockAttention, into: &ops)
        var prev = ch[c.levels - 1]
        for i in stride(from: c.levels - 1, through: 0, by: -1) {
            for j in 0...c.layersPerBlock { resBlock("decoder.up.\(i).block.\(j)", j == 0 ? prev : ch[i], ch[i], into: &ops) }
            if i > 0 { ops.append(.upsample("decoder.up.\(i).upsample.conv")) }
            prev = ch[i]
        }
        ops += [.norm("decoder.norm_out", silu: true), .conv("decoder.conv_out")]
        return ops
    }

    /// How far (in input pixels) wrong values at a tile's cut edge can travel inward through the local ops: the
    /// padding that makes a tile's core exact. Downsampling counts 2 current pixels (its 3-tap stride-2 window).
    static func receptiveRadius(_ ops: [VAEOp]) -> Double {
        var r = 0.0, s = 1.0
        for op in ops {
            switch op {
            case .conv: r += s
            case .downsample: r += 2 * s; s *= 2
            case .upsample: s /= 2; r += s
            case .beginResidual, .norm, .endResidual, .attention: break
            }
        }
        return r
    }
}
