import DreamSRPipeline
import Foundation
import Models
import PipelineRuntime

/// The kinds of stage a pipeline file may list, in the order they must appear.
public enum StageKind: String, Sendable, CaseIterable {
    /// Read and check the input file (limits from the header), decode to a float image.
    case decode
    /// Global/local prompts for the texture stage (VLM endpoint or fixed prompt).
    case caption
    /// Degradation removal / upscaling (Real-ESRGAN, or DreamSR's one-step restoration).
    case restore
    /// Generative texture (FLUX + DreamSR ControlNet); needs FLUX weights.
    case texture
    /// Blend restored and textured results (colour fix); only meaningful with a texture stage.
    case blend
    /// Re-attach alpha, encode and write the output atomically (temp name + rename).
    case encode
}

extension StageDefinition {
    /// Whether `later` (a stage after this one) uses this stage's result; nil when the job's own path always does
    /// (decode's image, a pixel restorer's or blend's image reach encode; encode is last).
    func resultIsUsed(by later: StageDefinition) -> Bool? {
        switch kind {
        case .decode, .blend, .encode: nil
        // Prompts condition the DreamSR restorer (LoRA restoration) and the texture sampler, nothing else.
        case .caption: later.kind == .texture || (later.kind == .restore && later.restorer == .dreamsr)
        // A DreamSR restore leaves latents that only the texture sampler takes on (a pixel restorer: an image).
        case .restore: restorer == .dreamsr ? later.kind == .texture : nil
        // The texture latent becomes pixels only in blend (VAE decode + colour fix).
        case .texture: later.kind == .blend
        }
    }

    /// The stage as messages name it: `'texture'`, `'restore' (restorer dreamsr)`.
    var describedKind: String { kind == .restore ? "'restore' (restorer \(restorer.rawValue))" : "'\(kind.rawValue)'" }

    /// Why nothing uses the result and what to do instead, for the message.
    var droppedResultHint: String {
        switch kind {
        case .caption: "its prompts condition only a DreamSR 'restore' or 'texture'; add one after it, or remove 'caption'"
        case .restore: "a DreamSR restore yields latents that only 'texture' then 'blend' turn into an image; add them, or use restorer realesrgan"
        case .texture: "the texture latent becomes an image only in 'blend'; add a 'blend' stage before 'encode'"
        default: ""
        }
    }
}

/// One stage as a pipeline file lists it.
public struct StageDefinition: Sendable, Equatable {
    public var kind: StageKind
    public var runtime: StageConfig
    /// Model directory name under the daemon's `models_dir` (or an absolute path).
    public var model: String?
    /// Tile geometry for tiled restoration, in input pixels.
    public var tileSize: Int
    public var tileOverlap: Int
    /// Restore stage only: which restorer runs (`realesrgan`: RRDBNet in pixel space from `model`; `dreamsr`: LR
    /// Lanczos3 resize, tiled VAE encode and DreamSR's one-step LoRA restoration).
    public var restorer: Restorer = .realesrgan
    /// Restore stage (realesrgan): extra input pixels of context around each tile, cropped away (`tile_pad`); nil:
    /// the model's own (its receptive field, from the model catalog), 24 for a model the catalog does not know.
    public var tilePad: Int?
    /// Restore stage (realesrgan): test-time augmentation, 8 flips/rotations averaged (`tta`; about 8x the time).
    public var tta: Bool = false
    /// Restore stage (realesrgan): a model with squeeze-excitation blocks (Real-CUGAN, waifu2x cunet) gets the whole
    /// image's global averages in every tile (`shared_statistics`, default true; false: per tile, faster).
    public var sharedStatistics: Bool = true
    /// Encode stage: JPEG/WebP quality 1-100 (`quality`).
    public var quality: Int = 92

    public enum Restorer: String, Sendable, CaseIterable { case realesrgan, dreamsr }
}

extension FluxControlNetModelPaths {
    /// Every path made absolute against `base`.
    public func resolved(base: String) -> FluxControlNetModelPaths {
        var r = self
        for kp in [\FluxControlNetModelPaths.flux, \.controlnet, \.vae, \.clip, \.t5, \.clipTokenizer, \.t5Tokenizer] {
            r[keyPath: kp] = DaemonConfig.absolute(self[keyPath: kp], base: base)
        }
        return r
    }
}

