import DreamsrApp
import DreamsrTestKit
import Foundation
import Imaging
import Jobs
import PipelineRuntime
import Testing

/// The tiny DreamSR pipeline (2 texture steps) with its caption stage pointed at `endpoint`: instructions that let
/// the test server tell the whole-image request from the patch requests (and which patch), no caption cache
/// effects across tests (each test has its own pipeline), short timeouts.
private func captionPipelineYAML(endpoint: URL, timeout: Double, retries: Int) -> String {
    tinyPipelineYAML(steps: 2) + """

    caption:
      endpoint: \(endpoint.absoluteString)
      model: llava-test
      timeout_seconds: \(timeout)
      retries: \(retries)
      retry_backoff_seconds: 0.01
      concurrency: 2
      fixed_prompt: FIXED GLOBAL PROMPT
      global_prompt_template: "WHOLE: describe the image"
      local_prompt_template: "CROP {index} at {x},{y} {width}x{height} of: {global}"
    """
}

/// Patch index of a local request (`CROP 3 at ...`), nil for the global one.
private func cropIndex(_ request: LoopbackChatServer.Request) -> Int? {
    guard let text = request.instruction, text.hasPrefix("CROP ") else { return nil }
    return Int(text.dropFirst(5).prefix { $0.isNumber })
}

/// `(width, height)` the local instruction says, e.g. `... 12x8 of: ...`.
private func cropSize(_ request: LoopbackChatServer.Request) -> (Int, Int)? {
    guard let text = request.instruction, let at = text.range(of: " at "), let of = text.range(of: " of: ") else { return nil }
    let parts = text[at.upperBound..<of.lowerBound].split(separator: " ")
    guard parts.count == 2 else { return nil }
    let wh = parts[1].split(separator: "x").compactMap { Int($0) }
    return wh.count == 2 ? (wh[0], wh[1]) : nil
}

/// The PNG in a request's `data:image/png;base64,...` image part.
private func requestImage(_ request: LoopbackChatServer.Request) throws -> DecodedImage {
    let url = try #require(request.imageURL)
    let prefix = "data:image/png;base64,"
    #expect(url.hasPrefix(prefix), "image part is not a PNG data URL: \(url.prefix(40))")
    let data = try #require(Data(base64Encoded: String(url.dropFirst(prefix.count))))
    return try ImageCodec.decode(data: data)
}

