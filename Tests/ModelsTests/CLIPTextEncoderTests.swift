import Checkpoints
import Foundation
import Models
import Tensor
import Testing

/// Parity with transformers' CLIPTextModel on a tiny random-weight model (tools/make_text_encoder_fixtures.py).
@Suite struct CLIPTextEncoderTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/text_encoders/clip_text")

    @Test func matchesTransformersCLIPTextModel() throws {
        let config = try CLIPTextConfig(configJSON: try Data(contentsOf: Self.dir.appendingPathComponent("config.json")))
        #expect(config.hiddenSize == 64 && config.numLayers == 2 && config.eosTokenID == 2)
        let weights = try CheckpointSet(url: Self.dir.appendingPathComponent("model.safetensors"))
        let encoder = try CLIPTextEncoder(checkpoint: weights, config: config)
        let io = try SafeTensorsFile(url: Self.dir.appendingPathComponent("io.safetensors"))
        let idsT = try io.tensor(named: "input_ids")
        let (b, l) = (idsT.shape[0], idsT.shape[1])
        let batch = (0..<b).map { i in (0..<l).map { Int(idsT[flat: i * l + $0]) } }
        let (last, pooled) = encoder.encode(batch: batch)
        let wantLast = try io.tensor(named: "last_hidden_state")
        let wantPooled = try io.tensor(named: "pooler_output")
        #expect(last.shape == wantLast.shape && pooled.shape == wantPooled.shape)
        let tolLast = 1e-4 * wantLast.maxAbs(), tolPooled = 1e-4 * wantPooled.maxAbs()
        #expect(last.maxAbsDifference(wantLast) <= tolLast, "last_hidden_state err \(last.maxAbsDifference(wantLast))")
        #expect(pooled.maxAbsDifference(wantPooled) <= tolPooled, "pooler_output err \(pooled.maxAbsDifference(wantPooled))")
    }

    @Test func poolsAtTheFirstEOS() throws {
        let weights = try CheckpointSet(url: Self.dir.appendingPathComponent("model.safetensors"))
        var tiny = try CLIPTextConfig(configJSON: try Data(contentsOf: Self.dir.appendingPathComponent("config.json")))
        let legacy = try CLIPTextEncoder(checkpoint: weights, config: tiny)
        #expect(legacy.poolIndex([998, 5, 7, 999, 999]) == 3)
        tiny.eosTokenID = 7
        let explicit = try CLIPTextEncoder(checkpoint: weights, config: tiny)
        #expect(explicit.poolIndex([998, 5, 7, 999, 999]) == 2)
    }

    @Test func missingKeyIsNamed() throws {
        var config = try CLIPTextConfig(configJSON: try Data(contentsOf: Self.dir.appendingPathComponent("config.json")))
        config.numLayers = 3
        let weights = try CheckpointSet(url: Self.dir.appendingPathComponent("model.safetensors"))
        #expect { try CLIPTextEncoder(checkpoint: weights, config: config) } throws: { error in
            "\(error)".contains("text_model.encoder.layers.2.")
        }
    }
}