extension DreamSRModelPaths {
    /// Every path made absolute against `base`.
    public func resolved(base: String) -> DreamSRModelPaths {
        var r = self
        r.flux = DaemonConfig.absolute(flux, base: base)
        r.vae = DaemonConfig.absolute(vae, base: base)
        r.clip = DaemonConfig.absolute(clip, base: base)
        r.t5 = DaemonConfig.absolute(t5, base: base)
        r.clipTokenizer = DaemonConfig.absolute(clipTokenizer, base: base)
        r.t5Tokenizer = DaemonConfig.absolute(t5Tokenizer, base: base)
        r.dreamsr = DaemonConfig.absolute(dreamsr, base: base)
        return r
    }
}

/// The caption stage's options (`caption:` block): a chat-completions endpoint, or fixed prompts without one.
public struct CaptionPipelineOptions: Sendable, Equatable {
    public var endpoint: String?
    public var model: String = "llava"
    public var fixedPrompt: String?
    public var fixedLocalPrompt: String?
    public var timeoutSeconds: Double = 60
    /// Extra attempts after a timeout, transport error or HTTP 5xx/429 (0 = try once).
    public var retries: Int = 2
    /// First backoff delay before a retry, seconds (doubled per further retry).
    public var retryBackoffSeconds: Double = 0.5
    /// Most caption requests in flight at once.
    public var concurrency: Int = 2
    /// Instructions sent with the whole image / with each patch (nil: the captioner's defaults; the local one takes
    /// `{global}`, `{x}`, `{y}`, `{width}`, `{height}`, `{index}`).
    public var globalPromptTemplate: String?
    public var localPromptTemplate: String?
    public init() {}
}

/// A pipeline file (`pipelines/NAME.yaml`): which stages run, with what models, geometry, concurrency and
/// capacities. The runtime wires exactly the stages listed.
public struct PipelineDefinition: Sendable, Equatable {
    public var name: String
    public var description: String
    public var capacity: PipelineCapacity
    public var jobTimeout: Duration?
    public var outputFormat: String
    public var stages: [StageDefinition]
    public var file: String
    /// Weights of the DreamSR stages (caption, dreamsr restore, texture, blend); nil when none of them is listed.
    public var models: DreamSRModelPaths?
    public var dreamsr = DreamSRPipelineOptions()
    public var caption = CaptionPipelineOptions()
    /// The `controlnet:` block: the texture stage runs a public FLUX ControlNet (FLUX.1-dev or schnell) instead of
    /// DreamSR's; nil for DreamSR pipelines.
    public var controlnet: FluxControlNetTextureOptions?
    /// Weights of a ControlNet pipeline (its `models:` block); nil unless `controlnet` is set.
    public var controlnetModels: FluxControlNetModelPaths?
    /// `metadata: keep` (default): EXIF (orientation reset), XMP, IPTC and the ICC profile go from the input to the
    /// output, and an RGB input with a profile is processed in that profile (a wide-gamut photo stays wide-gamut);
    /// `strip`: outputs carry no metadata and are sRGB.
    public var keepMetadata = true

    /// True when a stage needs the FLUX/DreamSR model set.
    public var needsDreamSRModels: Bool {
        stages.contains { [.caption, .texture, .blend].contains($0.kind) || ($0.kind == .restore && $0.restorer == .dreamsr) }
    }

    public static let outputFormats = ["png", "jpeg", "webp", "tiff"]

    public func stage(_ kind: StageKind) -> StageDefinition? { stages.first { $0.kind == kind } }

