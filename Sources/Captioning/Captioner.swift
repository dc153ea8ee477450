import Foundation
import Logging

/// One patch region of the LR image, with its pixels encoded (PNG/JPEG) by the caller.
public struct CaptionRegion: Sendable {
    public var index: Int
    public var x: Int, y: Int, width: Int, height: Int
    public var image: CaptionImage

    public init(index: Int, x: Int, y: Int, width: Int, height: Int, image: CaptionImage) {
        self.index = index
        self.x = x
        self.y = y
        self.width = width
        self.height = height
        self.image = image
    }
}

/// Prompts given with the job; each one set replaces what the model would say.
public struct PromptOverrides: Sendable, Equatable {
    public var global: String?
    /// Used for every patch.
    public var local: String?

    public init(global: String? = nil, local: String? = nil) {
        self.global = global
        self.local = local
    }
}

public struct Caption: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// Asked the vision-language model now.
        case model
        /// The model's earlier answer for the same image bytes and instruction.
        case cache
        /// From the job.
        case override
        /// No endpoint configured: the configured fixed prompt.
        case fixed
        /// The model failed (reason recorded): the configured fixed prompt.
        case fallback(reason: String)
    }

    public var text: String
    public var source: Source

    public init(text: String, source: Source) {
        self.text = text
        self.source = source
    }
}

public struct CaptionResult: Sendable {
    /// The prompt for the whole image (main network).
    public var global: Caption
    /// One per region, in the order the regions were given (ControlNet).
    public var locals: [Caption]
    /// What a user should see in the job result: fixed prompts used, overrides, fallbacks with their reasons.
    public var notes: [String]
}

/// What the pipeline needs from a caption stage; `Captioner` is the real one, tests may fake it.
public protocol PromptProvider: Sendable {
    func prompts(for image: CaptionImage, regions: [CaptionRegion], overrides: PromptOverrides) async -> CaptionResult
}

/// The caption stage: a global prompt for the LR image and a local prompt per patch region from a vision-language
/// model over the OpenAI-compatible chat-completions API.
///
/// Failure policy (never throws, never waits longer than `(retries + 1) × (timeout + backoff)` per request):
/// timeouts, transport errors and HTTP 5xx/429 are retried with exponential backoff; other HTTP errors and
/// malformed replies are not. When a request finally fails, that prompt becomes the fixed prompt
/// (`fixedGlobalPrompt`, or `fixedLocalPrompt` / the global prompt for a patch), `Caption.source` records the
/// reason, and a note is added. When the global request fails that way after its retries (timeout, transport error,
/// HTTP 5xx/429: the endpoint is down or overloaded), the local prompts are not asked at all: they fall back at once
/// with the reason `not asked: the global caption request failed (...)`, so a dead endpoint costs one request's
/// retries per job, not one per patch; likewise, once a local request fails that way the patches not yet asked fall
/// back at once. Model answers are cached by SHA-256 of the image bytes plus model and
/// instruction.
public final class Captioner: PromptProvider {
    public let configuration: CaptionerConfiguration
    private let client: ChatCompletionsClient?
    public let cache: CaptionCache
    private let logger: Logger

