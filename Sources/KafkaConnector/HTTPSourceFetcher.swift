import CCurl
import Foundation
import Jobs
import ObjectStorage
import Support

/// Downloads http(s) sources into a temporary file under the configured rules: allowed schemes, an address check at
/// connect time (loopback, link-local, private, CGNAT, multicast refused unless allowed: the address checked is the
/// address connected to, so a DNS answer that changes between a check and the connection — rebinding — cannot slip
/// through), redirects followed by us (each hop checked again) up to a limit, a size cap on Content-Length and on
/// bytes read, and a whole-download timeout. Proxy settings from the environment are ignored (a proxy would make the
/// connected address the proxy's).
///
/// Built on libcurl's easy API (CURLOPT_OPENSOCKETFUNCTION checks each address curl is about to connect to), run on
/// a dedicated thread pool; cancelling the calling task aborts the transfer.
public struct HTTPSourceFetcher: Sendable {
    public var rules: KafkaConnectorConfiguration.HTTPSourceRules
    public var directory: String
    /// Test hook: curl `CURLOPT_RESOLVE` entries ("host:port:address"), i.e. fixed DNS answers.
    var resolveOverrides: [String] = []

    public init(rules: KafkaConnectorConfiguration.HTTPSourceRules, directory: String? = nil) {
        self.rules = rules
        self.directory = directory ?? FileManager.default.temporaryDirectory.path
    }

    /// Downloads `urlString`; returns the path of a temporary file the caller deletes.
    public func download(_ urlString: String, name: String) async throws(KafkaConnectorError) -> String {
        guard var url = URL(string: urlString), url.host != nil else {
            throw KafkaConnectorError(.invalidMessage, "'\(urlString)' is not a valid URL")
        }
        let target = (directory as NSString).appendingPathComponent(".dreamsr-download-\(name)-\(UUID().uuidString)")
        var redirects = 0
        while true {
            try checkScheme(url)
            let response = try await fetchOnce(url, into: target)
            switch response {
            case .done:
                return target
            case .redirect(let location):
                redirects += 1
                if redirects > rules.maxRedirects {
                    try? FileManager.default.removeItem(atPath: target)
                    throw KafkaConnectorError(.download, "too many redirects (> \(rules.maxRedirects)) from \(urlString)")
                }
                guard let next = URL(string: location, relativeTo: url)?.absoluteURL, next.host != nil else {
                    try? FileManager.default.removeItem(atPath: target)
                    throw KafkaConnectorError(.download, "bad redirect location '\(location)'")
                }
                url = next
            }
        }
    }

    func checkScheme(_ url: URL) throws(KafkaConnectorError) {
        let scheme = url.scheme?.lowercased() ?? ""
        if !rules.allowedSchemes.contains(scheme) {
            throw KafkaConnectorError(.forbiddenSource, "scheme '\(scheme)' is not allowed for \(url.absoluteString)")
        }
    }

    enum FetchResult: Sendable { case done, redirect(String) }

    private static let transfers = DispatchQueue(label: "dreamsr.kafka.http", attributes: .concurrent)
    private static let curlReady: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    /// One request, no redirect followed: the body goes to `target` (truncated first).
    private func fetchOnce(_ url: URL, into target: String) async throws(KafkaConnectorError) -> FetchResult {
        let transfer = CurlTransfer(url: url.absoluteString, target: target, rules: rules,
                                    resolve: resolveOverrides)
        let result: Result<FetchResult, KafkaConnectorError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                Self.transfers.async {
                    guard Self.curlReady else {
                        continuation.resume(returning: .failure(KafkaConnectorError(.client, "curl_global_init failed")))
                        return
                    }
                    continuation.resume(returning: transfer.perform())
                }
            }
        } onCancel: {
            transfer.cancel()
        }
        if case .failure = result { try? FileManager.default.removeItem(atPath: target) }
        return try result.get()
    }

    // MARK: Address rules

    /// True for loopback, link-local, private, CGNAT, unspecified, benchmark, multicast and reserved addresses
    /// (4 or 16 bytes, network order); IPv4-mapped and NAT64 IPv6 addresses are checked as IPv4.
    public static func isForbidden(_ a: [UInt8]) -> Bool {
        if a.count == 4 {
            switch (a[0], a[1]) {
            case (0, _), (10, _), (127, _): return true
            case (100, 64...127): return true
            case (169, 254): return true
            case (172, 16...31): return true
            case (192, 168): return true
            case (192, 0) where a[2] == 0: return true
            case (198, 18...19): return true
            case (224...255, _): return true
            default: return false
            }
        }
        guard a.count == 16 else { return true }
        if a[0..<15].allSatisfy({ $0 == 0 }) { return true }  // :: and ::1
        if a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xff && a[11] == 0xff { return isForbidden(Array(a[12..<16])) }
        if a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && a[4..<12].allSatisfy({ $0 == 0 }) {
            return isForbidden(Array(a[12..<16]))
        }
        if a[0] == 0xfe && (a[1] & 0xc0) == 0x80 { return true }  // fe80::/10 link-local
        if (a[0] & 0xfe) == 0xfc { return true }  // fc00::/7 unique local
        if a[0] == 0xff { return true }  // multicast
        return false
    }

    static func format(_ a: [UInt8]) -> String {
        if a.count == 4 { return a.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: a.count, by: 2).map { String(format: "%x", Int(a[$0]) << 8 | Int(a[$0 + 1])) }
            .joined(separator: ":")
    }
}

