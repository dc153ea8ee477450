import Checkpoints
import Foundation
import Models
import Synchronization
import Tensor
import Tokenizers

/// One weight component of the DreamSR pipeline: where it is and the layout expected there.
public struct ModelComponent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case safetensors, clipTokenizer, t5Tokenizer }
    public var key: String
    public var path: String
    public var kind: Kind
    public var expectedLayout: String
    /// Where a user gets it: the public repository and the file(s) to download, with the size where known
    /// (empty when there is no public source, as for DreamSR's own checkpoint).
    public var download: String = ""
}

/// One weight file as `dreamsr models check` describes it, from its header only: format, tensor types with counts,
/// parameter count and resident size (the tensor bytes as mapped: weights are used in place, so this is what the
/// file costs in memory once every page has been touched).
public struct WeightFileSummary: Sendable, Equatable {
    public var path: String
    /// `safetensors` or `GGUF v<N>`.
    public var format: String
    /// Tensor count per stored type, most frequent first (ties by type name).
    public var typeCounts: [(type: TensorDType, count: Int)]
    public var parameters: Int
    /// Bytes of all tensors as stored (and mapped).
    public var residentBytes: Int
    public var fileBytes: Int

    public var tensorCount: Int { typeCounts.reduce(0) { $0 + $1.count } }
    /// e.g. `Q8_0 x304, F32 x476`.
    public var typesDescription: String { typeCounts.map { "\($0.type.rawValue) x\($0.count)" }.joined(separator: ", ") }

    public init(_ file: any TensorFile) {
        path = file.url.path
        if let g = file as? GGUFFile {
            format = "GGUF v\(g.header.version)"
            fileBytes = g.fileSize
        } else {
            format = "safetensors"
            fileBytes = (file as? SafeTensorsFile)?.fileSize ?? 0
        }
        var counts: [TensorDType: Int] = [:]
        var params = 0, bytes = 0
        for t in file.tensorInfos {
            counts[t.dtype, default: 0] += 1
            params += t.elementCount
            bytes += t.byteCount
        }
        typeCounts = counts.map { (type: $0.key, count: $0.value) }
            .sorted { ($0.count, $1.type.rawValue) > ($1.count, $0.type.rawValue) }
        parameters = params
        residentBytes = bytes
    }

    /// Every file of a weight path (a file or a folder of shards), as `CheckpointSet(url:)` opens it.
    public static func summarize(_ url: URL) throws -> [WeightFileSummary] {
        try CheckpointSet(url: url).tensorFiles.map { WeightFileSummary($0) }
    }

    public static func == (a: WeightFileSummary, b: WeightFileSummary) -> Bool {
        a.path == b.path && a.format == b.format && a.typesDescription == b.typesDescription
            && a.parameters == b.parameters && a.residentBytes == b.residentBytes && a.fileBytes == b.fileBytes
    }
}

/// What `dreamsr models check` reports for one component, read from file headers only (nothing is loaded).
public struct ModelCheckEntry: Sendable {
    public var component: ModelComponent
    public var present: Bool
    /// Why it is unusable (missing file, unreadable header, wrong layout).
    public var problem: String?
    public var files: [String] = []
    /// Each weight file: format, tensor types, parameters, resident size.
    public var weightFiles: [WeightFileSummary] = []
    public var parameters: Int = 0
    /// Bytes of the tensors as stored on disk (and as mapped).
    public var fileBytes: Int = 0
    /// Bytes the engine holds once loaded (float32 for every tensor: the upper bound; FLUX bf16 weights may stay
    /// memory-mapped and widen per layer).
    public var memoryBytes: Int { parameters * 4 }
}

/// FLUX's two text encoders and their tokenizers, with a cache of prompt encodings (across jobs); shared by the
/// DreamSR and FLUX ControlNet model sets.
public final class FluxTextEncoders: @unchecked Sendable {
    public let clip: CLIPTextEncoder
    public let t5: T5Encoder
    public let clipTokenizer: CLIPTokenizer
    public let t5Tokenizer: T5Tokenizer
    /// Prompt encodings by prompt string (across jobs).
    public let prompts = PromptEncodingCache<DreamSRPromptEncoding>(capacity: 256)

