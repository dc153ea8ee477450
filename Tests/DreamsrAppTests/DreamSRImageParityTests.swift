import Checkpoints
import Foundation
import Imaging
import Tensor
import Testing

/// End-to-end DreamSR image parity (issue 13 item 6): `dreamsr upscale --pipeline FILE` on a 16-bit 57x33 LR image
/// (output 228x132, computed at 240x144: latent 30x18, 2x3 patches) with the tiny random model set, against the PyTorch
/// reference of the whole image path in tools/dreamsr_image_reference.py (written from the spec, not from this code),
/// for dual-branch and every ablation mode and both colour fixes. The CLI runs the real path: 16-bit PNG decode,
/// Lanczos3 LR resize, padding, VAE scale / shift, tiled VAE encode (128 px tiles), captions (fixed global + local
/// prompts), restoration pass, MultiDiffusion texture stage, tiled VAE decode, crop, colour fix, 16-bit PNG encode.
///
/// Bounds, over every pixel and channel of the 16-bit output (its own rounding is 0.5/65535 = 7.6e-6) against the
/// reference's float32 pixels: the issue's acceptance bound max abs <= 1/255, and the float32 agreement bound max abs
/// <= 1e-4 (measured ~1e-5). The tight one matters: a reference that appended T5's EOS where the tokenizer file has no
/// post-processor differed by 0.65/255 to 1.44/255 depending on the mode, which 1/255 alone mostly let through.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DreamSRImageParityTests {
    static let fixtures = repoRoot + "/Tests/Fixtures/dreamsr_e2e"
    static let bound: Float = 1.0 / 255
    static let float32Bound: Float = 1e-4
    /// Must match tools/dreamsr_image_reference.py (also recorded in the fixture's metadata, checked below).
    static let globalPrompt = "high quality photo, sharp focus, highly detailed, natural textures"
    static let localPrompt = "a close-up of rough stone with moss"
    static let seed = 7
    /// Case name (the tensor in expected.safetensors) -> (mode, colour fix).
    static let cases: [String: (mode: String, colorFix: String)] = [
        "dual-branch-wavelet": ("dual-branch", "wavelet"),
        "dual-branch-adain": ("dual-branch", "adain"),
        "single-branch-global-adain": ("single-branch-global", "adain"),
        "single-branch-local-wavelet": ("single-branch-local", "wavelet"),
        "without-lora-wavelet": ("without-lora", "wavelet"),
    ]

    static func yaml(mode: String, colorFix: String) -> String {
        """
        name: parity-\(mode)-\(colorFix)
        capacity: {items: 1, megapixels: 16}
        output_format: png
        models:
          flux: flux/flux-tiny.safetensors
          vae: vae
          clip: text_encoder
          t5: text_encoder_2
          clip_tokenizer: tokenizer
          t5_tokenizer: tokenizer_2
          dreamsr: dreamsr/dreamsr-tiny.safetensors
        dreamsr:
          mode: \(mode)
          color_fix: \(colorFix)
          seed: \(seed)
          vae_tile: 128
          vae_tile_states: memory
          batch: 6
        caption:
          fixed_prompt: \(globalPrompt)
          fixed_local_prompt: \(localPrompt)
        stages:
          - stage: decode
          - stage: caption
          - stage: restore
            restorer: dreamsr
          - stage: texture
          - stage: blend
          - stage: encode
        """
    }

    static func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    @Test func fixtureRecordsTheSamePromptsSeedAndCases() throws {
        let file = try SafeTensorsFile(url: URL(fileURLWithPath: Self.fixtures + "/expected.safetensors"))
        #expect(file.metadata["global_prompt"] == Self.globalPrompt)
        #expect(file.metadata["local_prompt"] == Self.localPrompt)
        #expect(file.metadata["seed"] == "\(Self.seed)")
        #expect(Set(file.tensorInfos.map(\.name)) == Set(Self.cases.keys))
    }

    @Test(arguments: ["dual-branch-wavelet", "dual-branch-adain", "single-branch-global-adain",
                      "single-branch-local-wavelet", "without-lora-wavelet"])
    func cliOutputMatchesTheImageReference(name: String) async throws {
        try ImageCodec.initialize()
        let c = try #require(Self.cases[name])
        let models = try tinyModelsDirectory()
        let work = try tempDir()
        try Self.yaml(mode: c.mode, colorFix: c.colorFix).write(toFile: work + "/pipe.yaml", atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        let r = try runDreamsr(["upscale", "--pipeline", work + "/pipe.yaml", "--models-dir", models,
                                Self.fixtures + "/lr.png", "-o", work + "/out.png"], timeout: 120)
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        try #require(r.status == 0, "\(r.output)")
        #expect(r.output.contains("mode: \(c.mode)") && r.output.contains("(228x132)"), "\(r.output)")
        #expect(r.output.contains("tiled VAE encode (128 px tiles") && r.output.contains("VAE decode (tiled, 16-cell tiles"),
                "the VAE runs tiled: \(r.output)")

        let out = try ImageCodec.decode(path: work + "/out.png")
        #expect(out.bitDepth == 16, "a 16-bit input gives a 16-bit output")
        try #require(out.width == 228 && out.height == 132 && out.color.channels == 3 && out.alpha == nil)
        let expectedFile = try SafeTensorsFile(url: URL(fileURLWithPath: Self.fixtures + "/expected.safetensors"))
        let expected = try expectedFile.tensor(named: name)
        try #require(expected.shape == [3, 132, 228])
        let ref = expected.withUnsafeBufferPointer { Array($0) }
        let got = out.color.pixels
        let err = Self.maxAbs(got, ref)
        print("DreamSRImageParity \(name): max abs \(err) (\(err * 255)/255), CLI \(String(format: "%.1f", seconds)) s")
        #expect(err <= Self.bound, "\(name): max abs \(err) = \(err * 255)/255 > 1/255")
        #expect(err <= Self.float32Bound, "\(name): max abs \(err) > 1e-4 (float32 agreement)")
        // The bound tells the cases apart: the output is farther than the bound from every other case's reference.
        for other in Self.cases.keys where other != name {
            let o = try expectedFile.tensor(named: other).withUnsafeBufferPointer { Array($0) }
            #expect(Self.maxAbs(got, o) > 2 * Self.bound, "\(name) output is within 2/255 of \(other)'s reference")
        }
    }
}
