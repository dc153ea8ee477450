import Foundation
import Jobs
import PipelineRuntime
import Support
@testable import KafkaConnector

/// A JobProcessor for tests: "upscales" by writing `UPSCALED:<input bytes>` to `<output>/<id>.<format>` atomically
/// (temp + fsync + rename). Inputs starting with `CORRUPT` fail in stage `decode` (not retriable); inputs starting
/// with `FLAKY` fail retriably the first `flakyFailures` times; inputs starting with `SLOW` take `slowDelay` more.
final class FakeProcessor: JobProcessor, @unchecked Sendable {
    struct Stats {
        var inFlight = 0
        var maxInFlight = 0
        var calls: [String: Int] = [:]
        var outputs: [String] = []
    }

    let stats = Locked(Stats())
    let delay: Duration
    let flakyFailures: Int
    /// Jobs whose id is here never finish until cancelled (to test abandon on shutdown).
    let hangIDs: Set<String>
    /// Jobs whose id is here end with the pipeline's "abandoned" outcome (as when the pipeline shuts down).
    let abandonIDs: Set<String>
    let slowDelay: Duration

    init(delay: Duration = .zero, flakyFailures: Int = 2, hangIDs: Set<String> = [], abandonIDs: Set<String> = [],
         slowDelay: Duration = .milliseconds(400)) {
        self.delay = delay
        self.slowDelay = slowDelay
        self.flakyFailures = flakyFailures
        self.hangIDs = hangIDs
        self.abandonIDs = abandonIDs
    }

    func process(_ request: JobRequest) async -> JobOutcome {
        let calls = stats.withLock { s -> Int in
            s.inFlight += 1
            s.maxInFlight = max(s.maxInFlight, s.inFlight)
            s.calls[request.id.rawValue, default: 0] += 1
            return s.calls[request.id.rawValue]!
        }
        defer { stats.withLock { $0.inFlight -= 1 } }
        if hangIDs.contains(request.id.rawValue) {
            while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(50)) }
            return JobOutcome(id: request.id, status: .error, errorStage: "upscale", errorMessage: "cancelled",
                              retriable: true)
        }
        if abandonIDs.contains(request.id.rawValue) {
            return JobOutcome(id: request.id, status: .abandoned, errorStage: "upscale",
                              errorMessage: "pipeline stopped before the job finished", retriable: true)
        }
        if delay > .zero { try? await Task.sleep(for: delay) }
        guard case .file(let path) = request.source, let input = FileManager.default.contents(atPath: path) else {
            return JobOutcome(id: request.id, status: .error, errorStage: "read", errorMessage: "unreadable")
        }
        if input.starts(with: Data("SLOW".utf8)) { try? await Task.sleep(for: slowDelay) }
        if input.starts(with: Data("CORRUPT".utf8)) {
            return JobOutcome(id: request.id, status: .error, errorStage: "decode",
                              errorMessage: "not a decodable image", retriable: false)
        }
        if input.starts(with: Data("FLAKY".utf8)) && calls <= flakyFailures {
            return JobOutcome(id: request.id, status: .error, errorStage: "upscale",
                              errorMessage: "transient failure \(calls)", retriable: true)
        }
        // Like the real pipeline: `output` is the file to write.
        guard let target = request.output else {
            return JobOutcome(id: request.id, status: .error, errorStage: "write", errorMessage: "no output")
        }
        try? FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        let temp = target + ".tmp-\(UUID().uuidString)"
        let fd = open(temp, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        let body = Array("UPSCALED:".utf8) + Array(input)
        _ = body.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fsync(fd)
        close(fd)
        rename(temp, target)
        stats.withLock { $0.outputs.append(target) }
        return JobOutcome(id: request.id, status: .ok, output: target, width: 4 * input.count, height: 4,
                          stageSeconds: ["upscale": 0.001], origin: request.origin)
    }
}

/// Collects source events; tests wait on conditions over them (with a deadline) instead of sleeping.
final class EventLog: @unchecked Sendable {
    private let state = Locked<(events: [KafkaSourceEvent], waiters: [(condition: ([KafkaSourceEvent]) -> Bool, continuation: CheckedContinuation<Bool, Never>)])>(([], []))

    var handler: @Sendable (KafkaSourceEvent) -> Void {
        { [self] event in
            let ready = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
                s.events.append(event)
                var ready: [CheckedContinuation<Bool, Never>] = []
                s.waiters.removeAll { waiter in
                    if waiter.condition(s.events) { ready.append(waiter.continuation); return true }
                    return false
                }
                return ready
            }
            ready.forEach { $0.resume(returning: true) }
        }
    }

    var events: [KafkaSourceEvent] { state.withLock { $0.events } }

    /// Waits until `condition` holds over the events so far; false on timeout.
    func wait(timeout: Duration, _ condition: @escaping ([KafkaSourceEvent]) -> Bool) async -> Bool {
        let id = UUID()
        _ = id
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            if Task.isCancelled { return }
            // Resume every waiter that is still pending with false (only ours can be pending in these tests).
            let pending = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
                defer { s.waiters.removeAll() }
                return s.waiters.map(\.continuation)
            }
            pending.forEach { $0.resume(returning: false) }
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let done = state.withLock { s -> Bool in
                if condition(s.events) { return true }
                s.waiters.append((condition, continuation))
                return false
            }
            if done { continuation.resume(returning: true) }
        }
    }

    static func count(_ events: [KafkaSourceEvent], where predicate: (KafkaSourceEvent) -> Bool) -> Int {
        events.reduce(0) { $0 + (predicate($1) ? 1 : 0) }
    }
}
