import DreamsrApp
import DreamsrTestKit
import Foundation
import ObjectStorage
import Testing
import WatchFolderConnector

/// A watch folder's `output: s3://bucket/prefix/`: the object storage settings come from `sources.kafka.object_storage`
/// (completed from AWS_*) or, without Kafka, from AWS_* alone; a URI that is no prefix or no credentials is refused;
/// `checkWatchOutputs` (serve --check and the start) names the S3 answer.
@Suite(.timeLimit(.minutes(2))) struct WatchObjectStorageConfigTests {
    static let secret = "watch-s3-secret-\(UUID().uuidString.prefix(8))"
    static let env = ["AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": secret,
                      "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"]

    func parse(_ yaml: String, env: [String: String] = env) throws -> DaemonConfig {
        try DaemonConfig.parse(yaml: yaml, file: "test.yaml", baseDirectory: "/tmp", env: env)
    }

    func error(_ yaml: String, env: [String: String] = env) -> ConfigError? {
        do { _ = try parse(yaml, env: env); return nil } catch let e as ConfigError { return e } catch { return nil }
    }

    static func watch(_ output: String) -> String {
        """
        sources:
          watch:
            - dir: /tmp/dreamsr-watch-in
              output: \(output)
        """
    }

    @Test func anS3OutputIsAPrefixWithTheEnvironmentsSettings() throws {
        let c = try parse(Self.watch("s3://media-out/upscaled/"))
        let w = try #require(c.watchFolders.first)
        #expect(w.outputPrefix == S3Location(bucket: "media-out", key: "upscaled/"))
        #expect(w.outputDirectory == "s3://media-out/upscaled/")
        #expect(w.objectStorage?.endpoint?.port == 9000)
        #expect(w.objectStorage?.credentials == S3Credentials(accessKeyID: "ENVKEY", secretAccessKey: Self.secret))
        // The bucket root is a prefix too; a local output stays a folder.
        #expect(try parse(Self.watch("s3://media-out/")).watchFolders.first?.outputPrefix?.key == "")
        #expect(try parse(Self.watch("/tmp/dreamsr-watch-out")).watchFolders.first?.outputPrefix == nil)
    }

    @Test func kafkasObjectStorageSectionIsTheOneUsed() throws {
        let c = try parse("""
            sources:
              watch:
                - {dir: /tmp/dreamsr-watch-in, output: "s3://media-out/w/"}
              kafka:
                bootstrap: 127.0.0.1:1
                topic: images
                output_dir: /tmp/dreamsr-kafka-out
                object_storage: {endpoint: "http://minio.internal:9100", region: eu-1}
            """)
        let w = try #require(c.watchFolders.first)
        #expect(w.objectStorage == c.kafka?.objectStorage)
        #expect(w.objectStorage?.endpoint?.absoluteString == "http://minio.internal:9100" && w.objectStorage?.region == "eu-1")
    }

    @Test func notAPrefixOrNoCredentialsIsRefused() throws {
        let noSlash = try #require(error(Self.watch("s3://media-out/upscaled")))
        #expect(noSlash.key == "sources.watch.0.output")
        #expect(noSlash.problem.contains("end it with '/' (s3://media-out/upscaled/)"))
        let badBucket = try #require(error(Self.watch("s3://x/out/")))
        #expect(badBucket.problem.contains("bucket name 'x' must be 3-63 characters"))
        let noCredentials = try #require(error(Self.watch("s3://media-out/out/"), env: [:]))
        #expect(noCredentials.key == "sources.watch.0.output")
        #expect(noCredentials.problem.contains("no S3 credentials for s3://media-out/out/"))
        // Quick start: the same rules, the environment's settings.
        let quick = try DaemonConfig.quickStart(watch: "/tmp/dreamsr-watch-in", output: "s3://media-out/q/", metricsAddress: nil,
                                                env: Self.env)
        #expect(quick.watchFolders.first?.outputPrefix == S3Location(bucket: "media-out", key: "q/"))
        #expect(throws: ConfigError.self) {
            _ = try DaemonConfig.quickStart(watch: "/tmp/dreamsr-watch-in", output: "s3://media-out/q", metricsAddress: nil,
                                            env: Self.env)
        }
    }

    @Test(.enabled(if: !MotoServer.isUnavailable, "PyPI unreachable: moto[server] cannot be installed"))
    func checkNamesTheS3AnswerWithoutTheSecret() async throws {
        let m = try MotoServer.instance()
        let wrong = "wrong-\(UUID().uuidString.prefix(8))"
        var env = ["AWS_ACCESS_KEY_ID": m.accessKeyID, "AWS_SECRET_ACCESS_KEY": m.secretAccessKey,
                   "AWS_ENDPOINT_URL": m.endpoint.absoluteString]
        try await checkWatchOutputs(try parse(Self.watch("s3://dreamsr-objects/checked/"), env: env))
        env["AWS_SECRET_ACCESS_KEY"] = wrong
        let refused = await #expect(throws: ConfigError.self) {
            try await checkWatchOutputs(try parse(Self.watch("s3://dreamsr-objects/checked/"), env: env))
        }
        #expect(refused?.key == "sources.watch.0.output")
        #expect(refused?.problem.contains("HeadBucket s3://dreamsr-objects: HTTP 403 AccessDenied") == true)
        #expect(refused.map { !"\($0)".contains(wrong) && !"\($0)".contains(m.secretAccessKey) } == true)
    }
}
