/// Errors from loading and running a general ncnn graph (`NCNNGraph`).
public struct NCNNGraphError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// The .param uses a layer type (or a parameter value of a known type) this runner does not implement.
        case unsupportedLayer
        /// The blobs do not form a graph we can run (a blob read before it is produced, a cycle, two producers).
        case badGraph
        /// A layer got inputs of shapes it cannot combine (e.g. a BinaryOp of mismatched tensors).
        case badShape
        /// The input tensor has the wrong shape.
        case badInput
    }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "ncnn graph \(code.rawValue): \(message)" }
}
