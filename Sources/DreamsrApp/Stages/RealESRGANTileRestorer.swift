import Models
import Tensor
import Upscaling

/// Real-ESRGAN x4plus as a `TileRestorer` for the daemon's restore stage, loaded from a model folder holding
/// `REALESRGAN_X4PLUS_UP4X.{param,bin}` (scripts/fetch-models.sh). The model is safe to call concurrently, so
/// restore workers share one instance.
struct RealESRGANTileRestorer: TileRestorer {
    let model: RealESRGAN
    var scale: Int { model.scale }
    var name: String { RealESRGAN.modelFolderName }

    init(modelDirectory: String) throws {
        let (param, bin) = try RealESRGAN.locateModel(explicit: modelDirectory)
        model = try RealESRGAN(paramPath: param, binPath: bin)
    }

    func restore(_ tile: Tensor) throws -> Tensor { try model.forward(tile) }
}
