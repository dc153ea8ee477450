import Foundation
import Logging

/// A swift-log handler that keeps every line (level, message and metadata rendered as text) for tests that scan
/// what was logged, e.g. for secrets.
public final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var captured: [String] = []

    public init() {}

    public var lines: [String] { lock.withLock { captured } }

    /// A logger writing into this capture, at `level` and above.
    public func logger(_ label: String, level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { [self] label in Handler(label: label, capture: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ line: String) { lock.withLock { captured.append(line) } }

    struct Handler: LogHandler {
        let label: String
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            let all = metadata.merging(extra ?? [:]) { _, new in new }
            let rendered = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            capture.append("\(level) \(label): \(message) \(rendered)")
        }
    }
}
