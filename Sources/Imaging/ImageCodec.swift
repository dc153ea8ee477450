import CVipsShim
import Foundation
import Raster

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decode, encode and resize images with libvips. The only place in dreamsr that talks to libvips.
///
/// All functions are synchronous and block the calling thread (decoding a large JPEG takes a while): call them from a
/// dedicated thread or queue, never from the Swift cooperative pool. They may be called from several threads at once;
/// libvips is thread-safe after `initialize()` (which every function calls itself).
public enum ImageCodec {
    /// Loaders dreamsr accepts (after libvips sniffed the content). Untrusted loaders are blocked inside libvips too.
    static let acceptedLoaders: Set<String> = ["jpegload", "pngload", "webpload", "tiffload", "gifload", "heifload"]
    static let supportedList = "JPEG, PNG, WebP, TIFF, GIF (first frame), HEIF/AVIF"

    /// Once per process: vips_init, operation cache off, untrusted loaders blocked. Safe to call many times.
    public static func initialize() throws {
        var err = [CChar](repeating: 0, count: 512)
        if dsr_vips_init("dreamsr", &err, err.count) != 0 {
            throw ImagingError(.initFailed, "libvips could not be initialised: \(cMessage(err))")
        }
    }

    /// Routes libvips warnings (for example "error in tile 0 x 40" while a truncated file is decoded, or "heifload:
    /// ignoring nclx profile") to `handler` instead of stderr; `nil` restores printing to stderr. The handler is
    /// called from libvips worker threads. The errors themselves always arrive as `ImagingError`s.
    public static func setWarningHandler(_ handler: (@Sendable (String) -> Void)?) {
        try? initialize()
        VipsWarnings.shared.set(handler)
        dsr_set_warning_handler(handler == nil ? nil : vipsWarningTrampoline)
    }

    /// The libvips version, e.g. "8.14.1".
    public static var vipsVersion: String {
        try? initialize()
        return String(cString: dsr_vips_version_string())
    }

    /// Pixel memory libvips tracks right now (for the `vips_memory_bytes` metric).
    public static var vipsMemoryBytes: Int {
        try? initialize()
        return Int(dsr_vips_tracked_mem())
    }

    // MARK: Probe and decode

    /// Reads the header only (no pixels) and checks the limits: file size first, then width x height x pages.
    public static func probe(path: String, limits: ImageLimits = .default) throws -> ImageHeader {
        let image = try openChecked(path: path, limits: limits)
        return image.header
    }

    /// Decodes a file: limits checked from the header first, then pixels converted to planar sRGB floats with EXIF
    /// orientation applied (see `DecodedImage`).
    ///
    /// `keepMetadata`: EXIF, XMP and IPTC are read into `metadata`, and an RGB image with an embedded ICC profile keeps
    /// its numbers in that profile (`metadata.icc`) instead of being converted to sRGB, so a wide-gamut source is not
    /// flattened; give `metadata` back to `encode`.
    public static func decode(path: String, limits: ImageLimits = .default, keepMetadata: Bool = false) throws -> DecodedImage {
        let image = try openChecked(path: path, limits: limits)
        return try decodePixels(image, path: path, keepMetadata: keepMetadata)
    }

    /// The metadata blobs of a file (header only, no pixels), ICC included whatever the pixels would be decoded to.
    public static func metadata(path: String, limits: ImageLimits = .default) throws -> ImageMetadata {
        let image = try openChecked(path: path, limits: limits)
        return readMetadata(image, includingICC: true)
    }

    /// A metadata field as libvips parses it (e.g. "exif-ifd0-Orientation", "exif-ifd3-GPSLatitudeRef"), or nil.
    public static func metadataField(path: String, name: String, limits: ImageLimits = .default) throws -> String? {
        let image = try openChecked(path: path, limits: limits)
        var buf = [CChar](repeating: 0, count: 1024)
        return dsr_get_string_field(image.pointer, name, &buf, buf.count) == 0 ? cMessage(buf) : nil
    }

