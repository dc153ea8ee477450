import Jobs
import Logging
import Metrics
import PipelineRuntime
import ServiceLifecycle

/// A built pipeline seen without its payload type: what the app wires into sources, HTTP and systemd.
public struct PipelineHandle: Sendable {
    public let name: String
    public let processor: any JobProcessor
    public let service: any Service
    public let lifecycle: @Sendable () -> PipelineLifecycle
    public let waitUntilStarted: @Sendable () async -> Void
    public let stats: @Sendable () -> PipelineStats
    public let jobsInFlight: @Sendable () -> [InFlightJob]
    public let heartbeat: Heartbeat
    /// Stage names and worker counts, in order.
    public let stages: [(name: String, workers: Int)]

    public init<Payload: Sendable>(_ pipeline: Pipeline<Payload>) {
        name = pipeline.configuration.name
        processor = pipeline
        service = pipeline
        lifecycle = { pipeline.lifecycle }
        waitUntilStarted = { await pipeline.waitUntilStarted() }
        stats = { pipeline.stats }
        jobsInFlight = { pipeline.jobsInFlight }
        heartbeat = pipeline.heartbeat
        stages = pipeline.stages.map { ($0.name, $0.config.concurrency) }
    }
}

/// Turns a pipeline definition into running stages. The real one (`ImagePipelineFactory`) uses libvips and the
/// models; tests pass fakes.
public protocol PipelineFactory: Sendable {
    func makePipeline(_ definition: PipelineDefinition, config: DaemonConfig, logger: Logger,
                      metricsFactory: any MetricsFactory) throws -> PipelineHandle
    /// Exercises the image codec for `/health` (e.g. a real encode/decode round trip); returns a problem or nil.
    func healthProblem() -> String?
    /// Gauges read at each `/metrics` scrape (e.g. libvips tracked memory), by metric name.
    func scrapeGauges() -> [String: Double]
}

extension PipelineFactory {
    public func scrapeGauges() -> [String: Double] { [:] }
}

/// Routes a request to the loaded pipeline; a request naming another pipeline fails with a clear message.
struct PipelineRouter: JobProcessor {
    let pipeline: PipelineHandle

    func process(_ request: JobRequest) async -> JobOutcome {
        if let wanted = request.pipeline, wanted != pipeline.name {
            return JobOutcome(id: request.id, status: .error, errorStage: "admission",
                              errorMessage: "pipeline '\(wanted)' is not loaded (this daemon runs '\(pipeline.name)')",
                              retriable: false, pipeline: wanted, origin: request.origin)
        }
        return await pipeline.processor.process(request)
    }
}
