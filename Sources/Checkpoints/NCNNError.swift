/// Errors from reading ncnn `.param` / `.bin` model files.
public struct NCNNFormatError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case fileNotFound, badMagic, malformedHeader, malformedLayer, malformedParam, truncatedWeights,
             unsupportedWeightType, trailingWeights
    }
    public let code: Code
    public let message: String
    /// The file the error is about.
    public let path: String?

    public init(_ code: Code, _ message: String, path: String? = nil) {
        self.code = code
        self.message = message
        self.path = path
    }

    public var description: String {
        if let path { return "ncnn \(code.rawValue) (\(path)): \(message)" }
        return "ncnn \(code.rawValue): \(message)"
    }
}