private func runOne(yaml: String, id: String) async throws -> (JobOutcome, String) {
    try ImageCodec.initialize()
    let models = try tinyModelsDirectory()
    let work = try tempDir()
    try writeSmallRGBA(work + "/in.png")
    let def = try PipelineDefinition.parse(yaml: yaml, file: "dreamsr-caption.yaml")
    let outcomes = try await PipelineRunner(definition: def, config: try dreamsrConfig(models: models))
        .run([JobRequest(id: JobID(id), source: .file(work + "/in.png"), output: work + "/out.png")])
    return (try #require(outcomes.first), work + "/out.png")
}

/// The caption stage of the DreamSR pipeline against a chat-completions server started by the test.
@Suite(.serialized, .timeLimit(.minutes(10))) struct DreamSRCaptionStageTests {
    @Test func captionBlockParsesEveryKey() throws {
        let url = URL(string: "http://127.0.0.1:9/v1")!
        let def = try PipelineDefinition.parse(yaml: captionPipelineYAML(endpoint: url, timeout: 0.25, retries: 3), file: "x.yaml")
        #expect(def.caption.endpoint == "http://127.0.0.1:9/v1")
        #expect(def.caption.model == "llava-test" && def.caption.timeoutSeconds == 0.25)
        #expect(def.caption.retries == 3 && def.caption.retryBackoffSeconds == 0.01 && def.caption.concurrency == 2)
        #expect(def.caption.localPromptTemplate == "CROP {index} at {x},{y} {width}x{height} of: {global}")
        #expect(def.caption.globalPromptTemplate == "WHOLE: describe the image")
        let bad = tinyPipelineYAML() + "\ncaption:\n  concurrency: 0\n"
        #expect(throws: (any Error).self) { try PipelineDefinition.parse(yaml: bad, file: "x.yaml") }
    }

    /// Good replies: the global caption and one caption per patch reach the job (and its result notes); the server
    /// saw one whole-image request and one request per patch, each with a PNG of the right region.
    @Test func modelCaptionsArriveInTheJob() async throws {
        let server = try LoopbackChatServer { req, _ in
            if let i = cropIndex(req) { return .caption("detail of patch \(i)") }
            return .caption("  \"a checkerboard gradient test card\"\n")
        }
        defer { server.stop() }
        let (o, out) = try await runOne(yaml: captionPipelineYAML(endpoint: server.url, timeout: 10, retries: 0), id: "good")
        #expect(o.status == .ok, "\(o.errorStage ?? "") \(o.errorMessage ?? "")")
        #expect(FileManager.default.fileExists(atPath: out))

        let requests = server.requests
        let globals = requests.filter { cropIndex($0) == nil }
        let locals = requests.filter { cropIndex($0) != nil }
        let n = locals.count
        #expect(globals.count == 1, "one whole-image request: \(requests.map { $0.instruction ?? "?" })")
        #expect(n >= 2, "the tiny model's 24x16-latent output has several patches")
        #expect(Set(locals.compactMap(cropIndex)) == Set(0..<n), "one request per patch index")
        for r in requests {
            #expect(r.method == "POST" && r.path == "/v1/chat/completions")
            #expect(r.json?["model"] as? String == "llava-test")
        }
        // The whole LR image, then each patch region as the instruction states it, contains the global caption.
        if let g = globals.first {
            #expect(g.instruction == "WHOLE: describe the image")
            let img = try requestImage(g)
            #expect(img.width == 48 && img.height == 32)
        }
        for r in locals {
            #expect(r.instruction?.hasSuffix(" of: a checkerboard gradient test card") == true, "\(r.instruction ?? "")")
            let img = try requestImage(r)
            let size = try #require(cropSize(r))
            #expect(img.width == size.0 && img.height == size.1)
            #expect(img.width <= 48 && img.height <= 32 && img.width * img.height < 48 * 32)
        }

        #expect(o.notes.contains("caption: global prompt (model): a checkerboard gradient test card"), "\(o.notes)")
        let listed = (0..<n).map { "[\($0)] detail of patch \($0)" }.joined(separator: " | ")
        #expect(o.notes.contains("caption: \(n) local prompts (\(n) model; \(n) distinct): \(listed)"), "\(o.notes)")
        #expect(!o.notes.contains { $0.contains("fell back") || $0.contains("no endpoint") }, "\(o.notes)")
    }

    enum Failure: String, CaseIterable, Sendable { case http500, malformedJSON, neverAnswers }

    /// 5xx, a body that is not JSON, a server that holds the connection: the job completes with the fixed prompt,
    /// the notes say why, and the caption stage ends within its configured bounds (no hung job). After a retriable
    /// global failure (5xx, timeout) the patches are not asked at all; after a malformed reply they are.
    @Test(arguments: Failure.allCases)
    func failingServerFallsBackToTheFixedPrompt(_ failure: Failure) async throws {
        let server = try LoopbackChatServer { _, _ in
            switch failure {
            case .http500: .raw(status: 500, body: #"{"error":"model crashed"}"#)
            case .malformedJSON: .raw(status: 200, body: "{this is not json")
            case .neverAnswers: .stall(seconds: 60)
            }
        }
        defer { server.stop() }
        let timeout = 0.3, retries = failure == .malformedJSON ? 3 : 1
        let start = Date()
        let (o, out) = try await runOne(yaml: captionPipelineYAML(endpoint: server.url, timeout: timeout, retries: retries),
                                        id: failure.rawValue)
        let elapsed = Date().timeIntervalSince(start)
        #expect(o.status == .ok, "\(o.errorStage ?? "") \(o.errorMessage ?? "")")
        #expect(FileManager.default.fileExists(atPath: out))

        let requests = server.requests
        let localsNote = try #require(o.notes.first { $0.hasPrefix("caption: ") && $0.contains(" local prompts (") }, "\(o.notes)")
        let n = try #require(Int(localsNote.dropFirst("caption: ".count).prefix { $0.isNumber }))
        #expect(n >= 2)
        // Retriable failures (5xx, timeout) are tried retries + 1 times, and then the patches are not asked; a
        // malformed reply is not retried, and every patch is still asked (once).
        let retriable = failure != .malformedJSON
        let attempts = retriable ? retries + 1 : 1
        #expect(requests.filter { cropIndex($0) == nil }.count == attempts)
        #expect(Set(requests.compactMap(cropIndex)) == (retriable ? [] : Set(0..<n)))
        #expect(requests.count == attempts + (retriable ? 0 : n), "\(requests.count) requests for \(n) patches")

        let reason = switch failure {
        case .http500: "HTTP 500"
        case .malformedJSON: "not JSON"
        case .neverAnswers: "timeout: no reply from \(server.url.absoluteString) within 0.3 s"
        }
        #expect(o.notes.contains { $0.hasPrefix("captioner: global prompt fell back to the fixed prompt (") && $0.contains(reason) },
                "\(o.notes)")
        #expect(o.notes.contains { $0.contains("\(n) of \(n) local prompts fell back") && $0.contains(reason) }, "\(o.notes)")
        if attempts > 1 { #expect(o.notes.contains { $0.contains("after \(attempts) attempts") }, "\(o.notes)") }
        #expect(o.notes.contains { $0.contains("local prompts fell back") && $0.contains("not asked: the global caption request failed") }
                == retriable, "\(o.notes)")
        #expect(o.notes.contains("caption: global prompt (fallback): FIXED GLOBAL PROMPT"), "\(o.notes)")
        let listed = (0..<n).map { "[\($0)] FIXED GLOBAL PROMPT" }.joined(separator: " | ")
        #expect(o.notes.contains("caption: \(n) local prompts (\(n) fallback; 1 distinct): \(listed)"), "\(o.notes)")

        // Bounded: each round of requests (the global one, then n/2 rounds of patches at concurrency 2 when they
        // are asked) waits at most `attempts` deadlines; nothing waits for the server's 60 s stall.
        let caption = o.stageSeconds["caption"] ?? 0
        let rounds = retriable ? 1 : 1 + (n + 1) / 2
        if failure == .neverAnswers {
            #expect(caption >= Double(rounds * attempts) * timeout * 0.9, "caption stage \(caption) s")
        }
        #expect(caption < Double(rounds * attempts) * (timeout + 0.1) + 3, "caption stage \(caption) s")
        #expect(elapsed < 60, "whole job \(elapsed) s")
    }
}
