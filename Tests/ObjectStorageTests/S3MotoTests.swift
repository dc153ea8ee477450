import Crypto
import DreamsrTestKit
import Foundation
import Logging
import Testing
@testable import ObjectStorage

func motoInstance() throws -> MotoServer.Instance { try MotoServer.instance() }

/// A client of moto (or of a proxy in front of it) with short timeouts and backoffs.
func motoClient(endpoint: URL? = nil, secret: String? = nil, logger: Logger = Logger(label: "s3-test"),
                configure: (inout S3Configuration) -> Void = { _ in }) throws -> S3Client {
    let m = try motoInstance()
    var c = S3Configuration(endpoint: endpoint ?? m.endpoint, region: "us-east-1",
                            credentials: S3Credentials(accessKeyID: m.accessKeyID,
                                                       secretAccessKey: secret ?? m.secretAccessKey))
    c.policy = TransferPolicy(connectTimeout: .seconds(2), idleTimeout: .seconds(5), requestTimeout: .seconds(60),
                              maxAttempts: 4, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(100))
    configure(&c)
    return try S3Client(configuration: c, logger: logger)
}

func randomFile(bytes: Int, seed: UInt64) throws -> (path: String, sha256: String) {
    var generator = SeededGenerator(seed: seed)
    var data = [UInt8](repeating: 0, count: bytes)
    for i in stride(from: 0, to: bytes, by: 8) {
        let v = generator.next()
        for j in 0..<min(8, bytes - i) { data[i + j] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(j))) }
    }
    let path = ScratchFiles.path(prefix: "dreamsr-s3-")
    try Data(data).write(to: URL(fileURLWithPath: path))
    return (path, SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined())
}

func fileSHA256(_ path: String) throws -> String {
    SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))).map { String(format: "%02x", $0) }.joined()
}

func temporaryPath() -> String {
    ScratchFiles.path(prefix: "dreamsr-s3-get-")
}

@Suite(.timeLimit(.minutes(3)), .enabled(if: !MotoServer.isUnavailable, "PyPI unreachable: moto[server] cannot be installed"))
struct S3MotoTests {
    let bucket = "dreamsr-objects"

