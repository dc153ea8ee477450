#if canImport(Glibc)
import Glibc
#endif
import DreamsrApp
import Foundation
import Imaging
import Raster
import Testing
import Upscaling

/// `dreamsr upscale` as a user runs it, and the quality of the default model against plain resampling.
/// Needs the built binary, ./models (scripts/fetch-models.sh) and ./samples (scripts/fetch-samples.sh).
@Suite(.timeLimit(.minutes(10))) struct UpscaleCommandTests {
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

/// Issue 12 items 5, 6 and 14: where `dreamsr upscale` refuses to write, and the discipline of its output lines and
/// exit codes. Refusals happen before the model loads, so most of these runs take a process start only.
@Suite(.timeLimit(.minutes(3))) struct UpscaleCommandSafetyTests {
    private func writeImage(_ path: String, width: Int = 16, height: Int = 10, format: ImageFormat = .png) throws {
        try ImageCodec.initialize()
        var img = PlanarImage(width: width, height: height, channels: 3)
        var seed: UInt32 = 12345
        for c in 0..<3 { for y in 0..<height { for x in 0..<width {
            seed = seed &* 1_103_515_245 &+ 12345
            img[c, y, x] = Float((seed >> 16) & 0xFF) / 255
        } } }
        try ImageCodec.encode(color: img, alpha: nil, bitDepth: 8, grey: false, format: format, quality: 90, to: path)
    }

    private func run(_ args: [String], in dir: String) async throws -> (status: Int32, lines: [String]) {
        let log = dir + "/log-\(UUID().uuidString).txt"
        let p = try Daemon.start(["upscale"] + args, log: log)
        defer { if p.isRunning { p.terminate() } }
        let status = try await Daemon.waitForExit(p)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        try? FileManager.default.removeItem(atPath: log)
        return (status, text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init))
    }

    private func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    @Test func anOutputThatIsAnInputIsRefusedBeforeAnyWorkUnlessOverwrite() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/a.png")
        try writeImage(dir + "/b.png", width: 12, height: 12)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.png", withDestinationPath: dir + "/a.png")
        try FileManager.default.createDirectory(atPath: dir + "/x", withIntermediateDirectories: true)
        try writeImage(dir + "/x/b.jpg", format: .jpeg)
        try FileManager.default.createDirectory(atPath: dir + "/y", withIntermediateDirectories: true)
        try FileManager.default.linkItem(atPath: dir + "/b.png", toPath: dir + "/y/bee.png")
        let a = bytes(dir + "/a.png"), b = bytes(dir + "/b.png")

        let cases: [(String, [String])] = [
            ("-o is the input", [dir + "/a.png", "-o", dir + "/a.png"]),
            ("-o is a symlink to the input", [dir + "/a.png", "-o", dir + "/link.png"]),
            ("-o is the input by another spelling", [dir + "/a.png", "-o", dir + "/x/../a.png"]),
            ("a folder of inputs into itself", [dir + "/a.png", dir + "/b.png", "-o", dir]),
            // x/b.jpg -> DIR/b.png, which is the second input (y/bee.png is a hard link of it): never allowed.
            ("an output replacing another input", [dir + "/x/b.jpg", dir + "/y/bee.png", "-o", dir, "--format", "png", "--overwrite"]),
            ("two inputs, one output", [dir + "/b.png", dir + "/x/b.jpg", "-o", dir + "/out", "--format", "png"]),
        ]
        for (what, args) in cases {
            let r = try await run(args, in: dir)
            #expect(r.status == 64, "\(what): exit \(r.status)\n\(r.lines.joined(separator: "\n"))")
            let errors = r.lines.filter { $0.hasPrefix("dreamsr: error:") }
            #expect(errors.count == 1, "\(what): \(r.lines)")
            #expect(bytes(dir + "/a.png") == a && bytes(dir + "/b.png") == b, "\(what): an input was changed")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/out/b.png"))
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/link.png")
        #expect(link == dir + "/a.png")

        // --overwrite: the one input is replaced by its own upscaled version.
        let r = try await run([dir + "/a.png", "-o", dir + "/a.png", "--overwrite"], in: dir)
        #expect(r.status == 0, "\(r.lines)")
        let h = try ImageCodec.probe(path: dir + "/a.png", limits: ImageLimits())
        #expect([h.width, h.height] as [Int] == [64, 40] as [Int])
    }

    @Test func aFIFOADeviceOrAFolderIsNeverReplacedByAnOutput() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/a.png")
        try writeImage(dir + "/b.png")
        #expect(mkfifo(dir + "/fifo.png", 0o644) == 0)
        try FileManager.default.createSymbolicLink(atPath: dir + "/null.png", withDestinationPath: "/dev/null")
        try FileManager.default.createDirectory(atPath: dir + "/out/a.png", withIntermediateDirectories: true)

        for (what, args) in [
            ("a FIFO", [dir + "/a.png", "-o", dir + "/fifo.png"]),
            ("a symlink to a device", [dir + "/a.png", "-o", dir + "/null.png"]),
            ("a folder where an output goes", [dir + "/a.png", dir + "/b.png", "-o", dir + "/out"]),
        ] {
            let r = try await run(args, in: dir)
            #expect(r.status == 64, "\(what): exit \(r.status)\n\(r.lines.joined(separator: "\n"))")
            #expect(r.lines.filter { $0.hasPrefix("dreamsr: error:") }.count == 1, "\(what): \(r.lines)")
        }
        var st = stat()
        #expect(lstat(dir + "/fifo.png", &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO, "the FIFO is still a FIFO")
        #expect(lstat(dir + "/null.png", &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK, "the link is still a link")
        #expect(stat(dir + "/out/a.png", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR)
        #expect(!FileManager.default.fileExists(atPath: dir + "/out/b.png"), "refused before any work")
    }

    /// Regression guard (the temporary-name-then-rename write already behaved so): a symlink at an output name is
    /// replaced by the output, the file it pointed to outside the folder is untouched.
    @Test func aSymlinkAtAnOutputNameIsReplacedNeverWrittenThrough() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/a.png")
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/elsewhere", withIntermediateDirectories: true)
        try Data("precious".utf8).write(to: URL(fileURLWithPath: dir + "/elsewhere/target.png"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/out/a.png", withDestinationPath: dir + "/elsewhere/target.png")
        let r = try await run([dir + "/a.png", "-o", dir + "/out"], in: dir)
        #expect(r.status == 0, "\(r.lines)")
        #expect(bytes(dir + "/elsewhere/target.png") == Data("precious".utf8))
        var st = stat()
        #expect(lstat(dir + "/out/a.png", &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG)
        #expect(listing(dir + "/elsewhere") == ["target.png"])
    }

    @Test func badInputsAreReportedBeforeTheModelLoadsOneQuotedLineEach() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let evil = dir + "/evil\ndreamsr: error: forged.png"
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: evil))
        try Data("text".utf8).write(to: URL(fileURLWithPath: dir + "/c.jpg"))
        // The model folder does not exist: had it been loaded first, the exit status would be 2.
        let r = try await run([evil, dir + "/c.jpg", dir + "/missing.png", "-o", dir + "/out", "--model", dir + "/no-model"],
                              in: dir)
        #expect(r.status == 1, "\(r.lines)")
        let errors = r.lines.filter { $0.hasPrefix("dreamsr: error:") }
        #expect(errors.count == 3, "one line per bad input, no forged line: \(r.lines)")
        #expect(errors.contains { $0.contains("\"" + dir + "/evil\\ndreamsr: error: forged.png\"") }, "\(errors)")
        #expect(!r.lines.contains { $0.contains("fetch-models") }, "the model was never loaded: \(r.lines)")
        #expect(listing(dir + "/out").isEmpty)
    }

    @Test func libvipsWarningsNeverReachStderrOnTheirOwn() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/whole.jpg", width: 64, height: 64, format: .jpeg)
        let data = try #require(bytes(dir + "/whole.jpg"))
        try data.prefix(data.count * 2 / 3).write(to: URL(fileURLWithPath: dir + "/cut.jpg"))
        let r = try await run([dir + "/cut.jpg", "-o", dir + "/out.png"], in: dir)
        #expect(!r.lines.contains { $0.contains("VIPS-WARNING") || $0.contains("WARNING **") }, "\(r.lines)")
        // Every line is ours: a result, a progress line, or one error line.
        for line in r.lines {
            #expect(line.hasPrefix("dreamsr: error: ") || line.hasPrefix("\"cut.jpg\"") || line.hasPrefix(dir + "/cut.jpg -> "),
                    "stray line: \(line)")
        }
    }

    @Test func usageErrorsExit64AndHelpDocumentsTheExitCodes() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage(dir + "/a.png")
        for args in [[dir + "/a.png", "-o", dir + "/o.png", "--scale", "16"],
                     [dir + "/a.png", "-o", dir + "/o.png", "--scale", "0"],
                     [dir + "/a.png", "-o", dir + "/o.png", "--scale", "2.5"],
                     [dir + "/a.png", "-o", dir + "/o.png", "--quality", "0"],
                     [dir + "/a.png"]] {
            let r = try await run(args, in: dir)
            #expect(r.status == 64, "\(args): exit \(r.status) \(r.lines)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/o.png"))
        let help = try await run(["--help"], in: dir)
        let text = help.lines.joined(separator: " ").split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for code in ["0 all inputs", "1 at least one input failed", "2 the model", "64 usage error"] {
            #expect(text.contains(code), "--help must document exit status \(code): \(text)")
        }
    }
}

