import Foundation
import Synchronization

/// Tile progress on stderr: a redrawn bar with ETA on a terminal, plain lines (every 10%) otherwise.
final class ProgressReporter: Sendable {
    private struct State {
        var start = Date()
        var lastPercentLogged = -1
        var drew = false
    }
    private let label: String
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let state = Mutex(State())

    init(label: String) { self.label = label }

    func update(done: Int, total: Int) {
        let line: String? = state.withLock { s in
            let elapsed = Date().timeIntervalSince(s.start)
            let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
            if isTerminal {
                s.drew = true
                let width = 30
                let filled = total > 0 ? width * done / total : width
                let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
                return "\r\(label) [\(bar)] \(done)/\(total) tiles  ETA \(Self.format(eta))\u{1B}[K"
            }
            let pct = total > 0 ? 100 * done / total : 100
            guard pct / 10 > s.lastPercentLogged / 10 || done == total else { return nil }
            s.lastPercentLogged = pct
            return "\(label): \(done)/\(total) tiles (\(pct)%), ETA \(Self.format(eta))\n"
        }
        if let line { FileHandle.standardError.write(Data(line.utf8)) }
    }

    func finish() {
        let drew = state.withLock { $0.drew }
        if isTerminal && drew { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private static func format(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}
