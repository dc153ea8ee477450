import DreamSRPipeline
import DreamsrApp
import Foundation
import Testing

/// The DreamSR options of a pipeline file are parsed once into types (issue 13: no strings converted back with
/// force-unwraps or silent fallbacks): every value maps to its case, a bad one is refused naming the key and every
/// allowed value.
@Suite(.timeLimit(.minutes(1))) struct DreamSROptionsTests {
    static func parse(_ replacing: String, with: String) throws -> PipelineDefinition {
        let yaml = tinyPipelineYAML()
        #expect(yaml.contains(replacing), "the tiny pipeline has no '\(replacing)'")
        return try PipelineDefinition.parse(yaml: yaml.replacingOccurrences(of: replacing, with: with), file: "o.yaml")
    }

    static func refusal(_ replacing: String, with: String) -> ConfigError? {
        do { _ = try parse(replacing, with: with); return nil } catch { return error as? ConfigError }
    }

    @Test func everyValueParsesToItsCase() throws {
        for mode in DreamSRMode.allCases {
            let def = try Self.parse("  mode: dual-branch\n", with: "  mode: \(mode.rawValue)\n")
            #expect(def.dreamsr.mode == mode)
        }
        for fix in ColorFix.Method.allCases {
            #expect(try Self.parse("  color_fix: wavelet\n", with: "  color_fix: \(fix.rawValue)\n").dreamsr.colorFix == fix)
        }
        // No color_fix key: nil, so the checkpoint config's colour fix applies.
        #expect(try Self.parse("  color_fix: wavelet\n", with: "").dreamsr.colorFix == nil)
        for states in DreamSRPipelineOptions.VAETileStates.allCases {
            let def = try Self.parse("  vae_tile: 64\n", with: "  vae_tile: 64\n  vae_tile_states: \(states.rawValue)\n")
            #expect(def.dreamsr.vaeTileStates == states)
        }
        #expect(try Self.parse("  batch: 2\n", with: "").dreamsr.vaeTileStates == .disk)
        #expect(try Self.parse("    restorer: dreamsr\n", with: "    restorer: realesrgan\n    model: x\n")
            .stage(.restore)?.restorer == .realesrgan)
    }

    @Test func aBadValueNamesTheKeyAndTheAllowedValues() throws {
        let cases: [(String, String, String, [String])] = [
            ("  mode: dual-branch\n", "  mode: dual\n", "dreamsr.mode", DreamSRMode.allCases.map(\.rawValue)),
            ("  color_fix: wavelet\n", "  color_fix: histogram\n", "dreamsr.color_fix", ["wavelet", "adain", "none"]),
            ("  vae_tile: 64\n", "  vae_tile: 64\n  vae_tile_states: ssd\n", "dreamsr.vae_tile_states", ["disk", "memory"]),
            ("    restorer: dreamsr\n", "    restorer: esrgan\n", "stages.2.restorer", ["realesrgan", "dreamsr"]),
        ]
        for (from, to, key, allowed) in cases {
            let e = try #require(Self.refusal(from, with: to), "accepted: \(to)")
            #expect(e.key == key, "\(e)")
            let bad = to.split(separator: ":").last!.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(e.problem == "'\(bad)' is not one of \(allowed.joined(separator: ", "))", "\(e)")
        }
    }
}