    public init(clip: CLIPTextEncoder, t5: T5Encoder, clipTokenizer: CLIPTokenizer, t5Tokenizer: T5Tokenizer) {
        self.clip = clip
        self.t5 = t5
        self.clipTokenizer = clipTokenizer
        self.t5Tokenizer = t5Tokenizer
    }

    /// T5 states `[512, D]` and CLIP pooled `[D]` of a prompt (dreamsr-architecture item 10), cached per string.
    public func encode(prompt: String) throws -> DreamSRPromptEncoding {
        try prompts.value(for: prompt) {
            let t5ids = t5Tokenizer.encodePadded(prompt), clipIds = clipTokenizer.encodePadded(prompt)
            guard t5ids.allSatisfy({ $0 < t5.config.vocabSize }), clipIds.allSatisfy({ $0 < clip.config.vocabSize }) else {
                throw DreamSRPipelineError(.models, "tokenizer ids exceed the text encoder's vocabulary (T5 \(t5.config.vocabSize), "
                               + "CLIP \(clip.config.vocabSize)): the tokenizer and encoder folders do not belong together")
            }
            let states = t5.encode(t5ids)
            let pooled = clip.encode(clipIds).pooled
            return DreamSRPromptEncoding(states: states, pooled: pooled)
        }
    }

    /// Loads both encoders (config.json beside the weights, else CLIP-L / T5-XXL) and both tokenizers; `wrap` turns a
    /// component's load error (by key: clip, t5, clip_tokenizer, t5_tokenizer) into the error thrown.
    public static func load(clip: String, t5: String, clipTokenizer: String, t5Tokenizer: String,
                            wrap: (String, any Error) -> any Error = { _, e in e }) throws -> FluxTextEncoders {
        func step<T>(_ key: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as DreamSRPipelineError { throw e } catch { throw wrap(key, error) }
        }
        let c = try step("clip") { () throws -> CLIPTextEncoder in
            let set = try CheckpointSet(url: URL(fileURLWithPath: clip))
            let cfgURL = set.directory.appendingPathComponent("config.json")
            let cfg = FileManager.default.fileExists(atPath: cfgURL.path)
                ? try CLIPTextConfig(configJSON: Data(contentsOf: cfgURL)) : .clipL
            return try CLIPTextEncoder(checkpoint: set, config: cfg)
        }
        let t = try step("t5") { () throws -> T5Encoder in
            let set = try CheckpointSet(url: URL(fileURLWithPath: t5))
            let cfgURL = set.directory.appendingPathComponent("config.json")
            let cfg = FileManager.default.fileExists(atPath: cfgURL.path)
                ? try T5EncoderConfig(configJSON: Data(contentsOf: cfgURL)) : .xxl
            return try T5Encoder(checkpoint: set, config: cfg)
        }
        let ct = try step("clip_tokenizer") { try CLIPTokenizer.load(from: clipTokenizer) }
        let tt = try step("t5_tokenizer") { try T5Tokenizer.load(from: t5Tokenizer) }
        return FluxTextEncoders(clip: c, t5: t, clipTokenizer: ct, t5Tokenizer: tt)
    }

    /// Shapes must agree across components (a mismatched folder is a start-up error, not a crash mid-job).
    static func checkFit(flux fc: FluxConfig, fluxPath: String, text: FluxTextEncoders, t5Path: String, clipPath: String,
                         vae: AutoencoderKL, vaePath: String) throws {
        guard text.t5.config.dModel == fc.contextDim else {
            throw DreamSRPipelineError(.models, "T5 d_model \(text.t5.config.dModel) (\(t5Path)) != FLUX context dim \(fc.contextDim) (\(fluxPath))")
        }
        guard text.clip.config.hiddenSize == fc.pooledDim else {
            throw DreamSRPipelineError(.models, "CLIP hidden size \(text.clip.config.hiddenSize) (\(clipPath)) != FLUX pooled_projection_dim \(fc.pooledDim) (\(fluxPath))")
        }
        guard vae.config.latentChannels * 4 == fc.inChannels else {
            throw DreamSRPipelineError(.models, "VAE latent channels \(vae.config.latentChannels) (\(vaePath)) x 4 != FLUX in_channels \(fc.inChannels)")
        }
    }
}

