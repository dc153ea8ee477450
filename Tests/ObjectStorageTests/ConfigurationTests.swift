import Foundation
import Testing
@testable import ObjectStorage

/// Endpoint, region, credentials and addressing as the AWS CLI resolves them; `s3://` parsing; redaction.
@Suite(.timeLimit(.minutes(1))) struct ConfigurationTests {
    func temporaryFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dreamsr-aws-\(UUID().uuidString)").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func environmentVariablesAsTheAWSCLIReadsThem() throws {
        let c = try S3Configuration().resolved(environment: [
            "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "secret-env", "AWS_SESSION_TOKEN": "token-env",
            "AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "us-west-2",
            "AWS_ENDPOINT_URL": "http://general:9000", "AWS_ENDPOINT_URL_S3": "http://minio:9000",
        ], regionIsSet: false)
        #expect(c.credentials == S3Credentials(accessKeyID: "AKIAENV", secretAccessKey: "secret-env", sessionToken: "token-env"))
        #expect(c.region == "eu-central-1")
        #expect(c.endpoint?.absoluteString == "http://minio:9000")
        let fallback = try S3Configuration().resolved(environment: ["AWS_DEFAULT_REGION": "us-west-2",
                                                                    "AWS_ENDPOINT_URL": "http://general:9000"],
                                                      regionIsSet: false)
        #expect(fallback.region == "us-west-2")
        #expect(fallback.endpoint?.absoluteString == "http://general:9000")
        #expect(fallback.credentials == nil)
    }

    @Test func configuredValuesWinOverTheEnvironment() throws {
        var base = S3Configuration(endpoint: URL(string: "https://ceph.internal"), region: "ceph",
                                   credentials: S3Credentials(accessKeyID: "FILEKEY", secretAccessKey: "file-secret"))
        base.partSize = 6 << 20
        let c = try base.resolved(environment: ["AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "env",
                                                "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_S3": "http://other"],
                                  regionIsSet: true)
        #expect(c.credentials?.accessKeyID == "FILEKEY")
        #expect(c.region == "ceph")
        #expect(c.endpoint?.host == "ceph.internal")
    }

    @Test func sharedCredentialsFileAndProfile() throws {
        let path = try temporaryFile("""
            # comment
            [default]
            aws_access_key_id = AKIADEFAULT
            aws_secret_access_key = default-secret

            [media]
            aws_access_key_id=AKIAMEDIA
            aws_secret_access_key=media-secret
            aws_session_token = media-token
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let byDefault = try S3Configuration().resolved(environment: ["AWS_SHARED_CREDENTIALS_FILE": path], regionIsSet: false)
        #expect(byDefault.credentials?.accessKeyID == "AKIADEFAULT")
        let media = try S3Configuration().resolved(environment: ["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "media"],
                                                   regionIsSet: false)
        #expect(media.credentials == S3Credentials(accessKeyID: "AKIAMEDIA", secretAccessKey: "media-secret",
                                                   sessionToken: "media-token"))
        // Environment keys win over the file.
        let env = try S3Configuration().resolved(environment: ["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "media",
                                                               "AWS_ACCESS_KEY_ID": "E", "AWS_SECRET_ACCESS_KEY": "S"],
                                                 regionIsSet: false)
        #expect(env.credentials?.accessKeyID == "E")
        // An explicit profile that does not exist is an error naming the profile, not a silent fallback.
        let missing = #expect(throws: ObjectStorageError.self) {
            _ = try S3Configuration().resolved(environment: ["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "nope"],
                                               regionIsSet: false)
        }
        #expect(missing?.description.contains("'nope'") == true)
        #expect(missing?.description.contains("default-secret") == false)
        #expect(missing?.description.contains("media-secret") == false)
        #expect(throws: ObjectStorageError.self) {
            _ = try S3Configuration().resolved(environment: ["AWS_ACCESS_KEY_ID": "only-the-id"], regionIsSet: false)
        }
    }

    @Test func addressingStyles() {
        let aws = S3Configuration(region: "eu-west-1")
        #expect(aws.address(bucket: "media", key: "a b/c.png") == ("https", "media.s3.eu-west-1.amazonaws.com", "/a%20b/c.png"))
        // A dotted bucket name is not covered by the wildcard certificate: path style.
        #expect(aws.address(bucket: "my.media", key: "k") == ("https", "s3.eu-west-1.amazonaws.com", "/my.media/k"))
        let minio = S3Configuration(endpoint: URL(string: "http://127.0.0.1:9000/base/"), region: "us-east-1")
        #expect(minio.address(bucket: "media", key: "x/y.png") == ("http", "127.0.0.1:9000", "/base/media/x/y.png"))
        var virtual = minio
        virtual.addressing = .virtualHost
        #expect(virtual.address(bucket: "media", key: "y") == ("http", "media.127.0.0.1:9000", "/base/y"))
        let https = S3Configuration(endpoint: URL(string: "https://r2.example.com:443"))
        #expect(https.address(bucket: "b-1", key: "").host == "r2.example.com")
    }

    /// The defaults docs/object-storage.md and docs/limits.md state.
    @Test func documentedDefaults() {
        let c = S3Configuration()
        #expect(c.multipartThreshold == 16 << 20 && c.partSize == 8 << 20 && c.maxDownloadBytes == 256 << 20)
        #expect(c.region == "us-east-1" && c.endpoint == nil && c.addressing == nil)
        #expect(c.policy == TransferPolicy(connectTimeout: .seconds(10), idleTimeout: .seconds(30),
                                           requestTimeout: .seconds(900), maxAttempts: 4,
                                           initialBackoff: .milliseconds(200), maxBackoff: .seconds(20)))
        #expect(S3Configuration.minimumPartSize == 5 << 20 && S3Configuration.maximumParts == 10_000)
    }

    @Test func validationNamesTheProblem() {
        var c = S3Configuration()
        c.partSize = 1 << 20
        let small = #expect(throws: ObjectStorageError.self) { try c.validate() }
        #expect(small?.description.contains("5 MiB") == true)
        c = S3Configuration(endpoint: URL(string: "ftp://x"))
        #expect(throws: ObjectStorageError.self) { try c.validate() }
    }

    @Test func s3LocationRules() throws {
        let l = try S3Location.parse("s3://media-in/photos/a.png")
        #expect(l.bucket == "media-in" && l.key == "photos/a.png" && !l.isPrefix)
        #expect(try S3Location.parse("s3://media-in/out/").isPrefix)
        #expect(try S3Location.parse("s3://bucket/" + String(repeating: "k", count: 1024)).key.utf8.count == 1024)
        #expect(try S3Location.parse("s3://media-in/out/").appending("j1.png").uri == "s3://media-in/out/j1.png")
        for bad in ["s3://ab/k", "s3://-bad/k", "s3://b@d/k", "s3://bucket//k", "s3://bucket/a/../k",
                    "s3://bucket/a\u{1}b", "s3://bucket/" + String(repeating: "k", count: 1025), "http://bucket/k"] {
            #expect(throws: ObjectStorageError.self, "\(bad.prefix(40))") { _ = try S3Location.parse(bad) }
        }
    }

    @Test func secretsAreNeverShown() {
        let c = S3Credentials(accessKeyID: "AKIAABCDEFGH1234", secretAccessKey: "very-secret-value", sessionToken: "tok-123456")
        #expect(!"\(c)".contains("very-secret-value") && !"\(c)".contains("tok-123456") && !"\(c)".contains("AKIAABCDEFGH"))
        #expect(!String(reflecting: c).contains("very-secret-value"))
        #expect(Redaction.url("https://b.s3.amazonaws.com/k.png?X-Amz-Signature=abc&X-Amz-Security-Token=t")
                == "https://b.s3.amazonaws.com/k.png (query hidden)")
        #expect(Redaction.header("Authorization", "AWS4-HMAC-SHA256 ...") == "Authorization: <redacted>")
        #expect(Redaction.scrub("key very-secret-value here", secrets: c.secrets) == "key <redacted> here")
    }

    @Test func backoffIsExponentialWithJitterAndCapped() {
        let p = TransferPolicy(initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(1000))
        for _ in 0..<50 {
            let first = p.delay(afterAttempt: 1)
            #expect(first >= .milliseconds(50) && first <= .milliseconds(100))
            let third = p.delay(afterAttempt: 3)
            #expect(third >= .milliseconds(200) && third <= .milliseconds(400))
            let late = p.delay(afterAttempt: 20)
            #expect(late >= .milliseconds(500) && late <= .milliseconds(1000))
        }
        let samples = Set((0..<20).map { _ in p.delay(afterAttempt: 4) })
        #expect(samples.count > 1, "jitter: delays differ")
    }
}
