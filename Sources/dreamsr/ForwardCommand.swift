import ArgumentParser
import DreamsrApp
import Foundation
import Tensor

/// `dreamsr forward <component> --weights W [--config C] --inputs IN.safetensors --out OUT.safetensors`:
/// a maintainer's tool that runs one model component on named tensors (used by parity tests and scripts).
struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run one model component on tensors from a safetensors file and write its outputs.",
        discussion: "Components: \(ForwardRegistry.names.joined(separator: ", ")). "
            + "flux inputs: hidden_states, encoder_hidden_states, pooled_projections, timestep (sigma), guidance, img_ids, txt_ids; output: sample. "
            + "dreamsr-step (LoRA off) adds cond_latents, local_encoder_hidden_states, local_pooled_projections, local_txt_ids; "
            + "dreamsr-restore (LoRA on) takes the same without hidden_states/timestep and also writes z_dr. "
            + "flux with --controlnet (diffusers FluxControlNetModel, repeatable) adds controlnet_cond (packed latent), "
            + "controlnet_mode (union), conditioning_scale (suffixed .0, .1, ... with several ControlNets) and also writes "
            + "controlnet_block_samples.i / controlnet_single_block_samples.i."
    )

    @Argument(help: "Component name (\(ForwardRegistry.names.joined(separator: ", "))).")
    var component: String

    @Option(help: "Weights: a .safetensors file (any float dtype, FP8 plain or ComfyUI-scaled), a folder of shards, or a .gguf file.")
    var weights: String

    @Option(help: "Model config (diffusers config.json); default: beside the weights, metadata, or inferred from the tensor names and shapes.")
    var config: String?

    @Option(help: "flux: a FLUX ControlNet (diffusers FluxControlNetModel folder or file; repeat for several). dreamsr-step / dreamsr-restore: the DreamSR checkpoint (.safetensors or .gguf with `dreamsr_config` metadata).")
    var controlnet: [String] = []

    @Option(name: .customLong("controlnet-config"),
            help: "flux: a ControlNet's config.json (none, or one per --controlnet in the same order); default: beside its weights, else inferred.")
    var controlnetConfig: [String] = []

    @Option(help: "Input tensors (.safetensors).")
    var inputs: String

    @Option(help: "Output file (.safetensors).")
    var out: String

    @Option(help: "BLAS threads (default: OpenBLAS's choice).")
    var threads: Int?

    @Option(help: "flux only: activation precision of the matrix products and attention, fp32 (default), bf16, or auto (bf16 with AVX512_BF16, else fp32).")
    var precision: String?

    func run() throws {
        if let threads { BLASRuntime.setThreads(threads) }
        let start = Date()
        let outputs = try ForwardRegistry.run(
            component: component, weights: URL(fileURLWithPath: weights), config: config.map { URL(fileURLWithPath: $0) },
            inputs: URL(fileURLWithPath: inputs), out: URL(fileURLWithPath: out),
            controlnets: controlnet.map { URL(fileURLWithPath: $0) },
            controlnetConfigs: controlnetConfig.map { URL(fileURLWithPath: $0) }, precision: precision)
        let secs = Date().timeIntervalSince(start)
        for (name, shape) in outputs { print("\(name) \(shape)") }
        print(String(format: "%@ forward done in %.2f s (kernels %@, BLAS %@, precision %@)", component, secs,
                     KernelISA.active.description, BLASRuntime.coreName, precision ?? "fp32"))
    }
}
