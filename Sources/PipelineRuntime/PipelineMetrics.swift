import CoreMetrics
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
