import Foundation

/// Timeouts and retries of one kind of transfer (S3 requests, presigned uploads).
public struct TransferPolicy: Sendable, Equatable {
    /// Time to establish the connection (default 10 s).
    public var connectTimeout: Duration = .seconds(10)
    /// A request that moves no byte for this long (waiting for an answer included) fails as a timeout
    /// (default 30 s; whole seconds, at least 1).
    public var idleTimeout: Duration = .seconds(30)
    /// Upper bound of one request, however fast it moves (default 15 min).
    public var requestTimeout: Duration = .seconds(900)
    /// Attempts per request including the first (default 4). Only 5xx, 408, 429, S3 throttling codes, timeouts
    /// and transport errors are retried.
    public var maxAttempts: Int = 4
    /// Backoff before attempt n+1: a random delay in [d/2, d] with d = min(maxBackoff, initialBackoff * 2^(n-1)).
    public var initialBackoff: Duration = .milliseconds(200)
    public var maxBackoff: Duration = .seconds(20)

    public init(connectTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(30),
                requestTimeout: Duration = .seconds(900), maxAttempts: Int = 4,
                initialBackoff: Duration = .milliseconds(200), maxBackoff: Duration = .seconds(20)) {
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }

    /// The delay before attempt `attempt + 1` (exponential, with jitter).
    public func delay(afterAttempt attempt: Int) -> Duration {
        let exponent = max(0, min(attempt - 1, 30))
        let scaled = initialBackoff * (1 << exponent)
        let cap = scaled < maxBackoff ? scaled : maxBackoff
        let ms = max(0, Int(cap.components.seconds * 1000) + Int(cap.components.attoseconds / 1_000_000_000_000_000))
        return .milliseconds(ms / 2 + Int.random(in: 0...max(0, ms - ms / 2)))
    }
}

/// Where and how to reach an S3-compatible service (AWS, MinIO, Ceph RGW, R2, ...).
public struct S3Configuration: Sendable, Equatable {
    public enum Addressing: String, Sendable, Equatable {
        /// `https://endpoint/bucket/key` (MinIO, Ceph and most self-hosted services).
        case path
        /// `https://bucket.endpoint/key` (AWS's default).
        case virtualHost = "virtual"
    }

    /// Base URL of the service; nil: AWS, `https://s3.<region>.amazonaws.com`.
    public var endpoint: URL?
    public var region: String = "us-east-1"
    /// nil: path-style with a configured endpoint, virtual-host style on AWS (path-style for bucket names with a
    /// dot, which a TLS wildcard certificate does not cover).
    public var addressing: Addressing?
    /// nil: none found; every request then fails with a configuration error.
    public var credentials: S3Credentials?
    public var policy = TransferPolicy()
    /// Objects of at least this many bytes are uploaded in parts (default 16 MiB).
    public var multipartThreshold: Int = 16 << 20
    /// Bytes per part (default 8 MiB; S3 requires at least 5 MiB for all but the last part, at most 10,000 parts).
    public var partSize: Int = 8 << 20
    /// Largest object a download accepts, checked on Content-Length and on bytes read (default 256 MiB).
    public var maxDownloadBytes: Int = 256 << 20

    public static let minimumPartSize = 5 << 20
    public static let maximumParts = 10_000

    public init(endpoint: URL? = nil, region: String = "us-east-1", addressing: Addressing? = nil,
                credentials: S3Credentials? = nil) {
        self.endpoint = endpoint
        self.region = region
        self.addressing = addressing
        self.credentials = credentials
    }

