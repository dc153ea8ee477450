import Foundation
import Jobs
import Logging
import Metrics
import PipelineRuntime

/// Runs a pipeline file through the daemon's stage runtime in-process for a list of inputs (`dreamsr upscale
/// --pipeline`): the same factory, stages, admission and outcomes as `dreamsr serve`, without sources or HTTP.
public struct PipelineRunner: Sendable {
    public let definition: PipelineDefinition
    public let config: DaemonConfig
    public let factory: any PipelineFactory

    public init(definition: PipelineDefinition, config: DaemonConfig, factory: any PipelineFactory = ImagePipelineFactory()) {
        self.definition = definition
        self.config = config
        self.factory = factory
    }

    /// Finds a pipeline by name (`<pipelines dir>/NAME.yaml`, then the built-in ones) or loads a file path.
    public static func resolve(_ nameOrFile: String, pipelinesDirectory: String?) throws -> PipelineDefinition {
        if nameOrFile.hasSuffix(".yaml") || nameOrFile.hasSuffix(".yml") || nameOrFile.contains("/") {
            return try PipelineDefinition.load(path: nameOrFile)
        }
        if let dir = pipelinesDirectory {
            let path = dir + "/" + nameOrFile + ".yaml"
            if FileManager.default.fileExists(atPath: path) { return try PipelineDefinition.load(path: path) }
        }
        if let builtIn = try PipelineDefinition.builtIn(named: nameOrFile) { return builtIn }
        throw ConfigError(file: pipelinesDirectory.map { $0 + "/" + nameOrFile + ".yaml" } ?? nameOrFile, key: "",
                          problem: "pipeline '\(nameOrFile)' not found (give a pipeline file path, or --pipelines-dir)")
    }

    /// Builds the pipeline (start-up checks throw here), loads the models, processes `requests` one after another
    /// and stops the pipeline. `onOutcome` sees each outcome as it arrives; `onProgress` is polled (every 0.2 s) with
    /// the running job's id, stage and units done of total, for progress bars. `quiet`: the runtime logs nothing
    /// below critical (the caller prints its own line per outcome).
    public func run(_ requests: [JobRequest], logger: Logger = Logger(label: "dreamsr.upscale"), quiet: Bool = false,
                    onProgress: (@Sendable (_ id: JobID, _ stage: String?, _ done: Int, _ total: Int) -> Void)? = nil,
                    onOutcome: @Sendable (JobOutcome) -> Void = { _ in }) async throws -> [JobOutcome] {
        var cfg = config
        cfg.pipeline = definition
        var logger = logger
        if quiet { logger.logLevel = .critical }
        let handle = try factory.makePipeline(definition, config: cfg, logger: logger, metricsFactory: NOOPMetricsHandler.instance)
        let service = handle.service
        let runTask = Task { try await service.run() }
        await handle.waitUntilStarted()
        if case .failed(let message) = handle.lifecycle() {
            runTask.cancel()
            _ = try? await runTask.value
            throw AppError(.models, message)
        }
        var outcomes: [JobOutcome] = []
        for r in requests {
            let poller = onProgress.map { report in
                Task {
                    while !Task.isCancelled {
                        for job in handle.jobsInFlight() where job.id == r.id { report(job.id, job.progress.stage, job.progress.done, job.progress.total) }
                        try? await Task.sleep(for: .milliseconds(200))
                    }
                }
            }
            let o = await handle.processor.process(r)
            poller?.cancel()
            _ = await poller?.value
            onOutcome(o)
            outcomes.append(o)
        }
        runTask.cancel()
        _ = try? await runTask.value
        return outcomes
    }
}