    public static func load(path: String) throws -> PipelineDefinition {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, key: "", problem: "cannot read the pipeline file")
        }
        return try parse(yaml: text, file: path)
    }

    public static func parse(yaml: String, file: String) throws -> PipelineDefinition {
        let root = try ConfigNode.parse(yaml: yaml, file: file, env: [:], envPrefix: nil)
        try root.checkKeys(["name", "description", "capacity", "job_timeout_seconds", "output_format", "stages",
                            "models", "dreamsr", "caption", "controlnet", "metadata"])
        let name = try root.requiredString("name")
        let capacityNode = try root.child("capacity")
        try capacityNode.checkKeys(["items", "megapixels"])
        let capacity = PipelineCapacity(items: try capacityNode.int("items", default: 8, min: 1, max: 10_000),
                                        megapixels: try capacityNode.double("megapixels", default: 256, min: 0, exclusiveMin: true))
        let timeout = try root.double("job_timeout_seconds", default: 600, min: 0)
        let format = try root.oneOf("output_format", outputFormats, default: "png")
        var stages: [StageDefinition] = []
        let list = try root.list("stages")
        guard !list.isEmpty else { throw root.error("stages", "at least one stage is required") }
        for item in list {
            try item.checkKeys(["stage", "concurrency", "queue", "model", "tile", "overlap", "restorer", "tile_pad", "tta", "shared_statistics", "quality"])
            let kindText = try item.requiredString("stage")
            guard let kind = StageKind(rawValue: kindText) else {
                throw item.error("stage", "unknown stage '\(kindText)' (known: \(StageKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let tile = try item.int("tile", default: 192, min: 16, max: 4096)
            let overlap = try item.int("overlap", default: 16, min: 0, max: 1024)
            guard overlap * 2 < tile else { throw item.error("overlap", "overlap \(overlap) must be less than half the tile size \(tile)") }
            var def = StageDefinition(
                kind: kind,
                runtime: StageConfig(name: kind.rawValue,
                                     concurrency: try item.int("concurrency", default: 1, min: 1, max: 64),
                                     queueCapacity: try item.int("queue", default: 2, min: 1, max: 10_000)),
                model: try item.optionalString("model"), tileSize: tile, tileOverlap: overlap)
            if kind == .restore {
                def.restorer = try item.choice("restorer", default: StageDefinition.Restorer.realesrgan)
            } else if item.has("restorer") {
                throw item.error("restorer", "only a 'restore' stage has a restorer")
            }
            for key in ["tile_pad", "tta", "shared_statistics"] where item.has(key) && !(kind == .restore && def.restorer == .realesrgan) {
                throw item.error(key, "only a 'restore' stage with restorer realesrgan has '\(key)'")
            }
            if item.has("tile_pad") { def.tilePad = try item.int("tile_pad", default: 24, min: 0, max: 1024) }
            def.tta = try item.bool("tta", default: false)
            def.sharedStatistics = try item.bool("shared_statistics", default: true)
            if item.has("quality") && kind != .encode { throw item.error("quality", "only the 'encode' stage has a quality") }
            def.quality = try item.int("quality", default: 92, min: 1, max: 100)
            if let previous = stages.last, StageKind.allCases.firstIndex(of: previous.kind)! >= StageKind.allCases.firstIndex(of: kind)! {
                throw item.error("stage", "stage '\(kind.rawValue)' cannot follow '\(previous.kind.rawValue)' (order: \(StageKind.allCases.map(\.rawValue).joined(separator: " -> ")), each at most once)")
            }
            if kind == .restore && def.restorer == .realesrgan && def.model == nil {
                throw item.error("model", "stage 'restore' (restorer realesrgan) needs a model directory")
            }
            stages.append(def)
        }
        guard stages.first?.kind == .decode else { throw root.error("stages", "the first stage must be 'decode'") }
        guard stages.last?.kind == .encode else { throw root.error("stages", "the last stage must be 'encode'") }
        if stages.contains(where: { $0.kind == .blend }) && !stages.contains(where: { $0.kind == .texture }) {
            throw root.error("stages", "stage 'blend' blends the texture stage's result and needs a 'texture' stage")
        }
        // Every stage's result is used by a later stage; otherwise the job would finish "ok" without it.
        for (index, stage) in stages.enumerated() {
            let uses = stages[(index + 1)...].map { stage.resultIsUsed(by: $0) }
            // nil: the result always reaches encode; empty: this is encode.
            if uses.isEmpty || uses.contains(where: { $0 != false }) { continue }
            throw list[index].error("stage", "no later stage uses the result of stage \(stage.describedKind), so the output "
                                    + "would silently lack it: \(stage.droppedResultHint)")
        }
        var def = PipelineDefinition(name: name, description: try root.string("description", default: ""),
                                     capacity: capacity, jobTimeout: timeout > 0 ? .milliseconds(Int64(timeout * 1000)) : nil,
                                     outputFormat: format, stages: stages, file: file)
        def.keepMetadata = try root.oneOf("metadata", ["keep", "strip"], default: "keep") == "keep"
        if root.has("controlnet") {
            try parseControlNet(root, into: &def)
        } else if def.needsDreamSRModels || root.has("models") {
            let m = try root.child("models")
            try m.checkKeys(Set(DreamSRModelPaths.keys))
            var paths = DreamSRModelPaths()
            paths.flux = try m.string("flux", default: paths.flux)
            paths.vae = try m.string("vae", default: paths.vae)
            paths.clip = try m.string("clip", default: paths.clip)
            paths.t5 = try m.string("t5", default: paths.t5)
            paths.clipTokenizer = try m.string("clip_tokenizer", default: paths.clipTokenizer)
            paths.t5Tokenizer = try m.string("t5_tokenizer", default: paths.t5Tokenizer)
            paths.dreamsr = try m.string("dreamsr", default: paths.dreamsr)
            def.models = paths
        }
        let d = try root.child("dreamsr")
        try d.checkKeys(["mode", "color_fix", "steps", "seed", "vae_tile", "vae_tile_states", "vae_tile_memory_mb", "vae_scratch_dir",
                         "batch", "precision", "release_text_encoders"])
        def.dreamsr.mode = try d.choice("mode", default: DreamSRMode.dualBranch)
        if d.has("color_fix") { def.dreamsr.colorFix = try d.choice("color_fix", default: ColorFix.Method.wavelet) }
        if d.has("steps") { def.dreamsr.steps = try d.int("steps", default: 16, min: 1, max: 1000) }
        def.dreamsr.seed = try d.int("seed", default: 0, min: 0, max: Int(Int32.max))
        def.dreamsr.vaeTile = try d.int("vae_tile", default: 512, min: 64, max: 8192)
        def.dreamsr.vaeTileStates = try d.choice("vae_tile_states", default: DreamSRPipelineOptions.VAETileStates.disk)
        def.dreamsr.vaeTileMemoryMB = try d.int("vae_tile_memory_mb", default: 1024, min: 0, max: 1 << 20)
        def.dreamsr.vaeScratchDirectory = try d.optionalString("vae_scratch_dir")
        def.dreamsr.batch = try d.int("batch", default: 4, min: 1, max: 64)
        let precision = try d.string("precision", default: ComputePrecision.fp32.rawValue)
        if precision == "auto" {
            def.dreamsr.precision = .forThisCPU
        } else if let p = ComputePrecision(rawValue: precision) {
            def.dreamsr.precision = p
        } else {
            throw d.error("precision", "'\(precision)' is not one of fp32, bf16, auto", at: d.node?.mapping?["precision"])
        }
        def.dreamsr.releaseTextEncoders = try d.choice("release_text_encoders", default: DreamSRPipelineOptions.TextEncoderRelease.auto)
        let c = try root.child("caption")
        try c.checkKeys(["endpoint", "model", "fixed_prompt", "fixed_local_prompt", "timeout_seconds", "retries",
                         "retry_backoff_seconds", "concurrency", "global_prompt_template", "local_prompt_template"])
        def.caption.endpoint = try c.optionalString("endpoint")
        def.caption.model = try c.string("model", default: "llava")
        def.caption.fixedPrompt = try c.optionalString("fixed_prompt")
        def.caption.fixedLocalPrompt = try c.optionalString("fixed_local_prompt")
        def.caption.timeoutSeconds = try c.double("timeout_seconds", default: 60, min: 0, exclusiveMin: true)
        def.caption.retries = try c.int("retries", default: 2, min: 0, max: 10)
        def.caption.retryBackoffSeconds = try c.double("retry_backoff_seconds", default: 0.5, min: 0)
        def.caption.concurrency = try c.int("concurrency", default: 2, min: 1, max: 64)
        def.caption.globalPromptTemplate = try c.optionalString("global_prompt_template")
        def.caption.localPromptTemplate = try c.optionalString("local_prompt_template")
        if def.stage(.texture) == nil && def.dreamsr.mode != .dualBranch {
            throw d.error("mode", "a DreamSR mode needs a 'texture' stage")
        }
        return def
    }

    /// The `controlnet:` block and the ControlNet pipeline's `models:` block.
    private static func parseControlNet(_ root: ConfigNode, into def: inout PipelineDefinition) throws {
        let c = try root.child("controlnet")
        try c.checkKeys(["variant", "steps", "start_sigma", "guidance", "conditioning_scale", "control_mode", "guidance_start",
                         "guidance_end", "patch", "overlap"])
        var o = FluxControlNetTextureOptions()
        o.variant = try c.choice("variant", default: FluxVariant.dev)
        if c.has("steps") { o.steps = try c.int("steps", default: 20, min: 1, max: 1000) }
        o.startSigma = try c.double("start_sigma", default: 0.8, min: 0, max: 1, exclusiveMin: true)
        o.guidance = try c.double("guidance", default: 3.5, min: 0)
        o.conditioningScale = Float(try c.double("conditioning_scale", default: 1, min: 0))
        if c.has("control_mode") { o.controlMode = try c.int("control_mode", default: 0, min: 0, max: 1000) }
        o.guidanceStart = try c.double("guidance_start", default: 0, min: 0, max: 1)
        o.guidanceEnd = try c.double("guidance_end", default: 1, min: 0, max: 1)
        guard o.guidanceStart < o.guidanceEnd else {
            throw c.error("guidance_end", "must be greater than guidance_start (\(o.guidanceStart))")
        }
        o.patchSize = try c.int("patch", default: 512, min: 16, max: 8192)
        guard o.patchSize % 16 == 0 else { throw c.error("patch", "must be a multiple of 16 pixels, got \(o.patchSize)") }
        o.patchOverlap = try c.int("overlap", default: 64, min: 0, max: o.patchSize - 8)
        guard o.patchOverlap % 8 == 0 else { throw c.error("overlap", "must be a multiple of 8 pixels, got \(o.patchOverlap)") }
        if let r = def.stage(.restore), r.restorer == .dreamsr {
            throw c.error("variant", "a ControlNet texture stage starts from a pixel restorer's image: use restorer realesrgan "
                          + "(or no restore stage), not dreamsr")
        }
        guard def.stage(.texture) != nil else { throw c.error("variant", "a 'controlnet' block needs a 'texture' stage") }
        let m = try root.child("models")
        try m.checkKeys(Set(FluxControlNetModelPaths.keys))
        var paths = FluxControlNetModelPaths(variant: o.variant)
        paths.flux = try m.string("flux", default: paths.flux)
        paths.controlnet = try m.string("controlnet", default: paths.controlnet)
        paths.vae = try m.string("vae", default: paths.vae)
        paths.clip = try m.string("clip", default: paths.clip)
        paths.t5 = try m.string("t5", default: paths.t5)
        paths.clipTokenizer = try m.string("clip_tokenizer", default: paths.clipTokenizer)
        paths.t5Tokenizer = try m.string("t5_tokenizer", default: paths.t5Tokenizer)
        def.controlnet = o
        def.controlnetModels = paths
    }

    /// The default pipeline, identical to `pipelines/realesrgan.yaml` (a test keeps them in step); used when no
    /// pipelines folder is configured (quick start).
    public static let builtInRealESRGANYAML = """
    # Real-ESRGAN x4plus: decode -> restore -> encode. No texture stage: FLUX weights are not configured.
    name: realesrgan
    description: Real-ESRGAN x4plus (RRDBNet) 4x restoration, tiled
    capacity:
      items: 8            # jobs admitted and not finished
      megapixels: 256     # input + output megapixels of those jobs (a 16K image cannot exceed this)
    job_timeout_seconds: 1800
    output_format: png
    stages:
      - stage: decode
        concurrency: 1
        queue: 4
      - stage: restore
        model: realesrgan-x4plus   # folder under models_dir (scripts/fetch-models.sh)
        tile: 192
        overlap: 16
        concurrency: 1
        queue: 2
      - stage: encode
        concurrency: 1
        queue: 2

    """

    public static func builtIn(named name: String) throws -> PipelineDefinition? {
        guard name == "realesrgan" else { return nil }
        return try parse(yaml: builtInRealESRGANYAML, file: "<built-in realesrgan pipeline>")
    }
}
