import Foundation
import Testing
@testable import Models

@Suite(.serialized, .timeLimit(.minutes(10)))
final class DreamSRConfigTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/dreamsr")

    @Test func defaultsAndEmptyJSON() throws {
        let c = try DreamSRConfig(jsonString: "{}")
        #expect(c == DreamSRConfig())
        #expect(c.controlnetDepth == 9)
        #expect(c.injection == .corresponding)
        #expect(c.textureT == 0.8)
        #expect(c.textureSteps == 16)
        #expect(c.patchLatent == 64)
        #expect(c.overlapLatent == 16)
        #expect(c.patchTokens == 1024)
        #expect(c.loraScale == 1)
        #expect(abs(DreamSRConfig.mu(tokens: 1024) - (0.63)) <= 1e-9)
    }

    @Test func roundTripAndFields() throws {
        var c = DreamSRConfig()
        c.injection = .interval
        c.schedule = .explicit([0.8, 0.4, 0])
        c.textureSteps = 2
        c.patchWeighting = .uniform
        c.ropeIds = .global
        c.colorFix = .adain
        c.loraAlpha = 128
        let back = try DreamSRConfig(jsonString: c.jsonString())
        #expect(back == c)
        #expect(back.loraScale == 0.5)
    }

    @Test func validationNamesTheKey() throws {
        let cases: [(String, String)] = [
            (#"{"injection": "sideways"}"#, "injection"),
            (#"{"controlnet_depth": 0}"#, "controlnet_depth"),
            (#"{"texture_t": 1.5}"#, "texture_t"),
            (#"{"schedule": "cosine"}"#, "schedule"),
            (#"{"schedule": [0.8, 0.9], "texture_steps": 1}"#, "schedule"),
            (#"{"schedule": [0.8, 0.0]}"#, "schedule"),
            (#"{"patch_size": 500}"#, "patch_size"),
            (#"{"patch_overlap": 512}"#, "patch_overlap"),
            (#"{"patch_weighting": "cosine"}"#, "patch_weighting"),
            (#"{"lora_rank": "big"}"#, "lora_rank"),
            (#"{"texture_steps": 2.5}"#, "texture_steps"),
            (#"[1, 2]"#, "dreamsr_config"),
        ]
        for (json, key) in cases {
            if let thrown = #expect(throws: (any Error).self, Comment(rawValue: json), performing: { _ = try DreamSRConfig(jsonString: json) }) {
                #expect("\(thrown)".contains(key), "\(json): \(thrown)")
            }
        }
        var c = DreamSRConfig()
        c.controlnetDepth = 20
        #expect(throws: (any Error).self) { _ = try c.validate(mainDoubleBlocks: 19) }
    }

    @Test func schedulesMatchReference() throws {
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("schedule.json"))) as! [String: Any]
        var tiny = DreamSRConfig()
        tiny.patchSize = 128
        tiny.patchOverlap = 32
        var linear = DreamSRConfig()
        linear.schedule = .linear
        for (key, cfg) in [("shifted_512", DreamSRConfig()), ("linear_512", linear), ("shifted_tiny", tiny)] {
            let expected = obj[key] as! [Double]
            let got = cfg.textureSigmas()
            #expect(got.count == 17, Comment(rawValue: key))
            #expect(got.first == 0.8, Comment(rawValue: key))
            #expect(got.last == 0, Comment(rawValue: key))
            for (a, b) in zip(got, expected) { #expect(abs(a - (b)) <= 1e-12, Comment(rawValue: key)) }
        }
    }

    @Test func injectionRules() throws {
        var c = DreamSRConfig()
        #expect(((0..<19).map { c.injectionLayer(mainBlock: $0, mainBlocks: 19) }) == ((0..<19).map { $0 < 9 ? $0 : nil }))
        c.injection = .interval
        // ceil(19 / 9) = 3: blocks 0-2 -> 0, ..., 18 -> 6 (layers 7, 8 unused, as in diffusers)
        #expect(((0..<19).map { c.injectionLayer(mainBlock: $0, mainBlocks: 19) }) == ((0..<19).map { $0 / 3 }))
        c.controlnetDepth = 10
        #expect(((0..<19).map { c.injectionLayer(mainBlock: $0, mainBlocks: 19) }) == ((0..<19).map { $0 / 2 }))
    }
}
