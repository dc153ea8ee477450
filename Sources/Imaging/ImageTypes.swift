import Foundation
import CVipsShim
import Raster

/// Output formats dreamsr writes.
public enum ImageFormat: String, Sendable, CaseIterable {
    case png, jpeg, webp, tiff

    /// `"png"`, `".JPG"`, `"jpeg"`, `"tif"` ... (case-insensitive, leading dot allowed).
    public init?(fileExtension: String) {
        var ext = fileExtension.lowercased()
        if ext.hasPrefix(".") { ext.removeFirst() }
        switch ext {
        case "png": self = .png
        case "jpg", "jpeg", "jpe": self = .jpeg
        case "webp": self = .webp
        case "tif", "tiff": self = .tiff
        default: return nil
        }
    }

    /// The format named by a path's extension, if any.
    public init?(path: String) {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return nil }
        self.init(fileExtension: String(path[path.index(after: dot)...]))
    }

    /// The usual file extension (no dot).
    public var fileExtension: String {
        switch self {
        case .png: "png"
        case .jpeg: "jpg"
        case .webp: "webp"
        case .tiff: "tif"
        }
    }

    var shimCode: Int32 {
        switch self {
        case .png: Int32(DSR_FORMAT_PNG)
        case .jpeg: Int32(DSR_FORMAT_JPEG)
        case .webp: Int32(DSR_FORMAT_WEBP)
        case .tiff: Int32(DSR_FORMAT_TIFF)
        }
    }

    /// JPEG has no alpha: `encode` flattens a given alpha onto white.
    public var supportsAlpha: Bool { self != .jpeg }
    /// PNG and TIFF keep 16-bit samples; JPEG and WebP are always written with 8 bits.
    public var supports16Bit: Bool { self == .png || self == .tiff }
}

/// Limits checked before decoding (file size from the file system, pixel count from the header).
public struct ImageLimits: Sendable, Equatable {
    /// Maximum width x height x pages of a source image.
    public var maxPixels: Int
    /// Maximum size of a source file (or buffer) in bytes.
    public var maxFileBytes: Int
    /// How a user raises `maxPixels`, quoted in the refusal message.
    public var pixelLimitHint: String
    /// How a user raises `maxFileBytes`, quoted in the refusal message.
    public var fileSizeLimitHint: String

    public init(maxPixels: Int = 50_000_000, maxFileBytes: Int = 256 << 20,
                pixelLimitHint: String = "max_source_megapixels / --max-megapixels",
                fileSizeLimitHint: String = "max_file_megabytes / --max-file-mb") {
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
        self.pixelLimitHint = pixelLimitHint
        self.fileSizeLimitHint = fileSizeLimitHint
    }

    public static let `default` = ImageLimits()
}

/// What the header says, read without decoding pixels.
public struct ImageHeader: Sendable, Equatable {
    /// Width as `decode` returns it, i.e. after the EXIF orientation is applied.
    public var width: Int
    /// Height as `decode` returns it (after orientation; one page of a multi-page file).
    public var height: Int
    /// Width as stored in the file (before orientation).
    public var storedWidth: Int
    /// Height of one page as stored in the file (before orientation).
    public var storedHeight: Int
    /// Number of pages / frames (1 for ordinary images). Only the first is decoded.
    public var pages: Int
    /// Bands in the file (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA or CMYK, 5 CMYK+alpha ...).
    public var bands: Int
    /// Sample depth `decode` produces: 8, or 16 for anything deeper than 8 bits.
    public var bitDepth: Int
    /// Loader name: "jpeg", "png", "webp", "tiff", "gif", "heif" or "avif".
    public var format: String
    public var hasAlpha: Bool
    public var isGrey: Bool
    public var isCMYK: Bool
    public var hasICCProfile: Bool
    /// EXIF orientation 1...8 (1 when absent).
    public var orientation: Int

    /// The number checked against `ImageLimits.maxPixels`.
    public var pixelCount: Int { storedWidth * storedHeight * pages }
}

/// A decoded image, ready for the models.
/// Metadata blobs of a source image, written back with its output (`ImageCodec.encode(..., metadata:)`).
public struct ImageMetadata: Sendable, Equatable {
    /// "Exif\0\0" + TIFF structure, as libvips keeps it (orientation reset to 1 on output: pixels are upright).
    public var exif: Data?
    public var xmp: Data?
    public var iptc: Data?
    /// The ICC profile the pixels are in; set only when decoding kept the numbers in that profile.
    public var icc: Data?

    public init(exif: Data? = nil, xmp: Data? = nil, iptc: Data? = nil, icc: Data? = nil) {
        self.exif = exif
        self.xmp = xmp
        self.iptc = iptc
        self.icc = icc
    }

    public var isEmpty: Bool { exif == nil && xmp == nil && iptc == nil && icc == nil }
}

public struct DecodedImage: Sendable {
    /// Always 3 channels RGB in 0...1, sRGB (ICC profile converted to sRGB, CMYK converted, grey replicated),
    /// EXIF orientation applied; with `keepMetadata` an RGB source with an ICC profile keeps its numbers in that
    /// profile (`metadata.icc`).
    public var color: PlanarImage
    /// 1 channel in 0...1 when the source has alpha.
    public var alpha: PlanarImage?
    /// 8, or 16 for 16-bit (and deeper) sources: pass it back to `encode` to keep 16-bit PNG/TIFF output.
    public var bitDepth: Int
    /// The source was greyscale: pass it back to `encode` to write grey.
    public var isGrey: Bool
    /// Loader name, as in `ImageHeader.format`.
    public var sourceFormat: String
    /// The header the image was decoded from.
    public var header: ImageHeader
    /// EXIF, XMP, IPTC and (when the pixels are in it) the ICC profile; empty unless decoded with `keepMetadata`.
    public var metadata = ImageMetadata()

    public var width: Int { color.width }
    public var height: Int { color.height }

    public init(color: PlanarImage, alpha: PlanarImage?, bitDepth: Int, isGrey: Bool, sourceFormat: String,
                header: ImageHeader) {
        self.color = color
        self.alpha = alpha
        self.bitDepth = bitDepth
        self.isGrey = isGrey
        self.sourceFormat = sourceFormat
        self.header = header
    }
}

/// Result of `ImageCodec.health`.
public struct ImagingHealth: Sendable {
    /// A tiny image was built, encoded to PNG and decoded back by libvips, with the right pixel values.
    public var ok: Bool
    /// "ok" or what failed.
    public var message: String
    public var vipsVersion: String
    /// Memory libvips currently tracks (its pixel buffers), in bytes.
    public var vipsMemoryBytes: Int
    public var vipsMemoryHighwaterBytes: Int
    public var vipsOpenFiles: Int
}
