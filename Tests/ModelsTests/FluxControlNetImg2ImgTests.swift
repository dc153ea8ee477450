import Checkpoints
import Foundation
import Models
import Tensor
import Testing

/// One whole FluxControlNetImg2ImgPipeline denoising loop (strength 0.8, 5 steps → 4 Euler steps) at the latent
/// level against diffusers, for a FLUX.1-dev-like model (guidance, shifted schedule, ControlNet off for the last
/// step by control_guidance_end 0.75) and a FLUX.1-schnell-like one (no guidance, unshifted: starts at sigma 0.8).
@Suite(.timeLimit(.minutes(2))) struct FluxControlNetImg2ImgTests {
    @Test func devLoopMatchesDiffusers() throws { try loop(model: "dev", controlnet: "cn_plain", dev: true) }

    @Test func schnellLoopMatchesDiffusers() throws { try loop(model: "schnell", controlnet: "cn_schnell", dev: false) }

    func loop(model: String, controlnet: String, dev: Bool) throws {
        let dir = FluxControlNetTests.dir
        let fx = try loadTensors(dir.appendingPathComponent("img2img_\(model).safetensors"))
        let s = fx["settings"]!.toArray()  // steps, strength, guidance, conditioning scale, guidance end
        let transformer = try FluxControlNetTests.transformer(model)
        let cn = try FluxControlNetTests.load(controlnet)
        #expect(transformer.config.guidanceEmbed == dev)

        let lat = fx["image_latent"]!
        let (c, h, w) = (lat.shape[0], lat.shape[1], lat.shape[2])
        let z0 = FluxPacking.pack(lat), noise = FluxPacking.pack(fx["noise"]!), cond = FluxPacking.pack(fx["control_latent"]!)
        let mu = FlowMatch.mu(imageSeqLen: FlowMatch.imageSeqLen(width: 8 * w, height: 8 * h))
        #expect(abs(Float(mu) - fx["mu"]![flat: 0]) < 1e-6)
        // strength 0.8 exactly as Python's float: Double(Float(0.8)) · 5 would round the cut the other way
        #expect(abs(s[1] - 0.8) < 1e-7)
        let sigmas = FluxControlNetImg2Img.sigmas(steps: Int(s[0]), strength: 0.8, mu: mu, shift: dev)
        let ref = fx["sigmas"]!.toArray()
        #expect(sigmas.count == ref.count)
        for (a, b) in zip(sigmas, ref) { #expect(abs(a - b) < 1e-6) }
        if !dev { #expect(sigmas[0] == 0.8) }
        let ids = FluxPacking.imageIds(latentHeight: h, latentWidth: w)
        #expect(ids.toArray() == fx["img_ids"]!.toArray())

        let unit = FluxControlNetUnit(controlnet: cn, cond: cond.reshaped([1] + cond.shape), scale: s[3],
                                      guidanceEnd: Double(s[4]))
        var steps = 0
        let x = try FluxControlNetImg2Img(transformer: transformer).sample(
            imageLatents: z0.reshaped([1] + z0.shape), noise: noise.reshaped([1] + noise.shape), sigmas: sigmas,
            controlnets: [unit], encoderHiddenStates: fx["encoder_hidden_states"]!, pooledProjections: fx["pooled_projections"]!,
            guidance: s[2], imgIds: ids, txtIds: fx["txt_ids"]!, onStep: { _, _ in steps += 1 })
        #expect(steps == 4)
        let e = relErr(x, fx["final_packed"]!.reshaped(x.shape))
        #expect(e <= 1e-4, "\(model) packed rel err \(e)")
        let final = FluxPacking.unpack(x, channels: c, height: h, width: w)
        #expect(relErr(final, fx["final_latent"]!) <= 1e-4)

        // The ControlNet and its guidance window both change the result well beyond the tolerance.
        func run(_ units: [FluxControlNetUnit]) throws -> Tensor {
            try FluxControlNetImg2Img(transformer: transformer).sample(
                imageLatents: z0.reshaped([1] + z0.shape), noise: noise.reshaped([1] + noise.shape), sigmas: sigmas,
                controlnets: units, encoderHiddenStates: fx["encoder_hidden_states"]!,
                pooledProjections: fx["pooled_projections"]!, guidance: s[2], imgIds: ids, txtIds: fx["txt_ids"]!)
        }
        #expect(relErr(try run([]), x) > 1e-2)
        if s[4] < 1 {
            var always = unit
            always.guidanceEnd = 1
            #expect(relErr(try run([always]), x) > 1e-3)
        }
    }

    @Test func mismatchedInputsAreRefused() throws {
        let transformer = try FluxControlNetTests.transformer("schnell")
        let cn = try FluxControlNetTests.load("cn_schnell")
        let sampler = FluxControlNetImg2Img(transformer: transformer)
        let z = Tensor(zeros: [1, 16, 16])
        let unit = FluxControlNetUnit(controlnet: cn, cond: Tensor(zeros: [1, 4, 16]))
        #expect(throws: FluxSamplingError.self) {
            _ = try sampler.sample(imageLatents: z, noise: z, sigmas: [0.8, 0], controlnets: [unit],
                                   encoderHiddenStates: Tensor(zeros: [1, 8, 32]), pooledProjections: Tensor(zeros: [1, 16]),
                                   guidance: nil, imgIds: Tensor(zeros: [16, 3]), txtIds: Tensor(zeros: [8, 3]))
        }
        #expect(throws: FluxSamplingError.self) {
            _ = try sampler.sample(imageLatents: z, noise: z, sigmas: [0.8], controlnets: [],
                                   encoderHiddenStates: Tensor(zeros: [1, 8, 32]), pooledProjections: Tensor(zeros: [1, 16]),
                                   guidance: nil, imgIds: Tensor(zeros: [16, 3]), txtIds: Tensor(zeros: [8, 3]))
        }
    }
}
