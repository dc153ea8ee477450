import CCurl
import Foundation
import Support

/// One HTTP request as the object-storage clients send it.
struct HTTPRequest: Sendable {
    enum Body: Sendable {
        case none
        case bytes([UInt8])
        /// `length` bytes of a file from `offset`.
        case file(path: String, offset: Int, length: Int)

        var length: Int {
            switch self {
            case .none: 0
            case .bytes(let b): b.count
            case .file(_, _, let length): length
            }
        }
    }

    var method: String
    var url: String
    var headers: [(String, String)]
    var body: Body = .none
}

struct HTTPResponse: Sendable {
    var status: Int
    /// Lower-case names.
    var headers: [String: String]
    /// The body, unless it went to a file (2xx with `responseFile`); at most `maxErrorBody` bytes.
    var body: [UInt8]
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Why a transfer ended without a response.
enum TransferFailure: Error, Sendable {
    case transport(String, retriable: Bool)
    case timedOut(String)
    case forbidden(String)
    case tooLarge(String)
    case localFile(String)
    case cancelled
}

struct TransferOptions: Sendable {
    var policy: TransferPolicy
    /// 2xx bodies go to this file (created or truncated); other bodies are kept in memory.
    var responseFile: String?
    /// Largest 2xx body written to `responseFile`.
    var maxResponseBytes: Int = .max
    /// Returns a reason when the address (4 or 16 bytes, network order) curl is about to connect to is refused;
    /// nil: every address is allowed (the operator's configured S3 endpoint).
    var addressRule: (@Sendable ([UInt8]) -> String?)?
    /// Test hook: curl `CURLOPT_RESOLVE` entries.
    var resolve: [String] = []
}

/// Runs requests with libcurl's easy API on a dedicated thread pool; cancelling the calling task aborts the
/// transfer. Proxies from the environment are ignored; redirects are not followed.
enum HTTPTransport {
    static let maxErrorBody = 64 << 10
    private static let transfers = DispatchQueue(label: "dreamsr.object-storage.http", attributes: .concurrent)
    private static let curlReady: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    static func perform(_ request: HTTPRequest, _ options: TransferOptions) async -> Result<HTTPResponse, TransferFailure> {
        let transfer = CurlRequest(request: request, options: options)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                transfers.async {
                    guard curlReady else {
                        continuation.resume(returning: .failure(.transport("curl_global_init failed", retriable: false)))
                        return
                    }
                    continuation.resume(returning: transfer.perform())
                }
            }
        } onCancel: {
            transfer.cancel()
        }
    }
}

/// The bytes of the address in a curl socket address (4 for IPv4, 16 for IPv6, empty otherwise); the SSRF checks of
/// object-storage transfers and of the Kafka connector's HTTP sources both read it here.
public func addressBytes(_ a: UnsafeMutablePointer<curl_sockaddr>) -> [UInt8] {
    var address: [UInt8] = []
    withUnsafeMutablePointer(to: &a.pointee.addr) { sa in
        if a.pointee.family == AF_INET {
            sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var v = sin.pointee.sin_addr
                address = withUnsafeBytes(of: &v) { Array($0) }
            }
        } else if a.pointee.family == AF_INET6 {
            sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var v = sin6.pointee.sin6_addr
                address = withUnsafeBytes(of: &v) { Array($0) }
            }
        }
    }
    return address
}

/// One libcurl transfer. Callbacks reach it through an unretained pointer, valid for the duration of `perform()`.
private final class CurlRequest: @unchecked Sendable {
    let request: HTTPRequest
    let options: TransferOptions
    private let cancelled = Locked(false)
    private var handle: UnsafeMutableRawPointer?
    private var failure: TransferFailure?
    private var headers: [String: String] = [:]
    private var memoryBody: [UInt8] = []
    private var output: FileHandle?
    private var written = 0
    private var input: FileHandle?
    private var sent = 0

    init(request: HTTPRequest, options: TransferOptions) {
        self.request = request
        self.options = options
    }

    func cancel() { cancelled.withLock { $0 = true } }

