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

/// What a weight file is to the engine, which decides which of its tensors are used in place in the mapping and
/// which the loaders copy to float32 (`WeightRole.copiesToFloat32`). From the pipeline component it is loaded as, or
/// (`dreamsr models check --weights`) inferred from the tensor names.
public enum WeightRole: String, Sendable, CaseIterable {
    case flux = "FLUX transformer"
    case dreamsr = "DreamSR checkpoint"
    case t5 = "T5 encoder"
    case clip = "CLIP text encoder"
    case vae = "VAE"
    case unknown = "unknown role"

    /// The role of a pipeline component key (`flux`, `dreamsr`, `t5`, `clip`, `vae`).
    public init(componentKey key: String) {
        self = switch key {
        // The public FLUX ControlNet loads through FluxWeights like the transformer.
        case "flux", "controlnet": .flux
        case "dreamsr": .dreamsr
        case "t5": .t5
        case "clip": .clip
        case "vae": .vae
        default: .unknown
        }
    }

    /// The role a file's tensor names (and metadata) show.
    public static func inferred(names: [String], metadata: [String: String]) -> WeightRole {
        if metadata[DreamSRConfig.metadataKey] != nil || names.contains(where: { $0.hasPrefix("controlnet.context_attn.") }) {
            return .dreamsr
        }
        if names.contains(where: { $0.contains("double_blocks.") || $0.contains("single_transformer_blocks.") }) { return .flux }
        if names.contains(where: { $0.hasPrefix("encoder.block.") }) { return .t5 }
        if names.contains(where: { $0.contains("embeddings.token_embedding.") }) { return .clip }
        if (try? VAEWeightMap.detect(names: names)) != nil { return .vae }
        return .unknown
    }

    /// Whether the loader of this role copies the tensor to a float32 tensor held while the model is loaded (rather
    /// than using the mapped bytes in place, as every Linear weight is: low-precision GEMM on GGUF / FP8 / bf16 / f16
    /// bytes, a float32 view of F32 ones). Mirrors the loaders: 1-D tensors (biases, norm scales) are always copied;
    /// T5 / CLIP embeddings and the relative attention bias are copied; the VAE copies everything; the DreamSR
    /// checkpoint's Linears (ControlNet, image MLPs, Context Cross-Attention, LoRA A and B) are used in place like
    /// FLUX's.
    public func copiesToFloat32(name: String, shape: [Int]) -> Bool {
        if shape.count <= 1 { return self != .unknown }
        switch self {
        case .flux, .dreamsr, .unknown: return false
        case .vae: return true
        case .t5: return name.hasSuffix("shared.weight") || name.hasSuffix("embed_tokens.weight") || name.contains("relative_attention_bias")
        case .clip: return name.contains("embeddings.") || shape.count != 2
        }
    }

    /// Whether the loader keeps the file mapped after loading (some tensor is used in place); the VAE's file is
    /// closed once everything is copied.
    public var keepsMapping: Bool { self != .vae }
}

/// One weight file as `dreamsr models check` describes it, from its header only: format, tensor types with counts,
/// parameter count and resident size (bytes the engine maps or holds when running it: the file's tensor bytes while
/// it stays mapped, as every page is touched, plus the float32 copies its loader makes; see `WeightRole`).
public struct WeightFileSummary: Sendable, Equatable {
    public var path: String
    /// `safetensors`, `safetensors (FP8)`, `safetensors (FP8 scaled)` or `GGUF v<N>`.
    public var format: String
    /// Tensor count per stored type, most frequent first (ties by type name).
    public var typeCounts: [(type: TensorDType, count: Int)]
    public var parameters: Int
    /// What the file is loaded as (decides what is copied to float32).
    public var role: WeightRole
    /// Bytes of all tensors as stored.
    public var tensorBytes: Int
    /// Of those, what stays mapped while the model is loaded (all of them unless the loader copies everything).
    public var mappedBytes: Int
    /// float32 copies the loader makes (4 bytes per value of each copied tensor).
    public var float32CopyBytes: Int
    public var fileBytes: Int

    /// Mapped bytes plus float32 copies.
    public var residentBytes: Int { mappedBytes + float32CopyBytes }
    public var tensorCount: Int { typeCounts.reduce(0) { $0 + $1.count } }
    /// e.g. `Q8_0 x304, F32 x476`.
    public var typesDescription: String { typeCounts.map { "\($0.type.rawValue) x\($0.count)" }.joined(separator: ", ") }

