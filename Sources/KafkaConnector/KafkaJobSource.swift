import Foundation
import Jobs
import Logging
import ObjectStorage
import PipelineRuntime
import ServiceLifecycle
import Support

/// Observable events of the source (for tests, metrics and logs). Delivered synchronously from the thread where
/// they happen; handlers must be quick and non-blocking.
public enum KafkaSourceEvent: Sendable, Equatable {
    case assigned([TopicPartition])
    case revoked([TopicPartition])
    case paused([TopicPartition])
    case resumed([TopicPartition])
    /// A job was handed to the processor; `inFlight` counts it.
    case jobStarted(TopicPartition, offset: Int64, inFlight: Int)
    case resultPublished(TopicPartition, offset: Int64, status: String)
    case deadLettered(TopicPartition, offset: Int64, stage: String)
    case retrying(TopicPartition, offset: Int64, attempt: Int)
    /// `offset` (the next offset to consume) was stored for commit.
    case offsetStored(TopicPartition, offset: Int64)
    /// Shutdown finished: producer flushed, consumer closed.
    case stopped
}

/// Reads job requests from a Kafka topic, runs them through a `JobProcessor`, publishes results and dead letters,
/// with at-least-once delivery (see docs/kafka.md). Run it in a `ServiceGroup`; graceful shutdown stops fetching,
/// drains in-flight jobs (up to `drainTimeout`, then abandons them without storing their offsets), commits, flushes
/// the producer and closes the consumer.
public final class KafkaJobSource: Service, Sendable {
    private let configuration: KafkaConnectorConfiguration
    private let processor: any JobProcessor
    private let logger: Logger
    private let onEvent: (@Sendable (KafkaSourceEvent) -> Void)?
    private let metrics: SourceMetrics
    private let kafkaMetrics: KafkaMetrics

    public init(configuration: KafkaConnectorConfiguration, processor: any JobProcessor, logger: Logger,
                metrics: SourceMetrics = SourceMetrics(source: "kafka"), kafkaMetrics: KafkaMetrics = KafkaMetrics(),
                onEvent: (@Sendable (KafkaSourceEvent) -> Void)? = nil) {
        self.configuration = configuration
        self.processor = processor
        self.logger = logger
        self.metrics = metrics
        self.kafkaMetrics = kafkaMetrics
        self.onEvent = onEvent
    }

    public func run() async throws {
        try configuration.validate()
        let producer = try RDKafkaProducer(properties: configuration.producerProperties,
                                           logger: logger.with("kafka.client", "producer"))
        let core = SourceCore(configuration: configuration, processor: processor, producer: producer,
                              logger: logger, metrics: metrics, kafkaMetrics: kafkaMetrics, onEvent: onEvent)
        let consumer: RDKafkaConsumer
        do {
            consumer = try RDKafkaConsumer(properties: configuration.consumerProperties,
                                           logger: logger.with("kafka.client", "consumer"),
                                           rebalance: { [core] event in core.rebalanced(event) })
            core.consumer = consumer
            producer.onFatalError { [core] reason in core.fail(reason) }
            consumer.onFatalError { [core] reason in core.fail(reason) }
            try consumer.subscribe([configuration.inputTopic])
        } catch {
            await producer.close(flushTimeoutMs: 1_000)
            throw error
        }
        logger.info("kafka source started", metadata: [
            "bootstrap": "\(configuration.bootstrapServers)", "topic": "\(configuration.inputTopic)",
            "group": "\(configuration.groupID)", "max_in_flight": "\(configuration.maxInFlight)",
        ])
        let pollThread = PollThread(name: "dreamsr.kafka.consumer-poll") { [core] in core.pollOnce() }
        pollThread.start()

        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await core.waitForStopRequest()
            } onGracefulShutdown: {
                core.requestStop()
            }
        } onCancel: {
            core.requestStop()
        }

        // 1. Fetching is stopped (partitions paused, nothing new dispatched). 2. Drain or abandon in-flight jobs.
        logger.info("kafka source stopping: draining in-flight jobs", metadata: ["in_flight": "\(core.inFlight)"])
        let drained = await core.drain(timeout: configuration.drainTimeout)
        if !drained {
            logger.warning("drain timeout: abandoning in-flight jobs; their offsets are not committed")
        }
        core.close()
        await pollThread.stop()
        // 3. Final commit of stored offsets (finished jobs only), flush the producer, close and destroy.
        if let error = await BlockingQueue.run({ consumer.commitStored() }) {
            logger.warning("final commit failed", metadata: ["error": "\(error)"])
        }
        await producer.close(flushTimeoutMs: 10_000)
        await BlockingQueue.run { consumer.closeAndDestroy() }
        core.consumer = nil  // breaks the core <-> rebalance-callback cycle
        logger.info("kafka source stopped")
        onEvent?(.stopped)
        if let reason = core.fatalReason {
            throw KafkaConnectorError(.client, "librdkafka fatal error: \(reason)")
        }
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}

