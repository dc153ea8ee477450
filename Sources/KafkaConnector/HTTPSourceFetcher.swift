import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Jobs

/// Downloads http(s) sources into a temporary file under the configured rules: allowed schemes, resolved-address
/// check (loopback, link-local, private, CGNAT, multicast refused unless allowed) on the first URL and on every
/// redirect, a redirect limit, a size cap on Content-Length and on bytes read, and a whole-download timeout.
///
/// Known limit: the address is checked by resolving the host just before the request; the HTTP client resolves it
/// again, so a DNS answer that changes in between (rebinding) is not caught.
public struct HTTPSourceFetcher: Sendable {
    public var rules: KafkaConnectorConfiguration.HTTPSourceRules
    public var directory: String

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
            try await Self.checkAddress(host: url.host ?? "", allowPrivate: rules.allowPrivateAddresses)
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
                guard let next = URL(string: location, relativeTo: url)?.absoluteURL else {
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

    enum FetchResult { case done, redirect(String) }

    private func fetchOnce(_ url: URL, into target: String) async throws(KafkaConnectorError) -> FetchResult {
        let configuration = URLSessionConfiguration.ephemeral
        let seconds = Double(rules.timeout.components.seconds) + Double(rules.timeout.components.attoseconds) * 1e-18
        configuration.timeoutIntervalForRequest = seconds
        configuration.timeoutIntervalForResource = seconds
        configuration.httpCookieStorage = nil
        configuration.urlCache = nil
        let delegate = DownloadDelegate(target: target, maxBytes: rules.maxBytes)
        let session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let result: Result<FetchResult, KafkaConnectorError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                delegate.start(session: session, url: url, continuation: continuation)
            }
        } onCancel: {
            delegate.cancel()
        }
        if case .failure = result { try? FileManager.default.removeItem(atPath: target) }
        return try result.get()
    }

    // MARK: Address rules

    /// Resolves `host` and refuses it when any address is in a forbidden range (unless `allowPrivate`).
    public static func checkAddress(host: String, allowPrivate: Bool) async throws(KafkaConnectorError) {
        if allowPrivate { return }
        let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        let result: Result<[[UInt8]], KafkaConnectorError> = await withCheckedContinuation { continuation in
            dnsQueue.async { continuation.resume(returning: resolve(bareHost)) }
        }
        let addresses = try result.get()
        for address in addresses where isForbidden(address) {
            throw KafkaConnectorError(.forbiddenSource,
                                      "host '\(host)' resolves to \(format(address)), a loopback/link-local/private address (kafka.http.allow_private)")
        }
    }

    private static let dnsQueue = DispatchQueue(label: "dreamsr.kafka.dns", attributes: .concurrent)

    static func resolve(_ host: String) -> Result<[[UInt8]], KafkaConnectorError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var info: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &info)
        guard status == 0, let first = info else {
            let reason = String(cString: gai_strerror(status))
            return .failure(KafkaConnectorError(.download, "cannot resolve host '\(host)': \(reason)",
                                                isRetriable: status == EAI_AGAIN))
        }
        defer { freeaddrinfo(first) }
        var addresses: [[UInt8]] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let sockaddr = current.pointee.ai_addr {
                if current.pointee.ai_family == AF_INET {
                    sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        var addr = sin.pointee.sin_addr
                        addresses.append(withUnsafeBytes(of: &addr) { Array($0) })
                    }
                } else if current.pointee.ai_family == AF_INET6 {
                    sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                        var addr = sin6.pointee.sin6_addr
                        addresses.append(withUnsafeBytes(of: &addr) { Array($0) })
                    }
                }
            }
            node = current.pointee.ai_next
        }
        return .success(addresses)
    }

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

/// URLSession delegate streaming the body into a file with a byte cap; redirects are not followed (the fetcher
/// re-checks and follows them itself).
private final class DownloadDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    typealias Outcome = Result<HTTPSourceFetcher.FetchResult, KafkaConnectorError>
    private let target: String
    private let maxBytes: Int
    private let state = Locked<(continuation: CheckedContinuation<Outcome, Never>?, file: FileHandle?, bytes: Int,
                                failure: KafkaConnectorError?, redirect: String?, task: URLSessionTask?)>(
        (nil, nil, 0, nil, nil, nil))

    init(target: String, maxBytes: Int) {
        self.target = target
        self.maxBytes = maxBytes
    }

    func start(session: URLSession, url: URL, continuation: CheckedContinuation<Outcome, Never>) {
        let task = session.dataTask(with: url)
        state.withLock {
            $0.continuation = continuation
            $0.task = task
        }
        task.resume()
    }

    func cancel() {
        let task = state.withLock { state -> URLSessionTask? in
            if state.failure == nil { state.failure = KafkaConnectorError(.download, "download cancelled") }
            return state.task
        }
        task?.cancel()
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        state.withLock { $0.redirect = response.value(forHTTPHeaderField: "Location") ?? request.url?.absoluteString }
        completionHandler(nil)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        guard let http = response as? HTTPURLResponse else {
            fail(KafkaConnectorError(.download, "not an HTTP response"))
            completionHandler(.cancel)
            return
        }
        let status = http.statusCode
        if (300...399).contains(status), let location = http.value(forHTTPHeaderField: "Location") {
            state.withLock { $0.redirect = location }
            completionHandler(.cancel)
            return
        }
        guard (200...299).contains(status) else {
            let retriable = status == 408 || status == 429 || status >= 500
            fail(KafkaConnectorError(.download, "HTTP \(status) from \(response.url?.absoluteString ?? "?")",
                                     isRetriable: retriable))
            completionHandler(.cancel)
            return
        }
        if response.expectedContentLength > Int64(maxBytes) {
            fail(KafkaConnectorError(.limitExceeded,
                                     "Content-Length \(response.expectedContentLength) exceeds kafka.http.max_bytes \(maxBytes)"))
            completionHandler(.cancel)
            return
        }
        _ = FileManager.default.createFile(atPath: target, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: target) else {
            fail(KafkaConnectorError(.download, "cannot create download file \(target)", isRetriable: true))
            completionHandler(.cancel)
            return
        }
        state.withLock { $0.file = handle }
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let over = state.withLock { state -> Bool in
            state.bytes += data.count
            if state.bytes > maxBytes { return true }
            state.file?.write(data)
            return false
        }
        if over {
            fail(KafkaConnectorError(.limitExceeded, "download exceeds kafka.http.max_bytes \(maxBytes)"))
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        let (continuation, outcome): (CheckedContinuation<Outcome, Never>?, Outcome) = state.withLock { state in
            let continuation = state.continuation
            state.continuation = nil
            try? state.file?.synchronize()
            try? state.file?.close()
            state.file = nil
            if let failure = state.failure { return (continuation, .failure(failure)) }
            if let redirect = state.redirect { return (continuation, .success(.redirect(redirect))) }
            if let error = error as? URLError {
                let timedOut = error.code == .timedOut
                return (continuation, .failure(KafkaConnectorError(timedOut ? .timeout : .download,
                                                                   "download failed: \(error.localizedDescription)",
                                                                   isRetriable: true)))
            }
            if let error { return (continuation, .failure(KafkaConnectorError(.download, "download failed: \(error)",
                                                                              isRetriable: true))) }
            return (continuation, .success(.done))
        }
        continuation?.resume(returning: outcome)
    }

    private func fail(_ error: KafkaConnectorError) {
        state.withLock { if $0.failure == nil { $0.failure = error } }
    }
}
