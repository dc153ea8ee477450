import Foundation

/// The one error type of the ObjectStorage module. Its text names the operation, the object (`s3://bucket/key`, or
/// a URL without its query string) and, for S3 answers, the HTTP status and the S3 error code; it never holds a
/// credential, a signature or a presigned query string.
public struct ObjectStorageError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// Configuration: no credentials, a bad endpoint, a part size out of range.
        case configuration
        /// The server answered with an error status (see `status`, `s3Code`).
        case server
        /// The connection failed, broke, or stalled past the timeout.
        case transport
        /// The transfer did not complete within the timeout.
        case timeout
        /// The object is larger than allowed.
        case limitExceeded = "limit_exceeded"
        /// A job-supplied URL resolves to an address the rules forbid, or uses a scheme not allowed.
        case forbidden
        /// A local file could not be read or written.
        case localFile = "local_file"
        case cancelled
    }

    public var kind: Kind
    /// `GET`, `PUT`, `UploadPart`, ...
    public var operation: String
    /// `s3://bucket/key` or a redacted URL.
    public var target: String
    /// HTTP status of the last answer (0: none).
    public var status: Int
    /// S3's `<Code>` (`NoSuchKey`, `AccessDenied`, `SignatureDoesNotMatch`, ...), when the server sent one.
    public var s3Code: String?
    public var message: String
    /// True when another attempt may succeed (5xx, throttling, transport errors, timeouts).
    public var isRetriable: Bool
    /// Attempts made before giving up.
    public var attempts: Int

    public init(_ kind: Kind, operation: String, target: String, status: Int = 0, s3Code: String? = nil,
                message: String, isRetriable: Bool = false, attempts: Int = 1) {
        self.kind = kind
        self.operation = operation
        self.target = target
        self.status = status
        self.s3Code = s3Code
        self.message = message
        self.isRetriable = isRetriable
        self.attempts = attempts
    }

    public var description: String {
        var text = "\(operation) \(target): "
        if status != 0 { text += "HTTP \(status) " }
        if let s3Code { text += "\(s3Code): " }
        text += message
        if attempts > 1 { text += " (after \(attempts) attempts)" }
        return text
    }
}
