import Captioning
import Foundation
import Jobs
import ObjectStorage

/// The input message's JSON value (see docs/kafka.md). Unknown fields are ignored; wrong types are rejected.
public struct InputMessage: Sendable, Equatable, Decodable {
    public var id: String?
    public var source: String
    public var output: String?
    public var prompt: String?
    public var scale: Int?
    public var format: String?
    public var pipeline: String?
    /// With an http(s) `output` (a presigned URL): the method (`PUT`, default, or `POST`) and extra headers of the
    /// upload (e.g. `Content-Type`, `x-amz-checksum-sha256` fixed by the signer). Their values are never logged.
    public var outputMethod: String?
    public var outputHeaders: [String: String]?

    enum CodingKeys: String, CodingKey {
        case id, source, output, prompt, scale, format, pipeline
        case outputMethod = "output_method"
        case outputHeaders = "output_headers"
    }

    public init(id: String? = nil, source: String, output: String? = nil, prompt: String? = nil, scale: Int? = nil,
                format: String? = nil, pipeline: String? = nil) {
        self.id = id
        self.source = source
        self.output = output
        self.prompt = prompt
        self.scale = scale
        self.format = format
        self.pipeline = pipeline
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id)
        source = try c.decode(String.self, forKey: .source)
        output = try c.decodeIfPresent(String.self, forKey: .output)
        prompt = try c.decodeIfPresent(String.self, forKey: .prompt)
        format = try c.decodeIfPresent(String.self, forKey: .format)
        pipeline = try c.decodeIfPresent(String.self, forKey: .pipeline)
        outputMethod = try c.decodeIfPresent(String.self, forKey: .outputMethod)
        outputHeaders = try c.decodeIfPresent([String: String].self, forKey: .outputHeaders)
        scale = try Self.decodeScale(c)
    }

    /// `scale` is an integer or absent/null; anything else (4.5, "4", true) gets the scale rule's own message.
    static func decodeScale(_ c: KeyedDecodingContainer<CodingKeys>) throws -> Int? {
        guard c.contains(.scale), try !c.decodeNil(forKey: .scale) else { return nil }
        if let value = try? c.decode(Int.self, forKey: .scale) { return value }
        let got: String
        if let number = try? c.decode(Double.self, forKey: .scale) {
            got = "\(number)"
        } else if let text = try? c.decode(String.self, forKey: .scale) {
            got = "the string \"\(text.prefix(20))\""
        } else if let flag = try? c.decode(Bool.self, forKey: .scale) {
            got = "\(flag)"
        } else {
            got = "a JSON array or object"
        }
        throw KafkaConnectorError(.invalidMessage, scaleRule(got: got))
    }

    /// Accepted output formats.
    public static let formats: Set<String> = ["png", "jpeg", "jpg", "webp", "tiff", "tif"]
    /// Accepted scales: integers 1...4 (the native scale of the shipped models, Real-ESRGAN x4plus and DreamSR x4;
    /// the restore stage cannot go above its model's scale). The CLI and docs state the same rule.
    public static let scales: ClosedRange<Int> = 1...4
    static func scaleRule(got: String) -> String {
        "field 'scale' must be an integer in \(scales.lowerBound)...\(scales.upperBound), got \(got)"
    }
    /// Limits of `output` (checked at parse time): bytes of the whole value, path components (folders + file).
    public static let maxOutputBytes = 1024
    public static let maxOutputComponents = 16
    /// Name endings of files still being written by common tools; an output must not look like one.
    static let temporarySuffixes = [".part", ".partial", ".tmp", ".crdownload", "~"]
    static let idCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

    /// Parses and validates a message value. Every failure is a non-retriable `KafkaConnectorError`
    /// (`invalid_message` or `limit_exceeded`) naming the field.
    public static func parse(_ bytes: [UInt8]?, maxBytes: Int) throws(KafkaConnectorError) -> InputMessage {
        guard let bytes, !bytes.isEmpty else {
            throw KafkaConnectorError(.invalidMessage, "empty message value")
        }
        if bytes.count > maxBytes {
            throw KafkaConnectorError(.limitExceeded, "message value is \(bytes.count) bytes, limit \(maxBytes)")
        }
        let message: InputMessage
        do {
            message = try JSONDecoder().decode(InputMessage.self, from: Data(bytes))
        } catch let error as KafkaConnectorError {
            throw error
        } catch let error as DecodingError {
            throw KafkaConnectorError(.invalidMessage, Self.describe(error))
        } catch {
            throw KafkaConnectorError(.invalidMessage, "invalid JSON: \(error)")
        }
        try message.validate()
        return message
    }

    func validate() throws(KafkaConnectorError) {
        if source.trimmingCharacters(in: .whitespaces).isEmpty {
            throw KafkaConnectorError(.invalidMessage, "field 'source' is empty")
        }
        if let id {
            if id.isEmpty || id.count > 200 || id.hasPrefix(".") || !id.allSatisfy({ Self.idCharacters.contains($0) }) {
                throw KafkaConnectorError(.invalidMessage,
                                          "field 'id' must be 1-200 chars of [A-Za-z0-9._-], not starting with '.'")
            }
        }
        if let scale, !Self.scales.contains(scale) {
            throw KafkaConnectorError(.limitExceeded, Self.scaleRule(got: "\(scale)"))
        }
        for (field, value) in [("source", source), ("output", output ?? "")] {
            if let bad = value.unicodeScalars.enumerated().first(where: { $0.element.properties.generalCategory == .control }) {
                let hex = String(bad.element.value, radix: 16, uppercase: true)
                let codePoint = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                throw KafkaConnectorError(.invalidMessage, "field '\(field)' contains the control character "
                                          + "\(codePoint) at position \(bad.offset); control characters are not allowed")
            }
        }
        if let output {
            if Self.isRemote(output) {
                try Self.checkRemoteOutputRule(output)
            } else {
                try Self.checkOutputRule(output)
            }
        }
        let isURLOutput = output.map { Self.isURL($0) } ?? false
        if let outputMethod {
            guard isURLOutput else {
                throw KafkaConnectorError(.invalidMessage, "field 'output_method' needs an http(s) URL as 'output'")
            }
            if !PresignedUpload.methods.contains(outputMethod.uppercased()) {
                throw KafkaConnectorError(.invalidMessage, "field 'output_method' = '\(outputMethod.prefix(20))' is not one of "
                                          + "\(PresignedUpload.methods.sorted())")
            }
        }
        if let outputHeaders {
            guard isURLOutput else {
                throw KafkaConnectorError(.invalidMessage, "field 'output_headers' needs an http(s) URL as 'output'")
            }
            if outputHeaders.count > Self.maxOutputHeaders {
                throw KafkaConnectorError(.invalidMessage, "field 'output_headers': \(outputHeaders.count) headers, limit \(Self.maxOutputHeaders)")
            }
            for (name, value) in outputHeaders.sorted(by: { $0.key < $1.key }) {
                if let problem = PresignedUpload.headerProblem(name, value) {
                    throw KafkaConnectorError(.invalidMessage, "field 'output_headers': \(problem)")
                }
            }
        }
        if let format, !Self.formats.contains(format.lowercased()) {
            throw KafkaConnectorError(.invalidMessage,
                                      "field 'format' = '\(format)' is not one of \(Self.formats.sorted())")
        }
    }

    /// Longest http(s) URL accepted as `output` (presigned URLs with a session token run past 1 KiB), in bytes.
    public static let maxOutputURLBytes = 8192
    /// Most headers in `output_headers`.
    public static let maxOutputHeaders = 32

    static func isURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        return lower.hasPrefix("http://") || lower.hasPrefix("https://")
    }

    /// An output the connector uploads after the pipeline wrote it locally: `s3://...` or an http(s) URL.
    static func isRemote(_ text: String) -> Bool { text.lowercased().hasPrefix("s3://") || isURL(text) }

    /// `s3://bucket/key` (or a prefix ending in `/`) per S3Location's rules; an http(s) URL with a host, at most
    /// `maxOutputURLBytes`.
    static func checkRemoteOutputRule(_ output: String) throws(KafkaConnectorError) {
        if isURL(output) {
            if output.utf8.count > maxOutputURLBytes {
                throw KafkaConnectorError(.invalidMessage, "field 'output': URL is \(output.utf8.count) bytes, limit \(maxOutputURLBytes)")
            }
            guard URL(string: output)?.host != nil else {
                throw KafkaConnectorError(.invalidMessage, "field 'output': '\(Redaction.url(output))' is not a valid URL")
            }
            return
        }
        do {
            _ = try S3Location.parse(output)
        } catch {
            throw KafkaConnectorError(.invalidMessage, "field 'output': \(error.message)")
        }
    }

    /// The rule for `output` (see docs/kafka.md, "Field rules"): at most `maxOutputBytes` bytes and
    /// `maxOutputComponents` path components; no `..`; no component that is hidden (leading '.') or looks like a
    /// temporary file (`temporarySuffixes`); each folder at most NAME_MAX (255) bytes and the file name at most
    /// `OutputFiles.maxNameBytes`, so its temporary name fits too.
    static func checkOutputRule(_ output: String) throws(KafkaConnectorError) {
        func fail(_ why: String) -> KafkaConnectorError { KafkaConnectorError(.invalidMessage, "field 'output': \(why)") }
        if output.utf8.count > maxOutputBytes {
            throw fail("\(output.utf8.count) bytes, limit \(maxOutputBytes)")
        }
        let components = output.split(separator: "/")
        if components.contains("..") { throw fail("'..' is not allowed") }
        if components.count > maxOutputComponents {
            throw fail("\(components.count) path components, limit \(maxOutputComponents)")
        }
        for (index, component) in components.enumerated() {
            let isFileName = index == components.count - 1 && !output.hasSuffix("/")
            if component.hasPrefix(".") {
                throw fail("'\(component)' is a hidden name (starts with '.')")
            }
            if let suffix = temporarySuffixes.first(where: { component.lowercased().hasSuffix($0) }) {
                throw fail("'\(component)' looks like a temporary file (ends with '\(suffix)')")
            }
            let limit = isFileName ? OutputFiles.maxNameBytes : OutputFiles.nameMax
            if component.utf8.count > limit {
                throw fail("name '\(component.prefix(32))...' is \(component.utf8.count) bytes, limit \(limit)"
                           + (isFileName ? " (NAME_MAX 255 less room for the temporary name written first)" : " (NAME_MAX)"))
            }
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.stringValue }.joined(separator: ".")
            return keys.isEmpty ? "message" : "field '\(keys)'"
        }
        switch error {
        case .keyNotFound(let key, _):
            return "missing required field '\(key.stringValue)'"
        case .typeMismatch(let type, let context):
            return "\(path(context)) has the wrong type (expected \(type))"
        case .valueNotFound(let type, let context):
            return "\(path(context)) is null (expected \(type))"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "value is not valid JSON (or not a JSON object)" }
            return "\(path(context)): \(context.debugDescription)"
        @unknown default:
            return "invalid message: \(error)"
        }
    }

    /// The `id` of a message that failed validation, when it is still readable (for the error result).
    public static func lenientID(_ bytes: [UInt8]?) -> String? {
        guard let bytes, let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let id = object["id"] as? String, !id.isEmpty, id.count <= 200, !id.hasPrefix("."),
              id.allSatisfy({ idCharacters.contains($0) }) else { return nil }
        return id
    }

    /// The job id: the message id, or `<topic>-<partition>-<offset>` when none (stable under redelivery).
    public static func jobID(_ id: String?, topic: String, partition: Int32, offset: Int64) -> JobID {
        JobID(id ?? "\(topic)-\(partition)-\(offset)")
    }

    /// The JobSource for `source`: a path, a `file://` URI, an http(s) URL or an `s3://bucket/key` URI.
    public static func jobSource(_ source: String) throws(KafkaConnectorError) -> JobSource {
        let lower = source.lowercased()
        if lower.hasPrefix("s3://") {
            do {
                let location = try S3Location.parse(source)
                if location.isPrefix {
                    throw KafkaConnectorError(.invalidMessage, "field 'source': '\(source)' names no object (key is empty or ends with '/')")
                }
                return .s3(location.uri)
            } catch let error as KafkaConnectorError {
                throw error
            } catch {
                throw KafkaConnectorError(.invalidMessage, "field 'source': \((error as? ObjectStorageError)?.message ?? "\(error)")")
            }
        }
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            guard URL(string: source)?.host != nil else {
                throw KafkaConnectorError(.invalidMessage, "field 'source': '\(source)' is not a valid URL")
            }
            return .url(source)
        }
        if lower.hasPrefix("file:") {
            guard let url = URL(string: source), url.isFileURL,
                  url.host == nil || url.host == "" || url.host == "localhost" else {
                throw KafkaConnectorError(.invalidMessage, "field 'source': '\(source)' is not a local file:// URI")
            }
            return .file(url.path)
        }
        if let colon = source.firstIndex(of: ":"), source[..<colon].allSatisfy({ $0.isLetter }),
           source.distance(from: source.startIndex, to: colon) > 1 {
            throw KafkaConnectorError(.forbiddenSource,
                                      "field 'source': scheme '\(source[..<colon])' is not supported (path, file://, http(s)://, s3://)")
        }
        guard source.hasPrefix("/") else {
            throw KafkaConnectorError(.invalidMessage, "field 'source': path '\(source)' must be absolute")
        }
        return .file(source)
    }

    /// Where an `output` that is not a local path goes.
    public enum RemoteOutput: Sendable, Equatable {
        case s3(S3Location)
        /// A presigned URL, with the upload's method and headers.
        case url(String, method: String, headers: [String: String])

        /// How results and logs name it: the s3:// URI, or the URL without its query string.
        public var displayName: String {
            switch self {
            case .s3(let location): location.uri
            case .url(let url, _, _): Redaction.url(url)
            }
        }
    }

    /// For an `s3://` or http(s) `output`: the object (a prefix ending in `/` gets `<id>.<ext>` appended) and the
    /// format (the message's, else the name's extension, else `defaultFormat`); nil for local outputs.
    public static func remoteOutput(_ message: InputMessage, id: JobID,
                                    defaultFormat: String) throws(KafkaConnectorError) -> (output: RemoteOutput, format: String)? {
        guard let output = message.output, isRemote(output) else { return nil }
        func chosenFormat(_ name: String) -> String {
            let fileExtension = (name as NSString).pathExtension.lowercased()
            return (message.format ?? (formats.contains(fileExtension) ? fileExtension : defaultFormat)).lowercased()
        }
        if isURL(output) {
            let path = URLComponents(string: output)?.path ?? ""
            return (.url(output, method: (message.outputMethod ?? "PUT").uppercased(), headers: message.outputHeaders ?? [:]),
                    chosenFormat(path))
        }
        let location: S3Location
        do {
            location = try S3Location.parse(output)
        } catch {
            throw KafkaConnectorError(.invalidMessage, "field 'output': \(error.message)")
        }
        if location.isPrefix {
            let format = chosenFormat("")
            return (.s3(location.appending(OutputFiles.fileName(id: id.rawValue, format: format))), format)
        }
        return (.s3(location), chosenFormat(location.key))
    }

    /// The output file and format handed to the pipeline. The file is `<folder>/<id>.<format>` unless `output`
    /// names a file: the folder is `output` when it ends in `/` or is an existing folder, else `outputDirectory`.
    /// Relative paths resolve under `outputDirectory`; `..` components are refused; absolute paths only when
    /// allowed. The format is the message's, else the file's extension, else `defaultFormat`.
    public static func outputLocation(_ output: String?, id: JobID, format: String?, outputDirectory: String?,
                                      defaultFormat: String,
                                      allowAbsolute: Bool) throws(KafkaConnectorError) -> (path: String, format: String) {
        var folder: String
        var fileName: String?
        if let output, !output.isEmpty {
            if output.split(separator: "/").contains("..") {
                throw KafkaConnectorError(.invalidMessage, "field 'output': '..' is not allowed")
            }
            var resolved: String
            if output.hasPrefix("/") {
                guard allowAbsolute else {
                    throw KafkaConnectorError(.invalidMessage,
                                              "field 'output': absolute paths are not allowed (kafka.allow_absolute_output)")
                }
                resolved = output
            } else {
                guard let outputDirectory else {
                    throw KafkaConnectorError(.invalidMessage, "field 'output': relative path needs kafka.output_dir")
                }
                resolved = (outputDirectory as NSString).appendingPathComponent(output)
            }
            var isDirectory: ObjCBool = false
            if output.hasSuffix("/")
                || (FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory) && isDirectory.boolValue) {
                folder = resolved
            } else {
                folder = (resolved as NSString).deletingLastPathComponent
                fileName = (resolved as NSString).lastPathComponent
            }
        } else {
            guard let outputDirectory else {
                throw KafkaConnectorError(.invalidMessage, "no 'output' in the message and no kafka.output_dir configured")
            }
            folder = outputDirectory
        }
        let fileExtension = fileName.map { ($0 as NSString).pathExtension.lowercased() } ?? ""
        let chosen = (format ?? (formats.contains(fileExtension) ? fileExtension : defaultFormat)).lowercased()
        let name = fileName ?? OutputFiles.fileName(id: id.rawValue, format: chosen)
        return ((folder as NSString).appendingPathComponent(name), chosen)
    }
}

