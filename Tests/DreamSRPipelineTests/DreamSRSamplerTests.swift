import Checkpoints
import Foundation
import Models
import Raster
import Tensor
import Testing
@testable import DreamSRPipeline

/// A translation-equivariant, pointwise stand-in model: v = tanh(x) · (1 + sigma) (+ 0.5 in the restoration pass).
private struct PointwiseDenoiser: DreamSRPatchDenoiser {
    func velocities(x: Tensor, patches: [Int], sigma: Float, pass: DreamSRPass) throws -> Tensor {
        Tensor(shape: x.shape) { i in tanh(x[flat: i]) * (1 + sigma) + (pass == .restore ? 0.5 : 0) }
    }
}

@Suite(.serialized, .timeLimit(.minutes(10)))
final class DreamSRSamplerTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/dreamsr")

    static func loadModel() throws -> DreamSRModel {
        let flux = try FluxTransformer.load(from: CheckpointSet(url: fixtures.appendingPathComponent("flux-tiny.safetensors")))
        return try DreamSRModel.load(checkpoint: fixtures.appendingPathComponent("dreamsr-tiny.safetensors"), flux: flux)
    }

    static func tensors(_ name: String) throws -> [String: Tensor] {
        try SafeTensorsFile(url: fixtures.appendingPathComponent(name)).allTensors()
    }

    static func relError(_ a: Tensor, _ b: Tensor) -> Float {
        let v = b.toArray()
        return a.maxAbsDifference(b) / max((v.max() ?? 0) - (v.min() ?? 0), 1e-12)
    }

    static func slice(_ t: Tensor, _ i: Int) -> Tensor {
        let n = t.count / t.shape[0]
        return Tensor(shape: Array(t.shape.dropFirst()), values: Array(t.toArray()[(i * n)..<((i + 1) * n)]))
    }

    static func latent(_ c: Int, _ h: Int, _ w: Int, seed: Float) -> Tensor {
        Tensor(shape: [c, h, w]) { i in sin(Float(i) * 0.37 + seed) * 1.5 + cos(Float(i) * 0.011 * seed) }
    }

    /// The 1 + 16 run on the 2x3-patch latent image vs the reference (gaussian and uniform weights).
    @Test func wholeRunMatchesReference() throws {
        let model = try Self.loadModel()
        let t = try Self.tensors("run.safetensors")
        let z = t["z_lq"]!, noise = t["noise"]!
        let global = DreamSRPromptEncoding(states: t["encoder_hidden_states"]!, pooled: t["pooled_projections"]!)
        let locals = (0..<6).map {
            DreamSRPromptEncoding(states: Self.slice(t["local_encoder_hidden_states"]!, $0),
                                  pooled: Self.slice(t["local_pooled_projections"]!, $0))
        }
        let cases: [(DreamSRConfig.Weighting, DreamSRConfig.RopeIds, String)] = [
            (.gaussian, .patch, "z_out"), (.uniform, .patch, "z_out_uniform"), (.gaussian, .global, "z_out_global_ids")]
        for (weighting, ropeIds, expected) in cases {
            var cfg = model.config
            cfg.patchWeighting = weighting
            cfg.ropeIds = ropeIds
            let plan = try DreamSRPatchPlan(latentWidth: 36, latentHeight: 24, config: cfg)
            #expect(plan.grid.ys == t["grid_ys"]!.toArray().map { Int($0) })
            #expect(plan.grid.xs == t["grid_xs"]!.toArray().map { Int($0) })
            let m = DreamSRModel(flux: model.flux, controlnet: model.controlnet, config: cfg, mainLoRA: model.mainLoRA,
                                 controlnetLoRA: model.controlnetLoRA)
            let den = try DreamSRModelDenoiser(model: m, plan: plan, zLQ: z, globalPrompt: global, localPrompts: locals)
            var steps = 0
            let res = try DreamSRPatchSampler(config: cfg, plan: plan, batchSize: 4)
                .run(zLQ: z, noise: noise, denoiser: den) { _, _ in steps += 1 }
            #expect(steps == 17)
            #expect(res.sigmas.map { Float($0) } == t["sigmas"]!.toArray())
            if expected == "z_out" {  // the fixture's z_dr is the gaussian, per-patch-ids run's
                #expect(Self.relError(res.zDR, t["z_dr"]!) <= 1e-3, "z_dr")
            }
            #expect(Self.relError(res.zOut, t[expected]!) <= 1e-3, "\(expected)")
        }
    }

    /// An image of exactly one patch gives the same result as running the model on the whole (untiled) latent.
    @Test func onePatchImageEqualsUntiled() throws {
        let model = try Self.loadModel()
        let p = model.config.patchLatent
        let z = Self.latent(16, p, p, seed: 1), noise = Self.latent(16, p, p, seed: 2)
        let t = try Self.tensors("run.safetensors")
        let global = DreamSRPromptEncoding(states: t["encoder_hidden_states"]!, pooled: t["pooled_projections"]!)
        let local = DreamSRPromptEncoding(states: Self.slice(t["local_encoder_hidden_states"]!, 0),
                                          pooled: Self.slice(t["local_pooled_projections"]!, 0))
        let plan = try DreamSRPatchPlan(latentWidth: p, latentHeight: p, config: model.config)
        #expect(plan.count == 1)
        let den = try DreamSRModelDenoiser(model: model, plan: plan, zLQ: z, globalPrompt: global, localPrompts: [local])
        let res = try DreamSRPatchSampler(config: model.config, plan: plan).run(zLQ: z, noise: noise, denoiser: den)

        // Untiled: the model on the packed whole latent, Euler by hand.
        let cond = FluxPacking.pack(z).reshaped([1, (p / 2) * (p / 2), 64])
        func inputs(_ x: Tensor, _ s: Float) -> DreamSRInputs {
            DreamSRInputs(hiddenStates: x, condLatents: cond, encoderHiddenStates: global.states.reshaped([1] + global.states.shape),
                          pooledProjections: global.pooled.reshaped([1, global.pooled.count]),
                          localEncoderHiddenStates: local.states.reshaped([1] + local.states.shape),
                          localPooledProjections: local.pooled.reshaped([1, local.pooled.count]), timestep: [s],
                          guidance: [Float(model.config.guidance)], imgIds: FluxPacking.imageIds(latentHeight: p, latentWidth: p),
                          txtIds: Tensor(zeros: [global.states.shape[0], 3]), localTxtIds: Tensor(zeros: [local.states.shape[0], 3]))
        }
        let (_, zdrTok) = try model.restore(inputs(cond, 1))
        let sig = model.config.textureSigmas().map { Float($0) }
        let x = Tensor(shape: zdrTok.shape) { (1 - sig[0]) * zdrTok[flat: $0] }
        let nTok = FluxPacking.pack(noise)
        for i in 0..<x.count { x[flat: i] += sig[0] * nTok[flat: i] }
        for k in 0..<(sig.count - 1) {
            let v = try model.velocity(inputs(x, sig[k]), lora: false)
            for i in 0..<x.count { x[flat: i] += (sig[k + 1] - sig[k]) * v[flat: i] }
        }
        let untiled = FluxPacking.unpack(x, channels: 16, height: p, width: p)
        #expect(res.zOut.maxAbsDifference(untiled) <= 1e-5)
        #expect(res.zDR.maxAbsDifference(FluxPacking.unpack(zdrTok, channels: 16, height: p, width: p)) <= 1e-5)
    }

    /// When overlapping patches predict identical velocities on their shared cells (a pointwise model), blending
    /// gives what one patch covering the whole image gives, with uniform and with gaussian weights.
    @Test func identicalOverlapsEqualOnePatch() throws {
        var cfg = DreamSRConfig()
        cfg.patchSize = 128
        cfg.patchOverlap = 32
        cfg.textureSteps = 4
        let z = Self.latent(16, 24, 36, seed: 3), noise = Self.latent(16, 24, 36, seed: 4)
        var big = cfg
        big.patchSize = 36 * 8  // one patch covering everything (reflection-padded to 36x36)
        for w in [DreamSRConfig.Weighting.uniform, .gaussian] {
            cfg.patchWeighting = w
            big.patchWeighting = w
            let tiledPlan = try DreamSRPatchPlan(latentWidth: 36, latentHeight: 24, config: cfg)
            #expect(tiledPlan.count == 6)
            let onePlan = try DreamSRPatchPlan(latentWidth: 36, latentHeight: 24, config: big)
            #expect(onePlan.count == 1)
            let a = try DreamSRPatchSampler(config: cfg, plan: tiledPlan).run(zLQ: z, noise: noise, denoiser: PointwiseDenoiser())
            // the texture schedule depends on the patch token count: give the big run the same sigmas
            big.schedule = .explicit(cfg.textureSigmas())
            let b = try DreamSRPatchSampler(config: big, plan: onePlan).run(zLQ: z, noise: noise, denoiser: PointwiseDenoiser())
            #expect(a.zOut.maxAbsDifference(b.zOut) <= 1e-5, "\(w)")
            #expect(a.zDR.maxAbsDifference(b.zDR) <= 1e-5, "\(w)")
        }
    }

    @Test func reflectionPaddingOfSmallImages() throws {
        var cfg = DreamSRConfig()
        cfg.patchSize = 128
        cfg.patchOverlap = 32
        let plan = try DreamSRPatchPlan(latentWidth: 10, latentHeight: 6, config: cfg)
        #expect(plan.paddedWidth == 16)
        #expect(plan.paddedHeight == 16)
        #expect(plan.count == 1)
        let z = Self.latent(16, 6, 10, seed: 5)
        let padded = try plan.pad(z)
        #expect(padded.shape == [16, 16, 16])
        // row 6 mirrors row 4, row 11 = reflect(11, 6) = 1 (period 10), col 10 mirrors col 8
        #expect(padded[flat: (2 * 16 + 6) * 16 + 3] == z[flat: (2 * 6 + 4) * 10 + 3])
        #expect(padded[flat: (2 * 16 + 11) * 16 + 3] == z[flat: (2 * 6 + 1) * 10 + 3])
        #expect(padded[flat: (0 * 16 + 0) * 16 + 10] == z[flat: 8])
        #expect(plan.crop(padded).toArray() == z.toArray())
        #expect(((0..<12).map { DreamSRPatchPlan.reflect($0, 5) }) == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3])
        // pointwise model: padded run cropped == what the pixels would get untiled
        let res = try DreamSRPatchSampler(config: cfg, plan: plan).run(zLQ: z, noise: Self.latent(16, 6, 10, seed: 6),
                                                                       denoiser: PointwiseDenoiser())
        #expect(res.zOut.shape == [16, 6, 10])
        #expect(throws: (any Error).self) { _ = try DreamSRPatchPlan(latentWidth: 9, latentHeight: 6, config: cfg) }
    }

    @Test func gridAndWeightsMatchReferenceNumbers() throws {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("schedule.json"))
        let obj = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let positions = obj["positions"] as! [String: [Int]]
        for (key, expected) in positions {
            let p = key.split(separator: "_").map { Int($0)! }
            #expect(TileGrid.positions(length: p[0], tile: p[1], overlap: p[2]) == expected, Comment(rawValue: key))
        }
        let g = (obj["gaussian_16"] as! [Double]).map { Float($0) }
        let mine = TileWeighting.gaussian.profile(start: 0, size: 16, length: 40)
        for (a, b) in zip(mine, g) { #expect(abs(a - (b)) <= 1e-6 * max(1, b)) }
    }
}