    /// `role`: what the file is loaded as; nil infers it from the tensor names.
    public init(_ file: any TensorFile, role: WeightRole? = nil) {
        path = file.url.path
        if let g = file as? GGUFFile {
            format = "GGUF v\(g.header.version)"
            fileBytes = g.fileSize
        } else {
            let st = file as? SafeTensorsFile
            let fp8 = file.tensorInfos.contains { $0.dtype == .f8e4m3 || $0.dtype == .f8e5m2 }
            format = st.map { !$0.fp8Scales.isEmpty } == true ? "safetensors (FP8 scaled)" : fp8 ? "safetensors (FP8)" : "safetensors"
            fileBytes = st?.fileSize ?? 0
        }
        let metadata: [String: String] = (file as? SafeTensorsFile)?.metadata
            ?? (file as? GGUFFile)?.metadata.compactMapValues(\.stringValue) ?? [:]
        let r = role ?? WeightRole.inferred(names: file.tensorInfos.map(\.name), metadata: metadata)
        self.role = r
        var counts: [TensorDType: Int] = [:]
        var params = 0, bytes = 0, copies = 0
        for t in file.tensorInfos {
            counts[t.dtype, default: 0] += 1
            params += t.elementCount
            bytes += t.byteCount
            if r.copiesToFloat32(name: t.name, shape: t.shape) { copies += t.elementCount * 4 }
        }
        typeCounts = counts.map { (type: $0.key, count: $0.value) }
            .sorted { ($0.count, $1.type.rawValue) > ($1.count, $0.type.rawValue) }
        parameters = params
        tensorBytes = bytes
        mappedBytes = r.keepsMapping ? bytes : 0
        float32CopyBytes = copies
    }

    /// Every file of a weight path (a file or a folder of shards), as `CheckpointSet(url:)` opens it.
    public static func summarize(_ url: URL, role: WeightRole? = nil) throws -> [WeightFileSummary] {
        try CheckpointSet(url: url).tensorFiles.map { WeightFileSummary($0, role: role) }
    }

    public static func == (a: WeightFileSummary, b: WeightFileSummary) -> Bool {
        a.path == b.path && a.format == b.format && a.typesDescription == b.typesDescription && a.role == b.role
            && a.parameters == b.parameters && a.tensorBytes == b.tensorBytes && a.mappedBytes == b.mappedBytes
            && a.float32CopyBytes == b.float32CopyBytes && a.fileBytes == b.fileBytes
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
    /// Bytes the engine maps or holds once loaded: each file's mapped bytes plus the float32 copies its loader makes
    /// (`WeightFileSummary.residentBytes`).
    public var memoryBytes: Int { weightFiles.reduce(0) { $0 + $1.residentBytes } }
}

/// FLUX's two text encoders and their tokenizers, with a cache of prompt encodings (across jobs); shared by the
/// DreamSR and FLUX ControlNet model sets. The encoders can be released after a job's prompts are encoded
/// (`release()`): the T5 and CLIP models, and with them their file mappings, are dropped, and loaded again by the next
/// prompt that is not in the cache. The tokenizers and the cache stay.
public final class FluxTextEncoders: @unchecked Sendable {
    public struct Encoders: Sendable {
        public let clip: CLIPTextEncoder
        public let t5: T5Encoder
        public init(clip: CLIPTextEncoder, t5: T5Encoder) {
            self.clip = clip
            self.t5 = t5
        }
    }

    public let clipTokenizer: CLIPTokenizer
    public let t5Tokenizer: T5Tokenizer
    public let clipConfig: CLIPTextConfig
    public let t5Config: T5EncoderConfig
    /// Prompt encodings by prompt string (across jobs).
    public let prompts = PromptEncodingCache<DreamSRPromptEncoding>(capacity: 256)

    private struct State {
        var encoders: Encoders?
        /// Encodings running now (a release waits for them).
        var users = 0
        var releaseWhenIdle = false
        var loads = 0
        var releases = 0
    }
    private let state: Mutex<State>
    private let loadLock = NSLock()
    private let loader: @Sendable () throws -> Encoders

    /// `encoders`: loaded now (their configs are the set's); `loader` loads them again after a release.
    public init(encoders: Encoders, clipTokenizer: CLIPTokenizer, t5Tokenizer: T5Tokenizer,
                loader: @escaping @Sendable () throws -> Encoders) {
        self.clipTokenizer = clipTokenizer
        self.t5Tokenizer = t5Tokenizer
        self.loader = loader
        clipConfig = encoders.clip.config
        t5Config = encoders.t5.config
        state = Mutex(State(encoders: encoders, loads: 1))
    }

