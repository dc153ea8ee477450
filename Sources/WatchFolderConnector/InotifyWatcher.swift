#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Support

/// Watches one directory with inotify on a dedicated thread (blocking `poll`), calling `onEvents` for every batch of
/// events. The caller rescans on each call, so the events are hints: they say which names a writer is still
/// writing (modified, not yet closed) and which were completed (closed after writing, moved in).
final class InotifyWatcher: Sendable {
    // Values from <sys/inotify.h> (stable kernel ABI).
    private static let inModify: UInt32 = 0x0000_0002
    private static let inCloseWrite: UInt32 = 0x0000_0008
    private static let inMovedFrom: UInt32 = 0x0000_0040
    private static let inMovedTo: UInt32 = 0x0000_0080
    private static let inCreate: UInt32 = 0x0000_0100
    private static let inDelete: UInt32 = 0x0000_0200
    private static let inQueueOverflow: UInt32 = 0x0000_4000
    private static let inIsDirectory: UInt32 = 0x4000_0000
    private static let inNonBlock: Int32 = 0o4000
    private static let inCloexec: Int32 = 0o2000000

    /// One event, reduced to what the watch folder needs.
    enum Event: Sendable, Equatable {
        /// A writer wrote to `name` and has not closed it yet. (Creation alone does not count: a hard link is
        /// created and never closed.)
        case writing(String)
        /// `name` was closed after writing, moved in, moved away or deleted: no writer is known to hold it.
        case settled(String)
        /// Events were lost: what is known about writers is stale.
        case overflow
    }

    private let fd: Int32
    private let stopped = Locked(false)

    /// Nil when inotify is not available (then polling alone picks files up).
    init?(directory: String) {
        #if os(Linux)
        let fd = inotify_init1(Self.inNonBlock | Self.inCloexec)
        guard fd >= 0 else { return nil }
        // IN_CREATE only wakes the scan up (a new name); IN_MODIFY marks a writer at work.
        let mask = Self.inModify | Self.inCloseWrite | Self.inMovedFrom | Self.inMovedTo | Self.inCreate | Self.inDelete
        let wd = inotify_add_watch(fd, directory, mask)
        guard wd >= 0 else { close(fd); return nil }
        self.fd = fd
        #else
        return nil
        #endif
    }

    /// Decodes a buffer of `struct inotify_event` records (wd, mask, cookie, len: 32-bit host order, which is
    /// little-endian on every platform we build for; then name[len], NUL-padded).
    static func decode(_ bytes: [UInt8]) -> [Event] {
        func u32(_ at: Int) -> UInt32 {
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) }
        }
        var events: [Event] = []
        var offset = 0
        while offset + 16 <= bytes.count {
            let mask = u32(offset + 4)
            let len = Int(u32(offset + 12))
            let nameBytes = bytes[(offset + 16)..<min(bytes.count, offset + 16 + len)]
            let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
            offset += 16 + len
            if mask & inQueueOverflow != 0 { events.append(.overflow); continue }
            if mask & inIsDirectory != 0 || name.isEmpty { continue }
            if mask & (inCloseWrite | inMovedTo | inMovedFrom | inDelete) != 0 {
                events.append(.settled(name))
            } else if mask & inModify != 0 {
                events.append(.writing(name))
            }
        }
        return events
    }

    /// Starts the watcher thread; returns immediately.
    func start(onEvents: @escaping @Sendable ([Event]) -> Void) {
        let fd = self.fd
        let stopped = self.stopped
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while !stopped.current {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = poll(&pfd, 1, 200)
                if r > 0 {
                    var events: [Event] = []
                    var any = false
                    while true {
                        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                        if n <= 0 { break }
                        any = true
                        events += Self.decode(Array(buffer[0..<n]))
                    }
                    if any { onEvents(events) }
                }
            }
            close(fd)
        }
        thread.name = "dreamsr.inotify"
        thread.start()
    }

    func stop() { stopped.withLock { $0 = true } }
}
