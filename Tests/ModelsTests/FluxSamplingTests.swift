import Checkpoints
import Foundation
import Models
import Tensor
import XCTest

final class FluxSamplingTests: XCTestCase {
    /// The whole 4-step loop (pack, schedule, FLUX forward, Euler, unpack) against diffusers'
    /// FlowMatchEulerDiscreteScheduler + FluxTransformer2DModel.
    func testFourStepLoopMatchesDiffusers() throws {
        let fx = try loadTensors(fluxFixtures.appendingPathComponent("sampling.safetensors"))
        let model = try FluxTransformer.load(from: CheckpointSet(url: fluxFixtures.appendingPathComponent("guidance/diffusers")))
        let lat = fx["initial_latent"]!
        let (c, h, w) = (lat.shape[0], lat.shape[1], lat.shape[2])
        let x = FluxPacking.pack(lat)
        let mu = FlowMatch.mu(imageSeqLen: x.shape[0])
        XCTAssertEqual(Float(mu), fx["mu"]![flat: 0], accuracy: 1e-6)
        let sigmas = FlowMatch.fluxSigmas(steps: 4, mu: mu)
        let ref = fx["sigmas"]!.toArray()
        XCTAssertEqual(sigmas.count, ref.count)
        for (a, b) in zip(sigmas, ref) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        let ids = FluxPacking.imageIds(latentHeight: h, latentWidth: w)
        XCTAssertEqual(ids.toArray(), fx["img_ids"]!.toArray())
        for k in 0..<4 {
            let inp = FluxInputs(hiddenStates: x.reshaped([1, x.shape[0], x.shape[1]]),
                                 encoderHiddenStates: fx["encoder_hidden_states"]!, pooledProjections: fx["pooled_projections"]!,
                                 timestep: [sigmas[k]], guidance: fx["guidance"]!.toArray(), imgIds: ids, txtIds: fx["txt_ids"]!)
            let v = try model.forward(inp)
            FlowMatch.eulerStep(x, velocity: v, sigma: sigmas[k], sigmaNext: sigmas[k + 1])
        }
        XCTAssertLessThanOrEqual(relErr(x, fx["final_packed"]!.reshaped(x.shape)), 1e-4)
        let final = FluxPacking.unpack(x, channels: c, height: h, width: w)
        XCTAssertLessThanOrEqual(relErr(final, fx["final_latent"]!), 1e-4)
    }

    func testPackUnpackRoundTripAndLayout() {
        let lat = Tensor(shape: [2, 4, 6]) { Float($0) }
        let p = FluxPacking.pack(lat)
        XCTAssertEqual(p.shape, [6, 8])
        // token (r=1, c=2), channel 1, ph=1, pw=0 -> latent[1, 3, 4]
        XCTAssertEqual(p[flat: (1 * 3 + 2) * 8 + 1 * 4 + 1 * 2 + 0], lat[flat: (1 * 4 + 3) * 6 + 4])
        XCTAssertEqual(FluxPacking.unpack(p, channels: 2, height: 4, width: 6).toArray(), lat.toArray())
    }

    func testFluxSchedulesMatchDiffusers() throws {
        let ref = try loadTensors(fluxFixtures.appendingPathComponent("schedules.safetensors"))
        for (n, seq) in [(28, 4096), (20, 1024), (4, 16)] {
            let s = FlowMatch.fluxSigmas(steps: n, mu: FlowMatch.mu(imageSeqLen: seq))
            let r = ref["sigmas_\(n)_\(seq)"]!.toArray()
            XCTAssertEqual(s.count, r.count)
            for (a, b) in zip(s, r) { XCTAssertEqual(a, b, accuracy: 2e-6, "\(n) steps, \(seq) tokens") }
        }
        XCTAssertEqual(FlowMatch.mu(imageSeqLen: 1024), 0.63, accuracy: 1e-9)
        XCTAssertEqual(FlowMatch.mu(imageSeqLen: 4096), 1.15, accuracy: 1e-12)
    }

    /// flux spec §2.3: strength 0.8 with 20 steps starts at 0.927 (1024², mu 1.15) / 0.882 (512², mu 0.63).
    func testImg2ImgStartSigma() {
        let a = FlowMatch.img2imgSigmas(steps: 20, strength: 0.8, mu: FlowMatch.mu(imageSeqLen: 4096))
        XCTAssertEqual(a.count, 17)
        XCTAssertEqual(a[0], 0.927, accuracy: 5e-4)
        XCTAssertEqual(a[15], 0.143, accuracy: 5e-4)
        XCTAssertEqual(a.last, 0)
        let b = FlowMatch.img2imgSigmas(steps: 20, strength: 0.8, mu: FlowMatch.mu(imageSeqLen: 1024))
        XCTAssertEqual(b[0], 0.882, accuracy: 5e-4)
        XCTAssertEqual(b[1], 0.849, accuracy: 5e-4)
    }

    /// dreamsr-architecture item 7.
    func testTextureSchedules() {
        let mu = FlowMatch.mu(imageSeqLen: 1024)
        let shifted = FlowMatch.textureSigmas(.shifted, start: 0.8, steps: 16, mu: mu)
        XCTAssertEqual(shifted.count, 17)
        XCTAssertEqual(shifted[0], 0.8, accuracy: 1e-6)
        XCTAssertEqual(shifted[16], 0)
        let u0 = FlowMatch.inverseTimeShift(mu: mu, 0.8)
        XCTAssertEqual(FlowMatch.timeShift(mu: mu, u0), 0.8, accuracy: 1e-12)
        for k in 0..<16 {
            XCTAssertGreaterThan(shifted[k], shifted[k + 1])
            XCTAssertEqual(Double(shifted[k]), FlowMatch.timeShift(mu: mu, u0 * (1 - Double(k) / 16)), accuracy: 1e-7)
        }
        let linear = FlowMatch.textureSigmas(.linear, start: 0.8, steps: 16, mu: mu)
        XCTAssertEqual(linear[0], 0.8, accuracy: 1e-7)
        XCTAssertEqual(linear[1], 0.75, accuracy: 1e-7)
        XCTAssertEqual(linear[15], 0.05, accuracy: 1e-7)
        XCTAssertEqual(linear[16], 0)
        XCTAssertEqual(TextureSchedule("0.8, 0.5,0.2"), .explicit([0.8, 0.5, 0.2]))
        XCTAssertEqual(FlowMatch.textureSigmas(.explicit([0.8, 0.5, 0.2]), mu: mu), [0.8, 0.5, 0.2, 0])
        XCTAssertEqual(TextureSchedule("shifted"), .shifted)
        XCTAssertNil(TextureSchedule("0.8,abc"))
    }
}
