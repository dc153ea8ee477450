import Foundation

/// A stable identifier for one unit of work (one image). Derived from the source (message id, file name), never a
/// counter, so that re-delivery of the same input maps to the same outputs.
public struct JobID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
}

/// Where a job's input comes from.
public enum JobSource: Sendable, Hashable, Codable {
    /// A local file.
    case file(String)
    /// An http(s) URL, fetched by the connector (with its SSRF and size rules) before the job enters the pipeline.
    case url(String)
    /// An object, `s3://bucket/key`, fetched by the connector from the configured object storage before the job
    /// enters the pipeline.
    case s3(String)
}

/// One image to upscale, as a source hands it to the pipeline.
public struct JobRequest: Sendable {
    public var id: JobID
    public var source: JobSource
    /// Output file path, or a folder to write `<id>.<ext>` into; nil: the pipeline's configured output folder.
    public var output: String?
    /// Overrides the caption stage's prompts when set.
    public var prompt: String?
    public var scale: Int?
    /// Output format name (png, jpeg, webp, tiff); nil: the pipeline default.
    public var format: String?
    /// Pipeline name; nil: the default pipeline.
    public var pipeline: String?
    /// Where the request came from (topic/partition/offset, watch-folder path): copied into the outcome.
    public var origin: [String: String]

    public init(id: JobID, source: JobSource, output: String? = nil, prompt: String? = nil, scale: Int? = nil,
                format: String? = nil, pipeline: String? = nil, origin: [String: String] = [:]) {
        self.id = id
        self.source = source
        self.output = output
        self.prompt = prompt
        self.scale = scale
        self.format = format
        self.pipeline = pipeline
        self.origin = origin
    }

    /// Origin key a source sets on a request it would retry: the attempts it will still make if this one fails
    /// retriably (the runtime's metrics then do not count such a failure as final).
    public static let attemptsLeftOrigin = "attempts_left"
}

/// What happened to a job. Every admitted job produces exactly one outcome, success or failure.
public struct JobOutcome: Sendable, Codable, Equatable {
    /// `ok`: the output is written. `error`: the job failed (see `errorStage`, `errorMessage`, `retriable`).
    /// `abandoned`: the job did not run to an end because the pipeline stopped (shutdown, cancellation, failed
    /// preparation): not a failure of the input, so a source leaves it to be retried rather than treat it as failed.
    public enum Status: String, Sendable, Codable { case ok, error, abandoned }
    public var id: JobID
    public var status: Status
    public var output: String?
    public var width: Int?
    public var height: Int?
    /// Seconds spent in each stage, by stage name.
    public var stageSeconds: [String: Double]
    /// On failure: the stage that failed and why.
    public var errorStage: String?
    public var errorMessage: String?
    /// True when retrying might succeed (timeouts, transient I/O); false for bad input.
    public var retriable: Bool
    /// Which pipeline / mode ran, and notes a user should see (e.g. "caption: no endpoint, fixed prompt used").
    public var pipeline: String?
    public var notes: [String]
    public var origin: [String: String]

    public init(id: JobID, status: Status, output: String? = nil, width: Int? = nil, height: Int? = nil,
                stageSeconds: [String: Double] = [:], errorStage: String? = nil, errorMessage: String? = nil,
                retriable: Bool = false, pipeline: String? = nil, notes: [String] = [], origin: [String: String] = [:]) {
        self.id = id
        self.status = status
        self.output = output
        self.width = width
        self.height = height
        self.stageSeconds = stageSeconds
        self.errorStage = errorStage
        self.errorMessage = errorMessage
        self.retriable = retriable
        self.pipeline = pipeline
        self.notes = notes
        self.origin = origin
    }
}

extension JobOutcome {
    /// True when the pipeline stopped before the job ended (`status == .abandoned`).
    public var isAbandoned: Bool { status == .abandoned }
}

/// The one entry point sources use: submit a job, suspend while the pipeline is full (backpressure), get its
/// outcome. Implementations never throw for a job's own failure: that is an `.error` outcome.
public protocol JobProcessor: Sendable {
    func process(_ request: JobRequest) async -> JobOutcome
}
