import Foundation
import XCTest
@testable import Models

final class DreamSRConfigTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/dreamsr")

    func testDefaultsAndEmptyJSON() throws {
        let c = try DreamSRConfig(jsonString: "{}")
        XCTAssertEqual(c, DreamSRConfig())
        XCTAssertEqual(c.controlnetDepth, 9)
        XCTAssertEqual(c.injection, .corresponding)
        XCTAssertEqual(c.textureT, 0.8)
        XCTAssertEqual(c.textureSteps, 16)
        XCTAssertEqual(c.patchLatent, 64)
        XCTAssertEqual(c.overlapLatent, 16)
        XCTAssertEqual(c.patchTokens, 1024)
        XCTAssertEqual(c.loraScale, 1)
        XCTAssertEqual(DreamSRConfig.mu(tokens: 1024), 0.63, accuracy: 1e-9)
    }

    func testRoundTripAndFields() throws {
        var c = DreamSRConfig()
        c.injection = .interval
        c.schedule = .explicit([0.8, 0.4, 0])
        c.textureSteps = 2
        c.patchWeighting = .uniform
        c.ropeIds = .global
        c.colorFix = .adain
        c.loraAlpha = 128
        let back = try DreamSRConfig(jsonString: c.jsonString())
        XCTAssertEqual(back, c)
        XCTAssertEqual(back.loraScale, 0.5)
    }

    func testValidationNamesTheKey() {
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
            XCTAssertThrowsError(try DreamSRConfig(jsonString: json), json) {
                XCTAssertTrue("\($0)".contains(key), "\(json): \($0)")
            }
        }
        var c = DreamSRConfig()
        c.controlnetDepth = 20
        XCTAssertThrowsError(try c.validate(mainDoubleBlocks: 19))
    }

    func testSchedulesMatchReference() throws {
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("schedule.json"))) as! [String: Any]
        var tiny = DreamSRConfig()
        tiny.patchSize = 128
        tiny.patchOverlap = 32
        var linear = DreamSRConfig()
        linear.schedule = .linear
        for (key, cfg) in [("shifted_512", DreamSRConfig()), ("linear_512", linear), ("shifted_tiny", tiny)] {
            let expected = obj[key] as! [Double]
            let got = cfg.textureSigmas()
            XCTAssertEqual(got.count, 17, key)
            XCTAssertEqual(got.first, 0.8, key)
            XCTAssertEqual(got.last, 0, key)
            for (a, b) in zip(got, expected) { XCTAssertEqual(a, b, accuracy: 1e-12, key) }
        }
    }

    func testInjectionRules() {
        var c = DreamSRConfig()
        XCTAssertEqual((0..<19).map { c.injectionLayer(mainBlock: $0, mainBlocks: 19) },
                       (0..<19).map { $0 < 9 ? $0 : nil })
        c.injection = .interval
        // ceil(19 / 9) = 3: blocks 0-2 -> 0, ..., 18 -> 6 (layers 7, 8 unused, as in diffusers)
        XCTAssertEqual((0..<19).map { c.injectionLayer(mainBlock: $0, mainBlocks: 19) }, (0..<19).map { $0 / 3 })
        c.controlnetDepth = 10
        XCTAssertEqual((0..<19).map { c.injectionLayer(mainBlock: $0, mainBlocks: 19) }, (0..<19).map { $0 / 2 })
    }
}
