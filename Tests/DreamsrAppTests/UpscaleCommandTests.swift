import DreamsrApp
import Foundation
import Imaging
import Raster
import Testing
import Upscaling

/// `dreamsr upscale` as a user runs it, and the quality of the default model against plain resampling.
/// Needs the built binary, ./models (scripts/fetch-models.sh) and ./samples (scripts/fetch-samples.sh).
@Suite struct UpscaleCommandTests {
    private func writeImage(_ path: String, width: Int, height: Int, seed: Int) throws {
        try ImageCodec.initialize()
        var img = PlanarImage(width: width, height: height, channels: 3)
        for c in 0..<3 { for y in 0..<height { for x in 0..<width {
            img[c, y, x] = 0.5 + 0.4 * sin(Float(x * (seed + 1) + y * 3 + c * 7) * 0.21)
        } } }
        try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: path)
    }

    @Test func manyInputsGoToAFolderAndABadOneFailsAloneWithOneErrorLine() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/a.png", width: 20, height: 12, seed: 1)
        try writeImage(dir + "/b.png", width: 9, height: 14, seed: 2)
        try Data("this is text, not a JPEG".utf8).write(to: URL(fileURLWithPath: dir + "/c.jpg"))
        let log = dir + "/log.txt"
        let p = try Daemon.start(["upscale", dir + "/a.png", dir + "/c.jpg", dir + "/b.png", "-o", dir + "/out"], log: log)
        let status = try await Daemon.waitForExit(p)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(status == 1, "exit status must say that an input failed\n\(text)")
        #expect(listing(dir + "/out") as [String] == ["a.png", "b.png"] as [String])
        let a = try ImageCodec.probe(path: dir + "/out/a.png", limits: ImageLimits())
        let b = try ImageCodec.probe(path: dir + "/out/b.png", limits: ImageLimits())
        #expect([a.width, a.height, b.width, b.height] as [Int] == [80, 48, 36, 56] as [Int])
        let errors = text.split(separator: "\n").filter { $0.hasPrefix("dreamsr: error:") }
        #expect(errors.count == 1)
        #expect(errors.first?.contains("c.jpg") == true)
    }

    @Test func oneInputToAFileWithScaleAndFormat() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/in.png", width: 16, height: 10, seed: 3)
        let log = dir + "/log.txt"
        let p = try Daemon.start(["upscale", dir + "/in.png", "-o", dir + "/x2.jpg", "--scale", "2", "--quality", "80"],
                                 log: log)
        #expect(try await Daemon.waitForExit(p) == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let h = try ImageCodec.probe(path: dir + "/x2.jpg", limits: ImageLimits())
        #expect([h.width, h.height] as [Int] == [32, 20] as [Int])
        #expect(h.format.contains("jpeg"))
    }

    @Test func missingModelIsAClearErrorNamingTheFetchScript() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/in.png", width: 8, height: 8, seed: 4)
        let log = dir + "/log.txt"
        let p = try Daemon.start(["upscale", dir + "/in.png", "-o", dir + "/out.png", "--model", dir + "/nothing"], log: log)
        #expect(try await Daemon.waitForExit(p) != 0)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("scripts/fetch-models.sh"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.png"))
    }

    /// Mean absolute Laplacian of the luminance: fine detail the upscaler recovered.
    private func detail(_ img: PlanarImage) -> Double {
        var sum = 0.0
        for y in 1..<(img.height - 1) { for x in 1..<(img.width - 1) {
            func l(_ yy: Int, _ xx: Int) -> Double {
                Double(0.299 * img[0, yy, xx] + 0.587 * img[1, yy, xx] + 0.114 * img[2, yy, xx])
            }
            sum += abs(4 * l(y, x) - l(y - 1, x) - l(y + 1, x) - l(y, x - 1) - l(y, x + 1))
        } }
        return sum / Double((img.width - 2) * (img.height - 2))
    }

    @Test func realESRGANIsSharperThanLanczos() throws {
        let sample = repoRoot + "/samples/astronaut.png"
        guard FileManager.default.fileExists(atPath: sample) else {
            Issue.record("sample photo missing: run scripts/fetch-samples.sh")
            return
        }
        try ImageCodec.initialize()
        let photo = try ImageCodec.decode(path: sample, limits: ImageLimits())
        // The astronaut's face and suit badge: a low-resolution crop of a real photo.
        let crop = photo.color.cropped(to: PixelRect(x: 180, y: 60, width: 64, height: 64))
        let lr = DecodedImage(color: crop, alpha: nil, bitDepth: 8, isGrey: false, sourceFormat: "png", header: photo.header)
        let upscaler = try ImageUpscaler(restorer: try RealESRGANRestorer(modelPath: try Daemon.modelsDir()),
                                         options: UpscaleOptions())
        let ours = try upscaler.restore(lr)
        let lanczos = try ImageCodec.resize(crop, width: 256, height: 256)
        #expect([ours.width, ours.height] as [Int] == [256, 256] as [Int])
        let ratio = detail(ours) / detail(lanczos)
        print("detail ratio Real-ESRGAN / Lanczos3: \(ratio)")
        #expect(ratio > 2.0, "Real-ESRGAN output should carry clearly more fine detail than Lanczos3 (ratio \(ratio))")
        // ... while staying the same picture: low frequencies agree (mean absolute difference of 8x8 block means).
        var diff = 0.0
        for by in 0..<32 { for bx in 0..<32 { for c in 0..<3 {
            var a = 0.0, b = 0.0
            for y in 0..<8 { for x in 0..<8 { a += Double(ours[c, by * 8 + y, bx * 8 + x]); b += Double(lanczos[c, by * 8 + y, bx * 8 + x]) } }
            diff += abs(a - b) / 64
        } } }
        #expect(diff / (32 * 32 * 3) < 0.03)
    }
}
