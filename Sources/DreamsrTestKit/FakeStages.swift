import Foundation
import Jobs
import PipelineRuntime

/// The payload the fake pipelines carry: a trace of the stages that ran.
public struct FakePayload: Sendable, Equatable {
    public var trace: [String] = []
    public init() {}
}

/// What fake stages report to tests.
public enum StageEvent: Sendable, Equatable {
    case entered(stage: String, job: String)
    case left(stage: String, job: String)
}

/// Fake stages for runtime tests. Jobs carry their test parameters in `request.origin`:
/// `mp` (megapixels the job declares in the weighing stage), `fail` (name of a stage that must fail).
public enum FakeStages {
    /// A stage that records itself, declares the job's megapixels when `weighs` is true, fails when the request says
    /// so, and waits at `gate` (when given) before finishing.
    public static func stage(_ name: String, concurrency: Int = 1, queue: Int = 2, weighs: Bool = false,
                             gate: TestGate? = nil, events: AsyncEvents<StageEvent>? = nil,
                             prepare: (@Sendable () async throws -> Void)? = nil) -> Stage<FakePayload> {
        Stage(StageConfig(name: name, concurrency: concurrency, queueCapacity: queue), prepare: prepare) { ctx in
            let job = ctx.request.id.rawValue
            events?.emit(.entered(stage: name, job: job))
            if weighs, let mp = ctx.request.origin["mp"].flatMap(Double.init) { ctx.megapixels = mp }
            if ctx.request.origin["fail"] == name {
                throw PipelineError.badInput("fake failure of \(job) in \(name)")
            }
            if let gate { await gate.pass() }
            ctx.payload.trace.append(name)
            ctx.output = "out/\(job)"
            events?.emit(.left(stage: name, job: job))
        }
    }

    /// A stage that never finishes on its own: it waits until the job is cancelled (timeout or shutdown), polling
    /// the cancellation flag the way blocking compute does between tiles.
    public static func hanging(_ name: String, events: AsyncEvents<StageEvent>? = nil) -> Stage<FakePayload> {
        Stage(StageConfig(name: name)) { ctx in
            events?.emit(.entered(stage: name, job: ctx.request.id.rawValue))
            let flag = ctx.cancellation
            let lane = DispatchQueue(label: "test.hanging")
            await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
                lane.async {
                    while !flag.isCancelled { usleep(1_000) }
                    cont.resume()
                }
            }
            throw CancellationError()
        }
    }

    public static func request(_ id: String, megapixels: Double? = nil, failIn stage: String? = nil) -> JobRequest {
        var origin: [String: String] = [:]
        if let megapixels { origin["mp"] = String(megapixels) }
        if let stage { origin["fail"] = stage }
        return JobRequest(id: JobID(id), source: .file("/dev/null/\(id)"), origin: origin)
    }
}