    /// The encoders if they are loaded now (nothing is loaded).
    public var residentEncoders: Encoders? { state.withLock { $0.encoders } }
    /// How often the encoders were loaded (the first load included) and released.
    public var loadCount: Int { state.withLock { $0.loads } }
    public var releaseCount: Int { state.withLock { $0.releases } }

    /// Drops the encoders now, or when the encodings running now finish; the next uncached prompt loads them again.
    public func release() {
        var dropped = state.withLock { s -> Encoders? in
            guard let e = s.encoders else { return nil }
            if s.users == 0 {
                s.encoders = nil
                s.releases += 1
                return e
            }
            s.releaseWhenIdle = true
            return nil
        }
        Self.free(&dropped)
    }

    /// Drops the last reference to released encoders outside the lock, then hands the heap's free pages back: their
    /// float32 embedding copies and the encodings' activations would otherwise stay resident in malloc's arenas.
    private static func free(_ dropped: inout Encoders?) {
        guard dropped != nil else { return }
        dropped = nil
        HeapMemory.returnFreedPages()
    }

    private func acquire() throws -> Encoders {
        loadLock.lock()
        defer { loadLock.unlock() }
        if let e = state.withLock({ s -> Encoders? in
            if s.encoders != nil { s.users += 1 }
            return s.encoders
        }) { return e }
        let e = try loader()
        state.withLock { s in
            s.encoders = e
            s.loads += 1
            s.users += 1
        }
        return e
    }

    private func relinquish() {
        var dropped = state.withLock { s -> Encoders? in
            s.users -= 1
            guard s.users == 0 && s.releaseWhenIdle, let e = s.encoders else { return nil }
            s.encoders = nil
            s.releaseWhenIdle = false
            s.releases += 1
            return e
        }
        Self.free(&dropped)
    }

    /// T5 states `[512, D]` and CLIP pooled `[D]` of a prompt (dreamsr-architecture item 10), cached per string;
    /// loads the encoders first when they were released.
    public func encode(prompt: String) throws -> DreamSRPromptEncoding {
        try prompts.value(for: prompt) {
            let e = try acquire()
            defer { relinquish() }
            let t5ids = t5Tokenizer.encodePadded(prompt), clipIds = clipTokenizer.encodePadded(prompt)
            guard t5ids.allSatisfy({ $0 < e.t5.config.vocabSize }), clipIds.allSatisfy({ $0 < e.clip.config.vocabSize }) else {
                throw DreamSRPipelineError(.models, "tokenizer ids exceed the text encoder's vocabulary (T5 \(e.t5.config.vocabSize), "
                               + "CLIP \(e.clip.config.vocabSize)): the tokenizer and encoder folders do not belong together")
            }
            let states = e.t5.encode(t5ids)
            let pooled = e.clip.encode(clipIds).pooled
            return DreamSRPromptEncoding(states: states, pooled: pooled)
        }
    }

    /// Loads both encoders (config.json beside the weights, else the shapes of the file: CLIP-L / T5-XXL with the
    /// layer count found) and both tokenizers; `wrap` turns a component's load error (by key: clip, t5,
    /// clip_tokenizer, t5_tokenizer) into the error thrown. A reload after `release()` reads the same paths.
    public static func load(clip: String, t5: String, clipTokenizer: String, t5Tokenizer: String,
                            wrap: @escaping @Sendable (String, any Error) -> any Error = { _, e in e }) throws -> FluxTextEncoders {
        @Sendable func step<T>(_ key: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as DreamSRPipelineError { throw e } catch { throw wrap(key, error) }
        }
        @Sendable func loadEncoders() throws -> Encoders {
            let c = try step("clip") { () throws -> CLIPTextEncoder in
                let set = try CheckpointSet(url: URL(fileURLWithPath: clip))
                let cfgURL = set.directory.appendingPathComponent("config.json")
                let cfg = FileManager.default.fileExists(atPath: cfgURL.path)
                    ? try CLIPTextConfig(configJSON: Data(contentsOf: cfgURL)) : CLIPTextConfig.inferred(from: set)
                return try CLIPTextEncoder(checkpoint: set, config: cfg)
            }
            let t = try step("t5") { () throws -> T5Encoder in
                let set = try CheckpointSet(url: URL(fileURLWithPath: t5))
                let cfgURL = set.directory.appendingPathComponent("config.json")
                let cfg = FileManager.default.fileExists(atPath: cfgURL.path)
                    ? try T5EncoderConfig(configJSON: Data(contentsOf: cfgURL)) : T5EncoderConfig.inferred(from: set)
                return try T5Encoder(checkpoint: set, config: cfg)
            }
            return Encoders(clip: c, t5: t)
        }
        let first = try loadEncoders()
        let ct = try step("clip_tokenizer") { try CLIPTokenizer.load(from: clipTokenizer) }
        let tt = try step("t5_tokenizer") { try T5Tokenizer.load(from: t5Tokenizer) }
        return FluxTextEncoders(encoders: first, clipTokenizer: ct, t5Tokenizer: tt, loader: loadEncoders)
    }

