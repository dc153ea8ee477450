#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PipelineRuntime
import ServiceLifecycle
import Support

/// `host:port` for the status endpoint. `:9464` and `0.0.0.0:9464` listen on all IPv4 interfaces, `[::]:9464` on all
/// IPv6 and IPv4 interfaces, `[::1]:9464` on the IPv6 loopback; port 0 picks a free port (tests).
public struct HTTPAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public var isIPv6: Bool { host.contains(":") }

    public static func parse(_ text: String, error: (String) -> any Error) throws -> HTTPAddress {
        guard let colon = text.lastIndex(of: ":") else { throw error("expected host:port, got '\(text)'") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") && host.count >= 2 {
            host = String(host.dropFirst().dropLast())
            var probe = in6_addr()
            guard inet_pton(AF_INET6, host, &probe) == 1 else {
                throw error("host in '\(text)' must be an IPv6 address inside [ ], e.g. [::1]:9464")
            }
        } else {
            if host.isEmpty { host = "0.0.0.0" }
            if host == "localhost" { host = "127.0.0.1" }
            var probe = in_addr()
            guard inet_pton(AF_INET, host, &probe) == 1 else {
                throw error("host in '\(text)' must be an IPv4 address, an IPv6 address in [ ] (e.g. [::1]:9464), or empty for all interfaces")
            }
        }
        guard let port = UInt16(text[text.index(after: colon)...]) else {
            throw error("port in '\(text)' must be a number 0...65535")
        }
        return HTTPAddress(host: host, port: port)
    }

    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// One HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    /// The body's bytes (text is UTF-8).
    public var bytes: [UInt8]
    public var body: String { String(decoding: bytes, as: UTF8.self) }
    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.bytes = Array(body.utf8)
    }
    public init(status: Int, contentType: String, bytes: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.bytes = bytes
    }
}

/// The status endpoint's HTTP/1.1 server (health, readiness, metrics, the status page and its thumbnails), on
/// SwiftNIO: one event-loop thread serves every connection, so a client that sends half a request and stalls, or
/// reads its answer slowly, only holds its own connection, never the others.
///
/// Keep-alive is the HTTP/1.1 default (`Connection: close` or HTTP/1.0 without keep-alive close after the answer).
/// GET and HEAD are served; other methods get 405, what does not parse 400, a request head over `maxRequestBytes`
/// 431. A request head must arrive whole within `requestTimeout` of its first byte (or of the connection opening);
/// a connection silent for `idleTimeout` is closed; at most `maxConnections` are held, the oldest being dropped to
/// make room, so idle sockets can never lock the endpoint. Handlers are synchronous and may take milliseconds (the
/// metrics scrape, thumbnail bytes): they run on a small thread pool, never on the event loop; the probe paths
/// (/health, /ready) have a thread of their own, so a flood of scrapes never queues the kubelet's probes.
public final class HTTPServer: Service, Sendable {
    public typealias Handler = @Sendable (_ path: String) -> HTTPResponse?

    public struct Limits: Sendable {
        /// How long a request head may take to arrive, from its first byte (or from the connection opening).
        public var requestTimeout: Duration = .seconds(5)
        /// How long a kept-alive connection may stay silent before it is closed.
        public var idleTimeout: Duration = .seconds(60)
        public var maxConnections = 256
        public var maxRequestBytes = 16384
        /// Threads running the handlers (besides the probes' own thread).
        public var handlerThreads = 2
        /// Paths whose handlers run on their own thread, never queued behind the others.
        public var probePaths: Set<String> = ["/health", "/ready"]
        public init() {}
    }

    private let address: HTTPAddress
    private let handler: Handler
    private let logger: Logger
    private let limits: Limits
    private let boundPortState = Locked<(UInt16?, [CheckedContinuation<UInt16?, Never>])>((nil, []))
    private let stopped = Locked(false)

    public init(address: HTTPAddress, logger: Logger, limits: Limits = Limits(), handler: @escaping Handler) {
        self.address = address
        self.handler = handler
        self.logger = logger
        self.limits = limits
    }

