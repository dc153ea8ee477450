import Crypto
import Foundation
import Logging

/// What an upload stored.
public struct UploadReceipt: Sendable, Equatable {
    public var bytes: Int
    /// Hex SHA-256 of the whole object.
    public var sha256: String
    public var etag: String?
    /// Parts uploaded (0: a single PUT).
    public var parts: Int
}

/// A small S3 client (no SDK): GET to a file, PUT (single below `multipartThreshold`, multipart above it), abort and
/// list multipart uploads. Every request is signed with SigV4 and carries `x-amz-content-sha256` (the body's hash,
/// part of the signature); uploads also send `x-amz-checksum-sha256`, which S3 checks against the body and refuses
/// (`BadDigest`) when they differ. Requests are retried per `configuration.policy`; a 4xx other than throttling is
/// not retried and its error names the bucket, key and S3 error code. No credential is ever logged.
public final class S3Client: Sendable {
    public let configuration: S3Configuration
    private let credentials: S3Credentials
    private let logger: Logger
    /// Test hook: curl `CURLOPT_RESOLVE` entries.
    let resolve: [String]

    public init(configuration: S3Configuration, logger: Logger, resolve: [String] = []) throws(ObjectStorageError) {
        try configuration.validate()
        guard let credentials = configuration.credentials else {
            throw ObjectStorageError(.configuration, operation: "configure", target: "object storage",
                                     message: "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                     + "AWS_PROFILE with a shared credentials file, or the *_file config keys")
        }
        self.configuration = configuration
        self.credentials = credentials
        self.logger = logger
        self.resolve = resolve
    }

    // MARK: Operations

    /// Downloads the object into `path` (created or truncated). Refused when larger than
    /// `configuration.maxDownloadBytes` (Content-Length, then bytes read). Returns its size.
    public func download(_ location: S3Location, to path: String) async throws(ObjectStorageError) -> Int {
        _ = try await send("GET", location, responseFile: path, maxResponseBytes: configuration.maxDownloadBytes)
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        return (attributes?[.size] as? Int) ?? 0
    }

    /// Uploads a local file: one PUT below `multipartThreshold`, else a multipart upload of `partSize` parts (each
    /// retried; on failure the upload is aborted so no part is left stored).
    ///
    /// `ifAbsent`: the object is stored only when no object of that key exists (`If-None-Match: *` on the PUT, or on
    /// CompleteMultipartUpload); when one does, the server refuses with 412 `PreconditionFailed` (not retried) and
    /// nothing is replaced (a multipart upload is then aborted).
    public func upload(file path: String, to location: S3Location, contentType: String? = nil,
                       ifAbsent: Bool = false) async throws(ObjectStorageError) -> UploadReceipt {
        let size: Int
        do {
            size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        } catch {
            throw ObjectStorageError(.localFile, operation: "PUT", target: location.uri,
                                     message: "cannot read \(path): \(error.localizedDescription)")
        }
        if size < configuration.multipartThreshold {
            return try await putSingle(path, size: size, location, contentType: contentType, ifAbsent: ifAbsent)
        }
        return try await putMultipart(path, size: size, location, contentType: contentType, ifAbsent: ifAbsent)
    }

    /// Whether an object exists under `location` (HEAD): false on 404, other answers thrown (403 without
    /// `s3:ListBucket` on the bucket, for a missing key too).
    public func exists(_ location: S3Location) async throws(ObjectStorageError) -> Bool {
        do throws(ObjectStorageError) {
            _ = try await send("HEAD", location, operation: "HEAD")
            return true
        } catch where error.status == 404 {
            return false
        }
    }

    /// Checks that `bucket` exists and these credentials may use it (HeadBucket): throws the S3 error otherwise
    /// (404 `NoSuchBucket`, 403 `AccessDenied`, a transport error or timeout after the retries).
    public func checkBucket(_ bucket: String) async throws(ObjectStorageError) {
        do throws(ObjectStorageError) {
            _ = try await send("HEAD", S3Location(bucket: bucket, key: ""), operation: "HeadBucket")
        } catch where error.status == 404 && error.s3Code == "NotFound" {
            var named = error
            named.s3Code = "NoSuchBucket"
            named.message = "the bucket does not exist"
            throw named
        }
    }

    /// The Content-Type of an image output format (png, jpeg, webp, tiff).
    public static func contentType(imageFormat format: String) -> String {
        switch format {
        case "jpeg", "jpg": "image/jpeg"
        case "webp": "image/webp"
        case "tiff", "tif": "image/tiff"
        default: "image/png"
        }
    }

    /// Keys of the multipart uploads in progress in `bucket` (ListMultipartUploads, first 1000).
    public func listMultipartUploads(bucket: String) async throws(ObjectStorageError) -> [String] {
        let response = try await send("GET", S3Location(bucket: bucket, key: ""), query: [("uploads", "")],
                                      operation: "ListMultipartUploads")
        return XMLText.all("Key", in: response.bodyText)
    }

    // MARK: Uploads

    private func putSingle(_ path: String, size: Int, _ location: S3Location, contentType: String?,
                           ifAbsent: Bool) async throws(ObjectStorageError) -> UploadReceipt {
        let digest = try await Self.sha256(path, offset: 0, length: size, target: location.uri)
        var headers: [(String, String)] = [("x-amz-checksum-sha256", Data(digest).base64EncodedString())]
        if let contentType { headers.append(("Content-Type", contentType)) }
        if ifAbsent { headers.append(("If-None-Match", "*")) }
        let response = try await send("PUT", location, headers: headers,
                                      body: .file(path: path, offset: 0, length: size),
                                      payloadHash: SigV4Signer.hex(digest), operation: "PUT")
        return UploadReceipt(bytes: size, sha256: SigV4Signer.hex(digest), etag: response.headers["etag"], parts: 0)
    }

    private func putMultipart(_ path: String, size: Int, _ location: S3Location, contentType: String?,
                              ifAbsent: Bool) async throws(ObjectStorageError) -> UploadReceipt {
        var partSize = configuration.partSize
        if (size + partSize - 1) / partSize > S3Configuration.maximumParts {
            partSize = (size + S3Configuration.maximumParts - 1) / S3Configuration.maximumParts
        }
        var headers: [(String, String)] = [("x-amz-checksum-algorithm", "SHA256")]
        if let contentType { headers.append(("Content-Type", contentType)) }
        let created = try await send("POST", location, query: [("uploads", "")], headers: headers,
                                     operation: "CreateMultipartUpload")
        guard let uploadID = XMLText.first("UploadId", in: created.bodyText) else {
            throw ObjectStorageError(.server, operation: "CreateMultipartUpload", target: location.uri,
                                     status: created.status, message: "no UploadId in the answer")
        }
        do throws(ObjectStorageError) {
            var parts: [(number: Int, etag: String, checksum: String)] = []
            var offset = 0
            var number = 0
            while offset < size {
                number += 1
                let length = min(partSize, size - offset)
                let digest = try await Self.sha256(path, offset: offset, length: length, target: location.uri)
                let checksum = Data(digest).base64EncodedString()
                let response = try await send("PUT", location,
                                              query: [("partNumber", String(number)), ("uploadId", uploadID)],
                                              headers: [("x-amz-checksum-sha256", checksum)],
                                              body: .file(path: path, offset: offset, length: length),
                                              payloadHash: SigV4Signer.hex(digest), operation: "UploadPart \(number)")
                guard let etag = response.headers["etag"] else {
                    throw ObjectStorageError(.server, operation: "UploadPart \(number)", target: location.uri,
                                             status: response.status, message: "no ETag in the answer")
                }
                parts.append((number, etag, checksum))
                offset += length
            }
            var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            for part in parts {
                xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(XMLText.escape(part.etag))</ETag>"
                    + "<ChecksumSHA256>\(part.checksum)</ChecksumSHA256></Part>"
            }
            xml += "</CompleteMultipartUpload>"
            let body = Array(xml.utf8)
            let completed = try await send("POST", location, query: [("uploadId", uploadID)],
                                           headers: [("Content-Type", "application/xml")]
                                               + (ifAbsent ? [("If-None-Match", "*")] : []), body: .bytes(body),
                                           payloadHash: SigV4Signer.hex(SHA256.hash(data: body)),
                                           operation: "CompleteMultipartUpload")
            let whole = try await Self.sha256(path, offset: 0, length: size, target: location.uri)
            return UploadReceipt(bytes: size, sha256: SigV4Signer.hex(whole),
                                 etag: XMLText.first("ETag", in: completed.bodyText), parts: parts.count)
        } catch {
            // Never leave a half-made upload (its parts are stored, and billed, until aborted). Not cancelled with
            // the job: a shutdown still aborts.
            let abort = Task.detached { [self] () -> ObjectStorageError? in
                do throws(ObjectStorageError) {
                    _ = try await send("DELETE", location, query: [("uploadId", uploadID)],
                                       operation: "AbortMultipartUpload")
                    return nil
                } catch {
                    return error
                }
            }
            var failure = error
            if let abortError = await abort.value {
                logger.error("multipart upload not aborted", metadata: [
                    "target": "\(location.uri)", "error": "\(abortError)"])
                failure.message += "; aborting the multipart upload failed too: \(abortError)"
            } else {
                logger.info("multipart upload aborted", metadata: ["target": "\(location.uri)"])
            }
            throw failure
        }
    }

    // MARK: Requests

    /// One signed request, retried per the policy. 2xx: the response; otherwise an error naming the object and
    /// S3's code.
    func send(_ method: String, _ location: S3Location, query: [(String, String)] = [], headers: [(String, String)] = [],
              body: HTTPRequest.Body = .none, payloadHash: String = SigV4Signer.emptyPayloadHash,
              operation: String? = nil, responseFile: String? = nil,
              maxResponseBytes: Int = .max) async throws(ObjectStorageError) -> HTTPResponse {
        let operation = operation ?? method
        let target = location.key.isEmpty ? "s3://\(location.bucket)" : location.uri
        let (scheme, host, path) = configuration.address(bucket: location.bucket, key: location.key)
        let queryText = SigV4Signer.canonicalQuery(query)
        let url = "\(scheme)://\(host)\(path)" + (queryText.isEmpty ? "" : "?\(queryText)")
        let signer = SigV4Signer(credentials: credentials, region: configuration.region)
        var options = TransferOptions(policy: configuration.policy)
        options.responseFile = responseFile
        options.maxResponseBytes = maxResponseBytes
        options.resolve = resolve
        let transfer = options
        return try await Retrying.run(policy: configuration.policy, operation: operation, target: target,
                                      secrets: credentials.secrets, logger: logger) { () async -> Result<HTTPResponse, TransferFailure> in
            var signed = [("host", host), ("x-amz-content-sha256", payloadHash)] + headers
            signed += signer.sign(method: method, path: path, query: query, headers: signed, payloadHash: payloadHash,
                                  date: Date())
            // curl sends Host itself, from the URL.
            let sent = signed.filter { $0.0 != "host" }
            return await HTTPTransport.perform(HTTPRequest(method: method, url: url, headers: sent, body: body), transfer)
        }
    }

    // MARK: Hashing

    /// SHA-256 of `length` bytes of a file from `offset`, read in 1 MiB blocks off the calling task's executor.
    static func sha256(_ path: String, offset: Int, length: Int, target: String) async throws(ObjectStorageError) -> [UInt8] {
        let result: Result<[UInt8], ObjectStorageError> = await Task.detached {
            guard let file = FileHandle(forReadingAtPath: path) else {
                return .failure(ObjectStorageError(.localFile, operation: "read", target: target,
                                                   message: "cannot open \(path)"))
            }
            defer { try? file.close() }
            var hasher = SHA256()
            do {
                try file.seek(toOffset: UInt64(offset))
                var left = length
                while left > 0 {
                    guard let block = try file.read(upToCount: min(left, 1 << 20)), !block.isEmpty else {
                        return .failure(ObjectStorageError(.localFile, operation: "read", target: target,
                                                           message: "\(path) is shorter than expected (changed while uploading?)"))
                    }
                    hasher.update(data: block)
                    left -= block.count
                }
            } catch {
                return .failure(ObjectStorageError(.localFile, operation: "read", target: target,
                                                   message: "cannot read \(path): \(error.localizedDescription)"))
            }
            return .success(Array(hasher.finalize()))
        }.value
        return try result.get()
    }
}

/// The retry loop every object-storage request shares.
enum Retrying {
    /// S3 error codes that mean "try again later", whatever the status.
    static let retriableCodes: Set<String> = ["SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                                              "InternalError", "ServiceUnavailable", "RequestLimitExceeded"]

    static func run(policy: TransferPolicy, operation: String, target: String, secrets: [String], logger: Logger,
                    attempt perform: @Sendable () async -> Result<HTTPResponse, TransferFailure>)
        async throws(ObjectStorageError) -> HTTPResponse {
        var attempt = 0
        while true {
            attempt += 1
            if Task.isCancelled {
                throw ObjectStorageError(.cancelled, operation: operation, target: target, message: "cancelled",
                                         attempts: attempt)
            }
            var error: ObjectStorageError
            switch await perform() {
            case .success(let response):
                // CompleteMultipartUpload may answer 200 with an error document.
                let text = response.status == 200 && operation == "CompleteMultipartUpload" ? response.bodyText : ""
                if (200...299).contains(response.status) && !text.contains("<Error>") { return response }
                error = serverError(response, operation: operation, target: target, secrets: secrets)
            case .failure(let failure):
                switch failure {
                case .transport(let why, let retriable):
                    error = ObjectStorageError(.transport, operation: operation, target: target, message: why,
                                               isRetriable: retriable)
                case .timedOut(let why):
                    error = ObjectStorageError(.timeout, operation: operation, target: target, message: why,
                                               isRetriable: true)
                case .forbidden(let why):
                    error = ObjectStorageError(.forbidden, operation: operation, target: target, message: why)
                case .tooLarge(let why):
                    error = ObjectStorageError(.limitExceeded, operation: operation, target: target, message: why)
                case .localFile(let why):
                    error = ObjectStorageError(.localFile, operation: operation, target: target, message: why)
                case .cancelled:
                    error = ObjectStorageError(.cancelled, operation: operation, target: target, message: "cancelled")
                }
            }
            error.attempts = attempt
            guard error.isRetriable, attempt < policy.maxAttempts, !Task.isCancelled else { throw error }
            let delay = policy.delay(afterAttempt: attempt)
            logger.warning("object storage request failed; retrying", metadata: [
                "operation": "\(operation)", "target": "\(target)", "attempt": "\(attempt)",
                "error": "\(error)", "delay_ms": "\(Int(delay.seconds * 1000))"])
            do { try await Task.sleep(for: delay) } catch {
                throw ObjectStorageError(.cancelled, operation: operation, target: target, message: "cancelled",
                                         attempts: attempt)
            }
        }
    }

    static func serverError(_ response: HTTPResponse, operation: String, target: String,
                            secrets: [String]) -> ObjectStorageError {
        let text = response.bodyText
        let code = XMLText.first("Code", in: text) ?? defaultCode(response.status)
        var message = XMLText.first("Message", in: text) ?? "the server refused the request"
        message = Redaction.scrub(String(message.prefix(300)), secrets: secrets)
        let retriable = response.status >= 500 || response.status == 429 || response.status == 408
            || retriableCodes.contains(code)
        return ObjectStorageError(.server, operation: operation, target: target, status: response.status,
                                  s3Code: Redaction.scrub(String(code.prefix(80)), secrets: secrets), message: message,
                                  isRetriable: retriable)
    }

    /// A code for answers without an error document (HEAD, proxies).
    static func defaultCode(_ status: Int) -> String {
        switch status {
        case 301, 307: "PermanentRedirect"
        case 400: "BadRequest"
        case 403: "AccessDenied"
        case 404: "NotFound"
        case 409: "Conflict"
        case 412: "PreconditionFailed"
        case 429: "TooManyRequests"
        case 500: "InternalError"
        case 503: "ServiceUnavailable"
        default: "HTTP\(status)"
        }
    }
}

/// Just enough XML for S3's answers: the text of elements by name (no nesting of the same name).
enum XMLText {
    static func first(_ name: String, in text: String) -> String? { all(name, in: text).first }

    static func all(_ name: String, in text: String) -> [String] {
        var out: [String] = []
        var rest = text[...]
        while let open = rest.range(of: "<\(name)>") {
            guard let close = rest[open.upperBound...].range(of: "</\(name)>") else { break }
            out.append(unescape(String(rest[open.upperBound..<close.lowerBound])))
            rest = rest[close.upperBound...]
        }
        return out
    }

    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
