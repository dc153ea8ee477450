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
                           controlnet: URL? = nil, controlnets: [URL] = [], controlnetConfigs: [URL] = [],
                           precision: String? = nil) throws -> [(String, [Int])] {
        let model: any ForwardComponent
        if precision != nil && component != "flux" {
            throw ForwardError(.badInput, "--precision applies to the flux component only, not '\(component)'")
        }
        if component == "flux", precision != nil || !controlnets.isEmpty || !controlnetConfigs.isEmpty {
            guard controlnetConfigs.isEmpty || controlnetConfigs.count == controlnets.count else {
                throw ForwardError(.badInput, "flux: \(controlnetConfigs.count) --controlnet-config for \(controlnets.count) "
                                   + "--controlnet; give none or one per ControlNet, in the same order")
            }
            let configs: [URL?] = controlnetConfigs.isEmpty ? controlnets.map { _ in nil } : controlnetConfigs
            model = try FluxForward(weights: weights, config: config,
                                    controlnets: zip(controlnets, configs).map { (weights: $0, config: $1) },
                                    precision: try precision.map { try ComputePrecision(parsing: $0, key: "--precision") } ?? .fp32)
        } else if let factory = components[component] {
            guard controlnet == nil, controlnets.isEmpty, controlnetConfigs.isEmpty else {
                throw ForwardError(.badInput, "\(component) takes no --controlnet")
            }
            model = try factory(weights, config)
        } else if let factory = controlnetComponents[component] {
            guard controlnets.count <= 1, controlnetConfigs.isEmpty, let checkpoint = controlnet ?? controlnets.first else {
                throw ForwardError(.missingInput, "\(component) needs exactly one --controlnet DREAMSR_CHECKPOINT (.safetensors or .gguf) "
                                   + "(and no --controlnet-config)")
            }
            model = try factory(weights, config, checkpoint)
        } else {
            throw ForwardError(.unknownComponent, "unknown component '\(component)'; known: \(names.joined(separator: ", "))")
        }
        let outputs = try model.run(try SafeTensorsFile(url: inputs).allTensors())
        let ordered = outputs.keys.sorted().map { ($0, outputs[$0]!) }
        var metadata = ["dreamsr_forward_component": component]
        if let dreamsr = model as? DreamSRForward { metadata["dreamsr_kernel_paths"] = dreamsr.kernelPathsJSON }
        try SafeTensorsWriter.write(tensors: ordered, metadata: metadata, to: out)
        return ordered.map { ($0.0, $0.1.shape) }
    }
}

/// `flux`: one FluxTransformer2DModel forward. Inputs named like diffusers' arguments: `hidden_states` [B,L,C],
/// `encoder_hidden_states` [B,T,Dtxt], `pooled_projections` [B,Dpool], `timestep` [B] (sigma), `guidance` [B]
/// (models with a guidance embedder), `img_ids` [L,3], `txt_ids` [T,3]. Output: `sample` [B,L,C].
/// With FLUX ControlNets (diffusers `FluxControlNetModel` checkpoints) also `controlnet_cond` [B,L,C] (packed
/// latent), `controlnet_mode` [B] or [B,1] (union ControlNets) and `conditioning_scale` [1] (default 1); with several
/// ControlNets these carry the ControlNet's index: `controlnet_cond.0`, `controlnet_cond.1`, ... The summed residuals
/// are written too, as `controlnet_block_samples.i` / `controlnet_single_block_samples.i`.
public struct FluxForward: ForwardComponent {
    public let model: FluxTransformer
    public let controlnets: [FluxControlNet]

    public init(weights: URL, config: URL?, controlnets: [(weights: URL, config: URL?)] = [],
                precision: ComputePrecision = .fp32) throws {
        let cfg = try config.map { try FluxConfig(diffusersConfigJSON: Data(contentsOf: $0)) }
        model = try FluxTransformer.load(from: CheckpointSet(url: weights), config: cfg, precision: precision)
        self.controlnets = try controlnets.map { cn in
            let c = try cn.config.map { try FluxControlNetConfig(diffusersConfigJSON: Data(contentsOf: $0)) }
            return try FluxControlNet.load(from: CheckpointSet(url: cn.weights), config: c)
        }
        for c in self.controlnets { try c.checkCompatible(with: model.config) }
    }

    /// The input name of ControlNet `i`'s tensor `base` (`controlnet_cond` for one ControlNet, `controlnet_cond.i`
    /// for several; with one, the indexed name is accepted too).
    private func name(_ base: String, _ i: Int) -> String { controlnets.count == 1 ? base : "\(base).\(i)" }

    private func lookup(_ t: [String: Tensor], _ base: String, _ i: Int) -> Tensor? {
        t[name(base, i)] ?? (controlnets.count == 1 ? t["\(base).0"] : nil)
    }

    public var inputNames: [(name: String, required: Bool)] {
        let guided = model.config.guidanceEmbed || controlnets.contains { $0.config.flux.guidanceEmbed }
        var n: [(name: String, required: Bool)] = [
            ("hidden_states", true), ("encoder_hidden_states", true), ("pooled_projections", true), ("timestep", true),
            ("guidance", guided), ("img_ids", true), ("txt_ids", true)]
        for (i, c) in controlnets.enumerated() {
            n.append((name("controlnet_cond", i), true))
            if c.config.isUnion { n.append((name("controlnet_mode", i), true)) }
            n.append((name("conditioning_scale", i), false))
        }
        return n
    }

    public func run(_ t: [String: Tensor]) throws -> [String: Tensor] {
        var t = t
        for (i, _) in controlnets.enumerated() {
            for base in ["controlnet_cond", "controlnet_mode", "conditioning_scale"] where t[name(base, i)] == nil {
                t[name(base, i)] = lookup(t, base, i)
            }
        }
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
        guard !controlnets.isEmpty else { return ["sample": try model.forward(inp)] }
        let units = try controlnets.enumerated().map { i, cn -> FluxControlNetUnit in
            let cond = t[name("controlnet_cond", i)]!
            guard cond.shape == inp.hiddenStates.shape else {
                throw ForwardError(.badInput, "flux: \(name("controlnet_cond", i)) \(cond.shape) must have the shape of "
                                   + "hidden_states \(inp.hiddenStates.shape) (packed latent)")
            }
            var scale: Float = 1
            if let s = t[name("conditioning_scale", i)] {
                guard s.count == 1 else {
                    throw ForwardError(.badInput, "flux: \(name("conditioning_scale", i)) must hold one value, got \(s.shape)")
                }
                scale = s[flat: 0]
            }
            // diffusers passes controlnet_mode as integers; a single-purpose ControlNet ignores it.
            let mode = cn.config.isUnion ? t[name("controlnet_mode", i)].map { $0.toArray().map { Int($0.rounded()) } } : nil
            return FluxControlNetUnit(controlnet: cn, cond: cond, mode: mode, scale: scale)
        }
        var out: [String: Tensor] = [:]
        let residuals = try FluxMultiControlNet.residuals(units, inputs: inp)
        for (i, r) in (residuals?.double ?? []).enumerated() {
            out["controlnet_block_samples.\(i)"] = r.reshaped([inp.hiddenStates.shape[0], inp.hiddenStates.shape[1], r.shape[1]])
        }
        for (i, r) in (residuals?.single ?? []).enumerated() {
            out["controlnet_single_block_samples.\(i)"] = r.reshaped([inp.hiddenStates.shape[0], inp.hiddenStates.shape[1], r.shape[1]])
        }
        out["sample"] = try model.forward(inp, controlnet: residuals)
        return out
    }
}
