import Checkpoints
import Foundation
import Models
import Tensor

/// Errors of `dreamsr forward` (unknown component, missing or ill-shaped input tensors).
public struct ForwardError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case unknownComponent, missingInput, badInput }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "ForwardError.\(code.rawValue): \(message)" }
}

/// One model component runnable by `dreamsr forward`: tensors by name in, tensors by name out.
public protocol ForwardComponent: Sendable {
    /// Input names and whether each is required (for `--help` / error messages).
    var inputNames: [(name: String, required: Bool)] { get }
    func run(_ inputs: [String: Tensor]) throws -> [String: Tensor]
}

/// Builds a component from its weights (file or folder) and optional config file.
public typealias ForwardComponentFactory = @Sendable (_ weights: URL, _ config: URL?) throws -> any ForwardComponent

/// The components `dreamsr forward` knows. Later components (`vae-encode`, `vae-decode`, `clip-text`, `t5`,
/// `dreamsr-step`, `dreamsr-restore`) register here with one line each.
public enum ForwardRegistry {
    public static let components: [String: ForwardComponentFactory] = [
        "flux": { weights, config in try FluxForward(weights: weights, config: config) },
        "vae-encode": { weights, config in try VAEForward(weights: weights, config: config, direction: .encode) },
        "vae-decode": { weights, config in try VAEForward(weights: weights, config: config, direction: .decode) },
        "clip-text": { weights, config in try CLIPTextForward(weights: weights, config: config) },
        "t5": { weights, config in try T5Forward(weights: weights, config: config) },
    ]

    /// Components that also need a DreamSR checkpoint (`--controlnet`).
    public static let controlnetComponents: [String: DreamSRForwardFactory] = [
        "dreamsr-step": { weights, config, controlnet in
            try DreamSRForward(mode: .step, weights: weights, config: config, controlnet: controlnet)
        },
        "dreamsr-restore": { weights, config, controlnet in
            try DreamSRForward(mode: .restore, weights: weights, config: config, controlnet: controlnet)
        },
    ]

    public static var names: [String] { (Array(components.keys) + Array(controlnetComponents.keys)).sorted() }

    /// Loads `inputs`, runs `component`, writes the outputs to `out`; returns the output names and shapes.
    /// `precision` (`fp32` or `bf16`, flux only; default fp32) is the activation precision of the FLUX matrix products
    /// and attention.
    @discardableResult
    public static func run(component: String, weights: URL, config: URL?, inputs: URL, out: URL,
                           controlnet: URL? = nil, precision: String? = nil) throws -> [(String, [Int])] {
        let model: any ForwardComponent
        if let precision {
            guard component == "flux" else {
                throw ForwardError(.badInput, "--precision applies to the flux component only, not '\(component)'")
            }
            model = try FluxForward(weights: weights, config: config,
                                    precision: ComputePrecision(parsing: precision, key: "--precision"))
        } else if let factory = components[component] {
            model = try factory(weights, config)
        } else if let factory = controlnetComponents[component] {
            guard let controlnet else {
                throw ForwardError(.missingInput, "\(component) needs --controlnet DREAMSR_CHECKPOINT.safetensors")
            }
            model = try factory(weights, config, controlnet)
        } else {
            throw ForwardError(.unknownComponent, "unknown component '\(component)'; known: \(names.joined(separator: ", "))")
        }
        let outputs = try model.run(try SafeTensorsFile(url: inputs).allTensors())
        let ordered = outputs.keys.sorted().map { ($0, outputs[$0]!) }
        try SafeTensorsWriter.write(tensors: ordered, metadata: ["dreamsr_forward_component": component], to: out)
        return ordered.map { ($0.0, $0.1.shape) }
    }
}

/// `flux`: one FluxTransformer2DModel forward. Inputs named like diffusers' arguments: `hidden_states` [B,L,C],
/// `encoder_hidden_states` [B,T,Dtxt], `pooled_projections` [B,Dpool], `timestep` [B] (sigma), `guidance` [B]
/// (models with a guidance embedder), `img_ids` [L,3], `txt_ids` [T,3]. Output: `sample` [B,L,C].
public struct FluxForward: ForwardComponent {
    public let model: FluxTransformer

    public init(weights: URL, config: URL?, precision: ComputePrecision = .fp32) throws {
        let cfg = try config.map { try FluxConfig(diffusersConfigJSON: Data(contentsOf: $0)) }
        model = try FluxTransformer.load(from: CheckpointSet(url: weights), config: cfg, precision: precision)
    }

    public var inputNames: [(name: String, required: Bool)] {
        [("hidden_states", true), ("encoder_hidden_states", true), ("pooled_projections", true), ("timestep", true),
         ("guidance", model.config.guidanceEmbed), ("img_ids", true), ("txt_ids", true)]
    }

    public func run(_ t: [String: Tensor]) throws -> [String: Tensor] {
        let missing = inputNames.filter { $0.required && t[$0.name] == nil }.map(\.name)
        guard missing.isEmpty else {
            throw ForwardError(.missingInput, "flux: missing input tensor(s) \(missing.joined(separator: ", ")); have \(t.keys.sorted())")
        }
        func ids(_ n: String) throws -> Tensor {
            let x = t[n]!
            // diffusers' deprecated [1, L, 3] form is accepted too
            if x.rank == 3, x.shape[0] == 1 { return x.reshaped([x.shape[1], x.shape[2]]) }
            guard x.rank == 2 else { throw ForwardError(.badInput, "flux: \(n) must be [L, 3], got \(x.shape)") }
            return x
        }
        let inp = FluxInputs(hiddenStates: t["hidden_states"]!, encoderHiddenStates: t["encoder_hidden_states"]!,
                             pooledProjections: t["pooled_projections"]!, timestep: t["timestep"]!.toArray(),
                             guidance: t["guidance"]?.toArray(), imgIds: try ids("img_ids"), txtIds: try ids("txt_ids"))
        return ["sample": try model.forward(inp)]
    }
}
