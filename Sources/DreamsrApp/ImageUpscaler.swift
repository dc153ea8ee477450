import Foundation
import Imaging
import KafkaConnector
import Raster
import Upscaling

/// Geometry of the pixel-space restore step (the `restore` stage with restorer realesrgan).
public struct UpscaleOptions: Sendable {
    /// Output scale relative to the input. The model's native scale is used, then Lanczos3 resampling to this
    /// scale when they differ (as Real-ESRGAN's `--outscale`).
    public var scale: Double?
    public var tileSize: Int
    public var overlap: Int
    /// Extra input pixels of context around each tile (kept out of the output), against long-range border effects.
    public var contextPadding: Int
    /// Test-time augmentation: each tile restored in 8 orientations, averaged (about 8x the time).
    public var tta: Bool
    /// Squeeze-excitation models: the whole image's global averages in every tile (`TiledUpscaler.sharedStatistics`).
    public var sharedStatistics: Bool

    /// The output scales accepted everywhere: the CLI's `--scale` follows the rule of a job's `scale` (one documented
    /// rule, docs/kafka.md), so a command line and a message accept exactly the same integers.
    public static let scales: ClosedRange<Int> = InputMessage.scales

    public init(scale: Double? = nil, tileSize: Int = TiledUpscaler.defaultTileSize,
                overlap: Int = TiledUpscaler.defaultOverlap, contextPadding: Int = TiledUpscaler.defaultContextPadding,
                tta: Bool = false, sharedStatistics: Bool = true) {
        self.scale = scale
        self.tileSize = tileSize
        self.overlap = overlap
        self.contextPadding = contextPadding
        self.tta = tta
        self.sharedStatistics = sharedStatistics
    }
}

/// The restore step of the pixel-space restorer: tiled model inference at the model's scale, then Lanczos3
/// resampling to a requested scale. Built once per restore worker; `dreamsr upscale` and `dreamsr serve` both run it
/// through the `restore` stage (there is no other upscale path). Errors are the engine's own (`UpscalingError`,
/// `ImagingError`); the stage turns them into one `PipelineError`.
public struct ImageUpscaler: Sendable {
    public let upscaler: TiledUpscaler
    public let options: UpscaleOptions

    public init(restorer: any TileRestorer, options: UpscaleOptions) throws {
        self.upscaler = try TiledUpscaler(restorer: options.tta ? TestTimeAugmentedRestorer(restorer) : restorer,
                                           tileSize: options.tileSize, overlap: options.overlap,
                                           contextPadding: options.contextPadding,
                                           sharedStatistics: options.sharedStatistics)
        self.options = options
    }

    public var scale: Int { upscaler.scale }
    public var restorerName: String { upscaler.restorer.name }

    /// Runs the model over the colour channels. Returns the restored colour image at `scale` (else the options'
    /// scale, else the model's).
    public func restore(_ image: DecodedImage, scale: Double? = nil, progress: ((Int, Int) -> Void)? = nil,
                        isCancelled: () -> Bool = { false }) throws -> PlanarImage {
        // Raster's TileGrid needs overlap < the image side: shrink the overlap for images smaller than it; they are a
        // single tile on that axis anyway.
        let side = min(image.color.width, image.color.height)
        var tiler = upscaler
        if upscaler.overlap >= side {
            tiler = try TiledUpscaler(restorer: upscaler.restorer, tileSize: upscaler.tileSize, overlap: max(0, side - 1),
                                      contextPadding: upscaler.contextPadding, sharedStatistics: upscaler.sharedStatistics)
        }
        var out = try tiler.upscale(image.color, progress: progress, isCancelled: isCancelled)
        let (w, h) = outputSize(width: image.color.width, height: image.color.height, scale: scale)
        if w != out.width || h != out.height {
            out = try ImageCodec.resize(out, width: w, height: h)
        }
        return out
    }

    /// The output size for an input size: the requested scale, or the model's.
    public func outputSize(width: Int, height: Int, scale: Double? = nil) -> (Int, Int) {
        let s = scale ?? options.scale ?? Double(upscaler.scale)
        return (max(1, Int((Double(width) * s).rounded())), max(1, Int((Double(height) * s).rounded())))
    }
}
