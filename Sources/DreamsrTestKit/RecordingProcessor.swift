import Foundation
import Jobs
import PipelineRuntime
import Support

/// A `JobProcessor` for source tests: records every request, optionally waits at a gate, fails the jobs whose file
/// name contains "bad", and reports abandoned outcomes for names given in `abandon`.
public final class RecordingProcessor: JobProcessor, Sendable {
    public let events = AsyncEvents<JobRequest>()
    public let finished = AsyncEvents<JobOutcome>()
    private let gate: TestGate?
    private let abandon: Locked<Set<String>>
    /// Writes an output file (the input's bytes) when the request names an output path, like the real pipeline.
    private let writeOutputs: Bool

    public init(gate: TestGate? = nil, abandon: Set<String> = [], writeOutputs: Bool = true) {
        self.gate = gate
        self.abandon = Locked(abandon)
        self.writeOutputs = writeOutputs
    }

    public func setAbandon(_ names: Set<String>) { abandon.withLock { $0 = names } }

    public func process(_ request: JobRequest) async -> JobOutcome {
        events.emit(request)
        if let gate { await gate.pass() }
        let outcome: JobOutcome
        if abandon.current.contains(request.id.rawValue) {
            outcome = JobOutcome(id: request.id, status: .abandoned, errorStage: "restore", errorMessage: "stopped",
                                 retriable: true, origin: request.origin)
        } else if request.id.rawValue.contains("bad") {
            outcome = JobOutcome(id: request.id, status: .error, errorStage: "decode",
                                 errorMessage: "not an image", retriable: false, origin: request.origin)
        } else {
            var output: String? = nil
            if writeOutputs, let out = request.output, case .file(let path) = request.source {
                let data = FileManager.default.contents(atPath: path) ?? Data()
                FileManager.default.createFile(atPath: out, contents: data)
                output = out
            }
            outcome = JobOutcome(id: request.id, status: .ok, output: output, origin: request.origin)
        }
        finished.emit(outcome)
        return outcome
    }
}
