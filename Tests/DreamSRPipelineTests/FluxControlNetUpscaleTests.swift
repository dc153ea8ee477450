import Checkpoints
import Foundation
import Models
import Raster
import Tensor
import Testing
@testable import DreamSRPipeline

/// The FLUX ControlNet upscale pipeline against the image-level reference of
/// tools/make_flux_controlnet_upscale_fixtures.py (diffusers FluxControlNetModel + FluxTransformer2DModel per patch,
/// MultiDiffusion over 2 x 2 patches, VAE encode / decode): <= 1/255 per pixel, <= 1e-4 relative on the final latent.
@Suite(.serialized, .timeLimit(.minutes(5))) struct FluxControlNetUpscaleTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func modelSet(transformer: String) throws -> FluxControlNetModelSet {
        let fx = fixtures.path
        let flux = try FluxTransformer.load(from: CheckpointSet(url: URL(fileURLWithPath: fx + "/" + transformer)))
        let cn = try FluxControlNet.load(from: CheckpointSet(url: URL(fileURLWithPath: fx + "/flux_controlnet/cn_pipeline")))
        // The VAE fixture as a diffusers vae/ folder (weights + config.json).
        let vaeDir = FileManager.default.temporaryDirectory.appendingPathComponent("cn-vae-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: vaeDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: vaeDir) }
        try FileManager.default.copyItem(atPath: fx + "/vae/vae_small_diffusers.safetensors",
                                         toPath: vaeDir.path + "/diffusion_pytorch_model.safetensors")
        try FileManager.default.copyItem(atPath: fx + "/vae/vae_small_config.json", toPath: vaeDir.path + "/config.json")
        let vae = try AutoencoderKL.load(from: vaeDir).model
        let text = try FluxTextEncoders.load(clip: fx + "/pipeline/text_encoder", t5: fx + "/pipeline/text_encoder_2",
                                             clipTokenizer: fx + "/pipeline/tokenizer", t5Tokenizer: fx + "/pipeline/tokenizer_2")
        return FluxControlNetModelSet(transformer: flux, controlnet: cn, vae: vae, text: text)
    }

    static func relError(_ a: Tensor, _ b: Tensor) -> Float {
        let x = a.toArray(), y = b.toArray()
        var num: Float = 0, den: Float = 0
        for i in 0..<y.count { num = max(num, abs(x[i] - y[i])); den = max(den, abs(y[i])) }
        return num / max(den, 1e-12)
    }

    @Test(arguments: [("dev", "dreamsr/flux-tiny.safetensors"), ("schnell", "flux_controlnet/schnell_pipeline")])
    func imageMatchesTheDiffusersReferenceOn2x2Patches(variant: String, transformer: String) throws {
        let ref = try SafeTensorsFile(url: Self.fixtures.appendingPathComponent("flux_controlnet/upscale_image_\(variant).safetensors"))
            .allTensors()
        let models = try Self.modelSet(transformer: transformer)
        var options = FluxControlNetTextureOptions()
        options.variant = FluxVariant(rawValue: variant)!
        options.steps = 2
        options.startSigma = 0.8
        options.guidance = 3.5
        options.patchSize = 128
        options.patchOverlap = 32
        var image = DreamSRPipelineOptions()
        image.colorFix = ColorFix.Method.none
        image.seed = 7
        image.batch = 3  // batches of 3 + 1 patches: the blend must not depend on the batching
        let pipeline = FluxControlNetUpscalePipeline(models: models, options: options, image: image)

        let img = try #require(ref["image"]), side = img.shape[2]
        let lr = PlanarImage(width: side, height: side, channels: 3, pixels: img.toArray())
        let geometry = try pipeline.geometry(lrWidth: side, lrHeight: side, scale: 1)
        #expect(try pipeline.plan(geometry).count == 4, "the reference is a 2 x 2-patch image")
        #expect(pipeline.sigmas(try pipeline.plan(geometry)).map { Double($0) } == ref["sigmas"]!.toArray().map { Double($0) })
        let noise = DreamSRNoise.gaussian(shape: ref["noise"]!.shape, seed: 7)
        #expect(Self.relError(noise, ref["noise"]!) < 1e-6, "seeded noise differs from the reference's re-implementation")

        let global = DreamSRPromptEncoding(states: ref["global_states"]!, pooled: ref["global_pooled"]!)
        let locals = (0..<4).map { DreamSRPromptEncoding(states: ref["local_states.\($0)"]!, pooled: ref["local_pooled.\($0)"]!) }
        let out = try pipeline.upscale(lr: lr, restored: nil, scale: 1, globalPrompt: global, localPrompts: locals)
        let zErr = Self.relError(out.zOut, ref["z_out"]!)
        #expect(zErr <= 1e-4, "final latent: relative error \(zErr)")
        let expected = ref["out_image"]!.toArray()
        var maxErr: Float = 0
        for i in 0..<expected.count { maxErr = max(maxErr, abs(out.image.pixels[i] - expected[i])) }
        #expect(out.image.width == side && out.image.height == side)
        #expect(maxErr <= 1.0 / 255, "image: max abs error \(maxErr) (x255 = \(maxErr * 255))")
        print("FluxControlNetUpscaleTests \(variant): latent rel \(zErr), image max abs \(maxErr * 255)/255")

        // The ControlNet acts: without it (scale 0) the image differs from the reference by more than the bound.
        var off = options
        off.conditioningScale = 0
        let plain = try FluxControlNetUpscalePipeline(models: models, options: off, image: image)
            .upscale(lr: lr, restored: nil, scale: 1, globalPrompt: global, localPrompts: locals)
        #expect(Self.relError(plain.zOut, ref["z_out"]!) > 1e-3, "the ControlNet residuals have no visible effect")
    }
}
