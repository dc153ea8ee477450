import DreamsrTestKit
import Foundation
import Jobs
import Logging
import ObjectStorage
import ServiceLifecycle
import Testing
import WatchFolderConnector

/// A watch folder whose `output` is an `s3://` prefix, against moto (signature checking on): outputs uploaded under
/// `<prefix><stem>.<ext>` before the input moves to `done/`, an existing object never replaced, an upload refused
/// (wrong credentials) sending the input to `failed/` with the S3 code, no secret in any log line or error file.
@Suite(.timeLimit(.minutes(2)), .enabled(if: !MotoServer.isUnavailable, "PyPI unreachable: moto[server] cannot be installed"))
struct WatchFolderS3Tests {
    let bucket = "dreamsr-objects"

    func storage(secret: String? = nil) throws -> S3Configuration {
        let m = try MotoServer.instance()
        var c = S3Configuration(endpoint: m.endpoint, region: "us-east-1",
                                credentials: S3Credentials(accessKeyID: m.accessKeyID,
                                                           secretAccessKey: secret ?? m.secretAccessKey))
        c.policy = TransferPolicy(connectTimeout: .seconds(2), idleTimeout: .seconds(5), requestTimeout: .seconds(30),
                                  maxAttempts: 3, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(100))
        return c
    }

    func folder(prefix: S3Location, storage: S3Configuration) throws -> WatchFolderConfig {
        let dir = try ScratchFiles.makeDirectory(prefix: "wf-s3-")
        var c = WatchFolderConfig(directory: dir, outputDirectory: prefix.uri, pollInterval: .milliseconds(50),
                                  stabilityInterval: .milliseconds(60), maxConcurrentJobs: 2, useInotify: false,
                                  retryDelay: .milliseconds(50), maxRetries: 2)
        c.outputPrefix = prefix
        c.objectStorage = storage
        return c
    }

    func prefix() -> S3Location { S3Location(bucket: bucket, key: "watch-\(UUID().uuidString.prefix(8))/") }

