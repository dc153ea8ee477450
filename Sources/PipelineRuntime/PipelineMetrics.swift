import CoreMetrics
import Jobs
import Metrics

/// The runtime's metrics. Names follow Prometheus conventions; the factory is injected so tests and several
/// pipelines in one process do not depend on the global `MetricsSystem`.
public struct PipelineMetrics: Sendable {
    public static let jobsTotal = "dreamsr_jobs_total"
    public static let jobDuration = "dreamsr_job_duration_seconds"
    public static let stageDuration = "dreamsr_stage_duration_seconds"
    public static let stageQueueDepth = "dreamsr_stage_queue_depth"
    public static let megapixelsInFlight = "dreamsr_megapixels_in_flight"
    public static let jobsInFlight = "dreamsr_jobs_in_flight"
    public static let modelLoadSeconds = "dreamsr_model_load_seconds"

    let factory: any MetricsFactory
    let pipeline: String
    let ok: Counter
    let failed: Counter
    let abandoned: Counter
    let jobDuration: Metrics.Timer
    let megapixels: Gauge
    let inFlight: Gauge

    public init(pipeline: String, factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        self.pipeline = pipeline
        let dims = [("pipeline", pipeline)]
        ok = Counter(label: Self.jobsTotal, dimensions: dims + [("outcome", "ok")], factory: factory)
        failed = Counter(label: Self.jobsTotal, dimensions: dims + [("outcome", "error")], factory: factory)
        abandoned = Counter(label: Self.jobsTotal, dimensions: dims + [("outcome", "abandoned")], factory: factory)
        jobDuration = Metrics.Timer(label: Self.jobDuration, dimensions: dims, factory: factory)
        megapixels = Gauge(label: Self.megapixelsInFlight, dimensions: dims, factory: factory)
        inFlight = Gauge(label: Self.jobsInFlight, dimensions: dims, factory: factory)
    }

    /// Origin key a source sets on a request it would retry: the attempts it will still make if this one fails
    /// retriably. Such a failure is not a final outcome and is not counted in `dreamsr_jobs_total` (the source
    /// counts it in `dreamsr_retries_total`); one job is one final outcome.
    public static let attemptsLeftOrigin = JobRequest.attemptsLeftOrigin

    /// Counts one finished attempt in `dreamsr_jobs_total` unless it is a retriable failure its source will retry.
    func record(_ outcome: JobOutcome) {
        if outcome.isAbandoned {
            abandoned.increment()
        } else if outcome.status == .ok {
            ok.increment()
        } else if !(outcome.retriable && (outcome.origin[Self.attemptsLeftOrigin].flatMap(Int.init) ?? 0) > 0) {
            failed.increment()
        }
    }

    func stageTimer(_ stage: String) -> Metrics.Timer {
        Metrics.Timer(label: Self.stageDuration, dimensions: [("pipeline", pipeline), ("stage", stage)], factory: factory)
    }
    func queueGauge(_ stage: String) -> Gauge {
        Gauge(label: Self.stageQueueDepth, dimensions: [("pipeline", pipeline), ("stage", stage)], factory: factory)
    }
    func modelLoadGauge(_ stage: String) -> Gauge {
        Gauge(label: Self.modelLoadSeconds, dimensions: [("pipeline", pipeline), ("stage", stage)], factory: factory)
    }
}

/// A source's own counters (labels carry `source`, e.g. `kafka`): retried attempts and dead letters, which the
/// pipeline's `dreamsr_jobs_total` does not see (it counts one final outcome per job).
public struct SourceMetrics: Sendable {
    /// Attempts that failed retriably and were retried (`stage`: where the attempt failed).
    public static let retriesTotal = "dreamsr_retries_total"
    /// Messages published to the dead-letter topic (`stage`: where the job failed).
    public static let deadLettersTotal = "dreamsr_dead_letters_total"
    /// Dead letters that could not be published even truncated to what the topic accepts; the failure is in the
    /// error result and the offset still advances.
    public static let deadLetterFailuresTotal = "dreamsr_dead_letter_failures_total"

    let factory: any MetricsFactory
    let source: String

    public init(source: String, factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        self.source = source
    }

    public func retried(stage: String) { counter(Self.retriesTotal, stage: stage).increment() }
    public func deadLettered(stage: String) { counter(Self.deadLettersTotal, stage: stage).increment() }
    public func deadLetterFailed(stage: String) { counter(Self.deadLetterFailuresTotal, stage: stage).increment() }

    private func counter(_ label: String, stage: String) -> Counter {
        Counter(label: label, dimensions: [("source", source), ("stage", stage)], factory: factory)
    }
}
