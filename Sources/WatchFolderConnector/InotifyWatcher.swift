#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PipelineRuntime

/// Watches one directory with inotify on a dedicated thread (blocking `poll`), calling `onEvent` for every batch of
/// events (files closed after writing, moved in, created; queue overflow). The caller rescans on each call, so
/// overflow needs no special handling beyond the wake-up.
final class InotifyWatcher: Sendable {
    // Values from <sys/inotify.h> (stable kernel ABI).
    private static let inCloseWrite: UInt32 = 0x0000_0008
    private static let inMovedTo: UInt32 = 0x0000_0080
    private static let inCreate: UInt32 = 0x0000_0100
    private static let inNonBlock: Int32 = 0o4000
    private static let inCloexec: Int32 = 0o2000000

    private let fd: Int32
    private let stopped = Locked(false)
    private let finished = Locked<CheckedContinuation<Void, Never>?>(nil)

    /// Nil when inotify is not available (then polling alone picks files up).
    init?(directory: String) {
        #if os(Linux)
        let fd = inotify_init1(Self.inNonBlock | Self.inCloexec)
        guard fd >= 0 else { return nil }
        let wd = inotify_add_watch(fd, directory, Self.inCloseWrite | Self.inMovedTo | Self.inCreate)
        guard wd >= 0 else { close(fd); return nil }
        self.fd = fd
        #else
        return nil
        #endif
    }

    /// Starts the watcher thread; returns immediately.
    func start(onEvent: @escaping @Sendable () -> Void) {
        let fd = self.fd
        let stopped = self.stopped
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while !stopped.current {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = poll(&pfd, 1, 200)
                if r > 0 {
                    var any = false
                    while true {
                        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                        if n <= 0 { break }
                        any = true
                    }
                    if any { onEvent() }
                }
            }
            close(fd)
        }
        thread.name = "dreamsr.inotify"
        thread.start()
    }

    func stop() { stopped.withLock { $0 = true } }
}
