import Tensor

/// A model that restores/upscales one image tile in pixel space.
///
/// Input: [1, 3, h, w] RGB in 0...1. Output: [1, 3, h * scale, w * scale]. Implementations are called from one
/// compute lane at a time per instance.
public protocol TileRestorer: Sendable {
    var scale: Int { get }
    /// A short name for logs and job results (e.g. "realesrgan-x4plus").
    var name: String { get }
    func restore(_ tile: Tensor) throws -> Tensor
}

/// Errors of the upscaling algorithms.
public struct UpscalingError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable { case invalidInput, modelOutputShape, cancelled, modelMissing }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