    public init(configuration: CaptionerConfiguration, logger: Logger = Logger(label: "dreamsr.captioning")) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        cache = CaptionCache(capacity: configuration.cacheCapacity)
        if let url = configuration.chatCompletionsURL {
            client = ChatCompletionsClient(url: url, model: configuration.model, apiKey: configuration.apiKey,
                                           timeout: configuration.timeout, maxTokens: configuration.maxTokens,
                                           temperature: configuration.temperature)
        } else {
            client = nil
        }
    }

    public func prompts(for image: CaptionImage, regions: [CaptionRegion], overrides: PromptOverrides = PromptOverrides())
        async -> CaptionResult {
        var notes: [String] = []
        let config = configuration

        // Global prompt.
        let global: Caption
        var endpointDown: String?
        if let text = overrides.global.flatMap(Self.nonEmpty) {
            global = Caption(text: text, source: .override)
            notes.append("captioner: global prompt from the job")
        } else if client == nil {
            global = Caption(text: config.fixedGlobalPrompt, source: .fixed)
        } else {
            let asked = await ask(instruction: config.globalPromptTemplate, image: image, fallback: config.fixedGlobalPrompt)
            global = asked.caption
            if asked.retriableFailure, case .fallback(let reason) = global.source { endpointDown = reason }
            if case .fallback(let reason) = global.source {
                notes.append("captioner: global prompt fell back to the fixed prompt (\(reason))")
            }
        }

        // Local prompts.
        let localFallback = config.fixedLocalPrompt.flatMap(Self.nonEmpty) ?? global.text
        var locals: [Caption]
        if let text = overrides.local.flatMap(Self.nonEmpty) {
            locals = regions.map { _ in Caption(text: text, source: .override) }
            if !regions.isEmpty { notes.append("captioner: local prompts from the job") }
        } else if client == nil || regions.isEmpty {
            locals = regions.map { _ in Caption(text: localFallback, source: .fixed) }
        } else {
            if let reason = endpointDown {
                let why = "not asked: the global caption request failed (\(reason))"
                locals = regions.map { _ in Caption(text: localFallback, source: .fallback(reason: why)) }
            } else {
                locals = await askAll(regions: regions, global: global.text, fallback: localFallback)
            }
            let failed = locals.compactMap { c -> String? in
                if case .fallback(let r) = c.source { return r }
                return nil
            }
            if !failed.isEmpty {
                let reasons = Array(Set(failed)).sorted().prefix(3).joined(separator: "; ")
                notes.append("captioner: \(failed.count) of \(regions.count) local prompts fell back to the "
                    + (config.fixedLocalPrompt == nil ? "global prompt" : "fixed prompt") + " (\(reasons))")
            }
        }

        if client == nil && (overrides.global == nil || (overrides.local == nil && !regions.isEmpty)) {
            notes.insert("captioner: no endpoint configured; fixed prompts used", at: 0)
        }
        return CaptionResult(global: global, locals: locals, notes: notes)
    }

    func localInstruction(_ r: CaptionRegion, global: String) -> String {
        configuration.localPromptTemplate
            .replacingOccurrences(of: "{global}", with: global)
            .replacingOccurrences(of: "{x}", with: String(r.x))
            .replacingOccurrences(of: "{y}", with: String(r.y))
            .replacingOccurrences(of: "{width}", with: String(r.width))
            .replacingOccurrences(of: "{height}", with: String(r.height))
            .replacingOccurrences(of: "{index}", with: String(r.index))
    }

    /// Local captions with at most `concurrency` requests in flight, results in region order. Once a patch request
    /// fails after its retries with a retriable error (the endpoint stalls or went down mid-job), the patches not yet
    /// asked fall back at once (`not asked: an earlier local caption request failed (...)`): a stalled endpoint costs
    /// at most one round of `concurrency` requests per job, not `timeout × attempts` per patch.
    private func askAll(regions: [CaptionRegion], global: String, fallback: String) async -> [Caption] {
        var results = [Caption?](repeating: nil, count: regions.count)
        var endpointDown: String?
        await withTaskGroup(of: (Int, Caption, Bool).self) { group in
            var next = 0
            func launch() {
                let i = next
                let region = regions[i]
                let instruction = localInstruction(region, global: global)
                group.addTask {
                    let asked = await self.ask(instruction: instruction, image: region.image, fallback: fallback)
                    return (i, asked.caption, asked.retriableFailure)
                }
                next += 1
            }
            while next < min(configuration.concurrency, regions.count) { launch() }
            while let (i, caption, retriableFailure) = await group.next() {
                results[i] = caption
                if retriableFailure, endpointDown == nil, case .fallback(let reason) = caption.source {
                    endpointDown = reason
                }
                if endpointDown == nil, next < regions.count { launch() }
            }
        }
        if let reason = endpointDown {
            let why = "not asked: an earlier local caption request failed (\(reason))"
            for i in results.indices where results[i] == nil {
                results[i] = Caption(text: fallback, source: .fallback(reason: why))
            }
        }
        return results.map { $0! }
    }

    /// One caption: cache, then the model with retries, then the fallback (`retriableFailure`: the last error was
    /// a timeout, transport error or HTTP 5xx/429).
    private func ask(instruction: String, image: CaptionImage, fallback: String) async
        -> (caption: Caption, retriableFailure: Bool) {
        guard let client else { return (Caption(text: fallback, source: .fixed), false) }
        let key = CaptionCache.Key(image: SHA256Digest.hash([UInt8](image.data)),
                                   request: SHA256Digest.hash(Array((configuration.model + "\u{0}" + instruction).utf8)))
        if let hit = await cache.get(key) { return (Caption(text: hit, source: .cache), false) }

        var attempt = 0
        while true {
            do {
                let raw = try await client.complete(instruction: instruction, image: image)
                guard let text = Self.clean(raw, limit: configuration.maxCaptionCharacters) else {
                    throw CaptioningError.malformed("caption is empty after clean-up", url: client.url.absoluteString)
                }
                await cache.put(key, text)
                return (Caption(text: text, source: .model), false)
            } catch {
                let e = error as? CaptioningError
                    ?? CaptioningError(.transport, "\(error)", isRetriable: false)
                if e.isRetriable, attempt < configuration.retries, !Task.isCancelled {
                    let delay = configuration.retryBackoff * pow(2, Double(attempt))
                    logger.warning("caption request failed, retrying", metadata: [
                        "attempt": "\(attempt + 1)", "reason": "\(e)", "retry_in_s": "\(delay)",
                    ])
                    attempt += 1
                    if delay > 0 { try? await Task.sleep(nanoseconds: UInt64(delay * 1e9)) }
                    continue
                }
                let tries = attempt + 1
                let reason = "\(e)" + (tries > 1 ? " after \(tries) attempts" : "")
                logger.error("caption request failed; using fallback prompt", metadata: ["reason": "\(reason)"])
                return (Caption(text: fallback, source: .fallback(reason: reason)), e.isRetriable)
            }
        }
    }

    static func nonEmpty(_ s: String) -> String? {
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    /// One line, no wrapping quotes, at most `limit` characters (cut at a word boundary).
    static func clean(_ raw: String, limit: Int) -> String? {
        var text = raw.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        for (open, close) in [("\"", "\""), ("'", "'"), ("“", "”")] where text.count >= 2 {
            if text.hasPrefix(open) && text.hasSuffix(close) { text = String(text.dropFirst().dropLast()) }
        }
        if text.count > limit {
            let cut = text.prefix(limit)
            if let space = cut.lastIndex(of: " "), cut.distance(from: cut.startIndex, to: space) > limit / 2 {
                text = String(cut[..<space])
            } else {
                text = String(cut)
            }
        }
        text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }
}

/// Captions keyed by (SHA-256 of the image bytes, SHA-256 of model + instruction); least recently used dropped.
public actor CaptionCache {
    public struct Key: Hashable, Sendable {
        public let image: SHA256Digest
        public let request: SHA256Digest
    }

    private var entries: [Key: (text: String, tick: UInt64)] = [:]
    private var tick: UInt64 = 0
    public let capacity: Int
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    public var count: Int { entries.count }

    func get(_ key: Key) -> String? {
        tick += 1
        guard let e = entries[key] else { misses += 1; return nil }
        hits += 1
        entries[key] = (e.text, tick)
        return e.text
    }

    func put(_ key: Key, _ text: String) {
        tick += 1
        entries[key] = (text, tick)
        if entries.count > capacity, let oldest = entries.min(by: { $0.value.tick < $1.value.tick })?.key {
            entries[oldest] = nil
        }
    }

    public func removeAll() { entries.removeAll() }
}