/// Records the passes and sigmas it is asked for.
private final class SpyDenoiser: DreamSRPatchDenoiser {
    var calls: [(DreamSRPass, Float, Int)] = []
    func velocities(x: Tensor, patches: [Int], sigma: Float, pass: DreamSRPass) throws -> Tensor {
        calls.append((pass, sigma, patches.count))
        return try PointwiseDenoiser().velocities(x: x, patches: patches, sigma: sigma, pass: pass)
    }
}

@Suite(.serialized, .timeLimit(.minutes(10)))
final class DreamSRModeTests {
    private func prompts(_ t: [String: Tensor]) -> (DreamSRPromptEncoding, [DreamSRPromptEncoding]) {
        let g = DreamSRPromptEncoding(states: t["encoder_hidden_states"]!, pooled: t["pooled_projections"]!)
        let l = (0..<6).map {
            DreamSRPromptEncoding(states: DreamSRSamplerTests.slice(t["local_encoder_hidden_states"]!, $0),
                                  pooled: DreamSRSamplerTests.slice(t["local_pooled_projections"]!, $0))
        }
        return (g, l)
    }

    @Test func singleBranchModes() throws {
        let t = try DreamSRSamplerTests.tensors("run.safetensors")
        var model = try DreamSRSamplerTests.loadModel()
        var cfg = model.config
        cfg.textureSteps = 3
        model = DreamSRModel(flux: model.flux, controlnet: model.controlnet, config: cfg, mainLoRA: model.mainLoRA,
                             controlnetLoRA: model.controlnetLoRA)
        let (g, l) = prompts(t)
        let z = t["z_lq"]!, n = t["noise"]!
        let global = try DreamSRPatchSampler.run(model: model, zLQ: z, noise: n, globalPrompt: g, localPrompts: l,
                                                 mode: .singleBranchGlobal)
        // local prompts all equal to the global one: single-branch-local == single-branch-global
        let same = try DreamSRPatchSampler.run(model: model, zLQ: z, noise: n, globalPrompt: g,
                                               localPrompts: [DreamSRPromptEncoding](repeating: g, count: 6), mode: .singleBranchLocal)
        #expect(same.zOut.maxAbsDifference(global.zOut) == 0)
        let local = try DreamSRPatchSampler.run(model: model, zLQ: z, noise: n, globalPrompt: g, localPrompts: l, mode: .singleBranchLocal)
        #expect(local.zOut.maxAbsDifference(global.zOut) > 1e-3)
        // with the DreamSR output layers zeroed, dual-branch == single-branch-global exactly
        let zeroed = model.zeroingOutputLayers()
        let dual0 = try DreamSRPatchSampler.run(model: zeroed, zLQ: z, noise: n, globalPrompt: g, localPrompts: l)
        let single0 = try DreamSRPatchSampler.run(model: zeroed, zLQ: z, noise: n, globalPrompt: g, localPrompts: l,
                                                  mode: .singleBranchGlobal)
        #expect(dual0.zOut.maxAbsDifference(single0.zOut) == 0)
        let dual = try DreamSRPatchSampler.run(model: model, zLQ: z, noise: n, globalPrompt: g, localPrompts: l)
        #expect(dual.zOut.maxAbsDifference(global.zOut) > 1e-3)
    }