    func names(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    func text(_ client: S3Client, _ location: S3Location) async throws -> String {
        let path = NSTemporaryDirectory() + "wf-s3-get-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try await client.download(location, to: path)
        return String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    }

    /// Runs a source over `config` until `count` inputs finished (done/ or failed/), then shuts it down.
    func run(_ config: WatchFolderConfig, logger: Logger = Logger(label: "test"), finished count: Int) async throws {
        let events = AsyncEvents<WatchFolderSource.Event>()
        let source = WatchFolderSource(config: config, processor: RecordingProcessor(), logger: logger) { events.emit($0) }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [source], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await events.waitFor(count: count, timeout: .seconds(60)) { e in
                switch e {
                case .done, .failed: return true
                default: return false
                }
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func outputsAreUploadedUnderThePrefixWithoutReplacingAnObject() async throws {
        let storage = try storage()
        let client = try S3Client(configuration: storage, logger: Logger(label: "test"))
        let prefix = prefix()
        let config = try folder(prefix: prefix, storage: storage)
        defer { try? FileManager.default.removeItem(atPath: config.directory) }
        // An object already stored under the first output's name: kept, the output goes to <stem>-1.png.
        let old = NSTemporaryDirectory() + "wf-s3-old-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: old, contents: Data("old object".utf8))
        defer { try? FileManager.default.removeItem(atPath: old) }
        _ = try await client.upload(file: old, to: prefix.appending("a.png"))
        FileManager.default.createFile(atPath: config.directory + "/a.jpg", contents: Data("input a".utf8))
        FileManager.default.createFile(atPath: config.directory + "/b.webp", contents: Data("input b".utf8))
        try await WatchFolderSource.checkOutputPrefix(config, logger: Logger(label: "test"))

        try await run(config, finished: 2)

        #expect(names(config.doneDirectory) == ["a.jpg", "b.webp"])
        #expect(names(config.failedDirectory).isEmpty)
        #expect(names(config.processingDirectory) == [".outputs"])
        #expect(names(config.stagingDirectory).isEmpty)
        #expect(try await text(client, prefix.appending("a.png")) == "old object")
        #expect(try await text(client, prefix.appending("a-1.png")) == "input a")
        #expect(try await text(client, prefix.appending("b.png")) == "input b")
        #expect(try await client.exists(prefix.appending("b-1.png")) == false)
    }

    @Test func aConditionalPutNeverReplacesAnObjectSingleOrMultipart() async throws {
        var storage = try storage()
        storage.multipartThreshold = 5 << 20
        storage.partSize = 5 << 20
        let client = try S3Client(configuration: storage, logger: Logger(label: "test"))
        let prefix = prefix()
        let small = NSTemporaryDirectory() + "wf-s3-small-\(UUID().uuidString)"
        let large = NSTemporaryDirectory() + "wf-s3-large-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: small, contents: Data("first".utf8))
        FileManager.default.createFile(atPath: large, contents: Data(repeating: 7, count: (5 << 20) + 1000))
        defer { for p in [small, large] { try? FileManager.default.removeItem(atPath: p) } }
        let key = prefix.appending("x.png")
        _ = try await client.upload(file: small, to: key, ifAbsent: true)
        // Single PUT over it: 412, not retried.
        let single = await #expect(throws: ObjectStorageError.self) {
            _ = try await client.upload(file: small, to: key, ifAbsent: true)
        }
        #expect(single?.status == 412 && single?.s3Code == "PreconditionFailed" && single?.attempts == 1)
        // Multipart over it: CompleteMultipartUpload refused, the upload aborted (no parts left).
        let multi = await #expect(throws: ObjectStorageError.self) {
            _ = try await client.upload(file: large, to: key, ifAbsent: true)
        }
        #expect(multi?.status == 412 && multi?.s3Code == "PreconditionFailed")
        #expect(try await client.listMultipartUploads(bucket: bucket).filter { $0.hasPrefix(prefix.key) }.isEmpty)
        #expect(try await text(client, key) == "first")
    }

    @Test func wrongCredentialsSendTheInputToFailedWithTheS3CodeAndNoSecret() async throws {
        let wrongSecret = "wrong-secret-\(UUID().uuidString.prefix(8))"
        let good = try storage()
        let client = try S3Client(configuration: good, logger: Logger(label: "test"))
        let prefix = prefix()
        let config = try folder(prefix: prefix, storage: try storage(secret: wrongSecret))
        defer { try? FileManager.default.removeItem(atPath: config.directory) }
        FileManager.default.createFile(atPath: config.directory + "/c.png", contents: Data("input c".utf8))
        let capture = LogCapture()

        // The start-up check refuses the prefix, naming the S3 answer.
        let check = await #expect(throws: WatchFolderError.self) {
            try await WatchFolderSource.checkOutputPrefix(config, logger: capture.logger("check"))
        }
        #expect(check?.message.contains("output prefix \(prefix.uri) cannot be used: HeadBucket s3://\(bucket): HTTP 403") == true)

        try await run(config, logger: capture.logger("watch"), finished: 1)

        #expect(names(config.doneDirectory).isEmpty)
        #expect(names(config.failedDirectory) == ["c.png", "c.png.error.json"])
        #expect(names(config.stagingDirectory).isEmpty)
        let errorFile = try String(contentsOfFile: config.failedDirectory + "/c.png.error.json", encoding: .utf8)
        let json = try JSONSerialization.jsonObject(with: Data(errorFile.utf8)) as! [String: Any]
        #expect(json["stage"] as? String == "upload")
        let message = json["message"] as? String ?? ""
        #expect(message.contains("s3://\(bucket)/\(prefix.key)c.png: HTTP 403 "), "\(message)")
        #expect(["AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"].contains { message.contains($0 + ":") }, "\(message)")
        #expect(json["retriable"] as? Bool == false)
        // Nothing stored under the prefix; no secret anywhere.
        #expect(try await client.exists(prefix.appending("c.png")) == false)
        let everything = capture.lines + [errorFile, check?.description ?? ""]
        #expect(capture.lines.contains { $0.contains("job failed") })
        for secret in [wrongSecret, good.credentials!.secretAccessKey] {
            #expect(!everything.contains { $0.contains(secret) })
        }
    }

    @Test func theStartUpCheckNamesAMissingBucket() async throws {
        var config = try folder(prefix: S3Location(bucket: "dreamsr-no-such-bucket", key: "out/"), storage: try storage())
        defer { try? FileManager.default.removeItem(atPath: config.directory) }
        let missing = await #expect(throws: WatchFolderError.self) {
            try await WatchFolderSource.checkOutputPrefix(config, logger: Logger(label: "test"))
        }
        #expect(missing?.message == "output prefix s3://dreamsr-no-such-bucket/out/ cannot be used: HeadBucket s3://dreamsr-no-such-bucket: HTTP 404 NoSuchBucket: the bucket does not exist")
        config.objectStorage = nil
        let unset = await #expect(throws: WatchFolderError.self) {
            try await WatchFolderSource.checkOutputPrefix(config, logger: Logger(label: "test"))
        }
        #expect(unset?.message.contains("an s3:// output needs the object storage settings") == true)
    }
}
