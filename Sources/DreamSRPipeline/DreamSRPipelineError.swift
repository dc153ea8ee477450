/// Errors of the DreamSR pipeline module: bad input (shapes, sizes, prompt counts), a model that answered with the
/// wrong shape, a cancelled sampler, or a model set that is missing, unusable or does not fit together.
public struct DreamSRPipelineError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable { case invalidInput, modelOutputShape, cancelled, models }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