    static func readMetadata(_ image: OpenedImage, includingICC: Bool) -> ImageMetadata {
        func blob(_ name: String) -> Data? {
            var pointer: UnsafeRawPointer? = nil
            var length = 0
            guard dsr_get_blob(image.pointer, name, &pointer, &length) == 0, let pointer else { return nil }
            return Data(bytes: pointer, count: length)
        }
        let m = ImageMetadata(exif: blob("exif-data"), xmp: blob("xmp-data"), iptc: blob("iptc-data"),
                              icc: includingICC ? blob("icc-profile-data") : nil)
        withExtendedLifetime(image) {}
        return m
    }

    /// Header of an encoded image held in memory, with the limits checked (no pixels decoded).
    public static func probe(data: Data, limits: ImageLimits = .default) throws -> ImageHeader {
        try withOpenedBuffer(data, limits: limits) { image, _ in image.header }
    }

    /// Decodes an encoded image held in memory (same rules as `decode(path:)`).
    public static func decode(data: Data, limits: ImageLimits = .default) throws -> DecodedImage {
        try withOpenedBuffer(data, limits: limits) { image, label in try decodePixels(image, path: label) }
    }

    /// Size and format checks, header read and pixel limit for a buffer; `body` runs while the bytes are pinned
    /// (a vips image made from memory must not outlive them).
    static func withOpenedBuffer<R>(_ data: Data, limits: ImageLimits,
                                    _ body: (OpenedImage, String) throws -> R) throws -> R {
        try initialize()
        let label = "<\(data.count) bytes in memory>"
        if data.count > limits.maxFileBytes {
            throw fileTooLarge(bytes: data.count, limits: limits, path: label)
        }
        if data.isEmpty { throw ImagingError(.corrupt, "image data is empty (0 bytes)", path: label) }
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> R in
            let base = raw.baseAddress!
            guard let loaderC = dsr_find_loader_buffer(base, raw.count) else {
                throw ImagingError(.unsupportedFormat,
                                   "not a recognised image format (supported: \(supportedList))", path: label)
            }
            try checkLoader(String(cString: loaderC), path: label)
            var err = [CChar](repeating: 0, count: 1024)
            guard let ptr = dsr_open_buffer(base, raw.count, &err, err.count) else {
                let detail = cMessage(err)
                throw ImagingError(classify(detail), "cannot read the image header: \(detail)", path: label)
            }
            let image = OpenedImage(ptr)
            try checkPixels(image.header, limits: limits, path: label)
            return try body(image, label)
        }
    }

    /// Owns one lazily-loaded vips image (header read, pixels not yet decoded).
    final class OpenedImage {
        let pointer: UnsafeMutablePointer<VipsImage>
        let raw: dsr_header
        let header: ImageHeader

        init(_ pointer: UnsafeMutablePointer<VipsImage>) {
            self.pointer = pointer
            var h = dsr_header()
            dsr_header_read(pointer, &h)
            raw = h
            header = ImageCodec.makeHeader(h)
        }

        deinit { dsr_image_release(pointer) }
    }

    static func makeHeader(_ h: dsr_header) -> ImageHeader {
        let loader = withUnsafeBytes(of: h.loader) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let heif = withUnsafeBytes(of: h.heif_compression) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let swaps = h.orientation >= 5
        return ImageHeader(
            width: Int(swaps ? h.height : h.width), height: Int(swaps ? h.width : h.height),
            storedWidth: Int(h.width), storedHeight: Int(h.height), pages: Int(h.pages), bands: Int(h.bands),
            bitDepth: Int(h.bit_depth), format: formatName(loader: loader, heifCompression: heif),
            hasAlpha: h.has_alpha != 0, isGrey: h.is_grey != 0, isCMYK: h.is_cmyk != 0, hasICCProfile: h.has_icc != 0,
            orientation: Int(h.orientation))
    }

    /// "jpegload_source" -> "jpeg"; heifload -> "avif" for AV1 content, else "heif".
    static func formatName(loader: String, heifCompression: String) -> String {
        var name = loader
        for suffix in ["_source", "_buffer"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
        if name.hasSuffix("load") { name.removeLast(4) }
        if name == "heif" && heifCompression == "av1" { return "avif" }
        return name
    }

    static func checkLoader(_ loader: String, path: String) throws {
        var name = loader
        if name.hasSuffix("_source") { name.removeLast("_source".count) }
        if name.hasSuffix("_buffer") { name.removeLast("_buffer".count) }
        guard acceptedLoaders.contains(name) else {
            throw ImagingError(.unsupportedFormat,
                               "\(formatName(loader: name, heifCompression: "")) images are not accepted "
                                   + "(supported: \(supportedList))", path: path)
        }
    }

    /// File checks (exists, readable, size) then header and pixel limit.
    static func openChecked(path: String, limits: ImageLimits) throws -> OpenedImage {
        try initialize()
        var st = stat()
        if stat(path, &st) != 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR {
                throw ImagingError(.notFound, "no such file", path: path)
            }
            throw ImagingError(.io, "cannot stat: \(String(cString: strerror(code)))", path: path)
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            throw ImagingError(.io, "not a regular file", path: path)
        }
        let size = Int(st.st_size)
        if size > limits.maxFileBytes { throw fileTooLarge(bytes: size, limits: limits, path: path) }
        if size == 0 { throw ImagingError(.corrupt, "file is empty (0 bytes)", path: path) }
        if access(path, R_OK) != 0 {
            throw ImagingError(.io, "cannot read: \(String(cString: strerror(errno)))", path: path)
        }
        guard let loaderC = dsr_find_loader_file(path) else {
            throw ImagingError(.unsupportedFormat,
                               "not a recognised image format, whatever its extension says "
                                   + "(supported: \(supportedList))", path: path)
        }
        try checkLoader(String(cString: loaderC), path: path)
        var err = [CChar](repeating: 0, count: 1024)
        guard let ptr = dsr_open_file(path, &err, err.count) else {
            let detail = cMessage(err)
            throw ImagingError(classify(detail), "cannot read the image header: \(detail)", path: path)
        }
        let image = OpenedImage(ptr)
        try checkPixels(image.header, limits: limits, path: path)
        return image
    }

    static func fileTooLarge(bytes: Int, limits: ImageLimits, path: String) -> ImagingError {
        ImagingError(.fileTooLarge,
                     "file is \(byteSize(bytes)), over the \(byteSize(limits.maxFileBytes)) limit "
                         + "(raise it with \(limits.fileSizeLimitHint))", path: path)
    }

    static func checkPixels(_ header: ImageHeader, limits: ImageLimits, path: String) throws {
        guard header.storedWidth > 0, header.storedHeight > 0 else {
            throw ImagingError(.corrupt, "header says \(header.storedWidth)x\(header.storedHeight)", path: path)
        }
        let (wh, o1) = header.storedWidth.multipliedReportingOverflow(by: header.storedHeight)
        let (total, o2) = wh.multipliedReportingOverflow(by: header.pages)
        if o1 || o2 || total > limits.maxPixels {
            let pages = header.pages > 1 ? " x \(header.pages) pages" : ""
            let mp = (o1 || o2) ? "more than \(Int.max / 1_000_000)" : String(format: "%.1f", Double(total) / 1e6)
            throw ImagingError(.tooManyPixels,
                               "image is \(header.storedWidth)x\(header.storedHeight)\(pages) = \(mp) MP, over the "
                                   + "\(megapixels(limits.maxPixels)) MP limit (raise it with \(limits.pixelLimitHint))",
                               path: path)
        }
    }

    /// A loader failure is `corrupt` unless libvips says the feature is unsupported (e.g. a HEIF codec without a
    /// decoder plugin, an exotic TIFF compression) or memory ran out.
    static func classify(_ vipsMessage: String) -> ImagingError.Code {
        let m = vipsMessage.lowercased()
        if m.contains("out of memory") || m.contains("cannot allocate") { return .outOfMemory }
        if m.contains("unsupported") || m.contains("not supported") { return .unsupportedFormat }
        return .corrupt
    }

    static func decodePixels(_ image: OpenedImage, path: String, keepMetadata: Bool = false) throws -> DecodedImage {
        let header = image.header
        // The profile is kept (not converted away) for RGB sources only: CMYK and grey go to sRGB as always.
        let keepProfile = keepMetadata && header.hasICCProfile && !header.isCMYK && !header.isGrey
        let w = header.width, h = header.height
        let plane = w * h
        var raw = image.raw
        var err = [CChar](repeating: 0, count: 1024)
        var rc: Int32 = 0
        var alphaPixels: [Float]? = nil
        let color = [Float](unsafeUninitializedCapacity: 3 * plane) { colorBuf, colorCount in
            if header.hasAlpha {
                alphaPixels = [Float](unsafeUninitializedCapacity: plane) { alphaBuf, alphaCount in
                    rc = dsr_decode_keeping_profile(image.pointer, &raw, colorBuf.baseAddress, alphaBuf.baseAddress,
                                                    Int32(w), Int32(h), keepProfile ? 1 : 0, &err, err.count)
                    alphaCount = plane
                }
            } else {
                rc = dsr_decode_keeping_profile(image.pointer, &raw, colorBuf.baseAddress, nil, Int32(w), Int32(h),
                                                keepProfile ? 1 : 0, &err, err.count)
            }
            colorCount = 3 * plane
        }
        withExtendedLifetime(image) {}  // the vips image stays referenced until dsr_decode has returned
        if rc != 0 {
            let detail = cMessage(err)
            throw ImagingError(classify(detail), "cannot decode \(header.format) pixels: \(detail)", path: path)
        }
        var decoded = DecodedImage(
            color: PlanarImage(width: w, height: h, channels: 3, pixels: color),
            alpha: alphaPixels.map { PlanarImage(width: w, height: h, channels: 1, pixels: $0) },
            bitDepth: header.bitDepth, isGrey: header.isGrey, sourceFormat: header.format, header: header)
        if keepMetadata { decoded.metadata = readMetadata(image, includingICC: keepProfile) }
        return decoded
    }

    // MARK: Encode

    /// Encodes `color` (3 channels, 0...1) and optional `alpha` (1 channel, same size) to `path`.
    ///
    /// - bitDepth: 16 keeps 16-bit samples for PNG and TIFF; JPEG and WebP are always 8-bit.
    /// - grey: write one luma channel (Rec. 709 weights) instead of RGB.
    /// - quality: 1...100, used by JPEG and WebP.
    /// - JPEG cannot hold alpha: a given alpha is flattened onto white.
    ///
    /// The file is written under a temporary name in the target folder, fsynced, then renamed: the final name never
    /// holds a partial file, and on failure nothing is left behind.
    /// - metadata: EXIF (orientation set to 1), XMP, IPTC and ICC profile written with the image where the format
    ///   holds them (an ICC profile is never attached to grey output); an empty one writes no metadata at all; nil
    ///   leaves libvips's defaults (a minimal EXIF block in JPEG).
    public static func encode(color: PlanarImage, alpha: PlanarImage?, bitDepth: Int, grey: Bool,
                              format: ImageFormat, quality: Int, metadata: ImageMetadata? = nil, to path: String) throws {
        try initialize()
        try validateForEncode(color: color, alpha: alpha, path: path)
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        var st = stat()
        guard stat(directory, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw ImagingError(.io, "output folder \(directory) does not exist", path: path)
        }
        guard access(directory, W_OK) == 0 else {
            throw ImagingError(.io, "output folder \(directory) is not writable", path: path)
        }
        let base = String(url.lastPathComponent.prefix(100))
        let tag = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let temp = url.deletingLastPathComponent().appendingPathComponent(".\(base).\(tag).dreamsr-tmp").path

        var err = [CChar](repeating: 0, count: 1024)
        let rc = withPlanes(color, alpha) { c, a in
            withMetadata(metadata) { meta in
                dsr_encode_file_with_metadata(c, a, Int32(color.width), Int32(color.height), bitDepth > 8 ? 1 : 0,
                                              grey ? 1 : 0, format.shimCode, Int32(quality), meta, temp, &err, err.count)
            }
        }
        if rc != 0 {
            unlink(temp)
            throw ImagingError(.encodeFailed, "cannot write \(format.rawValue): \(cMessage(err))", path: path)
        }
        do {
            try fsyncPath(temp, what: "output file")
            if rename(temp, path) != 0 {
                throw ImagingError(.io, "cannot rename the temporary file into place: "
                                       + String(cString: strerror(errno)), path: path)
            }
        } catch {
            unlink(temp)
            throw error
        }
        // Make the rename durable; a failure here does not undo a complete file, so it is not an error.
        try? fsyncPath(directory, what: "output folder")
    }

    /// Encodes into memory (for sinks that publish bytes rather than files). Same options as `encode(...to:)`.
    public static func encodeToData(color: PlanarImage, alpha: PlanarImage?, bitDepth: Int, grey: Bool,
                                    format: ImageFormat, quality: Int) throws -> Data {
        try initialize()
        try validateForEncode(color: color, alpha: alpha, path: nil)
        var err = [CChar](repeating: 0, count: 1024)
        var buffer: UnsafeMutableRawPointer? = nil
        var length = 0
        let rc = withPlanes(color, alpha) { c, a in
            dsr_encode_buffer(c, a, Int32(color.width), Int32(color.height), bitDepth > 8 ? 1 : 0, grey ? 1 : 0,
                              format.shimCode, Int32(quality), &buffer, &length, &err, err.count)
        }
        defer { dsr_free_buffer(buffer) }
        guard rc == 0, let buffer else {
            throw ImagingError(.encodeFailed, "cannot encode \(format.rawValue): \(cMessage(err))")
        }
        return Data(bytes: buffer, count: length)
    }

    /// A small JPEG of the image file at `path` (longer side at most `maxSide`, orientation applied, sRGB, alpha
    /// flattened on white, metadata stripped) for status pages. Shrinks on load where the format allows it, so even
    /// a large JPEG costs little; callers should only pass files that already passed `probe`'s limits.
    public static func thumbnailJPEG(path: String, maxSide: Int) throws -> Data {
        try initialize()
        var err = [CChar](repeating: 0, count: 1024)
        var buffer: UnsafeMutableRawPointer? = nil
        var length = 0
        let rc = dsr_thumbnail_jpeg(path, Int32(max(1, maxSide)), &buffer, &length, &err, err.count)
        defer { dsr_free_buffer(buffer) }
        guard rc == 0, let buffer else {
            throw ImagingError(.corrupt, "cannot make a thumbnail: \(cMessage(err))", path: path)
        }
        return Data(bytes: buffer, count: length)
    }

    static func validateForEncode(color: PlanarImage, alpha: PlanarImage?, path: String?) throws {
        guard color.channels == 3 else {
            throw ImagingError(.encodeFailed, "colour image has \(color.channels) channels, expected 3", path: path)
        }
        guard color.width > 0, color.height > 0 else {
            throw ImagingError(.encodeFailed, "cannot encode an empty \(color.width)x\(color.height) image", path: path)
        }
        if let alpha {
            guard alpha.channels == 1, alpha.width == color.width, alpha.height == color.height else {
                throw ImagingError(.encodeFailed,
                                   "alpha is \(alpha.width)x\(alpha.height)x\(alpha.channels), expected "
                                       + "\(color.width)x\(color.height)x1", path: path)
            }
        }
    }

    /// A `dsr_metadata` pointing into `metadata`'s blobs for the duration of `body` (nil when there is none).
    static func withMetadata<R>(_ metadata: ImageMetadata?, _ body: (UnsafePointer<dsr_metadata>?) -> R) -> R {
        guard let metadata else { return body(nil) }
        let empty = Data()
        return (metadata.exif ?? empty).withUnsafeBytes { exif in
            (metadata.xmp ?? empty).withUnsafeBytes { xmp in
                (metadata.iptc ?? empty).withUnsafeBytes { iptc in
                    (metadata.icc ?? empty).withUnsafeBytes { icc in
                        var m = dsr_metadata(exif: exif.baseAddress, exif_len: exif.count, xmp: xmp.baseAddress,
                                             xmp_len: xmp.count, iptc: iptc.baseAddress, iptc_len: iptc.count,
                                             icc: icc.baseAddress, icc_len: icc.count)
                        return withUnsafePointer(to: &m) { body($0) }
                    }
                }
            }
        }
    }

    /// Pointers to the colour planes and the optional alpha plane for the duration of `body`.
    static func withPlanes<R>(_ color: PlanarImage, _ alpha: PlanarImage?,
                              _ body: (UnsafePointer<Float>?, UnsafePointer<Float>?) -> R) -> R {
        color.pixels.withUnsafeBufferPointer { c in
            guard let alpha else { return body(c.baseAddress, nil) }
            return alpha.pixels.withUnsafeBufferPointer { a in body(c.baseAddress, a.baseAddress) }
        }
    }

    static func fsyncPath(_ path: String, what: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ImagingError(.io, "cannot open the \(what) to sync: \(String(cString: strerror(errno)))", path: path)
        }
        defer { close(fd) }
        if fsync(fd) != 0 {
            throw ImagingError(.io, "fsync of the \(what) failed: \(String(cString: strerror(errno)))", path: path)
        }
    }

    // MARK: Resize

    /// Lanczos3 resampling of every channel to exactly `width` x `height` (antialiased when shrinking; edges
    /// clamp-normalised, no dark borders). Used to resize alpha for re-attachment and for LR upsizing.
    public static func resize(_ image: PlanarImage, width: Int, height: Int) throws -> PlanarImage {
        do {
            return try image.resizedLanczos3(width: width, height: height)
        } catch let e as RasterError {
            throw ImagingError(e.code == .outOfMemory ? .outOfMemory : .encodeFailed, e.message)
        }
    }

    // MARK: Health

    /// Builds a tiny image with libvips, encodes it to PNG in memory, decodes it again and checks a pixel. Cheap
    /// (well under a millisecond); meant for the daemon's /health.
    public static var health: ImagingHealth {
        var message = "ok"
        var ok = true
        do {
            try initialize()
            var err = [CChar](repeating: 0, count: 512)
            if dsr_health_check(&err, err.count) != 0 {
                ok = false
                message = cMessage(err)
            }
        } catch {
            ok = false
            message = "\(error)"
        }
        return ImagingHealth(
            ok: ok, message: message, vipsVersion: ok ? String(cString: dsr_vips_version_string()) : "unknown",
            vipsMemoryBytes: ok ? Int(dsr_vips_tracked_mem()) : 0,
            vipsMemoryHighwaterBytes: ok ? Int(dsr_vips_tracked_mem_highwater()) : 0,
            vipsOpenFiles: ok ? Int(dsr_vips_tracked_files()) : 0)
    }
}

/// Holds the Swift warning handler the C trampoline forwards to.
final class VipsWarnings: @unchecked Sendable {
    static let shared = VipsWarnings()
    private let lock = NSLock()
    private var handler: (@Sendable (String) -> Void)?

    func set(_ handler: (@Sendable (String) -> Void)?) {
        lock.lock()
        self.handler = handler
        lock.unlock()
    }

    func emit(_ message: String) {
        lock.lock()
        let h = handler
        lock.unlock()
        h?(message)
    }
}

private let vipsWarningTrampoline: @convention(c) (UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
    _, message in
    VipsWarnings.shared.emit(message.map { String(cString: $0) } ?? "")
}

/// "300 bytes", "12.5 KiB", "256 MiB", "1.5 MiB".
private func byteSize(_ bytes: Int) -> String {
    func short(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v) }
    if bytes < 1024 { return "\(bytes) bytes" }
    if bytes < 1 << 20 { return "\(short(Double(bytes) / 1024)) KiB" }
    return "\(short(Double(bytes) / Double(1 << 20))) MiB"
}

private func megapixels(_ pixels: Int) -> String {
    let v = Double(pixels) / 1e6
    return v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v)
}

/// A NUL-terminated C message buffer as a String.
private func cMessage(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
