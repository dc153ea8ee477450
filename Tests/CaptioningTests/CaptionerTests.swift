import Foundation
import DreamsrTestKit
import Testing
@testable import Captioning

/// Tiny fake "images": distinct byte strings with PNG/JPEG magic so the data URL MIME type is sniffed.
private func png(_ tag: String) -> CaptionImage {
    CaptionImage(data: Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(tag.utf8)))
}

private func regions(_ n: Int) -> [CaptionRegion] {
    (0..<n).map { CaptionRegion(index: $0, x: 64 * $0, y: 0, width: 128, height: 96, image: png("patch-\($0)")) }
}

private func config(_ server: LoopbackChatServer?, timeout: Double = 5, retries: Int = 0,
                    concurrency: Int = 2) -> CaptionerConfiguration {
    var c = CaptionerConfiguration(endpoint: server?.url)
    c.model = "llava-test"
    c.timeout = timeout
    c.retries = retries
    c.retryBackoff = 0.01
    c.concurrency = concurrency
    c.fixedGlobalPrompt = "FIXED GLOBAL"
    c.fixedLocalPrompt = "FIXED LOCAL"
    return c
}

@Suite(.timeLimit(.minutes(5))) struct CaptionerTests {
    @Test func goodRepliesGiveGlobalAndLocalPromptsAndAreCached() async throws {
        let server = try LoopbackChatServer { req, _ in
            let instruction = req.instruction ?? ""
            if instruction.contains("crop") {
                let base64 = req.imageURL?.split(separator: ",").last.map(String.init) ?? ""
                let bytes = Data(base64Encoded: base64) ?? Data()
                let index = bytes.suffix(7) == Data("patch-1".utf8) ? 1 : 0
                return .caption("  \"a patch \(index)\n of brick wall\"  ")
            }
            return .caption("a red brick house under a blue sky")
        }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server))
        let image = png("whole")
        let result = await captioner.prompts(for: image, regions: regions(2), overrides: PromptOverrides())

        #expect(result.global == Caption(text: "a red brick house under a blue sky", source: .model))
        #expect(result.locals == [Caption(text: "a patch 0 of brick wall", source: .model),
                                  Caption(text: "a patch 1 of brick wall", source: .model)])
        #expect(result.notes.isEmpty)

        let reqs = server.requests
        #expect(reqs.count == 3)
        let first = try #require(reqs.first)
        #expect(first.method == "POST" && first.path == "/v1/chat/completions")
        #expect(first.json?["model"] as? String == "llava-test")
        #expect(first.imageURL == "data:image/png;base64," + image.data.base64EncodedString())
        // Local instructions carry the global caption and the region geometry.
        let local = try #require(reqs.first { $0.instruction?.contains("crop") == true }?.instruction)
        #expect(local.contains("a red brick house under a blue sky"))

        // Same images again: all from the cache, no new requests.
        let again = await captioner.prompts(for: image, regions: regions(2), overrides: PromptOverrides())
        #expect(again.global.source == .cache && again.locals.allSatisfy { $0.source == .cache })
        #expect(again.global.text == result.global.text)
        #expect(server.requests.count == 3)
        #expect(await captioner.cache.count == 3)
    }

    @Test func slowServerTimesOutAndFallsBack() async throws {
        let server = try LoopbackChatServer { _, _ in .stall(seconds: 30) }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server, timeout: 0.3, retries: 1))
        let start = Date()
        let result = await captioner.prompts(for: png("x"), regions: regions(1), overrides: PromptOverrides())
        let elapsed = Date().timeIntervalSince(start)
        #expect(elapsed >= 0.6)  // two attempts of the global request, each ended by the 0.3 s deadline

        guard case .fallback(let reason) = result.global.source else {
            Issue.record("expected a fallback, got \(result.global.source)")
            return
        }
        #expect(result.global.text == "FIXED GLOBAL")
        #expect(reason.contains("timeout") && reason.contains("2 attempts"))
        #expect(result.locals.map(\.text) == ["FIXED LOCAL"])
        #expect(result.notes.contains { $0.contains("global prompt fell back") && $0.contains("timeout") })
        #expect(result.notes.contains { $0.contains("1 of 1 local prompts fell back") && $0.contains("not asked") })
        guard case .fallback(let localReason) = result.locals.first?.source else { Issue.record("local not a fallback"); return }
        #expect(localReason.hasPrefix("not asked: the global caption request failed (timeout"))
        // The endpoint did not answer the global request: the patch is not asked (2 requests at 0.3 s each, well
        // under the server's 30 s stall).
        #expect(elapsed < 10)
        #expect(server.requests.count == 2)
    }

    /// The endpoint answers the global request, then stalls on patches: once one patch request has timed out after
    /// its retries, the patches not yet asked fall back at once instead of each waiting timeout x attempts.
    @Test func stallOnPatchRequestsStopsAskingTheRestOfTheJob() async throws {
        let server = try LoopbackChatServer { req, _ in
            (req.instruction ?? "").contains("crop") ? .stall(seconds: 30) : .caption("a harbour at dusk")
        }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server, timeout: 0.3, retries: 1, concurrency: 2))
        let result = await captioner.prompts(for: png("x"), regions: regions(20), overrides: PromptOverrides())
        #expect(result.global == Caption(text: "a harbour at dusk", source: .model))
        #expect(result.locals.count == 20 && result.locals.allSatisfy { $0.text == "FIXED LOCAL" })
        let reasons = result.locals.compactMap { c -> String? in
            if case .fallback(let r) = c.source { return r } else { return nil }
        }
        #expect(reasons.count == 20)
        // The two patches in flight when the endpoint stalled were asked (2 attempts each); the rest were not.
        #expect(reasons.filter { $0.contains("timeout") && $0.contains("2 attempts") && !$0.hasPrefix("not asked") }
            .count == 2)
        #expect(reasons.filter { $0.hasPrefix("not asked: an earlier local caption request failed (timeout") }
            .count == 18)
        #expect(server.requests.count == 1 + 2 * 2)
        #expect(result.notes.contains { $0.contains("20 of 20 local prompts fell back") })
    }

    @Test func serverErrorsAreRetriedThenFallBack() async throws {
        let server = try LoopbackChatServer { _, _ in .raw(status: 500, body: #"{"error":"model crashed"}"#) }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server, retries: 2))
        let result = await captioner.prompts(for: png("x"), regions: [], overrides: PromptOverrides())
        guard case .fallback(let reason) = result.global.source else {
            Issue.record("expected a fallback, got \(result.global.source)")
            return
        }
        #expect(reason.contains("HTTP 500") && reason.contains("3 attempts"))
        #expect(result.global.text == "FIXED GLOBAL")
        #expect(server.requests.count == 3)
        #expect(await captioner.cache.count == 0)
    }

    @Test func transientErrorThenSuccessUsesTheModel() async throws {
        let server = try LoopbackChatServer { _, n in
            n == 0 ? .raw(status: 503, body: "busy") : .caption("a cat on a mat")
        }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server, retries: 2))
        let result = await captioner.prompts(for: png("x"), regions: [], overrides: PromptOverrides())
        #expect(result.global == Caption(text: "a cat on a mat", source: .model))
        #expect(server.requests.count == 2)
    }

    @Test func malformedRepliesFallBackWithoutRetry() async throws {
        let server = try LoopbackChatServer { req, _ in
            (req.instruction ?? "").contains("crop")
                ? .raw(status: 200, body: #"{"choices": []}"#)
                : .raw(status: 200, body: "{this is not json")
        }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server, retries: 3))
        let result = await captioner.prompts(for: png("x"), regions: regions(2), overrides: PromptOverrides())
        guard case .fallback(let reason) = result.global.source else {
            Issue.record("expected a fallback, got \(result.global.source)")
            return
        }
        #expect(reason.contains("malformedReply") && reason.contains("not JSON"))
        for local in result.locals {
            guard case .fallback(let r) = local.source else { Issue.record("local not a fallback"); continue }
            #expect(r.contains("no choices[0]"))
            #expect(local.text == "FIXED LOCAL")
        }
        #expect(server.requests.count == 3)  // not retried
    }

    @Test func clientErrorStatusIsNotRetried() async throws {
        let server = try LoopbackChatServer { _, _ in .raw(status: 400, body: "bad request") }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server, retries: 3))
        let result = await captioner.prompts(for: png("x"), regions: [], overrides: PromptOverrides())
        guard case .fallback(let reason) = result.global.source else { Issue.record("no fallback"); return }
        #expect(reason.contains("HTTP 400"))
        #expect(server.requests.count == 1)
    }

    @Test func unreachableEndpointFallsBack() async throws {
        // A port that was just ours and is now closed: connection refused.
        let server = try LoopbackChatServer { _, _ in .caption("unused") }
        let url = server.url
        server.stop()
        var c = config(nil, retries: 1)
        c.endpoint = url
        let captioner = try Captioner(configuration: c)
        let result = await captioner.prompts(for: png("x"), regions: [], overrides: PromptOverrides())
        guard case .fallback(let reason) = result.global.source else { Issue.record("no fallback"); return }
        #expect(reason.contains("transport"))
    }

    @Test func concurrencyLimitIsRespected() async throws {
        let server = try LoopbackChatServer { req, _ in
            // Hold each local request briefly so that overlapping requests would be observed.
            if (req.instruction ?? "").contains("crop") { Thread.sleep(forTimeInterval: 0.05) }
            return .caption("caption")
        }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server, concurrency: 2))
        let result = await captioner.prompts(for: png("x"), regions: regions(6), overrides: PromptOverrides())
        #expect(result.locals.count == 6 && result.locals.allSatisfy { $0.source == .model })
        #expect(server.requests.count == 7)
        #expect(server.maxConcurrentRequests <= 2)
    }

    @Test func noEndpointUsesFixedPromptsAndSaysSo() async throws {
        var c = config(nil)
        c.fixedLocalPrompt = nil
        let captioner = try Captioner(configuration: c)
        let result = await captioner.prompts(for: png("x"), regions: regions(3), overrides: PromptOverrides())
        #expect(result.global == Caption(text: "FIXED GLOBAL", source: .fixed))
        #expect(result.locals == Array(repeating: Caption(text: "FIXED GLOBAL", source: .fixed), count: 3))
        #expect(result.notes == ["captioner: no endpoint configured; fixed prompts used"])
    }

    @Test func jobPromptsOverrideTheModel() async throws {
        let server = try LoopbackChatServer { _, _ in .caption("from the model") }
        defer { server.stop() }
        let captioner = try Captioner(configuration: config(server))
        let both = await captioner.prompts(for: png("x"), regions: regions(2),
                                           overrides: PromptOverrides(global: "user global", local: "user local"))
        #expect(both.global == Caption(text: "user global", source: .override))
        #expect(both.locals.allSatisfy { $0 == Caption(text: "user local", source: .override) })
        #expect(server.requests.isEmpty)

        // A global override alone: locals still come from the model, with the override as context.
        let globalOnly = await captioner.prompts(for: png("x"), regions: regions(1),
                                                 overrides: PromptOverrides(global: "user global"))
        #expect(globalOnly.locals == [Caption(text: "from the model", source: .model)])
        #expect(server.requests.count == 1)
        #expect(server.requests.first?.instruction?.contains("user global") == true)
    }

    @Test func invalidConfigurationIsRejected() {
        var c = CaptionerConfiguration(endpoint: URL(string: "ftp://example.org/x"))
        #expect(throws: CaptioningError.self) { try Captioner(configuration: c) }
        c = CaptionerConfiguration()
        c.concurrency = 0
        #expect(throws: CaptioningError.self) { try c.validate() }
    }

    @Test func baseURLGetsTheChatCompletionsPath() {
        let c = CaptionerConfiguration(endpoint: URL(string: "http://127.0.0.1:8080/v1"))
        #expect(c.chatCompletionsURL?.absoluteString == "http://127.0.0.1:8080/v1/chat/completions")
    }
}

@Suite(.timeLimit(.minutes(5))) struct ReplyParsingTests {
    @Test func contentPartsAreJoined() throws {
        let body = #"{"choices":[{"message":{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"dog"}]}}]}"#
        #expect(try ChatCompletionsClient.parseReply(Data(body.utf8), url: "u") == "a dog")
    }

    @Test func errorObjectIsMalformed() {
        #expect(throws: CaptioningError.self) {
            try ChatCompletionsClient.parseReply(Data(#"{"error":{"message":"no"}}"#.utf8), url: "u")
        }
    }

    @Test func cleanUpCutsAtAWordBoundary() {
        #expect(Captioner.clean("\"one two three four\"", limit: 12) == "one two")
        #expect(Captioner.clean("  \n ", limit: 10) == nil)
    }
}

@Suite(.timeLimit(.minutes(5))) struct SHA256Tests {
    @Test func knownVectors() {
        #expect(SHA256Digest.hash([UInt8]()).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256Digest.hash(Array("abc".utf8)).hex
            == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(SHA256Digest.hash(long).hex == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256Digest.hash(million).hex == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
