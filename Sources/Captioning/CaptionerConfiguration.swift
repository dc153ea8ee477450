import Foundation

/// Configuration of the caption stage (the `captioner:` block of a pipeline).
///
/// With `endpoint == nil` no model is asked: the global prompt is `fixedGlobalPrompt` and every local prompt is
/// `fixedLocalPrompt` (or the global prompt when that is nil), and the result says so in a note.
public struct CaptionerConfiguration: Sendable, Equatable {
    /// Chat-completions URL of an OpenAI-compatible server with image input (llama.cpp server, vLLM, Ollama), e.g.
    /// `http://127.0.0.1:8080/v1/chat/completions`. A base URL ending in `/v1` gets `/chat/completions` appended.
    public var endpoint: URL?
    /// `model` field of the request (llama.cpp ignores it; vLLM/Ollama need the served name).
    public var model: String = "llava"
    /// Optional bearer token sent as `Authorization: Bearer ...` (from the pipeline config; never looked up).
    public var apiKey: String?
    /// Instruction sent with the whole LR image.
    public var globalPromptTemplate: String =
        "Describe this photo in one detailed sentence for an image generator: the subjects, materials, textures, "
        + "lighting and style. Reply with the description only."
    /// Instruction sent with each patch region. Placeholders: `{global}` (the global prompt), `{x}`, `{y}`,
    /// `{width}`, `{height}` (the region in LR pixels), `{index}`.
    public var localPromptTemplate: String =
        "This is a crop of a larger photo described as: \"{global}\". Describe only what is visible in this crop in "
        + "one detailed sentence for an image generator. Reply with the description only."
    /// Used for the global prompt without an endpoint, and as its fallback.
    public var fixedGlobalPrompt: String = "high quality photo, sharp focus, highly detailed, natural textures"
    /// Used for local prompts without an endpoint, and as their fallback; nil means "the global prompt".
    public var fixedLocalPrompt: String?
    /// Whole-request deadline per attempt, seconds (connect + send + model time + reply).
    public var timeout: Double = 60
    /// Most requests in flight at once (local captions run concurrently up to this).
    public var concurrency: Int = 2
    /// Extra attempts after a retriable failure (timeout, transport error, HTTP 5xx/429). 0 = try once.
    public var retries: Int = 2
    /// First backoff delay, seconds; doubled per further retry.
    public var retryBackoff: Double = 0.5
    /// `max_tokens` of the request.
    public var maxTokens: Int = 120
    /// `temperature` of the request.
    public var temperature: Double = 0.2
    /// Captions longer than this many characters are cut at a word boundary.
    public var maxCaptionCharacters: Int = 600
    /// Distinct captions kept in the cache (least recently used ones are dropped).
    public var cacheCapacity: Int = 4096

    public init(endpoint: URL? = nil) {
        self.endpoint = endpoint
    }

    /// The URL requests go to: `endpoint`, with `/chat/completions` added to a base URL ending in `/v1`.
    public var chatCompletionsURL: URL? {
        guard let endpoint else { return nil }
        let path = endpoint.path
        if path.hasSuffix("/chat/completions") { return endpoint }
        if path.hasSuffix("/v1") || path.hasSuffix("/v1/") {
            return endpoint.appendingPathComponent("chat").appendingPathComponent("completions")
        }
        return endpoint
    }

    /// Throws `.invalidConfiguration` naming the first bad field.
    public func validate() throws {
        func bad(_ m: String) -> CaptioningError { CaptioningError(.invalidConfiguration, m, isRetriable: false) }
        if let endpoint, !["http", "https"].contains(endpoint.scheme?.lowercased() ?? "") || endpoint.host == nil {
            throw bad("captioner.endpoint \(endpoint.absoluteString) is not an http(s) URL")
        }
        if !(timeout > 0) { throw bad("captioner.timeout must be > 0 s (got \(timeout))") }
        if concurrency < 1 { throw bad("captioner.concurrency must be >= 1 (got \(concurrency))") }
        if retries < 0 { throw bad("captioner.retries must be >= 0 (got \(retries))") }
        if retryBackoff < 0 { throw bad("captioner.retry_backoff must be >= 0 (got \(retryBackoff))") }
        if maxTokens < 1 { throw bad("captioner.max_tokens must be >= 1 (got \(maxTokens))") }
        if fixedGlobalPrompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw bad("captioner.fixed_global_prompt must not be empty")
        }
    }
}
