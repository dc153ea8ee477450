import Foundation
import Raster
import Testing

@testable import Imaging

/// Broken inputs and limits (each a clear ImagingError, no crash), encoders, atomic writes, resize, health.
extension ImagingCodecTests {
    @Suite(.timeLimit(.minutes(10)))
    final class ErrorAndEncodeTests {
        typealias S = ImagingTestSupport
        var dir = ""
        var warnings = WarningLog()

        init() throws {
            try ImageCodec.initialize()
            dir = try S.makeTempDir()
            warnings = WarningLog.install()
        }

        deinit {
            ImageCodec.setWarningHandler(nil)
            try? FileManager.default.removeItem(atPath: dir)
        }

        func path(_ name: String) -> String { "\(dir)/\(name)" }

        func write(_ data: Data, _ name: String) throws -> String {
            let p = path(name)
            try data.write(to: URL(fileURLWithPath: p))
            return p
        }

        // MARK: Broken inputs

        @Test func truncatedJPEGIsCorrupt() throws {
            let full = path("full.jpg")
            try ImageCodec.encode(color: S.noise(width: 128, height: 96), alpha: nil, bitDepth: 8, grey: false,
                                  format: .jpeg, quality: 90, to: full)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: full))
            let cut = try write(bytes.prefix(bytes.count / 2), "cut.jpg")
            let error = assertImagingError(.corrupt) { try ImageCodec.decode(path: cut, limits: .default) }
            #expect((error?.path) == cut)
            #expect(error?.message.contains("Premature end") ?? false, "\(String(describing: error))")
            // The handler is process-wide and a daemon test in another suite may install its own at any moment:
            // a decode that reached another handler is retried (a handler that never gets warnings still fails).
            var reached = !warnings.all.isEmpty
            for _ in 0..<3 where !reached {
                let log = WarningLog.install()
                _ = try? ImageCodec.decode(path: cut, limits: .default)
                reached = !log.all.isEmpty
            }
            #expect(reached, "libvips's own warnings reach the handler, not stderr")
            assertImagingError(.corrupt) { try ImageCodec.decode(data: bytes.prefix(bytes.count / 2), limits: .default) }
        }

        @Test func truncatedPNGIsCorrupt() throws {
            let full = path("full.png")
            try ImageCodec.encode(color: S.noise(width: 128, height: 96), alpha: nil, bitDepth: 8, grey: false,
                                  format: .png, quality: 90, to: full)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: full))
            let cut = try write(bytes.prefix(bytes.count / 2), "cut.png")
            assertImagingError(.corrupt) { try ImageCodec.decode(path: cut, limits: .default) }
        }

        @Test func zeroByteFileIsAClearError() throws {
            let empty = try write(Data(), "empty.jpg")
            let error = assertImagingError(.corrupt) { try ImageCodec.decode(path: empty, limits: .default) }
            #expect(error?.message.contains("empty") ?? false, "\(String(describing: error))")
            assertImagingError(.corrupt) { try ImageCodec.probe(path: empty, limits: .default) }
            assertImagingError(.corrupt) { try ImageCodec.decode(data: Data(), limits: .default) }
        }

        @Test func textFileNamedJPGIsUnsupported() throws {
            let text = try write(Data("hello, I am not a picture\n".utf8), "photo.jpg")
            let error = assertImagingError(.unsupportedFormat) { try ImageCodec.decode(path: text, limits: .default) }
            #expect(error?.description.contains("photo.jpg") ?? false)
            assertImagingError(.unsupportedFormat) { try ImageCodec.probe(path: text, limits: .default) }
        }

        @Test func untrustedFormatsAreRefused() throws {
            // A valid PPM: libvips can read it, but its loader is marked untrusted and dreamsr does not accept it.
            let ppm = try write(Data("P3\n1 1\n255\n255 0 0\n".utf8), "red.ppm")
            assertImagingError(.unsupportedFormat) { try ImageCodec.decode(path: ppm, limits: .default) }
        }

        @Test func missingFileIsNotFound() throws {
            let missing = path("nope.png")
            let error = assertImagingError(.notFound) { try ImageCodec.decode(path: missing, limits: .default) }
            #expect((error?.path) == missing)
            assertImagingError(.notFound) { try ImageCodec.probe(path: missing, limits: .default) }
        }

        @Test func directoryIsNotAnImage() throws {
            assertImagingError(.io) { try ImageCodec.decode(path: dir, limits: .default) }
        }

        // MARK: Limits

        @Test func pNGClaiming100000x100000IsRefusedFromTheHeaderByProbe() throws {
            let huge = try write(S.pngHeaderOnly(width: 100_000, height: 100_000), "huge.png")
            // The header alone is refused: probe never decodes pixels (the file holds none to decode).
            let error = assertImagingError(.tooManyPixels) { try ImageCodec.probe(path: huge, limits: .default) }
            let message = error?.message ?? ""
            #expect(message.contains("100000x100000"), Comment(rawValue: message))
            #expect(message.contains("10000.0 MP"), Comment(rawValue: message))
            #expect(message.contains("50 MP limit"), Comment(rawValue: message))
            #expect(message.contains("--max-megapixels"), Comment(rawValue: message))
            // decode applies the same header check before touching pixels.
            assertImagingError(.tooManyPixels) { try ImageCodec.decode(path: huge, limits: .default) }
            assertImagingError(.tooManyPixels) {
                try ImageCodec.decode(data: S.pngHeaderOnly(width: 100_000, height: 100_000), limits: .default)
            }
            // Raising the limit lets the header through; the (absent) pixels are then reported as corrupt, not a crash.
            let header = try ImageCodec.probe(path: huge, limits: ImageLimits(maxPixels: 20_000_000_000))
            #expect(header.width == 100_000)
            #expect(header.height == 100_000)
        }

        @Test func pixelLimitCountsEveryPixel() throws {
            let file = path("small.png")
            try ImageCodec.encode(color: S.quadrants(width: 10, height: 10), alpha: nil, bitDepth: 8, grey: false,
                                  format: .png, quality: 90, to: file)
            #expect(throws: Never.self) { _ = try ImageCodec.decode(path: file, limits: ImageLimits(maxPixels: 100)) }
            let error = assertImagingError(.tooManyPixels) {
                try ImageCodec.decode(path: file, limits: ImageLimits(maxPixels: 99, pixelLimitHint: "--max-px"))
            }
            #expect(error?.message.contains("--max-px") ?? false)
        }

        @Test func fileSizeLimit() throws {
            let file = path("noise.png")
            try ImageCodec.encode(color: S.noise(width: 64, height: 64), alpha: nil, bitDepth: 8, grey: false,
                                  format: .png, quality: 90, to: file)
            let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
            let limits = ImageLimits(maxFileBytes: size - 1)
            let error = assertImagingError(.fileTooLarge) { try ImageCodec.probe(path: file, limits: limits) }
            #expect(error?.message.contains("max_file_megabytes") ?? false, "\(String(describing: error))")
            assertImagingError(.fileTooLarge) {
                try ImageCodec.decode(data: try Data(contentsOf: URL(fileURLWithPath: file)), limits: limits)
            }
            #expect(throws: Never.self) { _ = try ImageCodec.decode(path: file, limits: ImageLimits(maxFileBytes: size)) }
        }

        // MARK: Encoders

        @Test func encodeRoundTripEveryFormat() throws {
            let color = S.makeColor(width: 40, height: 30) { x, y in (Float(x) / 39, Float(y) / 29, 0.5) }
            let alpha = S.makePlane(width: 40, height: 30) { _, y in Float(y) / 29 }
            // Tolerances: PNG/TIFF exact to the sample size, lossy JPEG/WebP loose.
            let cases: [(ImageFormat, Int, Float)] = [
                (.png, 8, 0.5 / 255 + 1e-6), (.png, 16, 0.5 / 65535 + 1e-7),
                (.tiff, 8, 0.5 / 255 + 1e-6), (.tiff, 16, 0.5 / 65535 + 1e-7),
                (.jpeg, 8, 0.06), (.webp, 8, 0.08),
            ]
            for (format, depth, tol) in cases {
                let file = path("rt-\(depth).\(format.fileExtension)")
                try ImageCodec.encode(color: color, alpha: format.supportsAlpha ? alpha : nil, bitDepth: depth,
                                      grey: false, format: format, quality: 95, to: file)
                let back = try ImageCodec.decode(path: file, limits: .default)
                #expect((ImageFormat(fileExtension: back.sourceFormat) ?? (back.sourceFormat == "tiff" ? .tiff : nil)) == format)
                #expect(back.bitDepth == depth, "\(format) \(depth)-bit")
                #expect(back.color.width == 40)
                #expect(back.color.height == 30)
                // Lossy WebP (libwebp without "exact", which libvips 8.14 does not expose) drops the colour of fully
                // transparent pixels: compare colour where alpha > 0.
                let plane = color.planeSize
                var worst: Float = 0
                for i in 0..<color.pixels.count where !(format == .webp && alpha.pixels[i % plane] == 0) {
                    worst = max(worst, abs(back.color.pixels[i] - color.pixels[i]))
                }
                #expect(worst <= tol, "\(format) \(depth)-bit colour error")
                if format.supportsAlpha {
                    let a = try #require(back.alpha, "\(format) keeps alpha")
                    var worstA: Float = 0
                    for i in 0..<alpha.pixels.count { worstA = max(worstA, abs(a.pixels[i] - alpha.pixels[i])) }
                    #expect(worstA <= (format == .webp ? 0.02 : tol), "\(format) \(depth)-bit alpha error")
                } else {
                    #expect(back.alpha == nil)
                }
            }
        }

        @Test func encodeToDataMatchesFileEncodingAndDecodesFromMemory() throws {
            let color = S.noise(width: 33, height: 17)
            let alpha = S.makePlane(width: 33, height: 17) { x, _ in Float(x) / 32 }
            for format in ImageFormat.allCases {
                let a = format.supportsAlpha ? alpha : nil
                let data = try ImageCodec.encodeToData(color: color, alpha: a, bitDepth: 16, grey: false, format: format,
                                                       quality: 80)
                let file = path("mem.\(format.fileExtension)")
                try ImageCodec.encode(color: color, alpha: a, bitDepth: 16, grey: false, format: format, quality: 80,
                                      to: file)
                let header = try ImageCodec.probe(data: data, limits: .default)
                #expect(header.width == 33, "\(format)")
                #expect(header.bitDepth == (format.supports16Bit ? 16 : 8), "\(format)")
                #expect(header.hasAlpha == format.supportsAlpha, "\(format)")
                let fromData = try ImageCodec.decode(data: data, limits: .default)
                let fromFile = try ImageCodec.decode(path: file, limits: .default)
                #expect(fromData.color == fromFile.color, "\(format): same encoder either way")
                #expect(fromData.alpha == fromFile.alpha, "\(format)")
            }
            assertImagingError(.unsupportedFormat) { try ImageCodec.probe(data: Data("GIF? no".utf8), limits: .default) }
        }

        @Test func greyEncodeEveryFormat() throws {
            let grey = S.makeColor(width: 24, height: 8) { x, _ in let v = Float(x) / 23; return (v, v, v) }
            for format in ImageFormat.allCases {
                let file = path("grey.\(format.fileExtension)")
                try ImageCodec.encode(color: grey, alpha: nil, bitDepth: 8, grey: true, format: format, quality: 95,
                                      to: file)
                let back = try ImageCodec.decode(path: file, limits: .default)
                // WebP has no grey mode: it comes back as RGB with equal channels.
                #expect(back.isGrey == (format != .webp), "\(format)")
                for x in stride(from: 0, to: 24, by: 4) {
                    #expect(abs(back.color[0, 4, x] - (Float(x) / 23)) <= (format == .png || format == .tiff
                                       ? 0.5 / 255 + 1e-6 : 0.04), "\(format) at \(x)")
                    #expect(abs(back.color[1, 4, x] - (back.color[0, 4, x])) <= 0.02, "\(format) channels equal")
                }
            }
        }

        @Test func jPEGFlattensAlphaOntoWhite() throws {
            let color = S.makeColor(width: 16, height: 16) { _, _ in (0, 0, 0) }
            let alpha = S.makePlane(width: 16, height: 16) { x, _ in x < 8 ? 1 : 0 }
            let file = path("flat.jpg")
            try ImageCodec.encode(color: color, alpha: alpha, bitDepth: 8, grey: false, format: .jpeg, quality: 95, to: file)
            let back = try ImageCodec.decode(path: file, limits: .default)
            #expect(back.alpha == nil)
            #expect(back.color[0, 8, 2] < 0.1, "opaque black stays black")
            #expect(back.color[0, 8, 13] > 0.9, "transparent becomes white")
        }

        @Test func outOfRangeValuesAreClamped() throws {
            let color = S.makeColor(width: 4, height: 1) { x, _ in
                [(-0.5, 1.5, .nan), (2, -1, 0.5), (0, 0, 0), (1, 1, 1)][x] as (Float, Float, Float)
            }
            let file = path("clamp.png")
            try ImageCodec.encode(color: color, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: file)
            let back = try ImageCodec.decode(path: file, limits: .default).color
            #expect(S.pixel(back, 0, 0).0 == 0)
            #expect(S.pixel(back, 0, 0).1 == 1)
            #expect(S.pixel(back, 0, 0).2 == 0, "NaN is written as 0")
            #expect(S.pixel(back, 1, 0).0 == 1)
        }

        @Test func formatFromExtension() throws {
            #expect(ImageFormat(fileExtension: "JPG") == .jpeg)
            #expect(ImageFormat(fileExtension: ".jpeg") == .jpeg)
            #expect(ImageFormat(fileExtension: "tif") == .tiff)
            #expect(ImageFormat(fileExtension: "webp") == .webp)
            #expect(ImageFormat(path: "/a.b/c.png") == .png)
            #expect(ImageFormat(path: "/a.png/noext") == nil)
            #expect(ImageFormat(fileExtension: "gif") == nil)
        }

        // MARK: Atomic writes

        @Test func atomicWriteLeavesOnlyTheCompleteFinalFile() throws {
            let out = path("final.png")
            let first = S.noise(width: 64, height: 48, seed: 1)
            try ImageCodec.encode(color: first, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: out)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["final.png"])
            let decoded = try ImageCodec.decode(path: out, limits: .default)
            #expect(decoded.color.width == 64)

            // Overwriting replaces the file in one step; still no leftovers.
            let second = S.quadrants(width: 64, height: 48)
            try ImageCodec.encode(color: second, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90, to: out)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["final.png"])
            #expect(try ImageCodec.decode(path: out, limits: .default).color == second)
        }

        @Test func failedWriteLeavesNothingBehind() throws {
            // The target name is an existing directory: the rename fails and the temporary file is removed.
            let blocker = path("taken.png")
            try FileManager.default.createDirectory(atPath: blocker, withIntermediateDirectories: false)
            assertImagingError(.io) {
                try ImageCodec.encode(color: S.quadrants(), alpha: nil, bitDepth: 8, grey: false, format: .png,
                                      quality: 90, to: blocker)
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["taken.png"])
            assertImagingError(.io) {
                try ImageCodec.encode(color: S.quadrants(), alpha: nil, bitDepth: 8, grey: false, format: .png,
                                      quality: 90, to: path("missing-folder/out.png"))
            }
        }

        @Test func encodeRejectsBadInput() throws {
            assertImagingError(.encodeFailed) {
                try ImageCodec.encode(color: PlanarImage(width: 4, height: 4, channels: 1), alpha: nil, bitDepth: 8,
                                      grey: false, format: .png, quality: 90, to: path("x.png"))
            }
            assertImagingError(.encodeFailed) {
                try ImageCodec.encode(color: S.quadrants(), alpha: PlanarImage(width: 3, height: 3, channels: 1),
                                      bitDepth: 8, grey: false, format: .png, quality: 90, to: path("x.png"))
            }
        }

        // MARK: Resize

        @Test func resizeLanczos3() throws {
            // Exact sizes, constants stay constant (normalised weights, no dark borders).
            let flat = PlanarImage(width: 7, height: 5, channels: 2, fill: 0.25)
            let up = try ImageCodec.resize(flat, width: 29, height: 19)
            #expect(up.width == 29)
            #expect(up.height == 19)
            #expect(up.channels == 2)
            for v in up.pixels { #expect(abs(v - (0.25)) <= 1e-5) }
            let down = try ImageCodec.resize(flat, width: 3, height: 2)
            for v in down.pixels { #expect(abs(v - (0.25)) <= 1e-5) }

            // A linear ramp upsized 4x stays a ramp away from the edges (Lanczos reproduces linear functions).
            let ramp = S.makePlane(width: 16, height: 4) { x, _ in Float(x) / 15 }
            let big = try ImageCodec.resize(ramp, width: 64, height: 16)
            for x in 12..<52 {
                let sourceX = (Float(x) + 0.5) / 4 - 0.5
                #expect(abs(big[0, 8, x] - (sourceX / 15)) <= 2e-3, "ramp at \(x)")
            }
            // Same size is the identity.
            #expect(try ImageCodec.resize(ramp, width: 16, height: 4) == ramp)
            // A sharp edge overshoots a little (Lanczos ringing) but stays bounded.
            let edge = S.makePlane(width: 8, height: 1) { x, _ in x < 4 ? 0 : 1 }
            let e = try ImageCodec.resize(edge, width: 32, height: 1)
            #expect(e.pixels.min()! < 0)
            #expect(e.pixels.min()! > -0.15)
            assertImagingError(.encodeFailed) { try ImageCodec.resize(ramp, width: 0, height: 4) }
        }

        @Test func noFilesOrPixelBuffersLeakAfterSuccessAndFailure() throws {
            for (i, format) in ImageFormat.allCases.enumerated() {
                let file = path("leak\(i).\(format.fileExtension)")
                try ImageCodec.encode(color: S.noise(width: 96, height: 64), alpha: PlanarImage(width: 96, height: 64,
                                      channels: 1, fill: 0.5), bitDepth: 8, grey: false, format: format, quality: 90,
                                      to: file)
                _ = try ImageCodec.decode(path: file, limits: .default)
                let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
                let cut = try write(bytes.prefix(bytes.count / 2), "leak-cut\(i).\(format.fileExtension)")
                _ = try? ImageCodec.decode(path: cut, limits: .default)
                _ = try? ImageCodec.decode(data: bytes.prefix(bytes.count / 2), limits: .default)
            }
            let health = ImageCodec.health
            #expect(health.vipsOpenFiles == 0, "every vips image released, files closed")
            #expect(health.vipsMemoryBytes < 64 << 10, "no pixel buffers held after the calls returned")
        }

        // MARK: Health

        @Test func healthReallyRunsLibvips() throws {
            let health = ImageCodec.health
            #expect(health.ok, Comment(rawValue: health.message))
            #expect(health.message == "ok")
            #expect(health.vipsVersion.hasPrefix("8."), Comment(rawValue: health.vipsVersion))
        }
    }
}
