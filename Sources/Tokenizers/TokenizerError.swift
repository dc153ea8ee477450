/// The one error type of the Tokenizers module.
///
/// Loading errors name the file and the key or line at fault; encoding itself never throws.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A tokenizer file or directory is missing or unreadable.
        case fileNotFound
        /// A file is present but its content is not what the loader expects.
        case malformedFile
        /// The file asks for a normalizer, pre-tokenizer or model this module does not implement.
        case unsupported
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "TokenizerError.\(code.rawValue): \(message)" }
}
