import Foundation
import Logging

/// Uploads a file to a URL a job supplies (a presigned PUT), with the job's method and headers, under the same
/// retry rules as S3 requests. The URL is job input: its scheme must be allowed and every address connected to
/// passes `addressRule` (the SSRF rules of http sources); it is only ever logged without its query string, and the
/// job's header values are never logged.
public struct PresignedUpload: Sendable {
    public var policy: TransferPolicy
    public var allowedSchemes: Set<String>
    /// Returns why an address (4 or 16 bytes, network order) is refused; nil allows it.
    public var addressRule: (@Sendable ([UInt8]) -> String?)?
    let logger: Logger

    /// Methods a job may ask for.
    public static let methods: Set<String> = ["PUT", "POST"]
    /// Headers a job may not set (curl derives them from the request).
    public static let reservedHeaders: Set<String> = ["host", "content-length", "transfer-encoding", "connection",
                                                      "expect", "te", "upgrade"]

    public init(policy: TransferPolicy, allowedSchemes: Set<String> = ["https", "http"],
                addressRule: (@Sendable ([UInt8]) -> String?)?, logger: Logger) {
        self.policy = policy
        self.allowedSchemes = allowedSchemes
        self.addressRule = addressRule
        self.logger = logger
    }

    /// Sends the file as the body. Returns the hex SHA-256 and size of what was sent.
    public func upload(file path: String, to url: String, method: String = "PUT",
                       headers: [(String, String)] = []) async throws(ObjectStorageError) -> UploadReceipt {
        let target = Redaction.url(url)
        let method = method.uppercased()
        func refuse(_ why: String) -> ObjectStorageError {
            ObjectStorageError(.forbidden, operation: method, target: target, message: why)
        }
        guard let parsed = URL(string: url), parsed.host != nil else { throw refuse("not a valid URL") }
        let scheme = parsed.scheme?.lowercased() ?? ""
        guard allowedSchemes.contains(scheme) else { throw refuse("scheme '\(scheme)' is not allowed") }
        guard Self.methods.contains(method) else { throw refuse("method '\(method)' is not one of \(Self.methods.sorted())") }
        for (name, value) in headers {
            if let problem = Self.headerProblem(name, value) { throw refuse(problem) }
        }
        let size: Int
        do {
            size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        } catch {
            throw ObjectStorageError(.localFile, operation: method, target: target,
                                     message: "cannot read \(path): \(error.localizedDescription)")
        }
        let digest = try await S3Client.sha256(path, offset: 0, length: size, target: target)
        var options = TransferOptions(policy: policy)
        options.addressRule = addressRule
        let transfer = options
        let request = HTTPRequest(method: method, url: url, headers: headers,
                                  body: .file(path: path, offset: 0, length: size))
        // The job's header values may hold secrets (tokens) too.
        let secrets = headers.map(\.1) + (parsed.query.map { [$0] } ?? [])
        let response = try await Retrying.run(policy: policy, operation: method, target: target, secrets: secrets,
                                              logger: logger) { () async -> Result<HTTPResponse, TransferFailure> in
            await HTTPTransport.perform(request, transfer)
        }
        return UploadReceipt(bytes: size, sha256: SigV4Signer.hex(digest), etag: response.headers["etag"], parts: 0)
    }

    /// Why a job's header cannot be sent (nil: it can): a reserved or malformed name, a value with a line break.
    public static func headerProblem(_ name: String, _ value: String) -> String? {
        let token = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        if name.isEmpty || name.count > 256 || !name.allSatisfy({ token.contains($0) }) {
            return "header name '\(name.prefix(40))' is not a valid HTTP token"
        }
        if reservedHeaders.contains(name.lowercased()) { return "header '\(name)' is set by the client, not the job" }
        if value.utf8.count > 8192 { return "header '\(name)' value is longer than 8192 bytes" }
        if value.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7f }) {
            return "header '\(name)' value contains a control character"
        }
        return nil
    }
}
