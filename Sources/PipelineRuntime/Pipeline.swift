import Foundation
import Jobs
import Support
import Logging
import Metrics
import ServiceLifecycle

/// Where a pipeline is in its life. `/ready` is true only in `.ready`.
public enum PipelineLifecycle: Sendable, Equatable {
    case created
    /// Stages are preparing (models loading).
    case preparing
    /// Accepting and processing jobs.
    case ready
    /// Graceful shutdown: no new jobs; in-flight jobs finish.
    case draining
    case stopped
    case failed(String)
}

/// A snapshot of the pipeline's counters (for tests, health and the benchmark).
public struct PipelineStats: Sendable {
    public var itemsInFlight: Int
    public var megapixelsInFlight: Double
    public var peakItems: Int
    public var peakMegapixels: Double
    public var queueDepths: [String: Int]
    public var completed: Int
    public var failed: Int
    public var abandoned: Int
}

/// The streaming runtime: stages joined by bounded channels it owns, with admission limited by item count and
/// megapixels in flight. It is the `JobProcessor` that sources call and a `Service` whose `run()` prepares the
/// stages (model loading), runs their workers and, on graceful shutdown, stops admission, lets in-flight jobs finish
/// and then stops. Jobs still running when the task is cancelled end with an abandoned outcome
/// (`JobOutcome.isAbandoned`) so their source leaves them for a retry.
public final class Pipeline<Payload: Sendable>: JobProcessor, Service, Sendable {
    public let configuration: PipelineConfiguration
    public let stages: [Stage<Payload>]
    private let makePayload: @Sendable (JobRequest) -> Payload
    private let logger: Logger
    private let metrics: PipelineMetrics
    private let channels: [BoundedChannel<Envelope>]
    private let items: CapacityGate
    private let megapixels: CapacityGate
    private let stageTimers: [Metrics.Timer]

    private enum Race: Sendable { case done(JobContext<Payload>), timedOut }

    private struct State {
        var lifecycle: PipelineLifecycle = .created
        var inFlight = 0
        var peakItems = 0
        var completed = 0
        var failed = 0
        var abandoned = 0
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
        var lifecycleWaiters: [CheckedContinuation<Void, Never>] = []
        /// Admitted, unfinished jobs by their outcome box (a job id may be in flight twice).
        var tracked: [ObjectIdentifier: InFlightJob.Tracked] = [:]
    }
    private let state = Locked(State())
    /// Beats whenever a job enters a stage, reports a unit of work or ends (watchdog, /health).
    public let heartbeat = Heartbeat()

    struct Envelope: Sendable {
        var context: JobContext<Payload>
        let admitted: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant?
        var stageSeconds: [String: Double] = [:]
        var reservedMegapixels: Double = 0
        let box: OutcomeBox
    }

    final class OutcomeBox: Sendable {
        private let state = Locked<(JobOutcome?, CheckedContinuation<JobOutcome, Never>?)>((nil, nil))
        func set(_ outcome: JobOutcome) {
            let cont: CheckedContinuation<JobOutcome, Never>? = state.withLock { s in
                guard s.0 == nil else { return nil }
                s.0 = outcome
                let c = s.1
                s.1 = nil
                return c
            }
            cont?.resume(returning: outcome)
        }
        var value: JobOutcome {
            get async {
                await withCheckedContinuation { (cont: CheckedContinuation<JobOutcome, Never>) in
                    let ready: JobOutcome? = state.withLock { s in
                        if let o = s.0 { return o }
                        s.1 = cont
                        return nil
                    }
                    if let ready { cont.resume(returning: ready) }
                }
            }
        }
    }