/// The loaded DreamSR model set: loaded once, shared by every job and stage of a pipeline (all of them read-only).
public final class DreamSRModelSet: @unchecked Sendable {
    public let model: DreamSRModel
    public let vae: AutoencoderKL
    public let text: FluxTextEncoders
    public var clip: CLIPTextEncoder { text.clip }
    public var t5: T5Encoder { text.t5 }
    public var clipTokenizer: CLIPTokenizer { text.clipTokenizer }
    public var t5Tokenizer: T5Tokenizer { text.t5Tokenizer }
    /// Prompt encodings by prompt string (across jobs).
    public var prompts: PromptEncodingCache<DreamSRPromptEncoding> { text.prompts }

    init(model: DreamSRModel, vae: AutoencoderKL, text: FluxTextEncoders) {
        self.model = model
        self.vae = vae
        self.text = text
    }

    /// T5 states `[512, D]` and CLIP pooled `[D]` of a prompt (dreamsr-architecture item 10), cached per string.
    public func encode(prompt: String) throws -> DreamSRPromptEncoding { try text.encode(prompt: prompt) }
}

/// Where the FLUX transformer, VAE, text encoders (+ tokenizers) and the DreamSR checkpoint are, checked from file
/// headers at start-up (`validate`) and loaded once (`load`), shared by all jobs: one registry per distinct set of
/// paths per process (`ModelRegistry.shared`).
public final class ModelRegistry: Sendable {
    public let paths: DreamSRModelPaths
    /// Activation precision of the FLUX transformer and the DreamSR ControlNet (pipeline `dreamsr.precision`).
    public let precision: ComputePrecision
    public let components: [ModelComponent]
    private let loaded = Mutex<DreamSRModelSet?>(nil)
    private let loading = NSLock()

    public init(paths: DreamSRModelPaths, precision: ComputePrecision = .fp32) {
        self.paths = paths
        self.precision = precision
        components = [
            ModelComponent(key: "flux", path: paths.flux, kind: .safetensors,
                           expectedLayout: "FLUX.1 transformer: a .safetensors file (bf16/f16/f32, FP8 plain or ComfyUI-scaled), a "
                           + "folder of them, or a .gguf file (BFL `double_blocks.*`, ComfyUI / sd.cpp "
                           + "`model.diffusion_model.*` or diffusers `transformer/` layout)"),
            ModelComponent(key: "vae", path: paths.vae, kind: .safetensors,
                           expectedLayout: "FLUX VAE: BFL ae.safetensors, or a diffusers vae/ folder "
                           + "(diffusion_pytorch_model.safetensors + config.json)"),
            ModelComponent(key: "clip", path: paths.clip, kind: .safetensors,
                           expectedLayout: "CLIP-L text encoder: HF text_encoder/ folder (model.safetensors + config.json)"),
            ModelComponent(key: "t5", path: paths.t5, kind: .safetensors,
                           expectedLayout: "T5 v1.1 XXL encoder: HF text_encoder_2/ folder (model*.safetensors + config.json)"),
            ModelComponent(key: "clip_tokenizer", path: paths.clipTokenizer, kind: .clipTokenizer,
                           expectedLayout: "CLIP tokenizer: HF tokenizer/ folder with vocab.json + merges.txt"),
            ModelComponent(key: "t5_tokenizer", path: paths.t5Tokenizer, kind: .t5Tokenizer,
                           expectedLayout: "T5 tokenizer: HF tokenizer_2/ folder with tokenizer.json"),
            ModelComponent(key: "dreamsr", path: paths.dreamsr, kind: .safetensors,
                           expectedLayout: "DreamSR checkpoint: one .safetensors file with `dreamsr_config` metadata "
                           + "(controlnet.*, transformer.*.lora_A/B tensors)"),
        ]
    }

    private struct Key: Hashable {
        let paths: DreamSRModelPaths
        let precision: ComputePrecision
    }
    private static let registries = Mutex<[Key: ModelRegistry]>([:])

    /// The process-wide registry for these (absolute) paths and precision: pipelines naming the same files and
    /// precision share one model set.
    public static func shared(_ paths: DreamSRModelPaths, precision: ComputePrecision = .fp32) -> ModelRegistry {
        registries.withLock { r in
            let key = Key(paths: paths, precision: precision)
            if let existing = r[key] { return existing }
            let made = ModelRegistry(paths: paths, precision: precision)
            r[key] = made
            return made
        }
    }

    // MARK: Check (headers only)

    public func check() -> [ModelCheckEntry] { components.map(Self.check) }

