import Foundation
import Models
import Tensor

/// `vae-encode` / `vae-decode` for `dreamsr forward`: the FLUX autoencoder (BFL or diffusers weights), untiled, on raw
/// (unscaled) latents exactly as diffusers' `AutoencoderKL.encode(x).latent_dist.mean` and `decode(z).sample`.
/// `vae-encode`: input `sample` [B, 3, H, W] in [-1, 1] → `latent_mean` [B, 16, H/8, W/8].
/// `vae-decode`: input `latent` [B, 16, h, w] → `sample` [B, 3, 8h, 8w].
/// An optional scalar input `tile_size` (pixels for encode, latent pixels for decode) runs the seam-free tiled path.
public struct VAEForward: ForwardComponent {
    public enum Direction: Sendable { case encode, decode }
    public let model: AutoencoderKL
    public let direction: Direction

    public init(weights: URL, config: URL?, direction: Direction) throws {
        let cfg = try config.map { try VAEConfig(diffusersConfigAt: $0) }
        model = try AutoencoderKL.load(from: weights, config: cfg).model
        self.direction = direction
    }

    private var inputName: String { direction == .encode ? "sample" : "latent" }

    public var inputNames: [(name: String, required: Bool)] { [(inputName, true), ("tile_size", false)] }

    public func run(_ t: [String: Tensor]) throws -> [String: Tensor] {
        let name = direction == .encode ? "vae-encode" : "vae-decode"
        guard let x = t[inputName] else {
            throw ForwardError(.missingInput, "\(name): missing input tensor '\(inputName)'; have \(t.keys.sorted())")
        }
        var tiling = VAETiling.untiled
        if let ts = t["tile_size"] {
            guard ts.count == 1, ts[flat: 0] >= 1 else {
                throw ForwardError(.badInput, "\(name): tile_size must be one positive value, got \(ts.shape)")
            }
            tiling = VAETiling(tileSize: Int(ts[flat: 0]))
        }
        switch direction {
        case .encode: return ["latent_mean": try model.encode(x, tiling: tiling)]
        case .decode: return ["sample": try model.decode(x, tiling: tiling)]
        }
    }
}
