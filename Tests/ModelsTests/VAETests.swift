import Checkpoints
import CKernels
import Foundation
import Testing
@testable import Models
import Tensor

/// Fixtures from tools/make_vae_fixtures.py (diffusers AutoencoderKL, FLUX structure, channels 16/32/32/32).
enum VAEFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/vae")
    static var config: VAEConfig {
        get throws { try VAEConfig(diffusersConfigAt: dir.appendingPathComponent("vae_small_config.json")) }
    }
    static func model(_ layout: String) throws -> AutoencoderKL {
        let (m, unused) = try AutoencoderKL.load(from: dir.appendingPathComponent("vae_small_\(layout).safetensors"),
                                                 config: try config)
        #expect(unused.isEmpty, "unused keys: \(unused)")
        return m
    }
    static func io(_ name: String) throws -> Tensor {
        try SafeTensorsFile(url: dir.appendingPathComponent("vae_small_io.safetensors")).tensor(named: name)
    }
}

private func range(_ t: Tensor) -> Float {
    let v = t.toArray()
    return v.max()! - v.min()!
}

/// Deterministic test image in [-1, 1]: smooth colour fields plus seeded noise (not periodic in the tile size).
private func testImage(height: Int, width: Int, seed: UInt64) -> Tensor {
    var s = seed
    return Tensor(shape: [1, 3, height, width]) { i in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        let noise = Float(Int64(bitPattern: s >> 11) % 1_000_000) / 1_000_000
        let c = i / (height * width), y = Float((i / width) % height) / Float(height), x = Float(i % width) / Float(width)
        let smooth: Float = c == 0 ? sin(5 * x + 1) : (c == 1 ? cos(4 * y + x) : x * y * 2 - 1)
        return max(-1, min(1, 0.6 * smooth + 0.3 * noise))
    }
}

private func randomLatent(_ shape: [Int], seed: UInt64) -> Tensor {
    var s = seed
    return Tensor(shape: shape) { _ in
        // sum of 4 uniforms: roughly normal, std ~1.15
        var acc: Float = 0
        for _ in 0..<4 {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            acc += Float(Int64(bitPattern: s >> 11) % 2_000_000) / 1_000_000 - 1
        }
        return acc
    }
}

@Suite struct VAEWeightMapTests {
    @Test func fixtureConfigIsReadFromDiffusersJSON() throws {
        let c = try VAEFixtures.config
        #expect(c.blockOutChannels == [16, 32, 32, 32])
        #expect(c.layersPerBlock == 2 && c.latentChannels == 16 && c.normGroups == 8 && c.midBlockAttention)
        #expect(c.scalingFactor == 0.3611 && c.shiftFactor == 0.1159)
    }

    @Test(arguments: ["diffusers", "bfl"])
    func everyCanonicalTensorMapsToOneCheckpointKey(layout: String) throws {
        let file = try SafeTensorsFile(url: VAEFixtures.dir.appendingPathComponent("vae_small_\(layout).safetensors"))
        let (detected, prefix) = try VAEWeightMap.detect(names: file.header.names)
        #expect(detected.rawValue == layout && prefix == "")
        let c = try VAEFixtures.config
        let canon = VAEWeightMap.canonicalShapes(c)
        let keys = canon.map { VAEWeightMap.sourceKey($0.0, layout: detected, levels: c.levels) }
        #expect(Set(keys) == Set(file.header.names))
        for ((name, shape), key) in zip(canon, keys) {
            let info = try #require(file[key], "\(name) -> \(key)")
            #expect(info.elementCount == shape.reduce(1, *), "\(key) \(info.shape) vs \(shape)")
        }
    }

