import DreamsrApp
import Foundation
import Imaging
import Jobs
import Raster
import Tensor
import Testing
import Upscaling

/// Issue 17 items 4-5 and issue 13 item 3: the habits of upscaler users (folder input, short flags, skip-existing,
/// `<stem>_x<scale>` names, exit codes in --help, --version, --tta) and one upscale path (the pipeline's configured
/// quality reaches the encoder). Process runs use tiny images, so each costs a model load and a few tiles.
@Suite(.serialized, .timeLimit(.minutes(5))) struct UpscaleCLIHabitsTests {
    private func writeImage(_ path: String, width: Int = 16, height: Int = 10, format: ImageFormat = .png) throws {
        try ImageCodec.initialize()
        var img = PlanarImage(width: width, height: height, channels: 3)
        for c in 0..<3 { for y in 0..<height { for x in 0..<width {
            img[c, y, x] = 0.5 + 0.4 * sin(Float(x * 5 + y * 3 + c * 7) * 0.21)
        } } }
        try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: format, quality: 90, to: path)
    }

    private func run(_ args: [String], in dir: String) async throws -> (status: Int32, text: String) {
        let log = dir + "/log-\(UUID().uuidString).txt"
        let p = try Daemon.start(args, log: log)
        defer { if p.isRunning { p.terminate() } }
        let status = try await Daemon.waitForExit(p)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        try? FileManager.default.removeItem(atPath: log)
        return (status, text)
    }

    private func size(_ path: String) throws -> [Int] {
        let h = try ImageCodec.probe(path: path, limits: ImageLimits())
        return [h.width, h.height]
    }

    @Test func folderInputRecursiveNamesOutputsWithTheScaleAndSkipExistingKeepsWhatIsThere() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/in/sub", withIntermediateDirectories: true)
        try writeImage(dir + "/in/a.png")
        try writeImage(dir + "/in/b.jpg", width: 12, height: 12, format: .jpeg)
        try writeImage(dir + "/in/sub/c.png", width: 10, height: 8)
        try writeImage(dir + "/in/.hidden.png")
        try Data("notes".utf8).write(to: URL(fileURLWithPath: dir + "/in/notes.txt"))

        // Without --recursive: the folder's own images only.
        var r = try await run(["upscale", "-i", dir + "/in", "-o", dir + "/flat", "-s", "2", "-t", "64", "-j", "1:1:1"], in: dir)
        #expect(r.status == 0, "\(r.text)")
        #expect(listing(dir + "/flat") == ["a_x2.png", "b_x2.jpg"])
        #expect(try size(dir + "/flat/a_x2.png") == [32, 20])

        r = try await run(["upscale", "-i", dir + "/in", "--recursive", "-o", dir + "/out"], in: dir)
        #expect(r.status == 0, "\(r.text)")
        #expect(listing(dir + "/out") == ["a_x4.png", "b_x4.jpg", "sub"])
        #expect(listing(dir + "/out/sub") == ["c_x4.png"])
        #expect(try size(dir + "/out/sub/c_x4.png") == [40, 32])
        #expect(try ImageCodec.probe(path: dir + "/out/b_x4.jpg", limits: ImageLimits()).format.contains("jpeg"))

        // --skip-existing: an existing output is left as it is (even one that is not an image), a missing one made.
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: dir + "/out/a_x4.png"))
        try FileManager.default.removeItem(atPath: dir + "/out/sub/c_x4.png")
        r = try await run(["upscale", "-i", dir + "/in", "--recursive", "-o", dir + "/out", "--skip-existing"], in: dir)
        #expect(r.status == 0, "\(r.text)")
        #expect(FileManager.default.contents(atPath: dir + "/out/a_x4.png") == Data("keep me".utf8))
        #expect(try size(dir + "/out/sub/c_x4.png") == [40, 32])
        #expect(r.text.split(separator: "\n").filter { $0.hasSuffix("exists: skipped") }.count == 2, "\(r.text)")

        // A mirrored subfolder that is a symlink out of the output folder is refused; nothing is written through it.
        try FileManager.default.createDirectory(atPath: dir + "/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/linked", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/linked/sub", withDestinationPath: dir + "/elsewhere")
        r = try await run(["upscale", "-i", dir + "/in", "--recursive", "-o", dir + "/linked"], in: dir)
        #expect(r.status == 64, "\(r.text)")
        #expect(r.text.contains("is a symlink: refusing to write outputs through it"), "\(r.text)")
        #expect(listing(dir + "/elsewhere") == [])
        #expect(listing(dir + "/linked") == ["sub"])
    }

    @Test func folderModeNeverReplacesAnInputAndLimitErrorsNameTheFlags() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/in", withIntermediateDirectories: true)
        try writeImage(dir + "/in/a.png")
        let before = FileManager.default.contents(atPath: dir + "/in/a.png")
        for args in [["-i", dir + "/in", "-o", dir + "/in", "--suffix", ""],
                     ["-i", dir + "/in", "-o", dir + "/in", "--suffix", "", "--overwrite"],
                     ["-i", dir + "/in", "-o", dir + "/in/", "--suffix", "", "-f", "png"]] {
            let r = try await run(["upscale"] + args, in: dir)
            #expect(r.status == 64, "\(args): \(r.text)")
            #expect(r.text.split(separator: "\n").filter { $0.hasPrefix("dreamsr: error:") }.count == 1, "\(r.text)")
            #expect(FileManager.default.contents(atPath: dir + "/in/a.png") == before, "an input was changed")
        }
        #expect(listing(dir + "/in") == ["a.png"])

        let r = try await run(["upscale", dir + "/in/a.png", "-o", dir + "/out.png", "--max-megapixels", "0.0001"], in: dir)
        #expect(r.status == 1)
        #expect(r.text.contains("raise it with --max-megapixels"), "\(r.text)")
        for (args, flag) in [(["-t", "32", "--overlap", "16"], "--overlap"), (["-t", "4"], "--tile"), (["--tile-pad", "-1"], "--tile-pad")] {
            let bad = try await run(["upscale", dir + "/in/a.png", "-o", dir + "/out.png"] + args, in: dir)
            #expect(bad.status == 64 && bad.text.contains(flag), "\(args): \(bad.text)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.png"))
    }

    @Test func shortFlagsOfRealesrganNcnnVulkanAndTTA() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/a.png", width: 24, height: 14)
        let model = try Daemon.modelsDir() + "/realesrgan-x4plus"
        let r = try await run(["upscale", "-i", dir + "/a.png", "-o", dir + "/a.out", "-f", "jpeg", "-s", "3", "-t", "32",
                               "-n", model, "-x", "-j", "2"], in: dir)
        #expect(r.status == 0, "\(r.text)")
        let h = try ImageCodec.probe(path: dir + "/a.out", limits: ImageLimits())
        #expect([h.width, h.height] as [Int] == [72, 42] as [Int] && h.format.contains("jpeg"))
        #expect(r.text.contains(dir + "/a.png -> ") && r.text.contains(", tta, "), "\(r.text)")
        let m = try await run(["upscale", "-i", dir + "/a.png", "-o", dir + "/b.png", "-m", dir + "/no-model"], in: dir)
        #expect(m.status == 2 && m.text.contains("scripts/fetch-models.sh"), "\(m.text)")
    }

    @Test func versionAndHelpStateExitCodesAndTheTTACost() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let v = try await run(["--version"], in: dir)
        #expect(v.status == 0 && v.text.hasPrefix("dreamsr \(BuildInfo.version) ("), "\(v.text)")
        let h = try await run(["upscale", "--help"], in: dir)
        #expect(h.status == 0)
        let help = h.text.replacingOccurrences(of: "\n", with: " ").split(separator: " ").joined(separator: " ")
        for phrase in ["Exit status: 0 all inputs upscaled", "1 at least one input failed", "2 the model or pipeline could not",
                       "64 usage error", "about 8 times as long", "--skip-existing", "--recursive", "-x, --tta", "-i, --input",
                       "-s, --scale", "-t, --tile", "-f, --format", "-m, -n, --model"] {
            #expect(help.contains(phrase), "--help lacks \(phrase)")
        }
    }

    /// Issue 13 item 3: the encode stage's configured quality is what the encoder gets (it was hard-coded to 92).
    @Test func thePipelinesConfiguredQualityReachesTheEncoder() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/in.png", width: 40, height: 30)
        var sizes: [Int: Int] = [:]
        for q in [20, 95] {
            let yaml = PipelineDefinition.builtInRealESRGANYAML.replacingOccurrences(
                of: "  - stage: encode\n", with: "  - stage: encode\n    quality: \(q)\n")
            let def = try PipelineDefinition.parse(yaml: yaml, file: "q.yaml")
            #expect(def.stage(.encode)?.quality == q)
            let config = try DaemonConfig.parse(yaml: "{}", file: "<test>", baseDirectory: dir, env: [:])
            let runner = PipelineRunner(definition: def, config: config,
                                        factory: ImagePipelineFactory(loadRestorer: { _ in NearestX4Restorer() }))
            let o = try #require(try await runner.run([JobRequest(id: JobID("q\(q)"), source: .file(dir + "/in.png"),
                                                                  output: dir + "/q\(q).jpg", format: "jpeg")]).first)
            #expect(o.status == .ok, "\(o.errorMessage ?? "")")
            sizes[q] = try FileManager.default.attributesOfItem(atPath: dir + "/q\(q).jpg")[.size] as? Int
        }
        let low = try #require(sizes[20]), high = try #require(sizes[95])
        #expect(low * 2 < high, "quality 20 gave \(low) bytes, 95 gave \(high)")
        #expect(throws: (any Error).self) {
            try PipelineDefinition.parse(yaml: PipelineDefinition.builtInRealESRGANYAML.replacingOccurrences(
                of: "  - stage: encode\n", with: "  - stage: encode\n    quality: 101\n"), file: "bad.yaml")
        }
    }

    /// A restorer that counts its calls (thread-safe), for the daemon's `tta` key.
    final class CountingRestorer: TileRestorer, @unchecked Sendable {
        let base = NearestX4Restorer()
        private let lock = NSLock()
        private var n = 0
        var calls: Int { lock.withLock { n } }
        var scale: Int { base.scale }
        var name: String { base.name }
        func restore(_ tile: Tensor) throws -> Tensor {
            lock.withLock { n += 1 }
            return try base.restore(tile)
        }
    }

    /// The pipeline keys of this work: `tta` runs 8 model calls per tile in the daemon's restore stage (same pixels
    /// for a symmetric restorer), `metadata: strip` parses, misplaced keys are refused naming the key.
    @Test func pipelineKeysTTAAndMetadataAndMisplacedOnesAreRefused() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/in.png", width: 80, height: 60)
        var outputs: [Bool: PlanarImage] = [:]
        var calls: [Bool: Int] = [:]
        for tta in [false, true] {
            let yaml = PipelineDefinition.builtInRealESRGANYAML.replacingOccurrences(
                of: "    tile: 192\n", with: "    tile: 40\n" + (tta ? "    tta: true\n" : ""))
            let def = try PipelineDefinition.parse(yaml: yaml, file: "t.yaml")
            #expect(def.stage(.restore)?.tta == tta && def.stage(.restore)?.tileSize == 40)
            let restorer = CountingRestorer()
            let config = try DaemonConfig.parse(yaml: "{}", file: "<test>", baseDirectory: dir, env: [:])
            let runner = PipelineRunner(definition: def, config: config,
                                        factory: ImagePipelineFactory(loadRestorer: { _ in restorer }))
            let o = try #require(try await runner.run([JobRequest(id: JobID("t"), source: .file(dir + "/in.png"),
                                                                  output: dir + "/t\(tta).png")]).first)
            #expect(o.status == .ok, "\(o.errorMessage ?? "")")
            outputs[tta] = try ImageCodec.decode(path: dir + "/t\(tta).png").color
            calls[tta] = restorer.calls
        }
        let plainCalls = try #require(calls[false]), ttaCalls = try #require(calls[true])
        #expect(plainCalls > 1 && ttaCalls == 8 * plainCalls, "\(plainCalls) plain, \(ttaCalls) tta calls")
        #expect(outputs[false]?.pixels == outputs[true]?.pixels, "nearest x4 commutes with the 8 orientations")

        let stripped = try PipelineDefinition.parse(yaml: PipelineDefinition.builtInRealESRGANYAML + "metadata: strip\n", file: "s.yaml")
        #expect(!stripped.keepMetadata)
        #expect(try PipelineDefinition.parse(yaml: PipelineDefinition.builtInRealESRGANYAML, file: "k.yaml").keepMetadata)
        for (bad, key) in [("  - stage: encode\n", "  - stage: encode\n    tta: true\n"),
                           ("  - stage: decode\n", "  - stage: decode\n    quality: 80\n"),
                           ("metadata: strip", "metadata: drop")] {
            let yaml = bad == "metadata: strip" ? PipelineDefinition.builtInRealESRGANYAML + "metadata: drop\n"
                : PipelineDefinition.builtInRealESRGANYAML.replacingOccurrences(of: bad, with: key)
            #expect(throws: (any Error).self, "\(key)") { try PipelineDefinition.parse(yaml: yaml, file: "bad.yaml") }
        }
    }

    /// --tta with the real model: not the plain output, but close to it; prints the measured time ratio.
    @Test func ttaOfTheRealModelDiffersFromPlainButStaysClose() throws {
        let sample = repoRoot + "/samples/astronaut.png"
        guard FileManager.default.fileExists(atPath: sample) else {
            Issue.record("sample photo missing: run scripts/fetch-samples.sh")
            return
        }
        try ImageCodec.initialize()
        let photo = try ImageCodec.decode(path: sample, limits: ImageLimits())
        let crop = photo.color.cropped(to: PixelRect(x: 180, y: 60, width: 32, height: 32))
        let lr = DecodedImage(color: crop, alpha: nil, bitDepth: 8, isGrey: false, sourceFormat: "png", header: photo.header)
        let restorer = try RealESRGANRestorer(modelPath: try Daemon.modelsDir())
        let clock = ContinuousClock()
        var plain = PlanarImage(width: 1, height: 1, channels: 3), tta = plain
        let tPlain = try clock.measure { plain = try ImageUpscaler(restorer: restorer, options: UpscaleOptions()).restore(lr) }
        let tTTA = try clock.measure { tta = try ImageUpscaler(restorer: restorer, options: UpscaleOptions(tta: true)).restore(lr) }
        let diffs = zip(plain.pixels, tta.pixels).map { Double(abs($0 - $1)) }
        let maxDiff = diffs.max() ?? 0, meanDiff = diffs.reduce(0, +) / Double(diffs.count)
        print("tta vs plain on a 32x32 crop: mean abs \(meanDiff), max abs \(maxDiff); time \(tTTA / tPlain)x")
        #expect([tta.width, tta.height] as [Int] == [128, 128] as [Int])
        #expect(maxDiff > 2.0 / 255, "TTA should change the output (max abs \(maxDiff))")
        #expect(meanDiff < 0.02, "TTA should stay close to the plain output (mean abs \(meanDiff))")
    }

    private func mean(_ img: PlanarImage, x: Int, y: Int, radius: Int = 2) -> [Float] {
        (0..<3).map { c in
            var sum: Float = 0
            for yy in (y - radius)...(y + radius) { for xx in (x - radius)...(x + radius) { sum += img[c, yy, xx] } }
            return sum / Float((2 * radius + 1) * (2 * radius + 1))
        }
    }

    private func close(_ a: [Float], _ b: [Float], _ tolerance: Float) -> Bool {
        zip(a, b).allSatisfy { abs($0 - $1) <= tolerance }
    }

    /// EXIF (orientation + GPS), XMP and IPTC reach the output, orientation reset to 1 (pixels upright, turned once);
    /// `--strip` drops them all.
    @Test func exifGPSXMPAndIPTCAreKeptByDefaultAndStrippedOnRequest() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = repoRoot + "/Tests/Fixtures/imaging/exif-orient6-gps-xmp-iptc-16x8.jpg"
        #expect(try ImageCodec.metadataField(path: input, name: "exif-ifd0-Orientation")?.hasPrefix("6") == true)
        for out in ["out.jpg", "out.png"] {
            let r = try await run(["upscale", input, "-o", dir + "/" + out], in: dir)
            #expect(r.status == 0, "\(r.text)")
            let path = dir + "/" + out
            #expect(try size(path) == [32, 64], "turned upright once (stored 16x8, orientation 6)")
            #expect(try ImageCodec.metadataField(path: path, name: "exif-ifd0-Orientation")?.hasPrefix("1") == true, "\(out)")
            #expect(try ImageCodec.metadataField(path: path, name: "exif-ifd3-GPSLatitudeRef")?.hasPrefix("N") == true, "\(out)")
            #expect(try ImageCodec.metadataField(path: path, name: "exif-ifd3-GPSLatitude")?.hasPrefix("48/1 51/1 30/1") == true, "\(out)")
            let m = try ImageCodec.metadata(path: path)
            #expect(m.xmp.map { String(decoding: $0, as: UTF8.self).contains("dreamsr-xmp-marker") } == true, "\(out)")
            if out.hasSuffix(".jpg") {
                #expect(m.iptc.map { String(decoding: $0, as: UTF8.self).contains("dreamsr-iptc-marker") } == true)
            }
            let px = try ImageCodec.decode(path: path).color
            #expect(close(mean(px, x: 16, y: 12), [1, 0, 0], 0.1), "red on top: \(mean(px, x: 16, y: 12))")
            #expect(close(mean(px, x: 16, y: 52), [0, 0, 1], 0.1), "blue below: \(mean(px, x: 16, y: 52))")
        }
        let r = try await run(["upscale", input, "-o", dir + "/stripped.jpg", "--strip"], in: dir)
        #expect(r.status == 0, "\(r.text)")
        #expect(try ImageCodec.metadata(path: dir + "/stripped.jpg").isEmpty)
        #expect(try size(dir + "/stripped.jpg") == [32, 64])
    }

    /// A Display P3 JPEG stays in P3 (same profile, same numbers) instead of being flattened to sRGB; a 16-bit P3 PNG
    /// stays 16-bit with its profile and XMP. With --strip the output is sRGB without a profile, same colours seen.
    @Test func wideGamutInputsKeepTheirProfileAndSixteenBitsStay() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p3 = repoRoot + "/Tests/Fixtures/imaging/p3-quads-16x24.jpg"
        var r = try await run(["upscale", p3, "-o", dir + "/p3.png"], in: dir)
        #expect(r.status == 0, "\(r.text)")
        let inICC = try #require(try ImageCodec.metadata(path: p3).icc)
        #expect(try ImageCodec.metadata(path: dir + "/p3.png").icc == inICC, "the P3 profile goes with the output")
        let inRaw = try ImageCodec.decode(path: p3, keepMetadata: true).color
        let outRaw = try ImageCodec.decode(path: dir + "/p3.png", keepMetadata: true).color
        let tlIn = mean(inRaw, x: 4, y: 6), tlOut = mean(outRaw, x: 16, y: 24)
        #expect(!close(tlIn, [1, 0, 0], 0.1), "the fixture's red is stored as P3 numbers: \(tlIn)")
        #expect(close(tlOut, tlIn, 0.05), "P3 numbers kept: in \(tlIn), out \(tlOut)")
        let seenIn = mean(try ImageCodec.decode(path: p3).color, x: 4, y: 6)
        let seenOut = mean(try ImageCodec.decode(path: dir + "/p3.png").color, x: 16, y: 24)
        #expect(close(seenOut, seenIn, 0.05), "the same red is seen: in \(seenIn), out \(seenOut)")

        r = try await run(["upscale", p3, "-o", dir + "/srgb.png", "--strip"], in: dir)
        #expect(r.status == 0, "\(r.text)")
        #expect(try ImageCodec.metadata(path: dir + "/srgb.png").icc == nil)
        #expect(close(mean(try ImageCodec.decode(path: dir + "/srgb.png").color, x: 16, y: 24), seenIn, 0.05))

        let png16 = repoRoot + "/Tests/Fixtures/imaging/p3-16bit-xmp-12x8.png"
        r = try await run(["upscale", png16, "-o", dir + "/o16.png"], in: dir)
        #expect(r.status == 0, "\(r.text)")
        let h = try ImageCodec.probe(path: dir + "/o16.png", limits: ImageLimits())
        #expect(h.bitDepth == 16 && [h.width, h.height] as [Int] == [48, 32] as [Int])
        let m = try ImageCodec.metadata(path: dir + "/o16.png")
        let icc16 = try ImageCodec.metadata(path: png16).icc
        #expect(m.icc == icc16 && m.icc != nil)
        #expect(m.xmp.map { String(decoding: $0, as: UTF8.self).contains("dreamsr-xmp-marker") } == true)
    }
}
