import DreamsrApp
import Foundation
import Testing

/// Issue 15 item 6 (config): `log_format`, `metrics.duration_buckets_seconds`, `${ENV}` interpolation, `*_file`
/// secrets and Kafka client properties from the environment — and that no error or summary shows a secret.
@Suite(.timeLimit(.minutes(1))) struct ConfigSecretsTests {
    static let secret = "s3cr3t-Pa55w0rd-\(UUID().uuidString.prefix(8))"

    func parse(_ yaml: String, env: [String: String] = [:], base: String = "/tmp") throws -> DaemonConfig {
        try DaemonConfig.parse(yaml: yaml, file: "test.yaml", baseDirectory: base, env: env)
    }

    func error(_ yaml: String, env: [String: String] = [:], base: String = "/tmp") -> ConfigError? {
        do { _ = try parse(yaml, env: env, base: base); return nil } catch let e as ConfigError { return e } catch { return nil }
    }

    static let kafka = """
    sources:
      kafka:
        bootstrap: 127.0.0.1:1
        topic: images
        output_dir: /tmp/out

    """

    @Test func logFormatFromTheFileAndTheEnvironment() throws {
        #expect(try parse("{}").logFormat == .text)
        #expect(try parse("log_format: json").logFormat == .json)
        #expect(try parse("log_format: text", env: ["DREAMSR_LOG_FORMAT": "json"]).logFormat == .json)
        let e = try #require(error("log_format: xml"))
        #expect(e.key == "log_format" && e.problem.contains("text, json"))
        #expect(error("{}", env: ["DREAMSR_LOG_FORMAT": "yaml"])?.environmentVariable == "DREAMSR_LOG_FORMAT")
    }

    @Test func durationBucketsAreValidatedAscendingAndPositive() throws {
        #expect(try parse("{}").durationBuckets == DaemonMetrics.defaultDurationBuckets)
        #expect(try parse("metrics: {duration_buckets_seconds: [0.5, 60, 3600, 86400]}").durationBuckets == [0.5, 60, 3600, 86400])
        #expect(try parse("{}", env: ["DREAMSR_METRICS_DURATION_BUCKETS_SECONDS": "1, 10,100"]).durationBuckets == [1, 10, 100])
        #expect(error("metrics: {duration_buckets_seconds: [1, 10, 5]}")?.problem.contains("ascending") == true)
        #expect(error("metrics: {duration_buckets_seconds: [1, 1]}")?.problem.contains("ascending") == true)
        #expect(error("metrics: {duration_buckets_seconds: [0, 1]}")?.problem.contains("> 0") == true)
        #expect(error("metrics: {duration_buckets_seconds: [-1, 1]}")?.problem.contains("> 0") == true)
        #expect(error("metrics: {duration_buckets_seconds: [1, ten]}")?.problem.contains("'ten'") == true)
        #expect(error("metrics: {duration_buckets_seconds: []}")?.problem.contains("at least one") == true)
        #expect(error("metrics: {duration_buckets_seconds: 5}")?.key == "metrics.duration_buckets_seconds")
    }

    @Test func environmentInterpolationOnlyTheBracedFormWithDollarEscape() throws {
        let env = ["DATA": "/srv/data", "DREAMSR_BASE": "/opt/m"]
        let c = try parse("models_dir: ${DREAMSR_BASE}/models$$x/$HOME\nsources: {watch: [{dir: '${DATA}/in', output: /o}]}", env: env)
        #expect(c.modelsDirectory == "/opt/m/models$x/$HOME")  // ${DREAMSR_*} is read, so not an unknown variable
        #expect(c.watchFolders.first?.directory == "/srv/data/in")
        let unset = try #require(error("models_dir: ${NOPE_NOT_SET}/m"))
        #expect(unset.key == "models_dir" && unset.problem.contains("NOPE_NOT_SET is not set"))
        #expect(error("models_dir: ${bad-name}")?.problem.contains("not a variable reference") == true)
        #expect(error("models_dir: ${OPEN")?.problem.contains("unterminated") == true)
    }

    @Test func kafkaPropertiesFromFileSecretFileEnvironmentAndInterpolation() throws {
        let dir = try tempDir()
        try "\(Self.secret)\n".write(toFile: dir + "/password", atomically: true, encoding: .utf8)
        try "# credentials\nsasl.username = dreamsr \n\nssl.ca.location=/etc/ssl/ca.pem\r\n".write(toFile: dir + "/kafka.properties", atomically: true, encoding: .utf8)
        let yaml = Self.kafka + """
            client_properties:
              security.protocol: SASL_SSL
              sasl.mechanism: ${MECH}
              sasl.password_file: ${CREDENTIALS_DIRECTORY}/password
            client_properties_file: ${CREDENTIALS_DIRECTORY}/kafka.properties
        """
        let c = try parse(yaml, env: ["CREDENTIALS_DIRECTORY": dir, "MECH": "PLAIN",
                                      "DREAMSR_KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG": "x=y"])
        let p = try #require(c.kafka?.clientProperties)
        #expect(p == ["security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.password": Self.secret,
                      "sasl.username": "dreamsr", "ssl.ca.location": "/etc/ssl/ca.pem", "sasl.oauthbearer.config": "x=y"])
        // The environment overrides the file (as for every key).
        let overridden = try parse(yaml, env: ["CREDENTIALS_DIRECTORY": dir, "MECH": "PLAIN",
                                               "DREAMSR_KAFKA_PROPERTY_SASL_USERNAME": "other"])
        #expect(overridden.kafka?.clientProperties["sasl.username"] == "other")
        // Without a Kafka source, DREAMSR_KAFKA_PROPERTY_* is read by nothing: refused, naming it.
        let unread = try #require(error("{}", env: ["DREAMSR_KAFKA_PROPERTY_SASL_PASSWORD": Self.secret]))
        #expect(unread.environmentVariable == "DREAMSR_KAFKA_PROPERTY_SASL_PASSWORD")
        #expect(!"\(unread)".contains(Self.secret))
    }

    @Test func kafkaQuickStartTakesClientPropertiesFromTheEnvironment() throws {
        let c = try DaemonConfig.quickStartKafka(bootstrap: "127.0.0.1:1", topic: "t", output: "/tmp/o", watch: nil,
                                                 metricsAddress: nil,
                                                 env: ["DREAMSR_KAFKA_PROPERTY_SASL_PASSWORD": Self.secret,
                                                       "DREAMSR_KAFKA_PROPERTY_SECURITY_PROTOCOL": "SASL_SSL"])
        #expect(c.kafka?.clientProperties == ["sasl.password": Self.secret, "security.protocol": "SASL_SSL"])
    }

    @Test func secretErrorsNameTheKeyAndFileButNeverTheValue() throws {
        let dir = try tempDir()
        try "sasl.username=u\n\(Self.secret)\n".write(toFile: dir + "/bad.properties", atomically: true, encoding: .utf8)
        try "\(Self.secret)\n".write(toFile: dir + "/password", atomically: true, encoding: .utf8)
        var errors: [ConfigError] = []
        // A line without '=' (it may be the secret itself): its number, not its text.
        errors.append(try #require(error(Self.kafka + "    client_properties_file: \(dir)/bad.properties")))
        #expect(errors.last?.problem.contains("line 2") == true)
        // Set twice (file and *_file): the property's name and both places, no value.
        errors.append(try #require(error(Self.kafka + """
            client_properties: {sasl.password: \(Self.secret), sasl.password_file: \(dir)/password}
        """)))
        #expect(errors.last?.problem.contains("'sasl.password' is set twice") == true)
        errors.append(try #require(error(Self.kafka + "    client_properties: {sasl.password_file: \(dir)/missing}")))
        #expect(errors.last?.problem.contains("cannot read \(dir)/missing") == true)
        // librdkafka refuses a value: `--check` says which property, never the value (not even librdkafka's echo).
        let models = try tempDir()
        try FileManager.default.createDirectory(atPath: models + "/realesrgan-x4plus", withIntermediateDirectories: true)
        let config = try parse("models_dir: \(models)\n" + Self.kafka + "    client_properties: {security.protocol: \(Self.secret)}")
        do {
            _ = try checkServeConfig(config, factory: FakeFactory())
            Issue.record("an invalid security.protocol passed --check")
        } catch let e as ConfigError {
            #expect(e.problem.contains("security.protocol"))
            errors.append(e)
        }
        for e in errors { #expect(!"\(e)".contains(Self.secret), "\(e)") }
    }

    @Test func checkSummaryListsPropertyNamesOnly() throws {
        let dir = try tempDir()
        try FileManager.default.createDirectory(atPath: dir + "/realesrgan-x4plus", withIntermediateDirectories: true)
        try Self.secret.write(toFile: dir + "/password", atomically: true, encoding: .utf8)
        let config = try parse("models_dir: \(dir)\nlog_format: json\nmetrics: {duration_buckets_seconds: [1, 1200, 14400]}\n" + Self.kafka + """
            client_properties: {security.protocol: SASL_PLAINTEXT, sasl.mechanism: PLAIN, sasl.username: u,
                                sasl.password_file: \(dir)/password}
        """)
        let summary = try checkServeConfig(config, factory: FakeFactory())
        #expect(summary.contains("kafka client properties: sasl.mechanism, sasl.password, sasl.username, security.protocol"))
        #expect(summary.contains("log_format json"))
        #expect(summary.contains("duration buckets (s) 1, 1200, 14400"))
        #expect(!summary.contains(Self.secret))
    }
}
