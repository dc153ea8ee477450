import Checkpoints
import DreamsrApp
import Foundation
import Tensor
import Testing

/// `dreamsr forward vae-encode|vae-decode` end to end on the committed VAE parity fixtures (both key layouts).
@Suite(.serialized, .timeLimit(.minutes(10)))
final class VAEForwardTests {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/vae")

    private func temp(_ tag: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("vae-\(tag)-\(UUID().uuidString).safetensors")
    }

    private func roundTrip(_ component: String, layout: String, input: (String, Tensor), output: String,
                           reference: Tensor) throws {
        let inp = temp("in"), out = temp("out")
        defer { try? FileManager.default.removeItem(at: inp); try? FileManager.default.removeItem(at: out) }
        try SafeTensorsWriter.write(tensors: [input], metadata: [:], to: inp)
        let shapes = try ForwardRegistry.run(
            component: component, weights: fixtures.appendingPathComponent("vae_small_\(layout).safetensors"),
            config: fixtures.appendingPathComponent("vae_small_config.json"), inputs: inp, out: out)
        #expect(shapes.map(\.0) == [output])
        let got = try SafeTensorsFile(url: out).tensor(named: output)
        let v = reference.toArray()
        #expect(got.maxAbsDifference(reference) <= 1e-4 * (v.max()! - v.min()!))
    }

    @Test func encodeWritesRawLatentMean() throws {
        let io = try SafeTensorsFile(url: fixtures.appendingPathComponent("vae_small_io.safetensors"))
        for layout in ["diffusers", "bfl"] {
            try roundTrip("vae-encode", layout: layout, input: ("sample", try io.tensor(named: "encode_sample")),
                          output: "latent_mean", reference: try io.tensor(named: "encode_latent_mean"))
        }
    }

    @Test func decodeWritesSample() throws {
        let io = try SafeTensorsFile(url: fixtures.appendingPathComponent("vae_small_io.safetensors"))
        for layout in ["diffusers", "bfl"] {
            try roundTrip("vae-decode", layout: layout, input: ("latent", try io.tensor(named: "decode_latent")),
                          output: "sample", reference: try io.tensor(named: "decode_sample"))
        }
    }

    @Test func missingInputNamesTheTensor() throws {
        let inp = temp("in")
        defer { try? FileManager.default.removeItem(at: inp) }
        try SafeTensorsWriter.write(tensors: [("sample", Tensor(zeros: [1, 3, 16, 16]))], metadata: [:], to: inp)
        if let thrown = #expect(throws: (any Error).self, performing: { _ = try ForwardRegistry.run(
            component: "vae-decode", weights: fixtures.appendingPathComponent("vae_small_bfl.safetensors"),
            config: fixtures.appendingPathComponent("vae_small_config.json"), inputs: inp, out: temp("out")) }) {
            #expect(((thrown as? ForwardError)?.code) == .missingInput)
            #expect("\(thrown)".contains("latent"))
        }
    }
}
