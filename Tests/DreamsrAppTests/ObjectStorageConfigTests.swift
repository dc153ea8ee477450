import DreamsrApp
import Foundation
import ObjectStorage
import Testing

/// `sources.kafka.object_storage`: keys, `*_file` secrets, the AWS_* environment as the AWS CLI reads it, and no
/// secret in any error.
@Suite(.timeLimit(.minutes(1))) struct ObjectStorageConfigTests {
    static let secret = "s3-secret-\(UUID().uuidString.prefix(8))"

    func parse(_ yaml: String, env: [String: String] = [:]) throws -> DaemonConfig {
        try DaemonConfig.parse(yaml: yaml, file: "test.yaml", baseDirectory: "/tmp", env: env)
    }

    func error(_ yaml: String, env: [String: String] = [:]) -> ConfigError? {
        do { _ = try parse(yaml, env: env); return nil } catch let e as ConfigError { return e } catch { return nil }
    }

    static func kafka(_ storage: String) -> String {
        """
        sources:
          kafka:
            bootstrap: 127.0.0.1:1
            topic: images
            output_dir: /tmp/out
        \(storage)
        """
    }

    @Test func keysAndSecretFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-s3-conf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("AKIAFILE\n".utf8).write(to: dir.appendingPathComponent("id"))
        try Data("\(Self.secret)\n".utf8).write(to: dir.appendingPathComponent("secret"))
        let c = try parse(Self.kafka("""
                object_storage:
                  endpoint: http://minio.internal:9000
                  region: eu-1
                  addressing: virtual
                  access_key_id_file: ${CREDENTIALS_DIRECTORY}/id
                  secret_access_key_file: ${CREDENTIALS_DIRECTORY}/secret
                  multipart_threshold_bytes: 10485760
                  part_size_bytes: 5242880
                  idle_timeout_seconds: 5
                  retry: {max_attempts: 2, initial_backoff_seconds: 0.1, max_backoff_seconds: 1}
            """), env: ["CREDENTIALS_DIRECTORY": dir.path, "AWS_REGION": "ignored", "AWS_ACCESS_KEY_ID": "ENVKEY",
                       "AWS_SECRET_ACCESS_KEY": "env-secret"])
        let s = try #require(c.kafka?.objectStorage)
        #expect(s.endpoint?.absoluteString == "http://minio.internal:9000" && s.region == "eu-1" && s.addressing == .virtualHost)
        #expect(s.credentials == S3Credentials(accessKeyID: "AKIAFILE", secretAccessKey: Self.secret))
        #expect(s.multipartThreshold == 10 << 20 && s.partSize == 5 << 20)
        #expect(s.policy.idleTimeout == .seconds(5) && s.policy.maxAttempts == 2 && s.policy.maxBackoff == .seconds(1))
    }

    @Test func environmentFillsWhatTheFileLeavesOut() throws {
        let c = try parse(Self.kafka(""), env: ["AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000", "AWS_REGION": "us-west-2",
                                                "AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": Self.secret])
        let s = try #require(c.kafka?.objectStorage)
        #expect(s.endpoint?.port == 9000 && s.region == "us-west-2" && s.credentials?.accessKeyID == "ENVKEY")
        // DREAMSR_* overrides reach the section too, also when the file has none.
        let overridden = try parse(Self.kafka(""), env: ["DREAMSR_SOURCES_KAFKA_OBJECT_STORAGE_REGION": "ap-south-1",
                                                         "DREAMSR_SOURCES_KAFKA_OBJECT_STORAGE_PART_SIZE_BYTES": "6291456"])
        #expect(overridden.kafka?.objectStorage?.region == "ap-south-1")
        #expect(overridden.kafka?.objectStorage?.partSize == 6 << 20)
        // Nothing at all: the daemon starts; s3:// jobs are dead-lettered for want of credentials.
        #expect(try parse(Self.kafka(""), env: [:]).kafka?.objectStorage?.credentials == nil)
        // Quick start reads the same variables.
        let quick = try DaemonConfig.quickStartKafka(bootstrap: "127.0.0.1:1", topic: "t", output: "/tmp/out", watch: nil,
                                                     metricsAddress: nil,
                                                     env: ["AWS_ACCESS_KEY_ID": "Q", "AWS_SECRET_ACCESS_KEY": Self.secret])
        #expect(quick.kafka?.objectStorage?.credentials?.accessKeyID == "Q")
    }

    @Test func refusalsNameTheKeyAndNeverTheSecret() throws {
        let partial = try #require(error(Self.kafka(""), env: ["AWS_SECRET_ACCESS_KEY": Self.secret]))
        #expect(partial.problem.contains("AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID"))
        let small = try #require(error(Self.kafka("    object_storage: {part_size_bytes: 1048576}")))
        #expect(small.key == "sources.kafka.object_storage.part_size_bytes")
        let unknown = try #require(error(Self.kafka("    object_storage: {secret_access_key: x}")))
        #expect(unknown.problem.contains("secret_access_key"))
        let half = try #require(error(Self.kafka("    object_storage: {access_key_id: AKIA}")))
        #expect(half.key == "sources.kafka.object_storage.secret_access_key_file")
        for e in [partial, small, unknown, half] { #expect(!e.description.contains(Self.secret)) }
    }
}