    /// Checks the values; the error names the setting.
    public func validate() throws(ObjectStorageError) {
        func fail(_ why: String) -> ObjectStorageError {
            ObjectStorageError(.configuration, operation: "configure", target: "object storage", message: why)
        }
        if let endpoint {
            let scheme = endpoint.scheme?.lowercased() ?? ""
            guard scheme == "http" || scheme == "https", endpoint.host != nil else {
                throw fail("endpoint '\(Redaction.url(endpoint.absoluteString))' must be an http(s) URL with a host")
            }
            if endpoint.query != nil || endpoint.user != nil {
                throw fail("endpoint must not carry a query string or user info")
            }
        }
        if region.isEmpty || !region.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) {
            throw fail("region '\(region)' must be letters, digits and '-'")
        }
        if partSize < Self.minimumPartSize {
            throw fail("part size \(partSize) bytes is below S3's minimum of \(Self.minimumPartSize) (5 MiB)")
        }
        if multipartThreshold < 1 { throw fail("multipart threshold must be at least 1 byte") }
        if maxDownloadBytes < 1 { throw fail("max download bytes must be at least 1") }
        if policy.maxAttempts < 1 { throw fail("max attempts must be at least 1") }
    }

    // MARK: Environment (as the AWS CLI reads it)

    /// The configuration with what `self` leaves unset taken from the environment, as the AWS CLI does:
    /// endpoint `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`; region `AWS_REGION`, else `AWS_DEFAULT_REGION`;
    /// credentials `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), else the profile
    /// `AWS_PROFILE` (default `default`) of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
    /// `~/.aws/credentials`). Values set on `self` (from config keys) win; `regionIsSet` says whether `region` was.
    public func resolved(environment env: [String: String], regionIsSet: Bool) throws(ObjectStorageError) -> S3Configuration {
        func fail(_ why: String) -> ObjectStorageError {
            ObjectStorageError(.configuration, operation: "configure", target: "object storage", message: why)
        }
        var c = self
        if c.endpoint == nil, let text = nonEmpty(env["AWS_ENDPOINT_URL_S3"]) ?? nonEmpty(env["AWS_ENDPOINT_URL"]) {
            guard let url = URL(string: text) else { throw fail("AWS_ENDPOINT_URL(_S3) is not a URL") }
            c.endpoint = url
        }
        if !regionIsSet, let region = nonEmpty(env["AWS_REGION"]) ?? nonEmpty(env["AWS_DEFAULT_REGION"]) {
            c.region = region
        }
        if c.credentials == nil {
            let id = nonEmpty(env["AWS_ACCESS_KEY_ID"])
            let secret = nonEmpty(env["AWS_SECRET_ACCESS_KEY"])
            switch (id, secret) {
            case let (id?, secret?):
                c.credentials = S3Credentials(accessKeyID: id, secretAccessKey: secret,
                                              sessionToken: nonEmpty(env["AWS_SESSION_TOKEN"]))
            case (.some, nil): throw fail("AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY")
            case (nil, .some): throw fail("AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID")
            case (nil, nil):
                let profile = nonEmpty(env["AWS_PROFILE"])
                let path = nonEmpty(env["AWS_SHARED_CREDENTIALS_FILE"])
                    ?? nonEmpty(env["HOME"]).map { $0 + "/.aws/credentials" }
                if let path {
                    c.credentials = try Self.sharedCredentials(path: path, profile: profile ?? "default",
                                                              required: profile != nil)
                }
            }
        }
        try c.validate()
        return c
    }

    /// Reads one profile of a shared credentials file (INI: `[profile]`, `key = value`, `#`/`;` comments).
    /// A missing file or profile gives nil unless `required` (an explicit `AWS_PROFILE`). Errors name the file and
    /// the profile, never a value.
    public static func sharedCredentials(path: String, profile: String,
                                         required: Bool) throws(ObjectStorageError) -> S3Credentials? {
        func fail(_ why: String) -> ObjectStorageError {
            ObjectStorageError(.configuration, operation: "configure", target: "object storage", message: why)
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            if required { throw fail("AWS_PROFILE '\(profile)' is set but the credentials file \(path) cannot be read") }
            return nil
        }
        var section: String?
        var values: [String: String] = [:]
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                continue
            }
            guard section == profile, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            values[key] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        guard let id = nonEmpty(values["aws_access_key_id"]), let secret = nonEmpty(values["aws_secret_access_key"]) else {
            if required || !values.isEmpty {
                throw fail("profile '\(profile)' of \(path) has no aws_access_key_id and aws_secret_access_key")
            }
            return nil
        }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: nonEmpty(values["aws_session_token"]))
    }

    // MARK: Addressing

    /// The effective base URL.
    public var baseURL: URL {
        endpoint ?? URL(string: "https://s3.\(region).amazonaws.com")!
    }

    /// Scheme, `Host` header value (port included when not the scheme's default), and encoded path of an object
    /// (or of the bucket when `key` is empty).
    public func address(bucket: String, key: String) -> (scheme: String, host: String, path: String) {
        let base = baseURL
        let scheme = base.scheme?.lowercased() ?? "https"
        var host = base.host ?? ""
        if let port = base.port, !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) {
            host += ":\(port)"
        }
        var basePath = base.path
        while basePath.hasSuffix("/") { basePath.removeLast() }
        let style = addressing ?? (endpoint == nil && !bucket.contains(".") ? .virtualHost : .path)
        let encodedKey = SigV4Signer.encode(key, keepSlash: true)
        switch style {
        case .path:
            return (scheme, host, basePath + "/" + bucket + (key.isEmpty ? "" : "/" + encodedKey))
        case .virtualHost:
            return (scheme, bucket + "." + host, basePath + "/" + encodedKey)
        }
    }
}