    @Test func configIsDetectedFromTensorShapes() throws {
        let file = try SafeTensorsFile(url: VAEFixtures.dir.appendingPathComponent("vae_small_bfl.safetensors"))
        var shapes: [String: [Int]] = [:]
        for t in file.header.tensors { shapes[t.name] = t.shape }
        var base = VAEConfig.flux
        base.normGroups = 8  // not visible in shapes
        #expect(try VAEConfig(detectingFrom: shapes, base: base) == (try VAEFixtures.config))
        // FLUX's 32 groups cannot split 16 channels: a clear config error, not a crash.
        #expect(throws: CheckpointError.self) { _ = try VAEConfig(detectingFrom: shapes) }
    }

    @Test func diffusersKeysFollowSpecMapping() {
        #expect(VAEWeightMap.sourceKey("decoder.up.3.block.2.conv1.weight", layout: .diffusers, levels: 4)
            == "decoder.up_blocks.0.resnets.2.conv1.weight")
        #expect(VAEWeightMap.sourceKey("decoder.up.1.upsample.conv.bias", layout: .diffusers, levels: 4)
            == "decoder.up_blocks.2.upsamplers.0.conv.bias")
        #expect(VAEWeightMap.sourceKey("encoder.down.1.block.0.nin_shortcut.weight", layout: .diffusers, levels: 4)
            == "encoder.down_blocks.1.resnets.0.conv_shortcut.weight")
        #expect(VAEWeightMap.sourceKey("encoder.mid.attn_1.proj_out.weight", layout: .diffusers, levels: 4)
            == "encoder.mid_block.attentions.0.to_out.0.weight")
        #expect(VAEWeightMap.sourceKey("decoder.norm_out.bias", layout: .diffusers, levels: 4) == "decoder.conv_norm_out.bias")
        #expect(VAEWeightMap.sourceKey("encoder.down.2.downsample.conv.weight", layout: .diffusers, levels: 4)
            == "encoder.down_blocks.2.downsamplers.0.conv.weight")
    }

    @Test func fluxConfigHasAbout84MParameters() {
        let n = VAEWeightMap.canonicalShapes(.flux).reduce(0) { $0 + $1.1.reduce(1, *) }
        #expect(n > 83_000_000 && n < 85_000_000, "\(n)")
    }

    @Test func receptiveRadiusOfFluxDecoderAndEncoder() {
        #expect(VAEProgram.receptiveRadius(VAEProgram.decoder(.flux)) == 17.25)
        #expect(VAEProgram.receptiveRadius(VAEProgram.encoder(.flux)) == 115)
    }
}

@Suite struct VAEKernelTests {
    @Test func simdStatisticsAndApplyMatchScalar() {
        let (c, h, w) = (5, 7, 37)
        let x = testImage(height: h, width: w, seed: 3).reshaped([3, h, w])
        let big = Tensor(shape: [c, h, w]) { i in x[flat: i % x.count] * 3 + 0.5 }
        var s1 = [Double](repeating: 0, count: c), q1 = s1, s2 = s1, q2 = s1
        big.withUnsafePointer { p in
            ck_gn_channel_sums(p, c, h, w, 1, 5, 3, 33, &s1, &q1)
            ck_gn_channel_sums_scalar(p, c, h, w, 1, 5, 3, 33, &s2, &q2)
        }
        for i in 0..<c {
            #expect(abs(s1[i] - s2[i]) <= 1e-4 * max(1, abs(s2[i])))
            #expect(abs(q1[i] - q2[i]) <= 1e-4 * max(1, abs(q2[i])))
        }
        let scale: [Float] = [0.5, -1, 2, 0.1, 1.5], shift: [Float] = [0.1, 0.2, -0.3, 0, 1]
        for silu: Int32 in [0, 1] {
            let a = Tensor(zeros: big.shape), b = Tensor(zeros: big.shape)
            big.withUnsafePointer { src in
                a.withUnsafeMutablePointer { ck_gn_apply($0, src, c, h * w, scale, shift, silu) }
                b.withUnsafeMutablePointer { ck_gn_apply_scalar($0, src, c, h * w, scale, shift, silu) }
            }
            #expect(a.maxAbsDifference(b) <= 2e-6 * max(1, b.maxAbs()))
        }
    }

