import Checkpoints
import Foundation
import Models
import Tensor
import Testing

@Suite(.serialized, .timeLimit(.minutes(10)))
final class FluxSamplingTests {
    /// The whole 4-step loop (pack, schedule, FLUX forward, Euler, unpack) against diffusers'
    /// FlowMatchEulerDiscreteScheduler + FluxTransformer2DModel.
    @Test func fourStepLoopMatchesDiffusers() throws {
        let fx = try loadTensors(fluxFixtures.appendingPathComponent("sampling.safetensors"))
        let model = try FluxTransformer.load(from: CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/diffusers")))
        let lat = fx["initial_latent"]!
        let (c, h, w) = (lat.shape[0], lat.shape[1], lat.shape[2])
        let x = FluxPacking.pack(lat)
        let mu = FlowMatch.mu(imageSeqLen: x.shape[0])
        #expect(abs(Float(mu) - (fx["mu"]![flat: 0])) <= 1e-6)
        let sigmas = FlowMatch.fluxSigmas(steps: 4, mu: mu)
        let ref = fx["sigmas"]!.toArray()
        #expect(sigmas.count == ref.count)
        for (a, b) in zip(sigmas, ref) { #expect(abs(a - (b)) <= 1e-6) }
        let ids = FluxPacking.imageIds(latentHeight: h, latentWidth: w)
        #expect(ids.toArray() == fx["img_ids"]!.toArray())
        for k in 0..<4 {
            let inp = FluxInputs(hiddenStates: x.reshaped([1, x.shape[0], x.shape[1]]),
                                 encoderHiddenStates: fx["encoder_hidden_states"]!, pooledProjections: fx["pooled_projections"]!,
                                 timestep: [sigmas[k]], guidance: fx["guidance"]!.toArray(), imgIds: ids, txtIds: fx["txt_ids"]!)
            let v = try model.forward(inp)
            FlowMatch.eulerStep(x, velocity: v, sigma: sigmas[k], sigmaNext: sigmas[k + 1])
        }
        #expect(relErr(x, fx["final_packed"]!.reshaped(x.shape)) <= 1e-4)
        let final = FluxPacking.unpack(x, channels: c, height: h, width: w)
        #expect(relErr(final, fx["final_latent"]!) <= 1e-4)
    }

    @Test func packUnpackRoundTripAndLayout() throws {
        let lat = Tensor(shape: [2, 4, 6]) { Float($0) }
        let p = FluxPacking.pack(lat)
        #expect(p.shape == [6, 8])
        // token (r=1, c=2), channel 1, ph=1, pw=0 -> latent[1, 3, 4]
        #expect(p[flat: (1 * 3 + 2) * 8 + 1 * 4 + 1 * 2 + 0] == lat[flat: (1 * 4 + 3) * 6 + 4])
        #expect(FluxPacking.unpack(p, channels: 2, height: 4, width: 6).toArray() == lat.toArray())
    }

    @Test func fluxSchedulesMatchDiffusers() throws {
        let ref = try loadTensors(fluxFixtures.appendingPathComponent("schedules.safetensors"))
        for (n, seq) in [(28, 4096), (20, 1024), (4, 16)] {
            let s = FlowMatch.fluxSigmas(steps: n, mu: FlowMatch.mu(imageSeqLen: seq))
            let r = ref["sigmas_\(n)_\(seq)"]!.toArray()
            #expect(s.count == r.count)
            for (a, b) in zip(s, r) { #expect(abs(a - (b)) <= 2e-6, "\(n) steps, \(seq) tokens") }
        }
        #expect(abs(FlowMatch.mu(imageSeqLen: 1024) - (0.63)) <= 1e-9)
        #expect(abs(FlowMatch.mu(imageSeqLen: 4096) - (1.15)) <= 1e-12)
    }

    /// flux spec §2.3: strength 0.8 with 20 steps starts at 0.927 (1024², mu 1.15) / 0.882 (512², mu 0.63).
    @Test func img2ImgStartSigma() throws {
        let a = FlowMatch.img2imgSigmas(steps: 20, strength: 0.8, mu: FlowMatch.mu(imageSeqLen: 4096))
        #expect(a.count == 17)
        #expect(abs(a[0] - (0.927)) <= 5e-4)
        #expect(abs(a[15] - (0.143)) <= 5e-4)
        #expect(a.last == 0)
        let b = FlowMatch.img2imgSigmas(steps: 20, strength: 0.8, mu: FlowMatch.mu(imageSeqLen: 1024))
        #expect(abs(b[0] - (0.882)) <= 5e-4)
        #expect(abs(b[1] - (0.849)) <= 5e-4)
    }

    /// dreamsr-architecture item 7.
    @Test func textureSchedules() throws {
        let mu = FlowMatch.mu(imageSeqLen: 1024)
        let shifted = FlowMatch.textureSigmas(.shifted, start: 0.8, steps: 16, mu: mu)
        #expect(shifted.count == 17)
        #expect(abs(shifted[0] - (0.8)) <= 1e-6)
        #expect(shifted[16] == 0)
        let u0 = FlowMatch.inverseTimeShift(mu: mu, 0.8)
        #expect(abs(FlowMatch.timeShift(mu: mu, u0) - (0.8)) <= 1e-12)
        for k in 0..<16 {
            #expect(shifted[k] > shifted[k + 1])
            #expect(abs(Double(shifted[k]) - (FlowMatch.timeShift(mu: mu, u0 * (1 - Double(k) / 16)))) <= 1e-7)
        }
        let linear = FlowMatch.textureSigmas(.linear, start: 0.8, steps: 16, mu: mu)
        #expect(abs(linear[0] - (0.8)) <= 1e-7)
        #expect(abs(linear[1] - (0.75)) <= 1e-7)
        #expect(abs(linear[15] - (0.05)) <= 1e-7)
        #expect(linear[16] == 0)
        #expect(TextureSchedule("0.8, 0.5,0.2") == .explicit([0.8, 0.5, 0.2]))
        #expect(FlowMatch.textureSigmas(.explicit([0.8, 0.5, 0.2]), mu: mu) == [0.8, 0.5, 0.2, 0])
        #expect(TextureSchedule("shifted") == .shifted)
        #expect(TextureSchedule("0.8,abc") == nil)
    }
}