/// One libcurl transfer with the fetcher's rules. Callbacks reach it through an unretained pointer, valid for the
/// duration of `perform()`.
private final class CurlTransfer: @unchecked Sendable {
    let url: String
    let target: String
    let rules: KafkaConnectorConfiguration.HTTPSourceRules
    let resolve: [String]
    private let cancelled = Locked(false)
    private var file: FileHandle?
    private var bytes = 0
    /// The easy handle while `perform()` runs (the write callback asks it for the status code).
    private var handle: UnsafeMutableRawPointer?
    /// Set by a callback that aborted the transfer: the reason to report instead of curl's code.
    private var failure: KafkaConnectorError?

    init(url: String, target: String, rules: KafkaConnectorConfiguration.HTTPSourceRules, resolve: [String]) {
        self.url = url
        self.target = target
        self.rules = rules
        self.resolve = resolve
    }

    func cancel() { cancelled.withLock { $0 = true } }

    func perform() -> Result<HTTPSourceFetcher.FetchResult, KafkaConnectorError> {
        guard let h = curl_easy_init() else { return .failure(KafkaConnectorError(.client, "curl_easy_init failed")) }
        handle = h
        defer {
            handle = nil
            curl_easy_cleanup(h)
        }
        var resolveList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(resolveList) }
        let me = Unmanaged.passUnretained(self).toOpaque()
        let timeoutMs = max(1, Int((rules.timeout.seconds * 1000).rounded()))
        var rc = CURLE_OK
        func set(_ r: CURLcode) { if rc == CURLE_OK { rc = r } }
        set(dreamsr_curl_setopt_str(h, CURLOPT_URL, url))
        set(dreamsr_curl_setopt_str(h, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(dreamsr_curl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0))
        set(dreamsr_curl_setopt_str(h, CURLOPT_PROXY, ""))  // no proxy from the environment
        set(dreamsr_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
        set(dreamsr_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, timeoutMs))
        set(dreamsr_curl_setopt_off(h, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(rules.maxBytes)))
        set(dreamsr_curl_setopt_str(h, CURLOPT_USERAGENT, "dreamsr"))
        set(dreamsr_curl_setopt_str(h, CURLOPT_ACCEPT_ENCODING, ""))
        for entry in resolve { resolveList = curl_slist_append(resolveList, entry) }
        if resolveList != nil { set(dreamsr_curl_setopt_slist(h, CURLOPT_RESOLVE, resolveList)) }
        set(dreamsr_curl_set_opensocket(h, { userdata, purpose, address in
            guard let userdata, let address else { return CURL_SOCKET_BAD }
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(userdata).takeUnretainedValue()
            return transfer.openSocket(purpose, address)
        }, me))
        set(dreamsr_curl_set_write(h, { data, size, count, userdata in
            guard let userdata else { return 0 }
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(userdata).takeUnretainedValue()
            return transfer.write(data, size * count)
        }, me))
        set(dreamsr_curl_set_xferinfo(h, { userdata, _, _, _, _ in
            guard let userdata else { return 1 }
            return Unmanaged<CurlTransfer>.fromOpaque(userdata).takeUnretainedValue().cancelled.withLock { $0 } ? 1 : 0
        }, me))
        guard rc == CURLE_OK else {
            return .failure(KafkaConnectorError(.client, "curl option refused: \(String(cString: curl_easy_strerror(rc)))"))
        }
        rc = curl_easy_perform(h)
        let wroteBody = file != nil
        try? file?.synchronize()
        try? file?.close()
        file = nil
        if let failure { return .failure(failure) }
        if cancelled.withLock({ $0 }) { return .failure(KafkaConnectorError(.download, "download cancelled")) }
        var status = 0
        _ = dreamsr_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        switch rc {
        case CURLE_OK:
            break
        case CURLE_FILESIZE_EXCEEDED:
            return .failure(KafkaConnectorError(.limitExceeded,
                                                "Content-Length exceeds kafka.http.max_bytes \(rules.maxBytes)"))
        case CURLE_OPERATION_TIMEDOUT:
            return .failure(KafkaConnectorError(.timeout, "download of \(url) timed out after \(timeoutMs) ms",
                                                isRetriable: true))
        case CURLE_UNSUPPORTED_PROTOCOL:
            return .failure(KafkaConnectorError(.forbiddenSource, "scheme of \(url) is not allowed"))
        case CURLE_COULDNT_RESOLVE_HOST:
            return .failure(KafkaConnectorError(.download, "cannot resolve the host of \(url)", isRetriable: true))
        default:
            return .failure(KafkaConnectorError(.download, "download of \(url) failed: \(String(cString: curl_easy_strerror(rc)))",
                                                isRetriable: true))
        }
        if (300...399).contains(status) {
            var location: UnsafeMutablePointer<CChar>?
            _ = dreamsr_curl_getinfo_str(h, CURLINFO_REDIRECT_URL, &location)
            guard let location else {
                return .failure(KafkaConnectorError(.download, "HTTP \(status) without a Location from \(url)"))
            }
            return .success(.redirect(String(cString: location)))
        }
        guard (200...299).contains(status) else {
            let retriable = status == 408 || status == 429 || status >= 500
            return .failure(KafkaConnectorError(.download, "HTTP \(status) from \(url)", isRetriable: retriable))
        }
        if !wroteBody {
            // An empty body: still leave an (empty) file for the decoder to reject with its own error.
            _ = FileManager.default.createFile(atPath: target, contents: nil)
        }
        return .success(.done)
    }

