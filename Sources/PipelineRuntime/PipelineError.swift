/// The one error type of the pipeline runtime.
///
/// Where errors surface: a job's own failure never escapes `Pipeline.process(_:)`; it becomes an `.error`
/// `JobOutcome` carrying `stage`, `message` and `isRetriable`. Stage implementations throw `PipelineError` (or any
/// error, reported with `String(describing:)` and treated as not retriable). `Pipeline.run()` throws only for
/// start-up failures (a stage's `prepare`, e.g. model loading), which stops the daemon.
public struct PipelineError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }
        /// The input cannot be processed (decode error, limit exceeded, unsupported format).
        public static let badInput = Code("bad_input")
        /// The job ran past its deadline.
        public static let timeout = Code("timeout")
        /// The job needs more megapixels than the whole pipeline budget.
        public static let overBudget = Code("over_budget")
        /// The pipeline stopped before the job finished; the job was not completed and must be retried.
        public static let abandoned = Code("abandoned")
        /// A stage failed for an internal reason (model error, I/O).
        public static let stageFailed = Code("stage_failed")
        /// Start-up failed (model loading, invalid wiring).
        public static let startup = Code("startup")
        public init(_ raw: String) { self.raw = raw }
    }

    public var code: Code
    public var message: String
    public var isRetriable: Bool
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, isRetriable: Bool = false,
                file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.isRetriable = isRetriable
        self.file = file
        self.line = line
    }

    public var description: String { "\(code): \(message)" }

    public static func badInput(_ message: String, file: String = #fileID, line: Int = #line) -> PipelineError {
        PipelineError(.badInput, message, isRetriable: false, file: file, line: line)
    }
    public static func stageFailed(_ message: String, retriable: Bool = false,
                                   file: String = #fileID, line: Int = #line) -> PipelineError {
        PipelineError(.stageFailed, message, isRetriable: retriable, file: file, line: line)
    }
    public static func startup(_ message: String, file: String = #fileID, line: Int = #line) -> PipelineError {
        PipelineError(.startup, message, isRetriable: false, file: file, line: line)
    }
}