func nonEmpty(_ text: String?) -> String? {
    guard let text, !text.isEmpty else { return nil }
    return text
}

/// `s3://bucket/key`.
public struct S3Location: Sendable, Hashable, CustomStringConvertible {
    public var bucket: String
    public var key: String

    /// S3's limit on key length, in UTF-8 bytes.
    public static let maxKeyBytes = 1024

    public init(bucket: String, key: String) {
        self.bucket = bucket
        self.key = key
    }

    public var uri: String { "s3://\(bucket)/\(key)" }
    public var description: String { uri }
    /// True for a prefix (`s3://bucket/folder/`): an object name is appended to it.
    public var isPrefix: Bool { key.isEmpty || key.hasSuffix("/") }

    /// Parses `s3://bucket/key` (or a prefix ending in `/`). Bucket names: 3-63 of `a-z 0-9 . -` (`_` and upper
    /// case accepted for older buckets), starting and ending with a letter or digit; keys at most 1024 bytes,
    /// without control characters, `.`/`..` segments or a leading `/`.
    public static func parse(_ text: String) throws(ObjectStorageError) -> S3Location {
        func fail(_ why: String) -> ObjectStorageError {
            ObjectStorageError(.configuration, operation: "parse", target: "'\(text.prefix(200))'", message: why)
        }
        guard text.lowercased().hasPrefix("s3://") else { throw fail("not an s3:// URI") }
        let rest = text.dropFirst(5)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let bucket = String(rest[..<slash])
        let key = slash == rest.endIndex ? "" : String(rest[rest.index(after: slash)...])
        let bucketCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
        guard (3...63).contains(bucket.count), bucket.allSatisfy({ bucketCharacters.contains($0) }),
              bucket.first!.isLetter || bucket.first!.isNumber, bucket.last!.isLetter || bucket.last!.isNumber else {
            throw fail("bucket name '\(bucket.prefix(70))' must be 3-63 characters of a-z, 0-9, '.', '-'")
        }
        if key.utf8.count > maxKeyBytes { throw fail("key is \(key.utf8.count) bytes, limit \(maxKeyBytes)") }
        if key.hasPrefix("/") { throw fail("key must not start with '/'") }
        if key.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw fail("key contains a control character")
        }
        if key.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0 == "." || $0 == ".." }) {
            throw fail("key must not contain '.' or '..' segments")
        }
        return S3Location(bucket: bucket, key: key)
    }

    /// This prefix with `name` appended.
    public func appending(_ name: String) -> S3Location {
        S3Location(bucket: bucket, key: key + name)
    }
}