/// The source's shared state and job logic. State changes happen under one lock; librdkafka consumer calls happen on
/// the poll thread, except `storeOffset`, which is made under the lock so it can never race a revoke.
final class SourceCore: @unchecked Sendable {
    struct Pending {
        var message: ConsumedMessage
        var generation: UInt64
        /// Bytes of the message value (what the buffer's byte limit counts).
        var bytes: Int { message.value?.count ?? 0 }
    }

    struct State {
        /// Owned partitions and the generation of their current assignment.
        var owned: [TopicPartition: UInt64] = [:]
        var nextGeneration: UInt64 = 1
        var trackers: [TopicPartition: PartitionOffsetTracker] = [:]
        var pending: [Pending] = []
        /// Jobs started and not finished, per partition (a revoke waits for those of its partitions).
        var running: [TopicPartition: Int] = [:]
        /// Bytes of the buffered messages' values.
        var pendingBytes = 0
        var inFlight = 0
        /// Jobs finished per second, for the adaptive buffer.
        var completions = CompletionRate()
        /// Partitions we paused (librdkafka cannot report pause state).
        var paused: Set<TopicPartition> = []
        /// Freshly assigned partitions whose pause state must be set explicitly.
        var unsynced: Set<TopicPartition> = []
        var stopping = false
        var closed = false
        var stopWaiter: CheckedContinuation<Void, Never>?
        var drainWaiter: CheckedContinuation<Bool, Never>?
        var jobs: [UInt64: Task<Void, Never>] = [:]
        var nextJob: UInt64 = 1
        var fatalReason: String?
        /// When the consumer lag was last asked of the broker; nil: never.
        var lagRefreshed: ContinuousClock.Instant?
        /// The paused-partition count last reported to the gauge.
        var reportedPaused = -1
    }

    let configuration: KafkaConnectorConfiguration
    let processor: any JobProcessor
    let producer: RDKafkaProducer
    let logger: Logger
    let onEvent: (@Sendable (KafkaSourceEvent) -> Void)?
    let metrics: SourceMetrics
    let kafkaMetrics: KafkaMetrics
    let fetcher: HTTPSourceFetcher
    /// The object storage client (nil: none configured), or why it cannot be made (no credentials).
    let objectStore: Result<S3Client, ObjectStorageError>?
    /// Uploads to presigned URLs (job-supplied: the SSRF rules of http sources apply).
    let presigned: PresignedUpload
    let state = Locked(State())
    /// What the dead-letter topic accepts (bytes of one message), learned from refusals; starts at the producer's
    /// `message.max.bytes`.
    let deadLetterLimit: Locked<Int>
    /// Set once before the poll thread starts.
    nonisolated(unsafe) var consumer: RDKafkaConsumer!

    init(configuration: KafkaConnectorConfiguration, processor: any JobProcessor, producer: RDKafkaProducer,
         logger: Logger, metrics: SourceMetrics = SourceMetrics(source: "kafka"),
         kafkaMetrics: KafkaMetrics = KafkaMetrics(), onEvent: (@Sendable (KafkaSourceEvent) -> Void)?) {
        self.configuration = configuration
        self.processor = processor
        self.producer = producer
        self.logger = logger
        self.metrics = metrics
        self.kafkaMetrics = kafkaMetrics
        self.deadLetterLimit = Locked(configuration.deadLetterMaxBytes)
        self.onEvent = onEvent
        self.fetcher = HTTPSourceFetcher(rules: configuration.http, directory: configuration.downloadDirectory)
        if let storage = configuration.objectStorage {
            do {
                self.objectStore = .success(try S3Client(configuration: storage,
                                                         logger: logger.with("component", "object-storage")))
            } catch {
                self.objectStore = .failure(error)
            }
        } else {
            self.objectStore = nil
        }
        let rules = configuration.http
        let addressRule: (@Sendable ([UInt8]) -> String?)? = rules.allowPrivateAddresses ? nil : Self.presignedAddressRule
        self.presigned = PresignedUpload(policy: configuration.objectStorage?.policy ?? TransferPolicy(),
                                         allowedSchemes: rules.allowedSchemes, addressRule: addressRule,
                                         logger: logger.with("component", "presigned-upload"))
    }