/// The result message published for every finished job: schema version 2 (docs/kafka.md, JSON Schema in
/// docs/schemas/result-v2.schema.json). Optional fields are left out when they do not apply (never `null`).
public struct ResultMessage: Codable, Sendable, Equatable {
    /// The `schema_version` this type writes.
    public static let schemaVersion = 2

    public struct InputLocation: Codable, Sendable, Equatable {
        public var topic: String
        public var partition: Int32
        public var offset: Int64
    }
    /// Why a job failed: a machine-readable `code` (the dead letter's `dreamsr.error.code`), the stage, the message.
    public struct Failure: Codable, Sendable, Equatable {
        public var code: String
        public var stage: String
        public var message: String
    }
    /// What is known about a written output file.
    public struct OutputFile: Sendable, Equatable {
        public var bytes: Int
        public var sha256: String
        public init(bytes: Int, sha256: String) {
            self.bytes = bytes
            self.sha256 = sha256
        }
    }

    public var schemaVersion: Int
    public var id: String
    public var status: String
    /// The output's local path (as in v1) and its URI (`file://` for local outputs).
    public var output: String?
    public var outputURI: String?
    /// Size in bytes and SHA-256 (hex) of the output file as written.
    public var bytes: Int?
    public var sha256: String?
    public var width: Int?
    public var height: Int?
    /// When the message was taken up and when this result was made (RFC 3339, UTC, milliseconds).
    public var startedAt: String
    public var finishedAt: String
    /// Seconds per stage.
    public var timings: [String: Double]
    public var error: Failure?
    /// v1 fields, kept for existing consumers: the same as `error.stage` / `error.message`.
    public var errorStage: String?
    public var errorMessage: String?
    public var pipeline: String?
    public var notes: [String]
    public var attempts: Int
    public var input: InputLocation
    /// The input message's headers named by `kafka.result_headers` (e.g. `traceparent`), passed through.
    public var headers: [String: String]

