import Jobs
import PipelineRuntime
import ServiceLifecycle

/// A source service for tests: submits its requests to the processor (concurrently, each call suspending while
/// the pipeline is full), records every outcome, then waits for graceful shutdown. Shows the contract every source
/// (watch folder, Kafka) follows.
public final class InMemorySource: Service, Sendable {
    public let outcomes = AsyncEvents<JobOutcome>()
    private let requests: [JobRequest]
    private let processor: any JobProcessor

    public init(requests: [JobRequest], processor: any JobProcessor) {
        self.requests = requests
        self.processor = processor
    }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for r in requests {
                group.addTask { self.outcomes.emit(await self.processor.process(r)) }
            }
        }
        try? await gracefulShutdown()
    }
}
