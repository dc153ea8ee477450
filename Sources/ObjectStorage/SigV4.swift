import Crypto
import Foundation

/// An access key pair (plus session token for temporary credentials). Its description never shows the secret or
/// the token, and only the last four characters of the key id.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String {
        "S3Credentials(key id ...\(accessKeyID.suffix(4)), secret <redacted>\(sessionToken == nil ? "" : ", session token <redacted>"))"
    }
    public var debugDescription: String { description }

    /// The values no log line, error or result may contain.
    public var secrets: [String] { [secretAccessKey, sessionToken ?? "", accessKeyID] }
}

/// AWS Signature Version 4 (header and query-string/presigned forms), as specified in the AWS General Reference
/// ("Signature Version 4 signing process") and the S3 API reference ("Authenticating Requests (AWS Signature
/// Version 4)"). S3 rules: the path is URI-encoded once (never normalised or double-encoded); the payload hash is
/// the hex SHA-256 of the body, or `UNSIGNED-PAYLOAD` for presigned URLs.
public struct SigV4Signer: Sendable {
    public var credentials: S3Credentials
    public var region: String
    public var service: String

    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// Hex SHA-256 of an empty body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to add to a request: `x-amz-date`, `x-amz-security-token` (temporary credentials) and
    /// `Authorization`. `headers` must hold every header that is to be signed, `host` included, exactly as sent;
    /// `path` is the encoded path as sent; `query` the decoded query parameters.
    public func sign(method: String, path: String, query: [(String, String)], headers: [(String, String)],
                     payloadHash: String, date: Date) -> [(String, String)] {
        let stamp = Self.timestamp(date)
        var all = headers
        all.append(("x-amz-date", stamp.full))
        var added: [(String, String)] = [("x-amz-date", stamp.full)]
        if let token = credentials.sessionToken {
            all.append(("x-amz-security-token", token))
            added.append(("x-amz-security-token", token))
        }
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(all)
        let canonicalRequest = [method, path, Self.canonicalQuery(query), canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        let scope = "\(stamp.day)/\(region)/\(service)/aws4_request"
        let signature = self.signature(canonicalRequest: canonicalRequest, stamp: stamp, scope: scope)
        added.append(("Authorization", "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope), "
                      + "SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return added
    }

    /// A presigned URL (query-string authentication, host the only signed header, payload unsigned) valid for
    /// `expires` seconds from `date`. `host` includes the port when it is not the scheme's default.
    public func presignedURL(method: String, scheme: String, host: String, path: String, query: [(String, String)] = [],
                             expires: Int, date: Date) -> String {
        let stamp = Self.timestamp(date)
        let scope = "\(stamp.day)/\(region)/\(service)/aws4_request"
        var items = query
        items.append(("X-Amz-Algorithm", Self.algorithm))
        items.append(("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope)"))
        items.append(("X-Amz-Date", stamp.full))
        items.append(("X-Amz-Expires", String(expires)))
        if let token = credentials.sessionToken { items.append(("X-Amz-Security-Token", token)) }
        items.append(("X-Amz-SignedHeaders", "host"))
        let canonicalRequest = [method, path, Self.canonicalQuery(items), "host:\(host)\n", "host", Self.unsignedPayload]
            .joined(separator: "\n")
        let signature = self.signature(canonicalRequest: canonicalRequest, stamp: stamp, scope: scope)
        // The signature goes last, as in AWS's examples (it is not part of what it signs).
        return "\(scheme)://\(host)\(path)?\(Self.canonicalQuery(items))&X-Amz-Signature=\(signature)"
    }

    private func signature(canonicalRequest: String, stamp: (full: String, day: String), scope: String) -> String {
        let stringToSign = [Self.algorithm, stamp.full, scope, Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))]
            .joined(separator: "\n")
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [stamp.day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
    }

    // MARK: Canonical forms

    /// `yyyyMMddTHHmmssZ` and `yyyyMMdd` in UTC.
    static func timestamp(_ date: Date) -> (full: String, day: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let day = String(format: "%04d%02d%02d", c.year!, c.month!, c.day!)
        return (day + String(format: "T%02d%02d%02dZ", c.hour!, c.minute!, c.second!), day)
    }

    /// Lower-case names, values trimmed with inner runs of spaces collapsed, repeated names joined with `,`,
    /// sorted by name; and the `;`-joined list of names.
    static func canonicalHeaders(_ headers: [(String, String)]) -> (String, String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let trimmed = value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            merged[name.lowercased(), default: []].append(trimmed)
        }
        let names = merged.keys.sorted()
        let text = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        return (text, names.joined(separator: ";"))
    }

    /// Parameters encoded (RFC 3986 unreserved characters kept), sorted by encoded name then value, `&`-joined.
    /// The same text is the query string a request sends.
    public static func canonicalQuery(_ items: [(String, String)]) -> String {
        let encoded: [(name: String, value: String)] = items.map { (encode($0.0), encode($0.1)) }
        let sorted = encoded.sorted { (a, b) -> Bool in
            if a.name == b.name { return a.value < b.value }
            return a.name < b.name
        }
        return sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }

    private static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)

    /// URI-encodes every byte outside the unreserved set (upper-case hex); `/` is kept when `keepSlash`.
    public static func encode(_ text: String, keepSlash: Bool = false) -> String {
        var out = ""
        for byte in text.utf8 {
            if unreserved.contains(byte) || (keepSlash && byte == UInt8(ascii: "/")) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
