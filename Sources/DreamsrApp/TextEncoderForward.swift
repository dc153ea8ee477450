import Checkpoints
import Foundation
import Models
import Tensor

/// Reads `input_ids` [B, L] (int64 in the file, converted to float by the reader: exact below 2^24) into id rows.
private func idRows(_ t: [String: Tensor], component: String) throws -> [[Int]] {
    guard let ids = t["input_ids"] else {
        throw ForwardError(.missingInput, "\(component): missing input tensor input_ids; have \(t.keys.sorted())")
    }
    guard ids.rank == 1 || ids.rank == 2, ids.count > 0 else {
        throw ForwardError(.badInput, "\(component): input_ids must be [B, L], got \(ids.shape)")
    }
    let b = ids.rank == 1 ? 1 : ids.shape[0], l = ids.shape.last!
    return ids.withUnsafeBufferPointer { v in (0..<b).map { row in (0..<l).map { Int(v[row * l + $0]) } } }
}

/// The config: `--config`, else `config.json` beside the weights, else nil (defaults).
private func configData(_ config: URL?, weights: CheckpointSet) throws -> Data? {
    if let config { return try Data(contentsOf: config) }
    let beside = weights.directory.appendingPathComponent("config.json")
    return FileManager.default.fileExists(atPath: beside.path) ? try Data(contentsOf: beside) : nil
}

/// `clip-text`: HF CLIPTextModel. Input `input_ids` [B, L]; outputs `last_hidden_state` [B, L, D] and
/// `pooler_output` [B, D].
public struct CLIPTextForward: ForwardComponent {
    public let model: CLIPTextEncoder

    public init(weights: URL, config: URL?) throws {
        let set = try CheckpointSet(url: weights)
        let cfg = try configData(config, weights: set).map { try CLIPTextConfig(configJSON: $0) } ?? .clipL
        model = try CLIPTextEncoder(checkpoint: set, config: cfg)
    }

    public var inputNames: [(name: String, required: Bool)] { [("input_ids", true)] }

    public func run(_ t: [String: Tensor]) throws -> [String: Tensor] {
        let rows = try idRows(t, component: "clip-text")
        guard rows[0].count <= model.config.maxPositions,
              rows.allSatisfy({ $0.allSatisfy { $0 >= 0 && $0 < model.config.vocabSize } }) else {
            throw ForwardError(.badInput, "clip-text: input_ids longer than \(model.config.maxPositions) or outside the vocab")
        }
        let (last, pooled) = model.encode(batch: rows)
        return ["last_hidden_state": last, "pooler_output": pooled]
    }
}

/// `t5`: HF T5EncoderModel (no attention mask, as FLUX). Input `input_ids` [B, L]; output `last_hidden_state`.
public struct T5Forward: ForwardComponent {
    public let model: T5Encoder

    public init(weights: URL, config: URL?) throws {
        let set = try CheckpointSet(url: weights)
        let cfg = try configData(config, weights: set).map { try T5EncoderConfig(configJSON: $0) } ?? .xxl
        model = try T5Encoder(checkpoint: set, config: cfg)
    }

    public var inputNames: [(name: String, required: Bool)] { [("input_ids", true)] }

    public func run(_ t: [String: Tensor]) throws -> [String: Tensor] {
        let rows = try idRows(t, component: "t5")
        guard rows.allSatisfy({ $0.allSatisfy { $0 >= 0 && $0 < model.config.vocabSize } }) else {
            throw ForwardError(.badInput, "t5: input_ids outside the vocab (\(model.config.vocabSize))")
        }
        return ["last_hidden_state": model.encode(batch: rows)]
    }
}
