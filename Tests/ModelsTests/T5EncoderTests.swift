import Checkpoints
import Foundation
import Models
import Tensor
import Testing

/// Parity with transformers' T5EncoderModel on a tiny random-weight model (tools/make_text_encoder_fixtures.py).
@Suite struct T5EncoderTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/text_encoders/t5")

    @Test func matchesTransformersT5EncoderModel() throws {
        let config = try T5EncoderConfig(configJSON: try Data(contentsOf: Self.dir.appendingPathComponent("config.json")))
        #expect(config.dModel == 64 && config.numHeads == 4 && config.numLayers == 2)
        let encoder = try T5Encoder(checkpoint: try CheckpointSet(url: Self.dir.appendingPathComponent("model.safetensors")),
                                    config: config)
        let io = try SafeTensorsFile(url: Self.dir.appendingPathComponent("io.safetensors"))
        let idsT = try io.tensor(named: "input_ids")
        let (b, l) = (idsT.shape[0], idsT.shape[1])
        let out = encoder.encode(batch: (0..<b).map { i in (0..<l).map { Int(idsT[flat: i * l + $0]) } })
        let want = try io.tensor(named: "last_hidden_state")
        #expect(out.shape == want.shape)
        let err = out.maxAbsDifference(want)
        #expect(err <= 1e-4 * want.maxAbs(), "last_hidden_state err \(err) of range \(want.maxAbs())")
    }

    @Test func bucketsMatchTheSpec() {
        // flux-and-tiling-spec §7.2: rel = key − query; 16 for rel > 0; |rel| < 8 exact; else log-spaced up to 15.
        #expect(T5Encoder.bucket(relativePosition: 0) == 0)
        #expect(T5Encoder.bucket(relativePosition: -3) == 3)
        #expect(T5Encoder.bucket(relativePosition: 3) == 19)
        #expect(T5Encoder.bucket(relativePosition: -8) == 8)
        #expect(T5Encoder.bucket(relativePosition: -1000) == 15)
        #expect(T5Encoder.bucket(relativePosition: 1000) == 31)
    }
}

@Suite struct PromptEncodingCacheTests {
    @Test func computesOncePerPromptAndEvictsLeastRecentlyUsed() {
        let cache = PromptEncodingCache<Int>(capacity: 2)
        var calls = 0
        func get(_ p: String) -> Int { cache.value(for: p) { calls += 1; return p.count } }
        #expect(get("a cat") == 5 && get("a cat") == 5 && calls == 1)
        _ = get("a dog!")
        _ = get("a cat")  // refreshes "a cat"
        _ = get("xyz")  // evicts "a dog!"
        #expect(cache.count == 2 && calls == 3)
        _ = get("a cat")
        #expect(calls == 3)
        _ = get("a dog!")
        #expect(calls == 4 && cache.hits == 3)
    }
}