    enum CodingKeys: String, CodingKey {
        case id, status, output, bytes, sha256, width, height, timings, error, pipeline, notes, attempts, input, headers
        case schemaVersion = "schema_version"
        case outputURI = "output_uri"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case errorStage = "error_stage"
        case errorMessage = "error_message"
    }

    /// - Parameters:
    ///   - errorCode: the failure's code (ignored for ok outcomes; `processing` when nil).
    ///   - file: size and digest of the written output (ok outcomes).
    ///   - headers: the input headers to pass through (already selected).
    public init(outcome: JobOutcome, attempts: Int, message: ConsumedMessage, startedAt: Date = Date(),
                finishedAt: Date = Date(), file: OutputFile? = nil, errorCode: String? = nil,
                headers: [String: String] = [:]) {
        schemaVersion = Self.schemaVersion
        id = outcome.id.rawValue
        status = outcome.status.rawValue
        output = outcome.output
        // A local path becomes a file:// URI; an object (`s3://bucket/key`) or URL output already is one.
        outputURI = outcome.output.map { $0.contains("://") ? $0 : URL(fileURLWithPath: $0).absoluteString }
        bytes = file?.bytes
        sha256 = file?.sha256
        width = outcome.width
        height = outcome.height
        self.startedAt = Self.timestamp(startedAt)
        self.finishedAt = Self.timestamp(finishedAt)
        timings = outcome.stageSeconds
        errorStage = outcome.errorStage
        errorMessage = outcome.errorMessage
        if outcome.status != .ok {
            error = Failure(code: errorCode ?? KafkaConnectorError.Code.processing.rawValue,
                            stage: outcome.errorStage ?? "process", message: outcome.errorMessage ?? "")
            errorStage = error?.stage
            errorMessage = error?.message
        }
        pipeline = outcome.pipeline
        notes = outcome.notes
        self.attempts = attempts
        input = InputLocation(topic: message.topic, partition: message.partition, offset: message.offset)
        self.headers = headers
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data("{}".utf8))
    }

    /// RFC 3339, UTC, milliseconds: `2026-12-03T06:07:12.345Z`.
    public static func timestamp(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(millis / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(millis % 1000))
    }

    /// Longest header value passed through (bytes); longer values are left out, as are values that are not UTF-8.
    public static let maxHeaderValueBytes = 1024

    /// The headers of `message` named in `names` (compared case-insensitively, reported under the configured
    /// spelling); the first occurrence wins.
    public static func passThroughHeaders(_ message: ConsumedMessage, names: [String]) -> [String: String] {
        var out: [String: String] = [:]
        for name in names {
            let wanted = name.lowercased()
            guard let header = message.headers.first(where: { $0.name.lowercased() == wanted }),
                  let value = header.value, value.count <= maxHeaderValueBytes,
                  let text = String(validating: value, as: UTF8.self) else { continue }
            out[name] = text
        }
        return out
    }

    /// Size and SHA-256 of a written file, read in 1 MiB pieces; nil when it cannot be read.
    public static func describeFile(_ path: String) -> OutputFile? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        var hasher = SHA256Digest.Hasher()
        var total = 0
        while true {
            let chunk: Data?
            do { chunk = try handle.read(upToCount: 1 << 20) } catch { return nil }
            guard let chunk, !chunk.isEmpty else { break }  // nil or empty: end of file
            total += chunk.count
            hasher.update(chunk)
        }
        return OutputFile(bytes: total, sha256: hasher.finalize().hex)
    }
}

/// Header names on dead letters.
public enum DeadLetterHeader {
    public static let error = "dreamsr.error"
    public static let errorCode = "dreamsr.error.code"
    public static let stage = "dreamsr.error.stage"
    public static let topic = "dreamsr.source.topic"
    public static let partition = "dreamsr.source.partition"
    public static let offset = "dreamsr.source.offset"
    public static let attempts = "dreamsr.attempts"
    /// On a dead letter cut to fit the topic: the original value's size in bytes, its SHA-256 (hex), and what was
    /// cut (`value`, or `value,key,headers` when the original key and headers were dropped too).
    public static let originalSize = "dreamsr.original.size"
    public static let originalSHA256 = "dreamsr.original.sha256"
    public static let truncated = "dreamsr.truncated"
}