    public init(configuration: PipelineConfiguration,
                stages: [Stage<Payload>],
                logger: Logger,
                metricsFactory: any MetricsFactory = MetricsSystem.factory,
                makePayload: @escaping @Sendable (JobRequest) -> Payload) throws {
        guard !stages.isEmpty else { throw PipelineError.startup("pipeline '\(configuration.name)' has no stages") }
        var seen = Set<String>()
        for s in stages {
            guard seen.insert(s.name).inserted else {
                throw PipelineError.startup("pipeline '\(configuration.name)': stage '\(s.name)' listed twice")
            }
            guard s.config.concurrency >= 1, s.config.queueCapacity >= 1 else {
                throw PipelineError.startup("pipeline '\(configuration.name)': stage '\(s.name)' needs concurrency >= 1 and queue >= 1")
            }
        }
        guard configuration.capacity.items >= 1, configuration.capacity.megapixels > 0 else {
            throw PipelineError.startup("pipeline '\(configuration.name)': capacity.items must be >= 1 and capacity.megapixels > 0")
        }
        self.configuration = configuration
        self.stages = stages
        self.makePayload = makePayload
        self.logger = logger
        let metrics = PipelineMetrics(pipeline: configuration.name, factory: metricsFactory)
        self.metrics = metrics
        self.channels = stages.map { stage in
            let gauge = metrics.queueGauge(stage.name)
            return BoundedChannel<Envelope>(capacity: stage.config.queueCapacity) { depth in gauge.record(depth) }
        }
        self.stageTimers = stages.map { metrics.stageTimer($0.name) }
        self.items = CapacityGate(limit: Double(configuration.capacity.items)) { used in metrics.inFlight.record(used) }
        self.megapixels = CapacityGate(limit: configuration.capacity.megapixels) { used in metrics.megapixels.record(used) }
    }

    public var lifecycle: PipelineLifecycle { state.withLock { $0.lifecycle } }
    public var isReady: Bool { lifecycle == .ready }

    /// The jobs admitted and not finished, oldest first, with their stage and progress.
    public var jobsInFlight: [InFlightJob] {
        state.current.tracked.values.sorted { $0.admitted < $1.admitted }.map {
            InFlightJob(id: $0.request.id, source: $0.request.source, admitted: $0.admitted, progress: $0.progress.snapshot)
        }
    }

    public var stats: PipelineStats {
        let s = state.current
        var depths: [String: Int] = [:]
        for (i, st) in stages.enumerated() { depths[st.name] = channels[i].count }
        return PipelineStats(itemsInFlight: s.inFlight, megapixelsInFlight: megapixels.inUse,
                             peakItems: s.peakItems, peakMegapixels: megapixels.peak, queueDepths: depths,
                             completed: s.completed, failed: s.failed, abandoned: s.abandoned)
    }