    /// The SSRF rule of http sources, for job-supplied upload URLs: why `address` is refused, or nil.
    @Sendable static func presignedAddressRule(_ address: [UInt8]) -> String? {
        guard HTTPSourceFetcher.isForbidden(address) else { return nil }
        let shown = address.isEmpty ? "a non-IP address" : HTTPSourceFetcher.format(address)
        return "the URL's host resolves to \(shown), a loopback/link-local/private address (kafka.http.allow_private)"
    }

    /// The S3 client, or the reason there is none, as an error for the job.
    private func objectStoreClient(_ code: KafkaConnectorError.Code) throws(KafkaConnectorError) -> S3Client {
        switch objectStore {
        case .success(let client): return client
        case .failure(let error): throw KafkaConnectorError(code, "object storage is not usable: \(error.message)")
        case nil:
            throw KafkaConnectorError(code, "s3:// sources and outputs need object storage configured "
                                      + "(sources.kafka.object_storage or the AWS_* environment variables)")
        }
    }

    /// An object-storage failure as the connector reports it. Never retriable here: the client already retried
    /// what could be retried.
    static func connectorError(_ error: ObjectStorageError, _ code: KafkaConnectorError.Code) -> KafkaConnectorError {
        let mapped: KafkaConnectorError.Code = switch error.kind {
        case .forbidden: .forbiddenSource
        case .limitExceeded: .limitExceeded
        case .timeout: .timeout
        default: code
        }
        return KafkaConnectorError(mapped, error.description)
    }

    /// Fetches an `s3://` source into a temporary file the caller deletes.
    private func downloadObject(_ uri: String, id: JobID) async throws(KafkaConnectorError) -> String {
        let client = try objectStoreClient(.download)
        let location: S3Location
        do { location = try S3Location.parse(uri) } catch { throw KafkaConnectorError(.invalidMessage, error.message) }
        let directory = configuration.downloadDirectory ?? FileManager.default.temporaryDirectory.path
        let target = (directory as NSString).appendingPathComponent(".dreamsr-download-\(id.rawValue)-\(UUID().uuidString)")
        do {
            _ = try await client.download(location, to: target)
            return target
        } catch {
            try? FileManager.default.removeItem(atPath: target)
            throw Self.connectorError(error, .download)
        }
    }

