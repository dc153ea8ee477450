/// Errors from locating, loading and running Real-ESRGAN models.
public struct RealESRGANError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// The .param/.bin files are not where we looked.
        case modelNotFound
        /// The .param uses a layer type this engine does not implement.
        case unsupportedLayer
        /// The layers are supported but the graph is not an RRDBNet this engine can run.
        case unexpectedGraph
        /// The input tensor has the wrong shape.
        case badInput
    }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "Real-ESRGAN \(code.rawValue): \(message)" }
}
