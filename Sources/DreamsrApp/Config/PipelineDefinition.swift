import Foundation
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

/// One stage as a pipeline file lists it.
public struct StageDefinition: Sendable, Equatable {
    public var kind: StageKind
    public var runtime: StageConfig
    /// Model directory name under the daemon's `models_dir` (or an absolute path).
    public var model: String?
    /// Tile geometry for tiled restoration, in input pixels.
    public var tileSize: Int
    public var tileOverlap: Int
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
        try root.checkKeys(["name", "description", "capacity", "job_timeout_seconds", "output_format", "stages"])
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
            try item.checkKeys(["stage", "concurrency", "queue", "model", "tile", "overlap"])
            let kindText = try item.requiredString("stage")
            guard let kind = StageKind(rawValue: kindText) else {
                throw item.error("stage", "unknown stage '\(kindText)' (known: \(StageKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let tile = try item.int("tile", default: 192, min: 16, max: 4096)
            let overlap = try item.int("overlap", default: 16, min: 0, max: 1024)
            guard overlap * 2 < tile else { throw item.error("overlap", "overlap \(overlap) must be less than half the tile size \(tile)") }
            let def = StageDefinition(
                kind: kind,
                runtime: StageConfig(name: kind.rawValue,
                                     concurrency: try item.int("concurrency", default: 1, min: 1, max: 64),
                                     queueCapacity: try item.int("queue", default: 2, min: 1, max: 10_000)),
                model: try item.optionalString("model"), tileSize: tile, tileOverlap: overlap)
            if let previous = stages.last, StageKind.allCases.firstIndex(of: previous.kind)! >= StageKind.allCases.firstIndex(of: kind)! {
                throw item.error("stage", "stage '\(kind.rawValue)' cannot follow '\(previous.kind.rawValue)' (order: \(StageKind.allCases.map(\.rawValue).joined(separator: " -> ")), each at most once)")
            }
            if (kind == .restore || kind == .texture) && def.model == nil {
                throw item.error("model", "stage '\(kind.rawValue)' needs a model directory")
            }
            stages.append(def)
        }
        guard stages.first?.kind == .decode else { throw root.error("stages", "the first stage must be 'decode'") }
        guard stages.last?.kind == .encode else { throw root.error("stages", "the last stage must be 'encode'") }
        if stages.contains(where: { $0.kind == .blend }) && !stages.contains(where: { $0.kind == .texture }) {
            throw root.error("stages", "stage 'blend' blends the texture stage's result and needs a 'texture' stage")
        }
        return PipelineDefinition(name: name, description: try root.string("description", default: ""),
                                  capacity: capacity, jobTimeout: timeout > 0 ? .milliseconds(Int64(timeout * 1000)) : nil,
                                  outputFormat: format, stages: stages, file: file)
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
