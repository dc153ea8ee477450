import Checkpoints
import Foundation
import Models
import Tensor
import Testing

/// Header-only (sparse) checkpoints with the real FLUX.1-dev key names and shapes: every key must be mapped and every
/// shape accepted, for BFL, ComfyUI and sharded diffusers layouts. No tensor data is written (the files are sparse).
@Suite(.serialized, .timeLimit(.minutes(10)))
final class FluxWeightMapTests {
    var tmp: URL!

    init() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("flux-dev-headers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: tmp)
    }

    func devKeys() throws -> (diffusers: [String: [Int]], bfl: [String: [Int]]) {
        let data = try Data(contentsOf: fluxFixtures.appendingPathComponent("flux1-dev-keys.json"))
        let obj = try JSONSerialization.jsonObject(with: data) as! [String: [String: [Int]]]
        return (obj["diffusers"]!, obj["bfl"]!)
    }

    /// Writes a sparse BF16 safetensors header for `tensors` (see `writeSparseSafeTensors`).
    func writeSparse(_ tensors: [(String, [Int])], to url: URL) throws {
        try writeSparseSafeTensors(tensors.map { ($0.0, "BF16", $0.1) }, to: url)
    }

    @Test func bFLHeaderMapsEveryKey() throws {
        let keys = try devKeys().bfl
        #expect(keys.count == 780)
        let url = tmp.appendingPathComponent("flux1-dev.safetensors")
        try writeSparse(keys.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, to: url)
        let set = try CheckpointSet(url: url)
        let (layout, prefix) = try FluxWeightMap.detect(names: set.names)
        #expect(layout == .bfl)
        #expect(prefix == "")
        let model = try FluxTransformer.load(from: set)
        #expect(model.config == .dev)
        #expect(model.doubleBlocks.count == 19)
        #expect(model.singleBlocks.count == 38)
        #expect(model.singleBlocks[37].linear1.weight.shape == [21504, 3072])
        if case .resident = model.doubleBlocks[0].imgMLP0.weight { Issue.record("bf16 weights must stay lazy") }
    }

    @Test func comfyHeaderMapsEveryKey() throws {
        var keys = try devKeys().bfl.sorted { $0.key < $1.key }.map { (FluxWeightMap.comfyPrefix + $0.key, $0.value) }
        keys.append(("first_stage_model.decoder.conv_in.weight", [512, 16, 3, 3]))
        keys.append(("text_encoders.clip_l.logit_scale", [1]))
        let url = tmp.appendingPathComponent("flux1-dev-comfy.safetensors")
        try writeSparse(keys, to: url)
        let set = try CheckpointSet(url: url)
        let (layout, prefix) = try FluxWeightMap.detect(names: set.names)
        #expect(layout == .bfl)
        #expect(prefix == FluxWeightMap.comfyPrefix)
        let model = try FluxTransformer.load(from: set)
        #expect(model.config == .dev)
    }

    @Test func shardedDiffusersHeaderMapsEveryKey() throws {
        let keys = try devKeys().diffusers.sorted { $0.key < $1.key }
        #expect(keys.count == 1160)
        let half = keys.count / 2
        try writeSparse(keys[..<half].map { ($0.key, $0.value) }, to: tmp.appendingPathComponent("diffusion_pytorch_model-00001-of-00002.safetensors"))
        try writeSparse(keys[half...].map { ($0.key, $0.value) }, to: tmp.appendingPathComponent("diffusion_pytorch_model-00002-of-00002.safetensors"))
        let set = try CheckpointSet(url: tmp)
        #expect(set.files.count == 2)
        let (layout, prefix) = try FluxWeightMap.detect(names: set.names)
        #expect(layout == .diffusers)
        #expect(prefix == "")
        let model = try FluxTransformer.load(from: set)
        #expect(model.config == .dev)
        guard case .lazy(let qkv) = model.doubleBlocks[18].txtQKV.weight else { Issue.record("expected lazy weight"); return }
        #expect(qkv.shape == [9216, 3072])
        #expect(qkv.transform == .concatRows)
        #expect(qkv.parts.map(\.info.name) == ["transformer_blocks.18.attn.add_q_proj.weight",
                                                   "transformer_blocks.18.attn.add_k_proj.weight",
                                                   "transformer_blocks.18.attn.add_v_proj.weight"])
        guard case .lazy(let fin) = model.finalModulation.weight else { Issue.record("expected lazy weight"); return }
        #expect(fin.transform == .swapHalves)
        #expect(fin.shape == [6144, 3072])
    }

    /// diffusers' final-layer modulation is scale|shift; the canonical layout is BFL's shift|scale.
    @Test func swapHalvesTransform() throws {
        let url = tmp.appendingPathComponent("swap.safetensors")
        try SafeTensorsWriter.write(tensors: [("norm_out.linear.bias", Tensor(shape: [4], values: [1, 2, 3, 4]))], to: url)
        let f = try SafeTensorsFile(url: url)
        let w = WeightSource(name: "b", parts: [.init(file: f, info: f["norm_out.linear.bias"]!)], transform: .swapHalves)
        #expect(w.materialize().toArray() == [3, 4, 1, 2])
    }

    @Test func unknownLayoutIsReported() throws {
        if let e = #expect(throws: (any Error).self, performing: { _ = try FluxWeightMap.detect(names: ["encoder.block.0.layer.0.SelfAttention.q.weight"]) }) {
            #expect(((e as? CheckpointError)?.code) == .unknownLayout)
        }
    }
}