    func perform() -> Result<HTTPResponse, TransferFailure> {
        guard let h = curl_easy_init() else { return .failure(.transport("curl_easy_init failed", retriable: false)) }
        handle = h
        var headerList: UnsafeMutablePointer<curl_slist>?
        var resolveList: UnsafeMutablePointer<curl_slist>?
        defer {
            handle = nil
            curl_easy_cleanup(h)
            curl_slist_free_all(headerList)
            curl_slist_free_all(resolveList)
            try? input?.close()
            try? output?.close()
        }
        if case .file(let path, let offset, _) = request.body {
            guard let file = FileHandle(forReadingAtPath: path) else {
                return .failure(.localFile("cannot open \(path) for reading"))
            }
            do { try file.seek(toOffset: UInt64(offset)) } catch {
                return .failure(.localFile("cannot seek in \(path): \(error)"))
            }
            input = file
        }
        if let path = options.responseFile {
            // Truncated for each attempt; written only with a 2xx body.
            guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
                return .failure(.localFile("cannot create \(path)"))
            }
            output = file
        }
        let me = Unmanaged.passUnretained(self).toOpaque()
        let policy = options.policy
        var rc = CURLE_OK
        func set(_ r: CURLcode) { if rc == CURLE_OK { rc = r } }
        set(dreamsr_curl_setopt_str(h, CURLOPT_URL, request.url))
        set(dreamsr_curl_setopt_str(h, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(dreamsr_curl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0))
        set(dreamsr_curl_setopt_str(h, CURLOPT_PROXY, ""))
        set(dreamsr_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
        set(dreamsr_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, max(1, Int(policy.connectTimeout.seconds * 1000))))
        set(dreamsr_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, max(1, Int(policy.requestTimeout.seconds * 1000))))
        set(dreamsr_curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1))
        set(dreamsr_curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(1, Int(policy.idleTimeout.seconds.rounded(.up)))))
        set(dreamsr_curl_setopt_str(h, CURLOPT_USERAGENT, "dreamsr"))
        if request.method == "HEAD" {
            set(dreamsr_curl_setopt_long(h, CURLOPT_NOBODY, 1))
        } else if request.method != "GET" {
            set(dreamsr_curl_setopt_str(h, CURLOPT_CUSTOMREQUEST, request.method))
        }
        if case .none = request.body {} else {
            set(dreamsr_curl_setopt_long(h, CURLOPT_UPLOAD, 1))
            set(dreamsr_curl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.length)))
            set(dreamsr_curl_set_read(h, { buffer, size, count, userdata in
                guard let buffer, let userdata else { return Int(CURL_READFUNC_ABORT) }
                return Unmanaged<CurlRequest>.fromOpaque(userdata).takeUnretainedValue().read(buffer, size * count)
            }, me))
        }
        if options.responseFile != nil, options.maxResponseBytes < Int.max {
            set(dreamsr_curl_setopt_off(h, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(options.maxResponseBytes)))
        }
        for (name, value) in request.headers { headerList = curl_slist_append(headerList, "\(name): \(value)") }
        // No "Expect: 100-continue" round trip; the body follows the headers.
        headerList = curl_slist_append(headerList, "Expect:")
        set(dreamsr_curl_setopt_slist(h, CURLOPT_HTTPHEADER, headerList))
        for entry in options.resolve { resolveList = curl_slist_append(resolveList, entry) }
        if resolveList != nil { set(dreamsr_curl_setopt_slist(h, CURLOPT_RESOLVE, resolveList)) }
        if options.addressRule != nil {
            set(dreamsr_curl_set_opensocket(h, { userdata, _, address in
                guard let userdata, let address else { return CURL_SOCKET_BAD }
                return Unmanaged<CurlRequest>.fromOpaque(userdata).takeUnretainedValue().openSocket(address)
            }, me))
        }
        set(dreamsr_curl_set_header(h, { data, size, count, userdata in
            guard let data, let userdata else { return 0 }
            return Unmanaged<CurlRequest>.fromOpaque(userdata).takeUnretainedValue().header(data, size * count)
        }, me))
        set(dreamsr_curl_set_write(h, { data, size, count, userdata in
            guard let data, let userdata else { return 0 }
            return Unmanaged<CurlRequest>.fromOpaque(userdata).takeUnretainedValue().write(data, size * count)
        }, me))
        set(dreamsr_curl_set_xferinfo(h, { userdata, _, _, _, _ in
            guard let userdata else { return 1 }
            return Unmanaged<CurlRequest>.fromOpaque(userdata).takeUnretainedValue().cancelled.withLock { $0 } ? 1 : 0
        }, me))
        guard rc == CURLE_OK else {
            return .failure(.transport("curl option refused: \(String(cString: curl_easy_strerror(rc)))", retriable: false))
        }
        rc = curl_easy_perform(h)
        if let output {
            do { try output.synchronize() } catch {
                if failure == nil { failure = .localFile("cannot write \(options.responseFile ?? ""): \(error)") }
            }
        }
        if let failure { return .failure(failure) }
        if cancelled.withLock({ $0 }) { return .failure(.cancelled) }
        var status = 0
        _ = dreamsr_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        switch rc {
        case CURLE_OK:
            return .success(HTTPResponse(status: status, headers: headers, body: memoryBody))
        case CURLE_FILESIZE_EXCEEDED:
            return .failure(.tooLarge("the object is larger than \(options.maxResponseBytes) bytes"))
        case CURLE_OPERATION_TIMEDOUT:
            return .failure(.timedOut("no answer or no progress within the timeout "
                                      + "(idle \(policy.idleTimeout.seconds) s, request \(policy.requestTimeout.seconds) s)"))
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            return .failure(.forbidden("scheme or URL not allowed"))
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE:
            return .failure(.transport(String(cString: curl_easy_strerror(rc)), retriable: false))
        default:
            return .failure(.transport(String(cString: curl_easy_strerror(rc)), retriable: true))
        }
    }

    private var status: Int {
        var status = 0
        if let handle { _ = dreamsr_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status) }
        return status
    }

    private func header(_ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        let line = String(decoding: UnsafeRawBufferPointer(start: data, count: count), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            headers = [:]  // a new response (after a 100 Continue): its own headers
        } else if let colon = line.firstIndex(of: ":") {
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return count
    }

    private func write(_ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        let buffer = UnsafeRawBufferPointer(start: data, count: count)
        if let output, (200...299).contains(status) {
            written += count
            if written > options.maxResponseBytes {
                failure = failure ?? .tooLarge("the object is larger than \(options.maxResponseBytes) bytes")
                return 0
            }
            do { try output.write(contentsOf: buffer) } catch {
                failure = .localFile("cannot write \(options.responseFile ?? ""): \(error)")
                return 0
            }
            return count
        }
        let room = HTTPTransport.maxErrorBody - memoryBody.count
        if room > 0 { memoryBody.append(contentsOf: buffer.prefix(room)) }
        return count
    }

    private func read(_ buffer: UnsafeMutablePointer<CChar>, _ capacity: Int) -> Int {
        let remaining = request.body.length - sent
        let n = min(capacity, remaining)
        guard n > 0 else { return 0 }
        switch request.body {
        case .none:
            return 0
        case .bytes(let bytes):
            bytes.withUnsafeBytes { src in
                UnsafeMutableRawPointer(buffer).copyMemory(from: src.baseAddress! + sent, byteCount: n)
            }
        case .file(let path, _, _):
            guard let input, let chunk = try? input.read(upToCount: n), !chunk.isEmpty else {
                failure = failure ?? .localFile("cannot read \(path) (changed while uploading?)")
                return Int(CURL_READFUNC_ABORT)
            }
            chunk.copyBytes(to: UnsafeMutableRawBufferPointer(start: buffer, count: chunk.count))
            sent += chunk.count
            return chunk.count
        }
        sent += n
        return n
    }

    private func openSocket(_ address: UnsafeMutablePointer<curl_sockaddr>) -> curl_socket_t {
        if let rule = options.addressRule, let reason = rule(addressBytes(address)) {
            if failure == nil { failure = .forbidden(reason) }
            return CURL_SOCKET_BAD
        }
        return dreamsr_curl_open(address)
    }
}