    /// Shapes must agree across components (a mismatched folder is a start-up error, not a crash mid-job).
    static func checkFit(flux fc: FluxConfig, fluxPath: String, text: FluxTextEncoders, t5Path: String, clipPath: String,
                         vae: AutoencoderKL, vaePath: String) throws {
        guard text.t5Config.dModel == fc.contextDim else {
            throw DreamSRPipelineError(.models, "T5 d_model \(text.t5Config.dModel) (\(t5Path)) != FLUX context dim \(fc.contextDim) (\(fluxPath))")
        }
        guard text.clipConfig.hiddenSize == fc.pooledDim else {
            throw DreamSRPipelineError(.models, "CLIP hidden size \(text.clipConfig.hiddenSize) (\(clipPath)) != FLUX pooled_projection_dim \(fc.pooledDim) (\(fluxPath))")
        }
        guard vae.config.latentChannels * 4 == fc.inChannels else {
            throw DreamSRPipelineError(.models, "VAE latent channels \(vae.config.latentChannels) (\(vaePath)) x 4 != FLUX in_channels \(fc.inChannels)")
        }
    }
}

extension T5EncoderConfig {
    /// T5-XXL with what the checkpoint's shapes show (a file without config.json: a GGUF T5, or a shallower test
    /// file): layer count, vocabulary and width, feed-forward width, heads (relative attention bias), head width.
    static func inferred(from set: CheckpointSet) -> T5EncoderConfig {
        var c = T5EncoderConfig.xxl
        let names = set.names
        let layers = Set(names.compactMap { n -> Int? in
            guard n.hasPrefix("encoder.block.") else { return nil }
            return Int(n.dropFirst("encoder.block.".count).prefix { $0 != "." })
        })
        if let top = layers.max() { c.numLayers = top + 1 }
        if let e = (set["shared.weight"] ?? set["encoder.embed_tokens.weight"])?.shape, e.count == 2 {
            (c.vocabSize, c.dModel) = (e[0], e[1])
        }
        if let f = set["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"]?.shape, f.count == 2 { c.dFF = f[0] }
        if let b = set["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]?.shape, b.count == 2 {
            (c.relativeAttentionNumBuckets, c.numHeads) = (b[0], b[1])
        }
        if let q = set["encoder.block.0.layer.0.SelfAttention.q.weight"]?.shape, q.count == 2, c.numHeads > 0 {
            c.dKV = q[0] / c.numHeads
        }
        return c
    }
}

extension CLIPTextConfig {
    /// CLIP-L with what the checkpoint's shapes show (no config.json beside the file): layer count, vocabulary,
    /// width, positions, MLP width; heads stay 64 wide (CLIP-L: 12 of 64).
    static func inferred(from set: CheckpointSet) -> CLIPTextConfig {
        var c = CLIPTextConfig.clipL
        let names = set.names
        let prefix = set["text_model.embeddings.token_embedding.weight"] != nil ? "text_model." : ""
        let layers = Set(names.compactMap { n -> Int? in
            guard n.hasPrefix(prefix + "encoder.layers.") else { return nil }
            return Int(n.dropFirst((prefix + "encoder.layers.").count).prefix { $0 != "." })
        })
        if let top = layers.max() { c.numLayers = top + 1 }
        if let e = set[prefix + "embeddings.token_embedding.weight"]?.shape, e.count == 2 {
            (c.vocabSize, c.hiddenSize) = (e[0], e[1])
            c.numHeads = max(1, e[1] / 64)
        }
        if let p = set[prefix + "embeddings.position_embedding.weight"]?.shape, p.count == 2 { c.maxPositions = p[0] }
        if let f = set[prefix + "encoder.layers.0.mlp.fc1.weight"]?.shape, f.count == 2 { c.intermediateSize = f[0] }
        return c
    }
}

/// The loaded DreamSR model set: loaded once, shared by every job and stage of a pipeline (all of them read-only).
public final class DreamSRModelSet: @unchecked Sendable {
    public let model: DreamSRModel
    public let vae: AutoencoderKL
    public let text: FluxTextEncoders
    /// What the set costs in memory and what was available when it was loaded (`release_text_encoders: auto`).
    public let memory: ModelSetMemory
    public var clipTokenizer: CLIPTokenizer { text.clipTokenizer }
    public var t5Tokenizer: T5Tokenizer { text.t5Tokenizer }
    /// Prompt encodings by prompt string (across jobs).
    public var prompts: PromptEncodingCache<DreamSRPromptEncoding> { text.prompts }

