import Foundation
import Imaging
import KafkaConnector
import Raster
import Upscaling

/// Options of a one-image upscale, shared by the CLI and the daemon's stages.
public struct UpscaleOptions: Sendable {
    /// Output scale relative to the input. The model's native scale is used, then Lanczos3 resampling to this
    /// scale when they differ (as Real-ESRGAN's `--outscale`).
    public var scale: Double?
    public var tileSize: Int
    public var overlap: Int
    /// Extra input pixels of context around each tile (kept out of the output), against long-range border effects.
    public var contextPadding: Int
    public var format: ImageFormat?
    public var quality: Int
    public var limits: ImageLimits

    /// The output scales accepted everywhere: the CLI's `--scale` follows the rule of a job's `scale` (one documented
    /// rule, docs/kafka.md), so a command line and a message accept exactly the same integers.
    public static let scales: ClosedRange<Int> = InputMessage.scales

    public init(scale: Double? = nil, tileSize: Int = TiledUpscaler.defaultTileSize,
                overlap: Int = TiledUpscaler.defaultOverlap, contextPadding: Int = TiledUpscaler.defaultContextPadding,
                format: ImageFormat? = nil, quality: Int = 92, limits: ImageLimits = ImageLimits()) {
        self.scale = scale
        self.tileSize = tileSize
        self.overlap = overlap
        self.contextPadding = contextPadding
        self.format = format
        self.quality = quality
        self.limits = limits
    }
}

/// The result of one upscale.
public struct UpscaleReport: Sendable {
    public var output: String
    public var width: Int
    public var height: Int
    public var tiles: Int
    public var stageSeconds: [String: Double]
}

/// An error of a named stage, with the stage's own error as reason.
public struct StageError: Error, CustomStringConvertible, Sendable {
    public let stage: String
    public let message: String
    public let retriable: Bool
    public init(stage: String, message: String, retriable: Bool = false) {
        self.stage = stage
        self.message = message
        self.retriable = retriable
    }
    public var description: String { "\(stage): \(message)" }
}

/// Upscales image files with a pixel-space restorer, in three steps that the daemon runs as separate stages:
/// decode (libvips, limits checked from the header), restore (tiled model inference), encode (alpha re-attached,
/// written atomically).
public struct ImageUpscaler: Sendable {
    public let upscaler: TiledUpscaler
    public let options: UpscaleOptions

    public init(restorer: any TileRestorer, options: UpscaleOptions) throws {
        self.upscaler = try TiledUpscaler(restorer: restorer, tileSize: options.tileSize, overlap: options.overlap,
                                           contextPadding: options.contextPadding)
        self.options = options
        if let s = options.scale, !(s == s.rounded() && UpscaleOptions.scales.contains(Int(s))) {
            throw StageError(stage: "config", message: "scale \(s) is not an integer \(UpscaleOptions.scales.lowerBound)-\(UpscaleOptions.scales.upperBound)")
        }
    }

    public func decode(path: String) throws -> DecodedImage {
        do {
            return try ImageCodec.decode(path: path, limits: options.limits)
        } catch {
            throw StageError(stage: "decode", message: "\(error)")
        }
    }

    /// Runs the model over the colour channels. Returns the restored colour image at the requested scale.
    public func restore(_ image: DecodedImage, progress: ((Int, Int) -> Void)? = nil,
                        isCancelled: () -> Bool = { false }) throws -> PlanarImage {
        do {
            var out = try upscaler.upscale(image.color, progress: progress, isCancelled: isCancelled)
            let (w, h) = outputSize(width: image.color.width, height: image.color.height)
            if w != out.width || h != out.height {
                out = try ImageCodec.resize(out, width: w, height: h)
            }
            return out
        } catch let e as UpscalingError where e.code == .cancelled {
            throw StageError(stage: "restore", message: e.message, retriable: true)
        } catch {
            throw StageError(stage: "restore", message: "\(error)")
        }
    }

    /// The output size for an input size: the requested scale, or the model's.
    public func outputSize(width: Int, height: Int) -> (Int, Int) {
        let s = options.scale ?? Double(upscaler.scale)
        return (max(1, Int((Double(width) * s).rounded())), max(1, Int((Double(height) * s).rounded())))
    }

    /// Re-attaches alpha (Lanczos3-resized), and writes the image atomically with the source's bit depth where
    /// the format allows. The format comes from the options, else from the output path's extension.
    public func encode(_ restored: PlanarImage, source: DecodedImage, to path: String) throws {
        do {
            let format = try resolveFormat(path: path)
            var alpha: PlanarImage?
            if let a = source.alpha {
                alpha = try ImageCodec.resize(a, width: restored.width, height: restored.height)
            }
            let depth = (format == .png || format == .tiff) ? source.bitDepth : 8
            try ImageCodec.encode(color: restored, alpha: alpha, bitDepth: depth, grey: source.isGrey,
                                  format: format, quality: options.quality, to: path)
        } catch let e as StageError {
            throw e
        } catch {
            throw StageError(stage: "encode", message: "\(error)")
        }
    }

    public func resolveFormat(path: String) throws -> ImageFormat {
        if let f = options.format { return f }
        let ext = (path as NSString).pathExtension
        guard let f = ImageFormat(fileExtension: ext) else {
            throw StageError(stage: "encode",
                             message: "cannot tell the output format from '\(path)': use --format png|jpeg|webp|tiff")
        }
        return f
    }

    /// decode + restore + encode, with per-stage timings.
    public func upscaleFile(input: String, output: String, progress: ((Int, Int) -> Void)? = nil) throws -> UpscaleReport {
        var seconds: [String: Double] = [:]
        func timed<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { seconds[name] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
            return try body()
        }
        let decoded = try timed("decode") { try decode(path: input) }
        let tiles = try upscaler.tileCount(width: decoded.color.width, height: decoded.color.height)
        let restored = try timed("restore") { try restore(decoded, progress: progress) }
        try timed("encode") { try encode(restored, source: decoded, to: output) }
        return UpscaleReport(output: output, width: restored.width, height: restored.height, tiles: tiles,
                             stageSeconds: seconds)
    }
}