    /// Uploads the pipeline's local output to where the message asked.
    private func uploadOutput(_ path: String, to output: InputMessage.RemoteOutput,
                              format: String) async throws(KafkaConnectorError) {
        do {
            switch output {
            case .s3(let location):
                let client = try objectStoreClient(.upload)
                _ = try await client.upload(file: path, to: location, contentType: Self.contentType(format))
            case .url(let url, let method, let headers):
                _ = try await presigned.upload(file: path, to: url, method: method,
                                               headers: headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            }
        } catch let error as KafkaConnectorError {
            throw error
        } catch let error as ObjectStorageError {
            throw Self.connectorError(error, .upload)
        } catch {
            throw KafkaConnectorError(.upload, "\(error)")
        }
    }

    static func contentType(_ format: String) -> String { S3Client.contentType(imageFormat: format) }

    var inFlight: Int { state.withLock { $0.inFlight } }

    // MARK: Poll thread

    func pollOnce() {
        syncPauseState()
        switch consumer.poll(timeoutMs: 100) {
        case .message(let message):
            kafkaMetrics.consumed(topic: message.topic)
            accept(message)
        case .error(let error): logger.warning("consumer error", metadata: ["error": "\(error)"])
        case .nothing: break
        }
        reportPaused()
        refreshLagIfDue()
    }

    private func reportPaused() {
        let changed = state.withLock { s -> Int? in
            guard s.paused.count != s.reportedPaused else { return nil }
            s.reportedPaused = s.paused.count
            return s.paused.count
        }
        if let changed { kafkaMetrics.paused(changed) }
    }

    /// Every `lagInterval`: lag = high watermark (asked of the broker) - the offset we would commit next: the
    /// tracker's; before any message of this assignment arrived, the group's committed offset, or where
    /// `auto_offset_reset` starts when nothing is committed (low watermark for earliest, high for latest).
    private func refreshLagIfDue() {
        let now = ContinuousClock.now
        let due = state.withLock { s -> [(TopicPartition, Int64?)]? in
            if let last = s.lagRefreshed, now - last < configuration.lagInterval { return nil }
            s.lagRefreshed = now
            return s.owned.keys.map { ($0, s.trackers[$0]?.committable) }
        }
        guard let due else { return }
        for (tp, next) in due {
            guard let (low, high) = consumer.watermarks(tp, timeoutMs: 1_000) else { continue }
            let position = next ?? consumer.committedOffset(tp, timeoutMs: 1_000)
                ?? (configuration.autoOffsetReset == "latest" ? high : low)
            // Still ours? A revoke during the queries removed the series; do not bring it back.
            let stillOwned = state.withLock { $0.owned[tp] != nil }
            if stillOwned { kafkaMetrics.lag(tp, max(0, high - position)) }
        }
    }

    /// Pause every owned partition when the local buffer is full (all `maxInFlight` slots busy and `maxBuffered`
    /// messages waiting) or we are stopping; resume when the buffer is half empty.
    private func syncPauseState() {
        let byteLimit = configuration.maxBufferedBytes
        let (toPause, toResume) = state.withLock { s -> ([TopicPartition], [TopicPartition]) in
            let limit = configuration.bufferLimit(jobsPerSecond: s.completions.rate(now: .now))
            let wantPaused = s.stopping || s.pending.count >= limit || s.pendingBytes >= byteLimit
            let wantResumed = !s.stopping && s.pending.count <= limit / 2 && s.pendingBytes <= byteLimit / 2
            var pause: [TopicPartition] = []
            var resume: [TopicPartition] = []
            for tp in s.owned.keys {
                let isPaused = s.paused.contains(tp)
                let unsynced = s.unsynced.contains(tp)
                if wantPaused && (!isPaused || unsynced) {
                    pause.append(tp)
                    s.paused.insert(tp)
                } else if wantResumed && isPaused {
                    resume.append(tp)
                    s.paused.remove(tp)
                }
                // A fresh assignment starts unpaused (paused partitions are resumed before they are revoked);
                // resuming it again would make librdkafka refetch from the committed offset (duplicates).
            }
            s.unsynced.removeAll()
            return (pause.sorted { $0.partition < $1.partition }, resume.sorted { $0.partition < $1.partition })
        }
        if !toPause.isEmpty {
            consumer.pause(toPause)
            logger.debug("paused partitions", metadata: ["partitions": "\(toPause)"])
            onEvent?(.paused(toPause))
        }
        if !toResume.isEmpty {
            consumer.resume(toResume)
            logger.debug("resumed partitions", metadata: ["partitions": "\(toResume)"])
            onEvent?(.resumed(toResume))
        }
    }

    private func accept(_ message: ConsumedMessage) {
        let tp = message.topicPartition
        state.withLock { s in
            guard let generation = s.owned[tp] else {
                logger.debug("dropping message of a partition not owned", metadata: ["partition": "\(tp)"])
                return
            }
            // Tracked even while stopping: an undispatched message blocks storing past it.
            s.trackers[tp, default: PartitionOffsetTracker()].begin(message.offset)
            guard !s.stopping else { return }
            let waiting = Pending(message: message, generation: generation)
            s.pending.append(waiting)
            s.pendingBytes += waiting.bytes
            dispatchLocked(&s)
        }
    }

    /// Starts jobs from the local buffer while there is capacity. Called under the lock.
    private func dispatchLocked(_ s: inout State) {
        while !s.stopping, s.inFlight < configuration.maxInFlight, !s.pending.isEmpty {
            let next = s.pending.removeFirst()
            s.pendingBytes -= next.bytes
            s.inFlight += 1
            s.running[next.message.topicPartition, default: 0] += 1
            let key = s.nextJob
            s.nextJob += 1
            onEvent?(.jobStarted(next.message.topicPartition, offset: next.message.offset, inFlight: s.inFlight))
            s.jobs[key] = Task { [self] in
                let finished = await self.runJob(next.message, generation: next.generation)
                self.jobFinished(key: key, next, finished: finished)
            }
        }
    }

    private func jobFinished(key: UInt64, _ job: Pending, finished: Bool) {
        let tp = job.message.topicPartition
        state.withLock { s in
            s.jobs.removeValue(forKey: key)
            s.inFlight -= 1
            s.running[tp, default: 1] -= 1
            if s.running[tp] == 0 { s.running.removeValue(forKey: tp) }
            s.completions.record(now: .now)
            if finished, !s.closed, s.owned[tp] == job.generation,
               let offset = s.trackers[tp]?.finish(job.message.offset) {
                do {
                    try consumer.storeOffset(tp, offset)
                    onEvent?(.offsetStored(tp, offset: offset))
                } catch {
                    logger.warning("offset store refused", metadata: ["partition": "\(tp)", "error": "\(error)"])
                }
            }
            dispatchLocked(&s)
            if s.stopping && s.inFlight == 0, let waiter = s.drainWaiter {
                s.drainWaiter = nil
                waiter.resume(returning: true)
            }
        }
    }

    func rebalanced(_ event: RebalanceEvent) {
        switch event {
        case .assigned(let partitions):
            state.withLock { s in
                for tp in partitions {
                    s.owned[tp] = s.nextGeneration
                    s.nextGeneration += 1
                    s.trackers[tp] = PartitionOffsetTracker()
                    s.paused.remove(tp)
                    s.unsynced.insert(tp)
                }
            }
            kafkaMetrics.rebalanced(assigned: true)
            // Fresh partitions: report their lag at the next poll.
            state.withLock { $0.lagRefreshed = nil }
            logger.info("partitions assigned", metadata: ["partitions": "\(partitions)"])
            onEvent?(.assigned(partitions))
        case .revoked(let partitions):
            let revoked = Set(partitions)
            finishRunningJobs(of: revoked)
            let wasPaused = state.withLock { s -> [TopicPartition] in
                let wasPaused = partitions.filter { s.paused.contains($0) }
                for tp in partitions {
                    s.owned.removeValue(forKey: tp)
                    s.trackers.removeValue(forKey: tp)
                    s.paused.remove(tp)
                    s.unsynced.remove(tp)
                }
                s.pending.removeAll { revoked.contains($0.message.topicPartition) }
                s.pendingBytes = s.pending.reduce(0) { $0 + $1.bytes }
                return wasPaused
            }
            // Clear librdkafka's pause flag so a later re-assignment starts fetching.
            consumer.resume(wasPaused)
            // Commit what finished jobs stored, while we still own the partitions.
            if let error = consumer.commitStored() {
                logger.warning("commit on revoke failed", metadata: ["error": "\(error)"])
            }
            kafkaMetrics.rebalanced(assigned: false)
            for tp in partitions { kafkaMetrics.removeLag(tp) }
            logger.info("partitions revoked", metadata: ["partitions": "\(partitions)"])
            onEvent?(.revoked(partitions))
        }
    }

    /// Before giving partitions up: drops their buffered messages (never started) and waits, up to
    /// `revokeWait`, for their running jobs to finish and store their offsets, so the commit that follows covers
    /// them and the next owner does not run them again (a graceful rebalance redelivers nothing). Jobs still running
    /// after that are left to be redelivered, as before. Runs on the poll thread (inside the rebalance callback).
    private func finishRunningJobs(of revoked: Set<TopicPartition>) {
        let busy = state.withLock { s -> Int in
            s.pending.removeAll { revoked.contains($0.message.topicPartition) }
            s.pendingBytes = s.pending.reduce(0) { $0 + $1.bytes }
            return s.closed ? 0 : revoked.reduce(0) { $0 + (s.running[$1] ?? 0) }
        }
        guard busy > 0 else { return }
        logger.info("partitions being revoked: waiting for their running jobs", metadata: [
            "partitions": "\(revoked.sorted { $0.partition < $1.partition })", "running": "\(busy)"])
        let deadline = ContinuousClock.now + configuration.revokeWait
        while ContinuousClock.now < deadline {
            let left = state.withLock { s in s.closed ? 0 : revoked.reduce(0) { $0 + (s.running[$1] ?? 0) } }
            if left == 0 { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
        logger.warning("revoke wait over: jobs still running are left for redelivery", metadata: [
            "wait_seconds": "\(configuration.revokeWait.seconds)"])
    }

    func isOwned(_ tp: TopicPartition, generation: UInt64) -> Bool {
        state.withLock { !$0.closed && $0.owned[tp] == generation }
    }

    // MARK: Lifecycle

    func waitForStopRequest() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { s -> Bool in
                if s.stopping { return true }
                s.stopWaiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// A fatal client error: stop like a graceful shutdown, then `run()` throws.
    func fail(_ reason: String) {
        state.withLock { if $0.fatalReason == nil { $0.fatalReason = reason } }
        requestStop()
    }

    var fatalReason: String? { state.withLock { $0.fatalReason } }

    func requestStop() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.stopping = true
            defer { s.stopWaiter = nil }
            return s.stopWaiter
        }
        waiter?.resume()
    }

    /// Waits for in-flight jobs; after `timeout` cancels them and returns false.
    func drain(timeout: Duration) async -> Bool {
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
                defer { s.drainWaiter = nil }
                return s.drainWaiter
            }
            waiter?.resume(returning: false)
        }
        defer { timer.cancel() }
        let drained = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let done = state.withLock { s -> Bool in
                if s.inFlight == 0 { return true }
                s.drainWaiter = continuation
                return false
            }
            if done { continuation.resume(returning: true) }
        }
        if !drained {
            let jobs = state.withLock { Array($0.jobs.values) }
            for job in jobs { job.cancel() }
        }
        return drained
    }

    /// After this no offset is stored any more (abandoned jobs may still finish in the background).
    func close() {
        state.withLock { $0.closed = true }
    }

    // MARK: Jobs

    /// Runs one message to its end. Returns true when its offset may be stored: an ok result or a dead letter
    /// was acknowledged by the broker.
    func runJob(_ message: ConsumedMessage, generation: UInt64) async -> Bool {
        let tp = message.topicPartition
        let startedAt = Date()
        let input: InputMessage
        let source: JobSource
        var output: String
        let format: String
        var remote: InputMessage.RemoteOutput?
        var id = InputMessage.jobID(nil, topic: message.topic, partition: message.partition, offset: message.offset)
        do {
            input = try InputMessage.parse(message.value, maxBytes: configuration.maxMessageBytes)
            id = InputMessage.jobID(input.id, topic: message.topic, partition: message.partition,
                                    offset: message.offset)
            source = try InputMessage.jobSource(input.source)
            if let (target, chosen) = try InputMessage.remoteOutput(input, id: id, defaultFormat: configuration.defaultFormat) {
                remote = target
                format = chosen
                output = ""
            } else {
                (output, format) = try InputMessage.outputLocation(
                    input.output, id: id, format: input.format, outputDirectory: configuration.outputDirectory,
                    defaultFormat: configuration.defaultFormat, allowAbsolute: configuration.allowAbsoluteOutputPaths)
            }
        } catch {
            if let readable = InputMessage.lenientID(message.value) { id = JobID(readable) }
            return await deadLetter(message, id: id, stage: "parse", error: error, attempts: 1, startedAt: startedAt)
        }
        // A remote output is written by the pipeline into a private staging folder, then uploaded.
        var staging: String?
        if remote != nil {
            let directory = configuration.downloadDirectory ?? FileManager.default.temporaryDirectory.path
            let folder = (directory as NSString).appendingPathComponent(".dreamsr-upload-\(UUID().uuidString)")
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                return await deadLetter(message, id: id, stage: "output", error: KafkaConnectorError(
                    .output, "cannot create the staging folder \(folder): \(error.localizedDescription)"), attempts: 1,
                    startedAt: startedAt)
            }
            staging = folder
            output = (folder as NSString).appendingPathComponent(OutputFiles.fileName(id: id.rawValue, format: format))
        }
        defer { if let staging { try? FileManager.default.removeItem(atPath: staging) } }
        let origin = ["topic": message.topic, "partition": String(message.partition),
                      "offset": String(message.offset)]
        var attempt = 0
        while true {
            attempt += 1
            guard isOwned(tp, generation: generation), !Task.isCancelled else { return false }
            var localPath: String
            var downloaded: String?
            switch source {
            case .file(let path):
                localPath = path
            case .url(let url):
                do {
                    localPath = try await fetcher.download(url, name: id.rawValue)
                    downloaded = localPath
                } catch {
                    if error.isRetriable && attempt < configuration.retry.maxAttempts {
                        guard await backoff(tp, message.offset, attempt, stage: "download") else { return false }
                        continue
                    }
                    return await deadLetter(message, id: id, stage: "download", error: error, attempts: attempt,
                                        startedAt: startedAt)
                }
            case .s3(let uri):
                do {
                    localPath = try await downloadObject(uri, id: id)
                    downloaded = localPath
                } catch {
                    if Task.isCancelled || !isOwned(tp, generation: generation) { return false }
                    return await deadLetter(message, id: id, stage: "download", error: error, attempts: attempt,
                                            startedAt: startedAt)
                }
            }
            // Failures no retry can fix end here, before the model runs (one dead letter, no retries).
            do {
                try JobPreflight.checkSource(localPath)
            } catch {
                if let downloaded { try? FileManager.default.removeItem(atPath: downloaded) }
                return await deadLetter(message, id: id, stage: "source", error: error, attempts: attempt,
                                        startedAt: startedAt)
            }
            do {
                // Relative outputs stay confined to kafka.output_dir (no symlink on the way is followed).
                try JobPreflight.prepareOutput(output, root: staging ?? configuration.outputDirectory)
            } catch {
                if let downloaded { try? FileManager.default.removeItem(atPath: downloaded) }
                return await deadLetter(message, id: id, stage: "output", error: error, attempts: attempt,
                                        startedAt: startedAt)
            }
            var jobOrigin = origin
            jobOrigin[JobRequest.attemptsLeftOrigin] = String(configuration.retry.maxAttempts - attempt)
            let request = JobRequest(id: id, source: .file(localPath), output: output, prompt: input.prompt,
                                     scale: input.scale, format: format, pipeline: input.pipeline,
                                     origin: jobOrigin)
            var outcome = await processor.process(request)
            if let downloaded { try? FileManager.default.removeItem(atPath: downloaded) }
            if Self.isAbandoned(outcome) {
                // The pipeline stopped before the job ended: leave the message for redelivery (never store it).
                logger.info("job abandoned by the pipeline; left for redelivery", metadata: ["id": "\(id)"])
                return false
            }
            if outcome.status == .ok, let path = outcome.output, !FileManager.default.fileExists(atPath: path) {
                outcome.status = .error
                outcome.errorStage = outcome.errorStage ?? "write"
                outcome.errorMessage = "pipeline reported ok but output '\(path)' does not exist"
                outcome.retriable = true
            }
            // Size and digest of the output as written (read before an upload removes the staged file).
            let writtenFile = outcome.status == .ok ? outcome.output.flatMap(ResultMessage.describeFile) : nil
            if outcome.status == .ok, let remote, let written = outcome.output {
                do {
                    try await uploadOutput(written, to: remote, format: format)
                    try? FileManager.default.removeItem(atPath: written)
                    outcome.output = remote.displayName
                } catch {
                    try? FileManager.default.removeItem(atPath: written)
                    if Task.isCancelled || !isOwned(tp, generation: generation) { return false }
                    outcome.status = .error
                    outcome.output = nil
                    return await deadLetter(message, id: id, stage: "upload", error: error, attempts: attempt,
                                            startedAt: startedAt, outcome: outcome)
                }
            }
            if outcome.status == .ok {
                let result = ResultMessage(outcome: outcome, attempts: attempt, message: message, startedAt: startedAt,
                                           file: writtenFile,
                                           headers: ResultMessage.passThroughHeaders(message,
                                                                                     names: configuration.resultHeaders))
                let published = await publish(topic: configuration.resultsTopic, key: Array(id.rawValue.utf8),
                                              value: result.encoded(), headers: [])
                if published { onEvent?(.resultPublished(tp, offset: message.offset, status: "ok")) }
                return published
            }
            if outcome.retriable && attempt < configuration.retry.maxAttempts {
                logger.info("retriable failure", metadata: ["id": "\(id)", "attempt": "\(attempt)",
                                                            "error": "\(outcome.errorMessage ?? "")"])
                guard await backoff(tp, message.offset, attempt, stage: outcome.errorStage ?? "process") else {
                    return false
                }
                continue
            }
            let error = KafkaConnectorError(.processing, outcome.errorMessage ?? "pipeline error",
                                            isRetriable: outcome.retriable)
            return await deadLetter(message, id: id, stage: outcome.errorStage ?? "process", error: error,
                                    attempts: attempt, startedAt: startedAt, outcome: outcome)
        }
    }

    /// An outcome the pipeline marks as abandoned (it stopped before the job ended): not a failure of the input.
    static func isAbandoned(_ outcome: JobOutcome) -> Bool { outcome.isAbandoned }

    /// Waits before the next attempt. False when the job should end unfinished instead (shutdown, cancellation).
    private func backoff(_ tp: TopicPartition, _ offset: Int64, _ attempt: Int, stage: String) async -> Bool {
        if state.withLock({ $0.stopping }) { return false }
        metrics.retried(stage: stage)
        onEvent?(.retrying(tp, offset: offset, attempt: attempt + 1))
        do {
            try await Task.sleep(for: configuration.retry.delay(afterAttempt: attempt))
            return true
        } catch {
            return false
        }
    }

    /// Publishes the original bytes to the dead-letter topic (plus an error result when configured). A dead letter
    /// always fits: the original value is carried up to what the topic accepts (`DeadLetter.fitting`), smaller on
    /// each "message too large" refusal; if even the smallest form is refused, the failure is recorded in the error
    /// result and the message still counts as finished (its offset advances).
    private func deadLetter(_ message: ConsumedMessage, id: JobID, stage: String, error: any Error, attempts: Int,
                            startedAt: Date, outcome: JobOutcome? = nil) async -> Bool {
        let connectorError = error as? KafkaConnectorError
        var text = connectorError?.message ?? "\(error)"
        let code = connectorError?.code.rawValue ?? "error"
        logger.warning("dead-lettering message", metadata: [
            "id": "\(id)", "partition": "\(message.topicPartition)", "offset": "\(message.offset)",
            "stage": "\(stage)", "error": "\(text)",
        ])
        var headers: [KafkaHeader] = []
        headers.append(KafkaHeader(DeadLetterHeader.error, String(text.prefix(DeadLetter.maxErrorBytes))))
        headers.append(KafkaHeader(DeadLetterHeader.errorCode, code))
        headers.append(KafkaHeader(DeadLetterHeader.stage, stage))
        headers.append(KafkaHeader(DeadLetterHeader.topic, message.topic))
        headers.append(KafkaHeader(DeadLetterHeader.partition, String(message.partition)))
        headers.append(KafkaHeader(DeadLetterHeader.offset, String(message.offset)))
        headers.append(KafkaHeader(DeadLetterHeader.attempts, String(attempts)))
        var letter = DeadLetter(original: message, dreamsrHeaders: headers, limit: deadLetterLimit.withLock { $0 })
        var published = false
        var deliveryAttempt = 0
        while true {
            deliveryAttempt += 1
            do {
                try await producer.send(topic: configuration.deadLetterTopic, key: letter.key, value: letter.value,
                                        headers: letter.headers)
                published = true
                break
            } catch let refusal as KafkaConnectorError where refusal.code == .messageTooLarge {
                // The topic (or the producer) takes less than we thought: remember it, try a smaller letter.
                let size = letter.size
                deadLetterLimit.withLock { $0 = min($0, size - 1) }
                logger.warning("dead letter refused as too large; retrying smaller", metadata: [
                    "id": "\(id)", "bytes": "\(size)", "error": "\(refusal.message)"])
                guard let smaller = letter.smaller() else {
                    text += "; the dead letter could not be published: \(refusal.message) even without the original value"
                    break
                }
                letter = smaller
            } catch let failure as KafkaConnectorError where failure.isRetriable && !Task.isCancelled {
                logger.warning("delivery failed, retrying", metadata: [
                    "topic": "\(configuration.deadLetterTopic)", "error": "\(failure)"])
                do { try await Task.sleep(for: configuration.retry.delay(afterAttempt: deliveryAttempt)) } catch { return false }
            } catch {
                if Task.isCancelled { return false }
                if (error as? KafkaConnectorError)?.code == .closed { return false }
                text += "; the dead letter could not be published: \(error)"
                logger.error("dead letter delivery failed", metadata: [
                    "topic": "\(configuration.deadLetterTopic)", "error": "\(error)"])
                break
            }
        }
        if published {
            metrics.deadLettered(stage: stage)
            onEvent?(.deadLettered(message.topicPartition, offset: message.offset, stage: stage))
        } else {
            metrics.deadLetterFailed(stage: stage)
            logger.error("dead letter not published; recording the failure in the error result and moving on",
                         metadata: ["id": "\(id)", "offset": "\(message.offset)", "error": "\(text)"])
        }
        if configuration.publishErrorResults || !published {
            var failed = outcome ?? JobOutcome(id: id, status: .error)
            failed.status = .error
            failed.errorStage = stage
            failed.errorMessage = text
            var result = ResultMessage(outcome: failed, attempts: attempts, message: message, startedAt: startedAt,
                                       errorCode: code,
                                       headers: ResultMessage.passThroughHeaders(message,
                                                                                 names: configuration.resultHeaders))
            // A failed job has no output: do not name the path it would have had.
            result.output = nil
            result.outputURI = nil
            let sent = await publish(topic: configuration.resultsTopic, key: Array(id.rawValue.utf8),
                                     value: result.encoded(), headers: [])
            // A refused error result is logged by publish(); the message still advances once it was recorded
            // somewhere (or, with no dead letter either, after the log line: nothing more can be done with it).
            if sent { onEvent?(.resultPublished(message.topicPartition, offset: message.offset, status: "error")) }
            if !sent && Task.isCancelled { return false }
        }
        return true
    }

    /// Produces and waits for the delivery report, retrying transient failures with capped backoff until the
    /// job is cancelled or the producer closed.
    private func publish(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader]) async -> Bool {
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await producer.send(topic: topic, key: key, value: value, headers: headers)
                return true
            } catch let error as KafkaConnectorError where error.isRetriable && !Task.isCancelled {
                logger.warning("delivery failed, retrying", metadata: ["topic": "\(topic)", "error": "\(error)",
                                                                      "attempt": "\(attempt)"])
                do { try await Task.sleep(for: configuration.retry.delay(afterAttempt: attempt)) } catch { return false }
            } catch {
                logger.error("delivery failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
                return false
            }
        }
    }
}

/// Jobs finished per second over the last full window of at least one second (0 before the first window ends).
struct CompletionRate {
    private var windowStart: ContinuousClock.Instant?
    private var count = 0
    private var lastRate = 0.0

    mutating func record(now: ContinuousClock.Instant) {
        if windowStart == nil { windowStart = now }
        count += 1
        roll(now)
    }

    mutating func rate(now: ContinuousClock.Instant) -> Double {
        roll(now)
        return lastRate
    }

    private mutating func roll(_ now: ContinuousClock.Instant) {
        guard let start = windowStart else { return }
        let elapsed = now - start
        guard elapsed >= .seconds(1) else { return }
        // A window with no completion at all (idle or slow jobs) brings the rate down at once.
        lastRate = Double(count) / elapsed.seconds
        count = 0
        windowStart = now
    }
}
