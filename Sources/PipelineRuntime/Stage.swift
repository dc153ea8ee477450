import Jobs
import Support

/// How one stage runs: its name (as it appears in outcomes and metrics), how many jobs it works on at once, and how
/// many jobs may wait in the bounded channel in front of it.
public struct StageConfig: Sendable, Equatable {
    public var name: String
    /// Parallel workers of this stage (each takes one job at a time).
    public var concurrency: Int
    /// Capacity of the bounded channel feeding this stage.
    public var queueCapacity: Int

    public init(name: String, concurrency: Int = 1, queueCapacity: Int = 2) {
        self.name = name
        self.concurrency = concurrency
        self.queueCapacity = queueCapacity
    }
}

/// One job's state as it moves through the stages. `Payload` is the pipeline's own data (decoded image, restored
/// image...); the runtime never looks inside it.
public struct JobContext<Payload: Sendable>: Sendable {
    public let request: JobRequest
    public var payload: Payload
    /// The job's weight in megapixels. The first stage that sets it (typically decode, once the size is known) makes
    /// the runtime reserve that much of the pipeline's megapixel budget before the job goes on; it is released when
    /// the job ends. A later stage must not raise it.
    public var megapixels: Double = 0
    public var output: String?
    public var width: Int?
    public var height: Int?
    /// Messages for the user, copied into the outcome.
    public var notes: [String] = []
    /// Set when the job timed out or the pipeline is being cancelled; blocking compute on a dedicated thread should
    /// poll `isCancelled` between units of work (tiles) and stop early.
    public let cancellation: CancellationFlag
    /// Where the job is; long stages report units of work (`progress.report(done:of:)`) for the status page and
    /// the watchdog.
    public let progress: JobProgress

    public var isCancelled: Bool { cancellation.isCancelled }

    public init(request: JobRequest, payload: Payload, cancellation: CancellationFlag = CancellationFlag(),
                progress: JobProgress = JobProgress()) {
        self.request = request
        self.payload = payload
        self.cancellation = cancellation
        self.progress = progress
    }
}

/// A stage: a config plus the work it does on one job. `prepare` runs once before the pipeline accepts work (model
/// loading); its duration is reported as `dreamsr_model_load_seconds{stage}`.
public struct Stage<Payload: Sendable>: Sendable {
    public var config: StageConfig
    public var prepare: (@Sendable () async throws -> Void)?
    public var body: @Sendable (inout JobContext<Payload>) async throws -> Void

    public var name: String { config.name }

    public init(_ config: StageConfig,
                prepare: (@Sendable () async throws -> Void)? = nil,
                body: @escaping @Sendable (inout JobContext<Payload>) async throws -> Void) {
        self.config = config
        self.prepare = prepare
        self.body = body
    }
}

/// Limits on work in flight: jobs admitted and not finished, and the sum of their declared megapixels.
public struct PipelineCapacity: Sendable, Equatable {
    public var items: Int
    public var megapixels: Double
    public init(items: Int, megapixels: Double) {
        self.items = items
        self.megapixels = megapixels
    }
}

/// A pipeline's own settings (stages are given separately).
public struct PipelineConfiguration: Sendable {
    public var name: String
    public var capacity: PipelineCapacity
    /// Deadline for a whole job from admission; nil: none.
    public var jobTimeout: Duration?

    public init(name: String, capacity: PipelineCapacity, jobTimeout: Duration? = nil) {
        self.name = name
        self.capacity = capacity
        self.jobTimeout = jobTimeout
    }
}