    /// The port actually bound (useful with port 0); nil if binding failed.
    public func boundPort() async -> UInt16? {
        await withCheckedContinuation { (cont: CheckedContinuation<UInt16?, Never>) in
            let now: UInt16?? = boundPortState.withLock { s in
                if let p = s.0 { return .some(p) }
                if stopped.current { return .some(nil) }
                s.1.append(cont)
                return .none
            }
            if let now { cont.resume(returning: now) }
        }
    }

    private func publish(_ port: UInt16?) {
        let waiters: [CheckedContinuation<UInt16?, Never>] = boundPortState.withLock { s in
            s.0 = port
            let w = s.1
            s.1 = []
            return w
        }
        for w in waiters { w.resume(returning: port) }
    }

    /// Listens until graceful shutdown (or cancellation), then closes the listener, lets each connection finish the
    /// answer it is writing (up to a second), closes them all and returns.
    public func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = HandlerThreads(general: max(1, limits.handlerThreads), probePaths: limits.probePaths)
        let connections = OpenConnections()
        let listener: any Channel
        do {
            let socketAddress = try SocketAddress(ipAddress: address.host, port: Int(address.port))
            listener = try await bootstrap(group: group, pool: pool, connections: connections).bind(to: socketAddress).get()
        } catch {
            stopped.withLock { $0 = true }
            publish(nil)
            await pool.shutdown()
            try? await group.shutdownGracefully()
            throw AppError.http("cannot listen on \(address): \(error)")
        }
        let port = UInt16(listener.localAddress?.port ?? Int(address.port))
        publish(port)
        logger.info("HTTP status endpoint listening", metadata: ["address": "\(HTTPAddress(host: address.host, port: port))"])

        try? await gracefulShutdown()
        try? await listener.close()
        // Connections between requests close at once; one writing an answer closes when it is written.
        for channel in connections.all { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        let quiesceDeadline = ContinuousClock.now + .seconds(1)
        while !Task.isCancelled && !connections.all.isEmpty && ContinuousClock.now < quiesceDeadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        for channel in connections.all { try? await channel.close() }
        try? await group.shutdownGracefully()
        await pool.shutdown()
        logger.info("HTTP status endpoint stopped")
    }

    private func bootstrap(group: MultiThreadedEventLoopGroup, pool: HandlerThreads,
                           connections: OpenConnections) -> ServerBootstrap {
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        if address.isIPv6 { // [::] also takes IPv4 connections (dual stack)
            bootstrap = bootstrap.serverChannelOption(ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 0)
        }
        return bootstrap
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [limits, handler] channel in
                connections.add(channel, keepingAtMost: limits.maxConnections)
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: TimeAmount(limits.idleTimeout)))
                    try sync.addHandler(RequestHeadGuard(maxBytes: limits.maxRequestBytes,
                                                         timeout: TimeAmount(limits.requestTimeout)))
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(StatusRequestHandler(handler: handler, pool: pool))
                }
            }
    }
}

/// Where handlers run: the probe paths on a thread of their own, everything else on a small pool.
private struct HandlerThreads: Sendable {
    let general: NIOThreadPool
    let probes: NIOThreadPool
    let probePaths: Set<String>

    init(general threads: Int, probePaths: Set<String>) {
        general = NIOThreadPool(numberOfThreads: threads)
        probes = NIOThreadPool(numberOfThreads: 1)
        self.probePaths = probePaths
        general.start()
        probes.start()
    }

    func pool(for path: String) -> NIOThreadPool { probePaths.contains(path) ? probes : general }

    func shutdown() async {
        try? await general.shutdownGracefully()
        try? await probes.shutdownGracefully()
    }
}

/// The server's open connections, oldest first.
private final class OpenConnections: Sendable {
    private let list = Locked<[any Channel]>([])

    var all: [any Channel] { list.current }

