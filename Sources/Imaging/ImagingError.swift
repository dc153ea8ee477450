/// The one error type of the Imaging module.
///
/// Errors surface from `ImageCodec.probe`, `decode`, `encode` and `resize`. Limit refusals (`fileTooLarge`,
/// `tooManyPixels`) are raised from the file size and the image HEADER, before any pixel is decoded, and their message
/// names the limit and the setting that raises it. libvips messages are copied into `message` verbatim after our own
/// explanation.
public struct ImagingError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        /// The input file does not exist.
        case notFound
        /// The file (or buffer) is larger than `ImageLimits.maxFileBytes`.
        case fileTooLarge
        /// width x height x pages from the header is over `ImageLimits.maxPixels`.
        case tooManyPixels
        /// Not an image, or a format dreamsr does not read (content is sniffed, the extension is not trusted).
        case unsupportedFormat
        /// A recognised format whose header or pixel data is broken (truncated, empty, damaged).
        case corrupt
        /// libvips failed to write the output.
        case encodeFailed
        /// File-system trouble: permissions, missing output folder, rename or fsync failure.
        case io
        /// A working buffer could not be allocated.
        case outOfMemory
        /// libvips could not be initialised.
        case initFailed
    }

    public var code: Code
    public var message: String
    /// The file concerned, when there is one.
    public var path: String?
    public var sourceFile: String
    public var sourceLine: Int

    public init(_ code: Code, _ message: String, path: String? = nil,
                sourceFile: String = #fileID, sourceLine: Int = #line) {
        self.code = code
        self.message = message
        self.path = path
        self.sourceFile = sourceFile
        self.sourceLine = sourceLine
    }

    /// Worth trying again later (the file may still be being written, or memory may free up).
    public var isRetriable: Bool { code == .io || code == .outOfMemory }

    public var description: String {
        if let path { return "\(path): \(message)" }
        return message
    }
}