    @Test func bandedUpsampleConvMatchesUpsampleThenConv() {
        let x = randomLatent([1, 5, 9, 7], seed: 9)
        let w = randomLatent([4, 5, 3, 3], seed: 10), b = randomLatent([4], seed: 11)
        let conv = Conv2D.same(weight: w, bias: b)
        let want = conv(x.upsampledNearest2x())
        for bandBytes in [1, 5 * 14 * 4 * 3, 5 * 14 * 4 * 5, 1 << 20] {  // 2, 3, 5 and all 18 rows per band
            let got = VAEExecutor.upsampleConv(conv, x, bandBytes: bandBytes)
            #expect(got.shape == want.shape && got.maxAbsDifference(want) <= 1e-5, "band bytes \(bandBytes)")
        }
    }

    @Test func tileStatisticsCombineToWholeImageStatistics() {
        let x = testImage(height: 24, width: 40, seed: 5)
        var whole = GroupNormStatistics(channels: 3)
        whole.accumulate(x)
        var parts = GroupNormStatistics(channels: 3)
        for (y0, rows) in [(0, 10), (10, 14)] {
            for (x0, cols) in [(0, 17), (17, 23)] {
                var t = GroupNormStatistics(channels: 3)
                t.accumulate(x, y0: y0, rows: rows, x0: x0, cols: cols)
                parts.combine(t)
            }
        }
        #expect(parts.count == whole.count)
        let a = whole.affine(groups: 1, eps: 1e-6, gamma: nil, beta: nil)
        let b = parts.affine(groups: 1, eps: 1e-6, gamma: nil, beta: nil)
        for i in 0..<3 { #expect(abs(a.scale[i] - b.scale[i]) < 1e-5 && abs(a.shift[i] - b.shift[i]) < 1e-5) }
    }
}

@Suite struct VAEParityTests {
    @Test(arguments: ["diffusers", "bfl"])
    func encodeMatchesDiffusersLatentMean(layout: String) throws {
        let m = try VAEFixtures.model(layout)
        let want = try VAEFixtures.io("encode_latent_mean")
        let got = try m.encode(try VAEFixtures.io("encode_sample"))
        #expect(got.shape == want.shape)
        let err = got.maxAbsDifference(want)
        #expect(err <= 1e-4 * range(want), "max abs err \(err), range \(range(want))")
    }

    @Test(arguments: ["diffusers", "bfl"])
    func decodeMatchesDiffusersSample(layout: String) throws {
        let m = try VAEFixtures.model(layout)
        let want = try VAEFixtures.io("decode_sample")
        let got = try m.decode(try VAEFixtures.io("decode_latent"))
        #expect(got.shape == want.shape)
        let err = got.maxAbsDifference(want)
        #expect(err <= 1e-4 * range(want), "max abs err \(err), range \(range(want))")
    }

    @Test func missingTensorIsACheckpointError() throws {
        let c = try VAEFixtures.config
        #expect(throws: CheckpointError.self) { _ = try AutoencoderKL(config: c, canonical: [:]) }
    }
}

@Suite struct TiledVAETests {
    /// 512x768 image: tiled encode (2x3 tiles of 256 px cores, 120 px padding) vs untiled.
    @Test func tiledEncodeMatchesUntiled512x768() throws {
        let m = try VAEFixtures.model("diffusers")
        let img = testImage(height: 512, width: 768, seed: 11)
        let full = try m.encode(img)
        let tiled = try m.encode(img, tiling: VAETiling(tileSize: 256, attention: .global))
        let err = tiled.maxAbsDifference(full)
        #expect(err <= 1e-3 * range(full), "max abs diff \(err), range \(range(full))")
    }

