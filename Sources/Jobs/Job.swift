import Foundation

/// A stable identifier for one unit of work (one image). Derived from the source (message id, file name), never a
/// counter, so that re-delivery of the same input maps to the same outputs.
public struct JobID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
}