    /// CURLOPT_OPENSOCKETFUNCTION: the address curl is about to connect to; refused when forbidden.
    private func openSocket(_ purpose: curlsocktype, _ a: UnsafeMutablePointer<curl_sockaddr>) -> curl_socket_t {
        let address = addressBytes(a)
        if !rules.allowPrivateAddresses && HTTPSourceFetcher.isForbidden(address) {
            if failure == nil {
                let host = URL(string: url)?.host ?? url
                failure = KafkaConnectorError(.forbiddenSource,
                    "host '\(host)' resolves to \(address.isEmpty ? "a non-IP address" : HTTPSourceFetcher.format(address)), "
                    + "a loopback/link-local/private address (kafka.http.allow_private)")
            }
            return CURL_SOCKET_BAD
        }
        return dreamsr_curl_open(a)
    }

    /// CURLOPT_WRITEFUNCTION: the body, capped at `maxBytes`. Returning less than `count` aborts the transfer.
    private func write(_ data: UnsafeMutablePointer<CChar>?, _ count: Int) -> Int {
        guard let data else { return 0 }
        var status = 0
        if let handle { _ = dreamsr_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status) }
        // Bodies of redirects and errors are not the image: read and dropped.
        guard (200...299).contains(status) else { return count }
        bytes += count
        if bytes > rules.maxBytes {
            failure = failure ?? KafkaConnectorError(.limitExceeded, "download exceeds kafka.http.max_bytes \(rules.maxBytes)")
            return 0
        }
        if file == nil {
            _ = FileManager.default.createFile(atPath: target, contents: nil)
            guard let handle = FileHandle(forWritingAtPath: target) else {
                failure = KafkaConnectorError(.download, "cannot create download file \(target)", isRetriable: true)
                return 0
            }
            file = handle
        }
        do {
            try file?.write(contentsOf: UnsafeRawBufferPointer(start: data, count: count))
        } catch {
            failure = KafkaConnectorError(.download, "cannot write download file \(target): \(error)", isRetriable: true)
            return 0
        }
        return count
    }
}