    /// Suspends until the pipeline is ready (or has stopped or failed).
    public func waitUntilStarted() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let done: Bool = state.withLock { s in
                switch s.lifecycle {
                case .created, .preparing:
                    s.lifecycleWaiters.append(cont)
                    return false
                default: return true
                }
            }
            if done { cont.resume() }
        }
    }

    private func setLifecycle(_ l: PipelineLifecycle) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.lifecycle = l
            switch l {
            case .created, .preparing: return []
            default:
                let w = s.lifecycleWaiters
                s.lifecycleWaiters = []
                return w
            }
        }
        for w in waiters { w.resume() }
    }

    // MARK: JobProcessor

    public func process(_ request: JobRequest) async -> JobOutcome {
        let accepting: Bool = state.withLock { s in
            switch s.lifecycle {
            case .created, .preparing, .ready: return true
            default: return false
            }
        }
        guard accepting else { return abandonedOutcome(request, stage: "admission", stageSeconds: [:]) }
        guard await items.acquire(1) == .acquired else {
            return abandonedOutcome(request, stage: "admission", stageSeconds: [:])
        }
        state.withLock { s in
            s.inFlight += 1
            s.peakItems = max(s.peakItems, s.inFlight)
        }
        let admitted = ContinuousClock.now
        let deadline = configuration.jobTimeout.map { admitted + $0 }
        let progress = JobProgress(heartbeat: heartbeat)
        let envelope = Envelope(context: JobContext(request: request, payload: makePayload(request), progress: progress),
                                admitted: admitted, deadline: deadline, box: OutcomeBox())
        state.withLock { $0.tracked[ObjectIdentifier(envelope.box)] = .init(request: request, admitted: admitted, progress: progress) }
        if await channels[0].send(envelope) == false {
            finish(envelope, abandonedOutcome(request, stage: stages[0].name, stageSeconds: [:]))
        }
        return await envelope.box.value
    }

    // MARK: Service

    public func run() async throws {
        setLifecycle(.preparing)
        do {
            for stage in stages {
                guard let prepare = stage.prepare else { continue }
                let t0 = ContinuousClock.now
                try await prepare()
                let seconds = (ContinuousClock.now - t0).seconds
                metrics.modelLoadGauge(stage.name).record(seconds)
                logger.info("stage prepared", metadata: ["stage": "\(stage.name)", "seconds": "\(seconds)"])
            }
        } catch {
            let message = "stage preparation failed: \(error)"
            setLifecycle(.failed(message))
            stopEverything()
            logger.error("pipeline failed to start", metadata: ["pipeline": "\(configuration.name)", "error": "\(error)"])
            if error is PipelineError { throw error }
            throw PipelineError.startup(message)
        }
        setLifecycle(.ready)
        logger.info("pipeline ready", metadata: [
            "pipeline": "\(configuration.name)",
            "stages": "\(stages.map(\.name).joined(separator: " -> "))",
        ])

        await withTaskGroup(of: Void.self) { group in
            for (index, stage) in stages.enumerated() {
                for _ in 0..<stage.config.concurrency {
                    group.addTask { await self.worker(index) }
                }
            }
            group.addTask {
                // Returns when graceful shutdown starts; throws (ignored) when the task is cancelled.
                try? await gracefulShutdown()
                if Task.isCancelled { return }
                await self.drain()
            }
            await group.waitForAll()
        }
        stopEverything()
        setLifecycle(.stopped)
        logger.info("pipeline stopped", metadata: ["pipeline": "\(configuration.name)"])
    }

    /// Graceful stop: refuse new jobs, wait for admitted ones to end, then close the channels so workers exit.
    private func drain() async {
        setLifecycle(.draining)
        items.close()
        logger.info("pipeline draining", metadata: ["in_flight": "\(state.current.inFlight)"])
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let idle: Bool = state.withLock { s in
                if s.inFlight == 0 { return true }
                s.idleWaiters.append(cont)
                return false
            }
            if idle { cont.resume() }
        }
        for c in channels { c.close() }
    }

    /// Closes admission and every channel and abandons whatever is still queued.
    private func stopEverything() {
        items.close()
        megapixels.close()
        for (i, c) in channels.enumerated() {
            c.close()
            for env in c.drain() {
                finish(env, abandonedOutcome(env.context.request, stage: stages[i].name, stageSeconds: env.stageSeconds))
            }
        }
    }

    // MARK: Workers

    private func worker(_ index: Int) async {
        let channel = channels[index]
        while let envelope = await channel.receive() {
            await handle(envelope, at: index)
        }
    }

    private func handle(_ envelopeIn: Envelope, at index: Int) async {
        var envelope = envelopeIn
        let stage = stages[index]
        let request = envelope.context.request
        if Task.isCancelled {
            finish(envelope, abandonedOutcome(request, stage: stage.name, stageSeconds: envelope.stageSeconds))
            return
        }
        envelope.context.progress.enter(stage.name)
        let t0 = ContinuousClock.now
        do {
            envelope.context = try await runBody(stage, envelope.context, deadline: envelope.deadline)
        } catch {
            let elapsed = ContinuousClock.now - t0
            envelope.stageSeconds[stage.name] = elapsed.seconds
            stageTimers[index].recordNanoseconds(elapsed.nanoseconds)
            if error is CancellationError || (error as? PipelineError)?.code == .abandoned {
                finish(envelope, abandonedOutcome(request, stage: stage.name, stageSeconds: envelope.stageSeconds))
            } else {
                finish(envelope, failureOutcome(envelope, stage: stage.name, error: error))
            }
            return
        }
        let elapsed = ContinuousClock.now - t0
        envelope.stageSeconds[stage.name] = elapsed.seconds
        stageTimers[index].recordNanoseconds(elapsed.nanoseconds)

        // Megapixel reservation: once, by the first stage that declares the job's weight. A job heavier than the whole
        // budget is admitted alone once the pipeline holds no pixels (the header limit is what refuses images).
        let declared = envelope.context.megapixels
        if declared > envelope.reservedMegapixels + 1e-9 {
            if envelope.reservedMegapixels > 0 {
                let err = PipelineError(.stageFailed, "stage '\(stage.name)' raised the job's megapixels from \(envelope.reservedMegapixels) to \(declared) after reservation")
                finish(envelope, failureOutcome(envelope, stage: stage.name, error: err))
                return
            }
            switch await megapixels.acquire(declared) {
            case .acquired:
                envelope.reservedMegapixels = declared
            case .closed:
                finish(envelope, abandonedOutcome(request, stage: stage.name, stageSeconds: envelope.stageSeconds))
                return
            }
        }

        if index == stages.count - 1 {
            finish(envelope, successOutcome(envelope))
        } else if await channels[index + 1].send(envelope) == false {
            finish(envelope, abandonedOutcome(request, stage: stages[index + 1].name, stageSeconds: envelope.stageSeconds))
        }
    }

    /// Runs a stage body, racing it against the job's deadline. On timeout the body's task is cancelled and its
    /// cancellation flag set; the runtime still waits for the body to return, so memory accounting stays true.
    private func runBody(_ stage: Stage<Payload>, _ context: JobContext<Payload>,
                         deadline: ContinuousClock.Instant?) async throws -> JobContext<Payload> {
        let flag = context.cancellation
        let body = stage.body
        guard let deadline else {
            return try await withTaskCancellationHandler {
                var c = context
                try await body(&c)
                return c
            } onCancel: { flag.cancel() }
        }
        if ContinuousClock.now >= deadline {
            throw PipelineError(.timeout, "job timeout of \(configuration.jobTimeout!) expired before stage '\(stage.name)' started", isRetriable: true)
        }
        return try await withThrowingTaskGroup(of: Race.self) { group in
            group.addTask {
                try await withTaskCancellationHandler {
                    var c = context
                    try await body(&c)
                    return .done(c)
                } onCancel: { flag.cancel() }
            }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return .timedOut
            }
            defer { group.cancelAll() }
            switch try await group.next()! {
            case .done(let c):
                return c
            case .timedOut:
                flag.cancel()
                throw PipelineError(.timeout, "job exceeded its timeout of \(configuration.jobTimeout!) in stage '\(stage.name)'", isRetriable: true)
            }
        }
    }

    // MARK: Outcomes

    private func finish(_ envelope: Envelope, _ outcome: JobOutcome) {
        megapixels.release(envelope.reservedMegapixels)
        let duration = ContinuousClock.now - envelope.admitted
        metrics.jobDuration.recordNanoseconds(duration.nanoseconds)
        let idle: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.tracked[ObjectIdentifier(envelope.box)] = nil
            s.inFlight -= 1
            if outcome.isAbandoned { s.abandoned += 1 } else if outcome.status == .ok { s.completed += 1 } else { s.failed += 1 }
            guard s.inFlight == 0 else { return [] }
            let w = s.idleWaiters
            s.idleWaiters = []
            return w
        }
        metrics.record(outcome)
        heartbeat.beat()
        logFinished(envelope.context.request, outcome, seconds: duration.seconds)
        items.release(1)
        envelope.box.set(outcome)
        for w in idle { w.resume() }
    }

    /// One log line per finished job: id, source, outcome, seconds and per-stage seconds (and the error).
    private func logFinished(_ request: JobRequest, _ outcome: JobOutcome, seconds: Double) {
        var metadata: Logger.Metadata = [
            "job": "\(request.id)", "source": "\(request.source.logDescription)",
            "outcome": "\(outcome.status.rawValue)",
            "seconds": "\(String(format: "%.3f", seconds))",
            "stages": "\(outcome.stageSeconds.sorted { $0.key < $1.key }.map { "\($0.key)=\(String(format: "%.3f", $0.value))" }.joined(separator: " "))",
        ]
        if outcome.status == .ok {
            if let output = outcome.output { metadata["output"] = "\(output)" }
            logger.info("job finished", metadata: metadata)
        } else {
            metadata["stage"] = "\(outcome.errorStage ?? "?")"
            metadata["error"] = "\(outcome.errorMessage ?? "")"
            metadata["retriable"] = "\(outcome.retriable)"
            if outcome.isAbandoned { logger.info("job finished", metadata: metadata) } else { logger.warning("job finished", metadata: metadata) }
        }
    }

    private func successOutcome(_ e: Envelope) -> JobOutcome {
        let c = e.context
        return JobOutcome(id: c.request.id, status: .ok, output: c.output, width: c.width, height: c.height,
                          stageSeconds: e.stageSeconds, pipeline: configuration.name, notes: c.notes,
                          origin: c.request.origin)
    }

    private func failureOutcome(_ e: Envelope, stage: String, error: any Error) -> JobOutcome {
        let message: String
        let retriable: Bool
        if let pe = error as? PipelineError {
            message = pe.message
            retriable = pe.isRetriable
        } else {
            message = String(describing: error)
            retriable = false
        }
        return JobOutcome(id: e.context.request.id, status: .error, stageSeconds: e.stageSeconds, errorStage: stage,
                          errorMessage: message, retriable: retriable, pipeline: configuration.name,
                          notes: e.context.notes, origin: e.context.request.origin)
    }

    private func abandonedOutcome(_ request: JobRequest, stage: String, stageSeconds: [String: Double]) -> JobOutcome {
        JobOutcome(id: request.id, status: .abandoned, stageSeconds: stageSeconds, errorStage: stage,
                   errorMessage: "pipeline stopped before the job finished; retry it", retriable: true,
                   pipeline: configuration.name, origin: request.origin)
    }
}