    init(model: DreamSRModel, vae: AutoencoderKL, text: FluxTextEncoders, memory: ModelSetMemory) {
        self.model = model
        self.vae = vae
        self.text = text
        self.memory = memory
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
                           expectedLayout: "DreamSR checkpoint: one .safetensors or .gguf file with `dreamsr_config` metadata "
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
                e.weightFiles = set.tensorFiles.map { WeightFileSummary($0, role: WeightRole(componentKey: c.key)) }
                e.parameters = e.weightFiles.reduce(0) { $0 + $1.parameters }
                e.fileBytes = e.weightFiles.reduce(0) { $0 + $1.tensorBytes }
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
        let components = components
        func url(_ p: String) -> URL { URL(fileURLWithPath: p) }
        func step<T>(_ key: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as DreamSRPipelineError { throw e } catch {
                let c = components.first { $0.key == key }!
                throw DreamSRPipelineError(.models, "loading \(key) from \(c.path): \(error) (expected \(c.expectedLayout))")
            }
        }
        // Before anything is mapped: what the machine has, and what the set will take (from the headers).
        let available = ModelSetMemory.availableBytes()
        let entries = check()
        let memory = ModelSetMemory(
            availableBytes: available,
            residentBytes: entries.reduce(0) { $0 + $1.memoryBytes },
            textEncoderBytes: entries.filter { $0.component.key == "t5" || $0.component.key == "clip" }.reduce(0) { $0 + $1.memoryBytes })
        let flux = try step("flux") { try FluxTransformer.load(from: CheckpointSet(url: url(paths.flux)), precision: precision) }
        let model = try step("dreamsr") { try DreamSRModel.load(checkpoint: url(paths.dreamsr), flux: flux) }
        let vae = try step("vae") { try AutoencoderKL.load(from: url(paths.vae)).model }
        let text = try FluxTextEncoders.load(clip: paths.clip, t5: paths.t5, clipTokenizer: paths.clipTokenizer,
                                             t5Tokenizer: paths.t5Tokenizer, wrap: { key, error in
            let c = components.first { $0.key == key }!
            return DreamSRPipelineError(.models, "loading \(key) from \(c.path): \(error) (expected \(c.expectedLayout))")
        })
        try FluxTextEncoders.checkFit(flux: flux.config, fluxPath: paths.flux, text: text, t5Path: paths.t5, clipPath: paths.clip,
                                      vae: vae, vaePath: paths.vae)
        let set = DreamSRModelSet(model: model, vae: vae, text: text, memory: memory)
        loaded.withLock { $0 = set }
        return set
    }
}

/// The memory picture of a loaded model set: what it takes resident (each weight file's mapped bytes plus its float32
/// copies, from the headers: `WeightFileSummary`), how much of that the text encoders are, and MemAvailable of
/// /proc/meminfo just before the set was loaded.
public struct ModelSetMemory: Sendable, Equatable {
    /// nil where /proc/meminfo cannot be read.
    public var availableBytes: Int?
    public var residentBytes: Int
    public var textEncoderBytes: Int

    public init(availableBytes: Int?, residentBytes: Int, textEncoderBytes: Int) {
        self.availableBytes = availableBytes
        self.residentBytes = residentBytes
        self.textEncoderBytes = textEncoderBytes
    }

    /// Memory is short when MemAvailable is below what the whole set takes with the text encoders kept (the text
    /// encoders plus the rest); unknown MemAvailable is not short.
    public var isShort: Bool { availableBytes.map { $0 < residentBytes } ?? false }

    /// MemAvailable in bytes from /proc/meminfo (`MemAvailable: N kB`), or nil.
    public static func availableBytes(meminfo path: String = "/proc/meminfo") -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return parseAvailable(text)
    }

    public static func parseAvailable(_ meminfo: String) -> Int? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kb = Int(fields[1]) else { return nil }
            return kb * 1024
        }
        return nil
    }
}
