import Checkpoints
import Foundation
import Models
import Tensor

/// Builds a DreamSR component from FLUX weights, an optional FLUX config file and the DreamSR checkpoint.
public typealias DreamSRForwardFactory = @Sendable (_ weights: URL, _ config: URL?, _ controlnet: URL) throws -> any ForwardComponent

/// `dreamsr-step` (one velocity prediction, LoRA off) and `dreamsr-restore` (the one-step restoration pass, LoRA
/// on), with the tensor names of dreamsr-architecture.md "The `dreamsr forward` contract".
public struct DreamSRForward: ForwardComponent {
    public enum Mode: Sendable { case step, restore }
    public let mode: Mode
    public let model: DreamSRModel

    public init(mode: Mode, weights: URL, config: URL?, controlnet: URL) throws {
        self.mode = mode
        let cfg = try config.map { try FluxConfig(diffusersConfigJSON: Data(contentsOf: $0)) }
        let flux = try FluxTransformer.load(from: CheckpointSet(url: weights), config: cfg)
        model = try DreamSRModel.load(checkpoint: controlnet, flux: flux)
    }

    private var name: String { mode == .step ? "dreamsr-step" : "dreamsr-restore" }

    /// `{"<kernel path>": count}` over every Linear the DreamSR checkpoint supplies (written into the output file's
    /// metadata as `dreamsr_kernel_paths`, so a run shows whether its weights were read in place).
    public var kernelPathsJSON: String {
        let data = try? JSONSerialization.data(withJSONObject: model.checkpointKernelPaths, options: [.sortedKeys])
        return data.flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    public var inputNames: [(name: String, required: Bool)] {
        var n: [(String, Bool)] = []
        if mode == .step { n.append(("hidden_states", true)) }
        n += [("cond_latents", true), ("encoder_hidden_states", true), ("pooled_projections", true),
              ("local_encoder_hidden_states", true), ("local_pooled_projections", true)]
        if mode == .step { n.append(("timestep", true)) }
        // guidance defaults to the checkpoint config's value when absent.
        n += [("guidance", false), ("img_ids", true), ("txt_ids", true), ("local_txt_ids", true)]
        return n.map { (name: $0.0, required: $0.1) }
    }

    public func run(_ t: [String: Tensor]) throws -> [String: Tensor] {
        let missing = inputNames.filter { $0.required && t[$0.name] == nil }.map(\.name)
        guard missing.isEmpty else {
            throw ForwardError(.missingInput, "\(name): missing input tensor(s) \(missing.joined(separator: ", ")); have \(t.keys.sorted())")
        }
        func ids(_ n: String) throws -> Tensor {
            let x = t[n]!
            if x.rank == 3, x.shape[0] == 1 { return x.reshaped([x.shape[1], x.shape[2]]) }
            guard x.rank == 2, x.shape[1] == 3 else { throw ForwardError(.badInput, "\(name): \(n) must be [L, 3], got \(x.shape)") }
            return x
        }
        let cond = t["cond_latents"]!
        guard cond.rank == 3 else { throw ForwardError(.badInput, "\(name): cond_latents must be [B, L, 64], got \(cond.shape)") }
        let bsz = cond.shape[0]
        let guidance = t["guidance"]?.toArray() ?? [Float](repeating: Float(model.config.guidance), count: bsz)
        let inp = DreamSRInputs(
            hiddenStates: t["hidden_states"] ?? cond, condLatents: cond,
            encoderHiddenStates: t["encoder_hidden_states"]!, pooledProjections: t["pooled_projections"]!,
            localEncoderHiddenStates: t["local_encoder_hidden_states"]!,
            localPooledProjections: t["local_pooled_projections"]!,
            timestep: t["timestep"]?.toArray() ?? [], guidance: guidance, imgIds: try ids("img_ids"),
            txtIds: try ids("txt_ids"), localTxtIds: try ids("local_txt_ids"))
        switch mode {
        case .step:
            return ["sample": try model.velocity(inp, lora: false)]
        case .restore:
            let (v, z) = try model.restore(inp)
            return ["sample": v, "z_dr": z]
        }
    }
}
