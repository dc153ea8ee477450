/// The one error type of the Checkpoints module: reading, validating and mapping weight files.
///
/// Errors surface when a checkpoint is opened (header validation), when a model maps its keys (missing /
/// unexpected keys, shape mismatches) and when a tensor's bytes are converted.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case io
        case truncated
        case badHeader
        case offsetsOutOfRange
        case shapeDTypeMismatch
        case unsupportedDType
        case missingTensor
        case missingKeys
        case unexpectedKeys
        case shapeMismatch
        case unknownLayout
        case badConfig
    }

    public let code: Code
    public let message: String
    public let file: String
    public let line: Int
    /// I/O failures can succeed on retry; format errors cannot.
    public var isRetriable: Bool { code == .io }

    public init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { "CheckpointError.\(code.rawValue): \(message)" }
}
