import Foundation
import Models

/// Where the DreamSR pipeline's weights are (the pipeline file's `models:` block), each relative to the daemon's
/// `models_dir` unless absolute. Defaults: the diffusers FLUX.1-dev folder layout under `flux1-dev/`.
public struct DreamSRModelPaths: Sendable, Equatable, Hashable {
    public var flux = "flux1-dev/transformer"
    public var vae = "flux1-dev/vae"
    public var clip = "flux1-dev/text_encoder"
    public var t5 = "flux1-dev/text_encoder_2"
    public var clipTokenizer = "flux1-dev/tokenizer"
    public var t5Tokenizer = "flux1-dev/tokenizer_2"
    public var dreamsr = "dreamsr/dreamsr.safetensors"
    public init() {}

    public static let keys = ["flux", "vae", "clip", "t5", "clip_tokenizer", "t5_tokenizer", "dreamsr"]
}

/// The DreamSR options of a pipeline file (`dreamsr:` block), typed: the app parses them once from YAML (a bad value
/// is refused naming the key and the allowed values) and hands them to `DreamSRImagePipeline` as they are.
public struct DreamSRPipelineOptions: Sendable, Equatable {
    /// The paper's dual-branch model or one of its ablations.
    public var mode = DreamSRMode.dualBranch
    /// nil: the checkpoint config's `color_fix`.
    public var colorFix: ColorFix.Method?
    /// Texture steps; nil: the checkpoint's (16), or 20 without LoRA.
    public var steps: Int?
    /// Seed of the texture stage's noise (the same input and seed give the same output).
    public var seed: Int = 0
    /// VAE tile core size in pixels (encode) and latent cells x 8 (decode).
    public var vaeTile: Int = 512
    /// Where tiles wait between GroupNorm synchronisation points when the VAE runs tiled.
    public var vaeTileStates = VAETileStates.disk
    /// With `.disk`: MiB of waiting tile states kept in memory before spilling to scratch files (0: all on disk).
    public var vaeTileMemoryMB = 1024
    /// Folder for the disk tile states (nil: the system temporary folder, `$TMPDIR` or /tmp).
    public var vaeScratchDirectory: String?
    /// Patches per transformer call.
    public var batch: Int = 4
    /// Activation precision of the FLUX / DreamSR ControlNet matrix products and attention (`precision: fp32|bf16`).
    public var precision = ComputePrecision.fp32
    /// Whether the T5 / CLIP encoders are dropped after each job's prompts are encoded (`release_text_encoders`).
    public var releaseTextEncoders = TextEncoderRelease.auto
    public init() {}

    /// `release_text_encoders: auto|true|false`. Released: the T5 and CLIP models (and their file mappings) are dropped
    /// once a job's prompts are encoded and loaded again by the next job with a prompt not in the encoding cache.
    /// `auto`: released when memory is short (MemAvailable before loading below what the whole set takes resident,
    /// `ModelSetMemory.isShort`).
    public enum TextEncoderRelease: String, Sendable, CaseIterable {
        case auto
        case always = "true"
        case never = "false"

        /// Whether the encoders are released, given the model set's memory picture.
        public func releases(_ memory: ModelSetMemory) -> Bool {
            switch self {
            case .always: true
            case .never: false
            case .auto: memory.isShort
            }
        }
    }

    public enum VAETileStates: String, Sendable, CaseIterable {
        /// In memory up to `vaeTileMemoryMB`, the rest in scratch files: resident memory bounded by one tile plus
        /// that budget, whatever the image size.
        case disk
        /// All in RAM: memory grows with the image.
        case memory
    }

    /// The VAE tiling these options ask for, with `tile` cells per tile core.
    public func vaeTiling(tile: Int) -> VAETiling {
        let scratch = URL(fileURLWithPath: vaeScratchDirectory ?? FileManager.default.temporaryDirectory.path,
                          isDirectory: true)
        let storage: VAETiling.StateStorage = switch vaeTileStates {
        case .memory: .memory
        case .disk: .spill(scratch, memoryBytes: vaeTileMemoryMB << 20)
        }
        return VAETiling(tileSize: tile, storage: storage)
    }
}
