import Foundation
import Models
import Raster
import Tensor
import Testing
@testable import DreamSRPipeline

@Suite(.serialized, .timeLimit(.minutes(10)))
final class ColorFixTests {
    /// A smooth reference plus a fine checkerboard detail.
    static func image(_ w: Int, _ h: Int, offset: Float = 0, gain: Float = 1, detail: Float = 0) -> PlanarImage {
        var img = PlanarImage(width: w, height: h, channels: 3)
        for c in 0..<3 { for y in 0..<h { for x in 0..<w {
            let smooth = 0.3 + 0.2 * sin(Float(x) * 0.05 + Float(c)) * cos(Float(y) * 0.04)
            let fine: Float = (x + y) % 2 == 0 ? detail : -detail
            img.pixels[(c * h + y) * w + x] = (smooth * gain + offset) + fine
        } } }
        return img
    }

    @Test func adaINMatchesReferenceStatistics() throws {
        let ref = Self.image(64, 48)
        let out = Self.image(64, 48, offset: 0.2, gain: 1.7, detail: 0.05)
        let fixed = try ColorFix.adain(output: out, reference: ref)
        let a = ColorFix.channelStatistics(fixed), b = ColorFix.channelStatistics(ref)
        for c in 0..<3 {
            #expect(abs(a[c].mean - (b[c].mean)) <= 1e-4)
            #expect(abs(a[c].std - (b[c].std)) <= 1e-4)
        }
    }

    @Test func waveletIsIdentityOnTheReferenceAndRemovesALowFrequencyShift() throws {
        let ref = Self.image(64, 48)
        let same = try ColorFix.wavelet(output: ref, reference: ref)
        #expect(abs(zip(same.pixels, ref.pixels).map { abs($0 - $1) }.max()! - (0)) <= 1e-5)
        // A colour cast (constant offset per channel) is low frequency: it is replaced by the reference's.
        var cast = ref
        for c in 0..<3 { for i in 0..<(64 * 48) { cast.pixels[c * 64 * 48 + i] += Float(c + 1) * 0.1 } }
        let fixed = try ColorFix.wavelet(output: cast, reference: ref)
        #expect(abs(zip(fixed.pixels, ref.pixels).map { abs($0 - $1) }.max()! - (0)) <= 1e-4)
        // Fine detail (highest frequency) of the output is kept.
        let detailed = Self.image(64, 48, detail: 0.1)
        let kept = try ColorFix.wavelet(output: detailed, reference: ref)
        let diff = zip(kept.pixels, ref.pixels).map { $0 - $1 }
        #expect(diff.map(abs).reduce(0, +) / Float(diff.count) > 0.05)
    }

    /// The C blur against a direct 3x3 dilated-kernel reference with replicate borders (incl. images smaller than
    /// the dilation).
    @Test func lowFrequencyMatchesDirectReference() throws {
        for (w, h) in [(7, 5), (40, 33), (3, 64)] {
            let img = Self.image(w, h, detail: 0.2)
            var ref = img.pixels
            for level in 0..<ColorFix.waveletLevels {
                let d = 1 << level
                var next = ref
                let k: [Float] = [0.25, 0.5, 0.25]
                for c in 0..<3 { for y in 0..<h { for x in 0..<w {
                    var acc: Float = 0
                    for (i, dy) in [-d, 0, d].enumerated() { for (j, dx) in [-d, 0, d].enumerated() {
                        let yy = min(max(y + dy, 0), h - 1), xx = min(max(x + dx, 0), w - 1)
                        acc += k[i] * k[j] * ref[(c * h + yy) * w + xx]
                    } }
                    next[(c * h + y) * w + x] = acc
                } } }
                ref = next
            }
            let got = ColorFix.lowFrequency(img).pixels
            #expect(zip(got, ref).map { abs($0 - $1) }.max()! < 1e-5, "\(w)x\(h)")
        }
    }

    @Test func sizeMismatchIsAnError() throws {
        #expect(throws: (any Error).self) { _ = try ColorFix.apply(.wavelet, output: Self.image(8, 8), reference: Self.image(8, 9)) }
        #expect(try ColorFix.apply(.none, output: Self.image(8, 8), reference: Self.image(8, 9)) == Self.image(8, 8))
    }

    /// The staged sampler (restore stage, then texture stage) computes exactly what the one-call sampler computes.
    @Test func stagedSamplerEqualsOneCallRun() throws {
        let model = try DreamSRSamplerTests.loadModel()
        let z = DreamSRSamplerTests.latent(16, 16, 24, seed: 0.7)
        let noise = DreamSRNoise.gaussian(shape: z.shape, seed: 3)
        let t = model.flux.config
        let global = DreamSRPromptEncoding(states: Tensor(shape: [5, t.contextDim]) { sin(Float($0) * 0.3) },
                                           pooled: Tensor(shape: [t.pooledDim]) { cos(Float($0)) })
        let staged = DreamSRStagedSampler(model: model, mode: .dualBranch, steps: 3)
        let plan = try staged.plan(latentWidth: 24, latentHeight: 16)
        #expect(plan.count == 2)
        let locals = (0..<plan.count).map { i in
            DreamSRPromptEncoding(states: Tensor(shape: [4, t.contextDim]) { cos(Float($0 + i) * 0.2) },
                                  pooled: Tensor(shape: [t.pooledDim]) { sin(Float($0 * (i + 1))) })
        }
        let one = try DreamSRPatchSampler.run(model: model, zLQ: z, noise: noise, globalPrompt: global, localPrompts: locals,
                                              mode: .dualBranch, steps: 3)
        let zdr = try staged.restore(zLQ: z, globalPrompt: global, localPrompts: locals)
        #expect(zdr.maxAbsDifference(one.zDR) == 0)
        let out = try staged.texture(zLQ: z, start: zdr, noise: noise, globalPrompt: global, localPrompts: locals)
        #expect(out.zOut.maxAbsDifference(one.zOut) == 0)
        #expect(out.sigmas == one.sigmas)
    }
}