    static func check(_ c: ModelComponent) -> ModelCheckEntry {
        var e = ModelCheckEntry(component: c, present: false)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: c.path, isDirectory: &isDir) else {
            e.problem = "missing: \(c.path) does not exist"
            return e
        }
        switch c.kind {
        case .clipTokenizer:
            let dirs = isDir.boolValue ? [c.path, c.path + "/tokenizer"] : []
            let found = dirs.first { fm.fileExists(atPath: $0 + "/vocab.json") && fm.fileExists(atPath: $0 + "/merges.txt") }
            if let found { e.files = [found + "/vocab.json", found + "/merges.txt"] }
            else if !isDir.boolValue { e.files = [c.path] } // open_clip bpe file
            else { e.problem = "missing: no vocab.json + merges.txt in \(c.path)" }
        case .t5Tokenizer:
            let candidates = isDir.boolValue ? [c.path + "/tokenizer.json", c.path + "/tokenizer_2/tokenizer.json"] : [c.path]
            if let found = candidates.first(where: { fm.fileExists(atPath: $0) }) { e.files = [found] }
            else { e.problem = "missing: no tokenizer.json in \(c.path)" }
        case .safetensors:
            do {
                let set = try CheckpointSet(url: URL(fileURLWithPath: c.path))
                e.files = set.tensorFiles.map(\.url.path)
                e.weightFiles = set.tensorFiles.map { WeightFileSummary($0) }
                e.parameters = e.weightFiles.reduce(0) { $0 + $1.parameters }
                e.fileBytes = e.weightFiles.reduce(0) { $0 + $1.residentBytes }
                if c.key == "dreamsr", set.metadata[DreamSRConfig.metadataKey] == nil {
                    e.problem = "no `\(DreamSRConfig.metadataKey)` metadata in \(c.path)"
                }
            } catch {
                e.problem = "unreadable: \(error)"
            }
        }
        e.present = e.problem == nil
        return e
    }

    /// Throws one error naming every missing or unusable file and the layout expected there (start-up check).
    public func validate(pipelineFile: String) throws {
        let bad = check().filter { !$0.present }
        guard !bad.isEmpty else { return }
        let lines = bad.map { "  \($0.component.key): \($0.problem ?? "missing") — expected \($0.component.expectedLayout)" }
        throw DreamSRPipelineError(.models, "pipeline \(pipelineFile) needs the DreamSR model set; missing or unusable weights:\n"
                       + lines.joined(separator: "\n")
                       + "\n(set the paths in the pipeline file's `models:` block; relative paths are under models_dir)")
    }

    // MARK: Load (once)

    public var isLoaded: Bool { loaded.withLock { $0 != nil } }

    /// Loads every component the first time (later calls return the same set). Blocking: call it on a compute lane.
    public func load() throws -> DreamSRModelSet {
        loading.lock()
        defer { loading.unlock() }
        if let set = loaded.withLock({ $0 }) { return set }
        func url(_ p: String) -> URL { URL(fileURLWithPath: p) }
        func step<T>(_ key: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as DreamSRPipelineError { throw e } catch {
                let c = components.first { $0.key == key }!
                throw DreamSRPipelineError(.models, "loading \(key) from \(c.path): \(error) (expected \(c.expectedLayout))")
            }
        }
        let flux = try step("flux") { try FluxTransformer.load(from: CheckpointSet(url: url(paths.flux)), precision: precision) }
        let model = try step("dreamsr") { try DreamSRModel.load(checkpoint: url(paths.dreamsr), flux: flux) }
        let vae = try step("vae") { try AutoencoderKL.load(from: url(paths.vae)).model }
        let text = try FluxTextEncoders.load(clip: paths.clip, t5: paths.t5, clipTokenizer: paths.clipTokenizer,
                                             t5Tokenizer: paths.t5Tokenizer, wrap: { key, error in
            let c = self.components.first { $0.key == key }!
            return DreamSRPipelineError(.models, "loading \(key) from \(c.path): \(error) (expected \(c.expectedLayout))")
        })
        try FluxTextEncoders.checkFit(flux: flux.config, fluxPath: paths.flux, text: text, t5Path: paths.t5, clipPath: paths.clip,
                                      vae: vae, vaePath: paths.vae)
        let set = DreamSRModelSet(model: model, vae: vae, text: text)
        loaded.withLock { $0 = set }
        return set
    }
}