    /// The 512x768 decode case, computed once and shared by the decode tests below.
    static let decodeCase: (model: AutoencoderKL, latent: Tensor, full: Tensor) = {
        let m = try! VAEFixtures.model("diffusers")
        let z = randomLatent([1, 16, 64, 96], seed: 21)
        return (m, z, try! m.decode(z))
    }()

    @Test func tiledDecodeMatchesUntiled512x768() throws {
        let (m, z, full) = Self.decodeCase
        let tiled = try m.decode(z, tiling: VAETiling(tileSize: 32, attention: .global))
        #expect(tiled.shape == [1, 3, 512, 768])
        let err = tiled.maxAbsDifference(full)
        #expect(err <= 1e-3 * range(full), "max abs diff \(err), range \(range(full))")
    }

    /// Control: attention restricted to each padded tile (the multidiffusion-upscaler approximation) is detectably
    /// different at the same bound, so the exact-match tests above are sensitive to the tiling.
    @Test func perTileAttentionIsAnApproximationTheBoundDetects() throws {
        let (m, z, full) = Self.decodeCase
        let tiled = try m.decode(z, tiling: VAETiling(tileSize: 32, attention: .perTile))
        #expect(tiled.maxAbsDifference(full) > 1e-3 * range(full))
    }

    /// Control: per-tile GroupNorm statistics (naive tiling) break the bound by far.
    @Test func perTileStatisticsWouldNotPass() throws {
        let (m, z, full) = Self.decodeCase
        let tiled = try m.decode(z, tiling: VAETiling(tileSize: 32, attention: .global, sharedStatistics: false))
        #expect(tiled.maxAbsDifference(full) > 1e-2 * range(full))
    }

    @Test func diskTileStorageGivesTheSameResultAsMemory() throws {
        let m = try VAEFixtures.model("bfl")
        let z = randomLatent([1, 16, 12, 20], seed: 7)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vae-disk-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let mem = try m.decode(z, tiling: VAETiling(tileSize: 8, attention: .perTile))
        let disk = try m.decode(z, tiling: VAETiling(tileSize: 8, attention: .perTile, storage: .disk(dir)))
        #expect(mem.maxAbsDifference(disk) == 0)
        // Spilling: a budget of a few tile states keeps some in memory and writes the rest; a large one never
        // touches the disk (no scratch folder is made).
        for budget in [0, 200_000, 1 << 30] {
            let spill = try m.decode(z, tiling: VAETiling(tileSize: 8, attention: .perTile,
                                                          storage: .spill(dir, memoryBytes: budget)))
            #expect(mem.maxAbsDifference(spill) == 0, "budget \(budget)")
        }
        // Encode too (its resnets store a state whose residual is the tile's own activations: written once).
        let x = randomLatent([1, 3, 64, 96], seed: 8)
        let memE = try m.encode(x, tiling: VAETiling(tileSize: 32, attention: .perTile))
        let diskE = try m.encode(x, tiling: VAETiling(tileSize: 32, attention: .perTile, storage: .disk(dir)))
        #expect(memE.maxAbsDifference(diskE) == 0)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(leftovers.isEmpty, "scratch directories left: \(leftovers)")
    }

    @Test func tilePlanCoversImageWithAlignedCores() throws {
        let m = try VAEFixtures.model("bfl")
        let ex = VAEExecutor(model: m, ops: m.encoderOps, tiling: VAETiling(tileSize: 64), alignment: 8)
        let tiles = try ex.plan(height: 200, width: 136)
        #expect(tiles.reduce(0) { $0 + $1.core.area } == 200 * 136)
        for t in tiles {
            #expect(t.core.y % 8 == 0 && t.core.x % 8 == 0 && t.padded.y % 8 == 0 && t.padded.x % 8 == 0)
            #expect(t.padded.y <= t.core.y && t.padded.y + t.padded.h >= t.core.y + t.core.h)
        }
        #expect(throws: VAEError.self) { _ = try m.encode(Tensor(zeros: [1, 3, 20, 24]), tiling: VAETiling(tileSize: 8)) }
    }
}
