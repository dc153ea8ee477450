import Models
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

/// A restorer whose network averages feature maps over its whole input (squeeze-excitation blocks: Real-CUGAN,
/// waifu2x cunet). Run per tile, each tile would use its own averages; `TiledUpscaler` shares the whole image's
/// instead, stage by stage (see `NCNNSharedPooling`).
public protocol SharedStatisticsRestorer: TileRestorer {
    /// How many global averages the network takes, in run order (0: none; tiles are restored independently).
    var sharedStatisticsStages: Int { get }
    /// Tile crops must start at multiples of this many input pixels for a tile's feature maps to be the untiled ones
    /// shifted by whole pixels (and for the restorer's padding to the network's size multiple to be the untiled one).
    var sharedStatisticsAlignment: Int { get }
    /// Runs `tile` up to global average number `shared.count` (the earlier ones given `shared`) and sums its feature
    /// map over the pixels centred in `x` x `y` (tile pixel coordinates; ranges may reach past the tile at the image
    /// border, where the network's own padding has pixels too).
    func statisticsSums(_ tile: Tensor, shared: [Tensor], x: Range<Double>, y: Range<Double>) throws -> NCNNPoolingSums
    /// `restore` with every global average given `shared` (all stages).
    func restore(_ tile: Tensor, shared: [Tensor]) throws -> Tensor
}
