import Models
import Tensor

/// Real-ESRGAN x4plus as a pixel-space `TileRestorer` (the default restore stage, and the paper's "Real-ESRGAN
/// restorer" ablation).
public final class RealESRGANRestorer: TileRestorer {
    public let model: RealESRGAN
    public var scale: Int { model.scale }
    public var name: String { RealESRGAN.modelFolderName }

    /// Loads the model; `explicit` is a folder or `.param` path (else the default search paths are used).
    public init(modelPath explicit: String? = nil) throws {
        let (param, bin) = try RealESRGAN.locateModel(explicit: explicit)
        self.model = try RealESRGAN(paramPath: param, binPath: bin)
    }

    public func restore(_ tile: Tensor) throws -> Tensor {
        try model.forward(tile)
    }
}
