/// Problems that make the daemon unhealthy while they last, set by the parts that notice them (a source whose
/// folder cannot be written, a sink that refuses outputs) and read by /health. Each problem has a key (who reports
/// it, e.g. `watch /in: intake`) so that the reporter can clear its own problem once it is gone.
public final class HealthReporter: Sendable {
    private let problems = Locked<[String: String]>([:])

    public init() {}

    /// Sets (`problem` non-nil) or clears (nil) the problem reported under `key`.
    public func set(_ key: String, problem: String?) {
        problems.withLock { $0[key] = problem }
    }

    /// The current problems as `key: problem`, sorted by key; empty when healthy.
    public var current: [String] {
        problems.current.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
    }
}
