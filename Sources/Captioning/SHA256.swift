import Foundation
import Crypto

/// A SHA-256 digest (swift-crypto's `SHA256`): keys the caption cache by image bytes; KafkaConnector's dead letters
/// carry the original message's digest in hex.
public struct SHA256Digest: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public var description: String { hex }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func hash<D: Collection>(_ data: D) -> SHA256Digest where D.Element == UInt8 {
        SHA256Digest(bytes: Array(SHA256.hash(data: Array(data))))
    }

    /// Hashing in pieces (a file read a chunk at a time).
    public struct Hasher {
        private var inner = SHA256()
        public init() {}
        public mutating func update(_ data: Data) { inner.update(data: data) }
        public func finalize() -> SHA256Digest { SHA256Digest(bytes: Array(inner.finalize())) }
    }
}
