import Foundation

/// Files and folders tests make under the system temporary folder, removed when the test process exits normally
/// (whatever the tests' outcome; a test process that crashes leaves them for a look). Tests that name a folder in a
/// failure message (a daemon's log) keep it until the whole run is over.
public enum ScratchFiles {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var paths: [String] = []
    nonisolated(unsafe) private static var cleanupRegistered = false

    /// A new empty folder `<temporary folder>/<prefix><UUID>`, removed at exit.
    public static func makeDirectory(prefix: String) throws -> String {
        let dir = NSTemporaryDirectory() + prefix + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        removeAtExit(dir)
        return dir
    }

    /// A fresh path `<temporary folder>/<prefix><UUID><suffix>` (nothing is created): whatever is there at exit is
    /// removed.
    public static func path(prefix: String, suffix: String = "") -> String {
        let path = NSTemporaryDirectory() + prefix + UUID().uuidString + suffix
        removeAtExit(path)
        return path
    }

    /// Removes the file or folder at `path` (if any) when the process exits.
    public static func removeAtExit(_ path: String) {
        lock.lock()
        defer { lock.unlock() }
        paths.append(path)
        if !cleanupRegistered {
            cleanupRegistered = true
            atexit { ScratchFiles.removeAll() }
        }
    }

    private static func removeAll() {
        lock.lock()
        let all = paths
        paths = []
        lock.unlock()
        for path in all { try? FileManager.default.removeItem(atPath: path) }
    }
}