    @Test func withoutLoRAStartsFromNoiseAtSigmaOne() throws {
        let cfg = DreamSRMode.withoutLoRA.samplerConfig({ var c = DreamSRConfig(); c.patchSize = 128; c.patchOverlap = 32; return c }(), steps: 5)
        let plan = try DreamSRPatchPlan(latentWidth: 36, latentHeight: 24, config: cfg)
        let spy = SpyDenoiser()
        let z = DreamSRSamplerTests.latent(16, 24, 36, seed: 7), noise = DreamSRNoise.gaussian(shape: [16, 24, 36], seed: 1)
        let res = try DreamSRPatchSampler(config: cfg, plan: plan, batchSize: 4).run(zLQ: z, noise: noise, denoiser: spy,
                                                                                    restore: DreamSRMode.withoutLoRA.restores)
        #expect(!(spy.calls.contains { $0.0 == .restore }))
        #expect((spy.calls.filter { $0.0 == .texture }.count) == 5 * 2)  // 6 patches in batches of 4 -> 2 calls per step
        #expect((spy.calls.first?.1) == 1)
        #expect(res.sigmas.count == 6)
        #expect(res.zDR.toArray() == z.toArray())
    }

    @Test func seededNoise() throws {
        let a = DreamSRNoise.gaussian(shape: [16, 32, 32], seed: 42), b = DreamSRNoise.gaussian(shape: [16, 32, 32], seed: 42)
        let c = DreamSRNoise.gaussian(shape: [16, 32, 32], seed: 43)
        #expect(a.toArray() == b.toArray())
        #expect(a.maxAbsDifference(c) > 1)
        let v = a.toArray().map(Double.init)
        let mean = v.reduce(0, +) / Double(v.count)
        let sd = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
        #expect(abs(mean - (0)) <= 0.03)
        #expect(abs(sd - (1)) <= 0.03)
    }
}