    @Test func singlePutAndGetRoundTrip() async throws {
        let client = try motoClient()
        let (path, sha) = try randomFile(bytes: 300_000, seed: 1)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let location = S3Location(bucket: bucket, key: "round trip/a+b.bin")
        let receipt = try await client.upload(file: path, to: location, contentType: "application/octet-stream")
        #expect(receipt.parts == 0 && receipt.bytes == 300_000 && receipt.sha256 == sha)
        let target = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: target) }
        #expect(try await client.download(location, to: target) == 300_000)
        #expect(try fileSHA256(target) == sha)
        // One byte over the download cap: refused (Content-Length), not retried.
        let capped = try motoClient { $0.maxDownloadBytes = 299_999 }
        let tooLarge = await #expect(throws: ObjectStorageError.self) { _ = try await capped.download(location, to: target) }
        #expect(tooLarge?.kind == .limitExceeded && tooLarge?.attempts == 1)
        #expect(tooLarge?.description.contains("the object is larger than 299999 bytes") == true)
    }

    @Test func twentyMegabytesGoThroughMultipartAndLeaveNoUpload() async throws {
        let client = try motoClient { $0.multipartThreshold = 8 << 20; $0.partSize = 5 << 20 }
        let (path, sha) = try randomFile(bytes: 20_000_000, seed: 2)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let location = S3Location(bucket: bucket, key: "multipart/big.bin")
        let receipt = try await client.upload(file: path, to: location)
        #expect(receipt.parts == 4 && receipt.bytes == 20_000_000 && receipt.sha256 == sha)
        let target = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: target) }
        #expect(try await client.download(location, to: target) == 20_000_000)
        #expect(try fileSHA256(target) == sha)
        #expect(try await client.listMultipartUploads(bucket: bucket).filter { $0.hasPrefix("multipart/") }.isEmpty)
    }

    @Test func wrongCredentialsAreRefusedOnceWithTheS3Code() async throws {
        let m = try motoInstance()
        let counter = try FaultInjectingProxy(upstreamPort: m.port) { _, _ in .forward }
        defer { counter.stop() }
        let client = try motoClient(endpoint: counter.endpoint, secret: "not-the-secret")
        let error = await #expect(throws: ObjectStorageError.self) {
            _ = try await client.download(S3Location(bucket: bucket, key: "any.png"), to: temporaryPath())
        }
        #expect(error?.status == 403)
        #expect(error?.s3Code == "SignatureDoesNotMatch")
        #expect(error?.attempts == 1)
        #expect(counter.requests.count == 1, "a 403 is not retried")
        #expect(error?.description.contains("s3://\(bucket)/any.png") == true)
    }

    @Test func missingKeyAndMissingBucketNameTheObjectAndCode() async throws {
        let client = try motoClient()
        let noKey = await #expect(throws: ObjectStorageError.self) {
            _ = try await client.download(S3Location(bucket: bucket, key: "missing/x.png"), to: temporaryPath())
        }
        #expect(noKey?.status == 404 && noKey?.s3Code == "NoSuchKey" && noKey?.attempts == 1)
        #expect(noKey?.description.contains("s3://\(bucket)/missing/x.png") == true)
        let noBucket = await #expect(throws: ObjectStorageError.self) {
            _ = try await client.download(S3Location(bucket: "dreamsr-no-such-bucket", key: "x.png"), to: temporaryPath())
        }
        #expect(noBucket?.status == 404 && noBucket?.s3Code == "NoSuchBucket")
    }

    @Test func twoServiceUnavailableAnswersAreRetried() async throws {
        let m = try motoInstance()
        let proxy = try FaultInjectingProxy.failingFirst(2, status: 503, upstreamPort: m.port)
        defer { proxy.stop() }
        let client = try motoClient(endpoint: proxy.endpoint)
        let (path, sha) = try randomFile(bytes: 10_000, seed: 3)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let location = S3Location(bucket: bucket, key: "retried.bin")
        let receipt = try await client.upload(file: path, to: location)
        #expect(receipt.sha256 == sha)
        #expect(proxy.requests.count == 3 && proxy.requests.allSatisfy { $0.method == "PUT" })
        let target = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: target) }
        _ = try await client.download(location, to: target)
        #expect(try fileSHA256(target) == sha)
    }

    @Test func aServerThatNeverAnswersTimesOutAfterTheRetries() async throws {
        let silent = try FaultInjectingProxy(upstreamPort: nil) { _, _ in .stall }
        defer { silent.stop() }
        let client = try motoClient(endpoint: silent.endpoint) {
            $0.policy.idleTimeout = .seconds(1)
            $0.policy.requestTimeout = .seconds(3)
            $0.policy.maxAttempts = 3
        }
        let start = ContinuousClock.now
        let error = await #expect(throws: ObjectStorageError.self) {
            _ = try await client.download(S3Location(bucket: bucket, key: "never.png"), to: temporaryPath())
        }
        #expect(error?.kind == .timeout && error?.attempts == 3)
        #expect(silent.requests.count == 3)
        #expect(ContinuousClock.now - start < .seconds(15))
    }

    @Test func aFailedPartAbortsTheMultipartUpload() async throws {
        let m = try motoInstance()
        // Part 2 is refused (400, not retried): the upload must be aborted, nothing left in the bucket.
        let proxy = try FaultInjectingProxy(upstreamPort: m.port) { request, _ in
            request.target.contains("partNumber=2")
                ? .respond(status: 400, headers: [:], body: "<Error><Code>InvalidPart</Code><Message>injected</Message></Error>")
                : .forward
        }
        defer { proxy.stop() }
        let client = try motoClient(endpoint: proxy.endpoint) { $0.multipartThreshold = 6 << 20; $0.partSize = 5 << 20 }
        let (path, _) = try randomFile(bytes: 12 << 20, seed: 4)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let error = await #expect(throws: ObjectStorageError.self) {
            _ = try await client.upload(file: path, to: S3Location(bucket: "dreamsr-abort", key: "half.bin"))
        }
        #expect(error?.s3Code == "InvalidPart" && error?.operation == "UploadPart 2")
        #expect(proxy.requests.contains { $0.method == "DELETE" && $0.target.contains("uploadId=") })
        #expect(try await motoClient().listMultipartUploads(bucket: "dreamsr-abort").isEmpty)
        let gone = await #expect(throws: ObjectStorageError.self) {
            _ = try await motoClient().download(S3Location(bucket: "dreamsr-abort", key: "half.bin"), to: temporaryPath())
        }
        #expect(gone?.s3Code == "NoSuchKey")
    }

    @Test func noCredentialInLogsOrErrors() async throws {
        let m = try motoInstance()
        let capture = LogCapture()
        var errors: [String] = []
        // Retries (503 x2), a refusal (wrong secret), a timeout: everything that logs or fails.
        let flaky = try FaultInjectingProxy.failingFirst(2, upstreamPort: m.port)
        defer { flaky.stop() }
        let (path, _) = try randomFile(bytes: 1000, seed: 5)
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try await motoClient(endpoint: flaky.endpoint, logger: capture.logger("s3")).upload(
            file: path, to: S3Location(bucket: bucket, key: "scan.bin"))
        do {
            _ = try await motoClient(secret: "wrong-\(m.secretAccessKey)", logger: capture.logger("s3"))
                .download(S3Location(bucket: bucket, key: "scan.bin"), to: temporaryPath())
        } catch { errors.append("\(error)") }
        let silent = try FaultInjectingProxy(upstreamPort: nil) { _, _ in .stall }
        defer { silent.stop() }
        do {
            _ = try await motoClient(endpoint: silent.endpoint, logger: capture.logger("s3")) {
                $0.policy.idleTimeout = .seconds(1); $0.policy.requestTimeout = .seconds(3); $0.policy.maxAttempts = 2
            }.upload(file: path, to: S3Location(bucket: bucket, key: "scan2.bin"))
        } catch { errors.append("\(error)"); errors.append(String(reflecting: error)) }
        #expect(capture.lines.count >= 3, "the retries were logged")
        #expect(errors.count == 3)
        let signatures = flaky.requests.compactMap { $0.headers["authorization"] }
        #expect(!signatures.isEmpty)
        for text in capture.lines + errors {
            #expect(!text.contains(m.secretAccessKey), "secret in: \(text.prefix(200))")
            #expect(!text.contains(m.accessKeyID), "key id in: \(text.prefix(200))")
            #expect(!text.contains("Signature="), "signature in: \(text.prefix(200))")
        }
    }

    @Test func presignedPutSendsTheJobsMethodAndHeadersUnderTheAddressRules() async throws {
        let sink = try FaultInjectingProxy(upstreamPort: nil) { _, n in
            n == 0 ? .respond(status: 503, headers: [:], body: "")
                   : .respond(status: 200, headers: ["ETag": "\"abc\""], body: "")
        }
        defer { sink.stop() }
        let (path, sha) = try randomFile(bytes: 50_000, seed: 6)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let policy = TransferPolicy(connectTimeout: .seconds(2), idleTimeout: .seconds(2), maxAttempts: 3,
                                    initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(50))
        let capture = LogCapture()
        let url = "\(sink.endpoint.absoluteString)/out/a.png?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=K%2F1"
        let upload = PresignedUpload(policy: policy, addressRule: nil, logger: capture.logger("presigned"))
        let receipt = try await upload.upload(file: path, to: url, method: "PUT",
                                              headers: [("Content-Type", "image/png"), ("x-amz-meta-job", "j1")])
        #expect(receipt.sha256 == sha && receipt.etag == "\"abc\"")
        #expect(sink.requests.count == 2, "503 retried once")
        let sent = try #require(sink.requests.last)
        #expect(sent.method == "PUT" && sent.target.hasPrefix("/out/a.png?X-Amz-Signature=deadbeefcafe"))
        #expect(sent.headers["content-type"] == "image/png" && sent.headers["x-amz-meta-job"] == "j1")
        #expect(SHA256.hash(data: sent.body).map { String(format: "%02x", $0) }.joined() == sha)
        #expect(capture.lines.allSatisfy { !$0.contains("deadbeefcafe") })

        // Under the SSRF rules a loopback URL is refused before any byte is sent.
        let guarded = PresignedUpload(policy: policy, addressRule: { _ in "loopback refused" }, logger: capture.logger("p"))
        let refused = await #expect(throws: ObjectStorageError.self) {
            _ = try await guarded.upload(file: path, to: url)
        }
        #expect(refused?.kind == .forbidden && refused?.attempts == 1)
        #expect(refused?.description.contains("deadbeefcafe") == false)
        #expect(sink.requests.count == 2)
        let badHeader = await #expect(throws: ObjectStorageError.self) {
            _ = try await upload.upload(file: path, to: url, headers: [("Host", "evil")])
        }
        #expect(badHeader?.kind == .forbidden)
        let badScheme = await #expect(throws: ObjectStorageError.self) {
            _ = try await upload.upload(file: path, to: "file:///etc/passwd")
        }
        #expect(badScheme?.kind == .forbidden)
    }
}
