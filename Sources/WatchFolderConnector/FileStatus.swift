#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Support

/// What `lstat(2)` says about a directory entry (links are not followed): its type and the identity a writer
/// changes (size, mtime, inode).
struct FileStatus: Equatable, Sendable {
    enum Kind: Equatable, Sendable { case regular, directory, symlink, other }
    var kind: Kind
    var size: UInt64
    var mtimeNanoseconds: Int64
    var inode: UInt64
    var device: UInt64

    /// Nil when nothing is at `path` (or it cannot be examined).
    init?(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: kind = .other
        }
        size = UInt64(st.st_size)
        #if os(Linux)
        mtimeNanoseconds = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        #else
        mtimeNanoseconds = Int64(st.st_mtimespec.tv_sec) * 1_000_000_000 + Int64(st.st_mtimespec.tv_nsec)
        #endif
        inode = UInt64(st.st_ino)
        device = UInt64(st.st_dev)
    }

    /// Whether nothing at all is at `path` (lstat fails with ENOENT), as opposed to "cannot tell".
    static func isAbsent(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) != 0 && errno == ENOENT
    }

    /// The real path of an existing directory (symlinks resolved), nil when it cannot be resolved.
    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}

/// Logs one line per distinct problem per interval; repeats in between are counted and reported with the next line
/// (`suppressed` = how many were not logged), so a problem that lasts cannot flood the log.
final class RateLimitedLog: Sendable {
    private struct Entry { var last: ContinuousClock.Instant; var suppressed: Int }
    private let interval: Duration
    private let entries = Locked<[String: Entry]>([:])

    init(interval: Duration) { self.interval = interval }

    /// Calls `emit(suppressedSinceLastLine)` when the line for `key` is due; otherwise counts the repeat.
    func log(_ key: String, _ emit: (Int) -> Void) {
        let now = ContinuousClock.now
        let due: Int? = entries.withLock { e in
            if let entry = e[key], now - entry.last < interval {
                e[key]!.suppressed += 1
                return nil
            }
            let suppressed = e[key]?.suppressed ?? 0
            e[key] = Entry(last: now, suppressed: 0)
            return suppressed
        }
        if let due { emit(due) }
    }

    /// Forgets `key`, so that the next occurrence of the problem is logged at once.
    func reset(_ key: String) { entries.withLock { _ = $0.removeValue(forKey: key) } }
}