    /// Registers `channel` (forgotten when it closes); past `limit`, the oldest connection is closed to make room.
    func add(_ channel: any Channel, keepingAtMost limit: Int) {
        let id = ObjectIdentifier(channel)
        let evicted: [any Channel] = list.withLock { list in
            list.append(channel)
            let excess = max(0, list.count - max(1, limit))
            let oldest = Array(list.prefix(excess))
            list.removeFirst(excess)
            return oldest
        }
        for old in evicted { old.close(promise: nil) }
        channel.closeFuture.whenComplete { [list] _ in list.withLock { $0.removeAll { ObjectIdentifier($0) == id } } }
    }
}

/// Sits in front of the HTTP decoder: bounds the size of a request head and the time it may take to arrive, and
/// closes a connection that stays silent (the `IdleStateHandler` before it says when).
private final class RequestHeadGuard: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// Sent down the pipeline by the request handler when a request head has been decoded.
    struct HeadReceived {}

    private let maxBytes: Int
    private let timeout: TimeAmount
    /// Bytes received since the last complete request head.
    private var pending = 0
    private var deadline: Scheduled<Void>?
    private var rejected = false

    init(maxBytes: Int, timeout: TimeAmount) {
        self.maxBytes = maxBytes
        self.timeout = timeout
    }

    func channelActive(context: ChannelHandlerContext) {
        armDeadline(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !rejected else { return }
        let bytes = unwrapInboundIn(data)
        if deadline == nil { armDeadline(context: context) }
        pending += bytes.readableBytes
        guard pending <= maxBytes else {
            rejected = true
            let body = "request head over \(maxBytes) bytes\n"
            let answer = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer(string: answer)))).assumeIsolated()
                .whenComplete { _ in context.close(promise: nil) }
            return
        }
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is HeadReceived else { return context.triggerUserOutboundEvent(event, promise: promise) }
        pending = 0
        deadline?.cancel()
        deadline = nil
        promise?.succeed(())
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
            return
        }
        // Shutdown with half a request head in: nothing to answer, so close here. Passed on, NIO's pipeline handler
        // (no request seen) would close and mark the connection done, and the decoder's end-of-input error for the
        // partial head would then make the error handler write a 400 into it (an assertion failure in NIO's debug
        // builds).
        if event is ChannelShouldQuiesceEvent, pending > 0 {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The head of the request under way (or the first one) must be in within `timeout`, or the connection closes.
    private func armDeadline(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            context.close(promise: nil)
        }
    }
}

/// Answers decoded requests: the handler runs on a handler thread, the answer is written back on the event loop.
/// One request at a time per connection (NIO's pipelining handler holds the next one until this answer is written).
private final class StatusRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: HTTPServer.Handler
    private let pool: HandlerThreads
    private var request: HTTPRequestHead?

    init(handler: @escaping HTTPServer.Handler, pool: HandlerThreads) {
        self.handler = handler
        self.pool = pool
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
            context.triggerUserOutboundEvent(RequestHeadGuard.HeadReceived(), promise: nil)
        case .body:
            break // GET and HEAD have none; other methods are refused at their end
        case .end:
            guard let head = request else { return }
            request = nil
            answer(head, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func answer(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard head.method == .GET || head.method == .HEAD else {
            write(HTTPResponse(status: 405, body: "only GET and HEAD\n"), to: head, extraHeaders: [("Allow", "GET, HEAD")],
                  context: context)
            return
        }
        let path = String(head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        pool.pool(for: path).runIfActive(eventLoop: context.eventLoop) { [handler] in handler(path) }
            .assumeIsolated()
            .whenComplete { result in
                let response: HTTPResponse
                switch result {
                case .success(let found): response = found ?? HTTPResponse(status: 404, body: "not found\n")
                case .failure: response = HTTPResponse(status: 503, body: "shutting down\n")
                }
                self.write(response, to: head, context: context)
            }
    }

    private func write(_ response: HTTPResponse, to request: HTTPRequestHead, extraHeaders: [(String, String)] = [],
                       context: ChannelHandlerContext) {
        let keepAlive = request.isKeepAlive
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.bytes.count))
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD && !response.bytes.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: response.bytes)))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
