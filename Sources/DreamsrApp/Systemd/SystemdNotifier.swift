#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import ServiceLifecycle

/// sd_notify without libsystemd: one datagram to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
/// A no-op when the variable is unset (not started by systemd with Type=notify).
public struct SystemdNotifier: Sendable {
    public let socketPath: String?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public var isEnabled: Bool { socketPath != nil }

    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard let socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        let maxLen = MemoryLayout.size(ofValue: addr.sun_path)
        guard pathBytes.count < maxLen else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in pathBytes.enumerated() { raw[i] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count)
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, len) }
            }
        }
        return sent == message.count
    }

    /// Half the watchdog interval systemd asked for (`WATCHDOG_USEC`), or nil.
    public static func watchdogInterval(environment: [String: String] = ProcessInfo.processInfo.environment) -> Duration? {
        guard let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 else { return nil }
        if let pid = environment["WATCHDOG_PID"].flatMap(Int32.init), pid != getpid() { return nil }
        return .microseconds(Int64(usec / 2))
    }
}

/// Tells systemd about the daemon's life: `STATUS=` and `EXTEND_TIMEOUT_USEC=` while models load, `READY=1` once the pipeline is ready,
/// `WATCHDOG=1` every half `WatchdogSec` while the pipeline is idle or making progress (a stuck stage stops the
/// pings, so systemd restarts the service), `STOPPING=1` when graceful shutdown starts. It is the last service of the
/// group, so it is the first to hear of shutdown.
public final class SystemdService: Service, Sendable {
    private let notifier: SystemdNotifier
    private let watchdog: Duration?
    private let waitUntilReady: @Sendable () async -> Bool
    private let isMakingProgress: @Sendable () -> Bool
    private let logger: Logger

    public init(notifier: SystemdNotifier, watchdog: Duration?, logger: Logger,
                isMakingProgress: @escaping @Sendable () -> Bool = { true },
                waitUntilReady: @escaping @Sendable () async -> Bool) {
        self.notifier = notifier
        self.watchdog = watchdog
        self.logger = logger
        self.isMakingProgress = isMakingProgress
        self.waitUntilReady = waitUntilReady
    }

    public func run() async throws {
        notifier.notify("STATUS=loading models")
        await withTaskCancellationOrGracefulShutdownHandler {
            // Not awaited at shutdown: readiness may never come (shutdown during model loading).
            // While models load, keep extending systemd's start timeout (large weights can take minutes).
            let extend = Task {
                while !Task.isCancelled {
                    self.notifier.notify("EXTEND_TIMEOUT_USEC=30000000")
                    try? await Task.sleep(for: .seconds(10))
                }
            }
            let ready = Task {
                let ok = await self.waitUntilReady()
                extend.cancel()
                if ok && !Task.isCancelled {
                    self.notifier.notify("READY=1\nSTATUS=ready")
                    self.logger.info("ready", metadata: ["sd_notify": "\(self.notifier.isEnabled)"])
                }
            }
            let dog = Task {
                guard let watchdog = self.watchdog else { return }
                var stalled = false
                while !Task.isCancelled {
                    if self.isMakingProgress() {
                        self.notifier.notify("WATCHDOG=1")
                        if stalled { self.logger.notice("pipeline progressing again: watchdog pings resumed") }
                        stalled = false
                    } else if !stalled {
                        stalled = true
                        self.logger.error("pipeline stuck: watchdog pings stopped (systemd will restart the service)")
                        self.notifier.notify("STATUS=stuck: no progress with jobs in flight")
                    }
                    try? await Task.sleep(for: watchdog)
                }
            }
            try? await gracefulShutdown()
            ready.cancel()
            extend.cancel()
            dog.cancel()
        } onCancelOrGracefulShutdown: {
            self.notifier.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight jobs")
        }
    }
}
