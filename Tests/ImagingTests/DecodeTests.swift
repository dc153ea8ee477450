import Foundation
import Raster
import Testing

@testable import Imaging

/// Real files: orientation, alpha, 16-bit, grey, CMYK, ICC, WebP, AVIF, GIF.
extension ImagingCodecTests {
    @Suite(.timeLimit(.minutes(10)))
    final class DecodeTests {
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

        /// Colour within `tol` of the expected (r, g, b).
        func assertColor(_ got: (Float, Float, Float), _ want: (Float, Float, Float), tol: Float, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let ok = abs(got.0 - want.0) <= tol && abs(got.1 - want.1) <= tol && abs(got.2 - want.2) <= tol
            #expect(ok, "\(what): got \(got), want \(want) ±\(tol)", sourceLocation: sourceLocation)
        }

        /// A JPEG of the quadrant image (16 wide, 24 high) tagged with an EXIF orientation.
        func orientedJPEG(_ orientation: UInt16) throws -> String {
            let plain = path("plain-\(orientation).jpg")
            try ImageCodec.encode(color: S.quadrants(), alpha: nil, bitDepth: 8, grey: false, format: .jpeg,
                                  quality: 95, to: plain)
            let tagged = S.withEXIFOrientation(try Data(contentsOf: URL(fileURLWithPath: plain)), orientation: orientation)
            let out = path("exif-\(orientation).jpg")
            try tagged.write(to: URL(fileURLWithPath: out))
            return out
        }

        @Test func jPEGWithEXIFOrientation6IsRotatedClockwise() throws {
            let file = try orientedJPEG(6)
            let header = try ImageCodec.probe(path: file, limits: .default)
            #expect(header.orientation == 6)
            #expect(header.storedWidth == 16)
            #expect(header.storedHeight == 24)
            #expect(header.width == 24, "probe reports the displayed (rotated) size")
            #expect(header.height == 16)

            let image = try ImageCodec.decode(path: file, limits: .default)
            #expect(image.color.width == 24)
            #expect(image.color.height == 16)
            #expect(image.color.channels == 3)
            #expect(image.sourceFormat == "jpeg")
            // Rotating the stored image 90° clockwise: stored TL (red) -> top-right, stored TR (green) -> bottom-right,
            // stored BL (blue) -> top-left, stored BR (white) -> bottom-left. Sample at quadrant centres (12x8 each).
            let c = image.color
            assertColor(S.pixel(c, 18, 4), (1, 0, 0), tol: 0.12, "top-right is red")
            assertColor(S.pixel(c, 18, 12), (0, 1, 0), tol: 0.12, "bottom-right is green")
            assertColor(S.pixel(c, 6, 4), (0, 0, 1), tol: 0.12, "top-left is blue")
            assertColor(S.pixel(c, 6, 12), (1, 1, 1), tol: 0.12, "bottom-left is white")
        }

        @Test func everyEXIFOrientationPutsTheCornersRight() throws {
            // Where stored TL (red) and stored TR (green) must land, as displayed corners (right?, bottom?).
            let expected: [UInt16: (red: (Bool, Bool), green: (Bool, Bool))] = [
                1: ((false, false), (true, false)), 2: ((true, false), (false, false)),
                3: ((true, true), (false, true)), 4: ((false, true), (true, true)),
                5: ((false, false), (false, true)), 6: ((true, false), (true, true)),
                7: ((true, true), (true, false)), 8: ((false, true), (false, false)),
            ]
            for (orientation, want) in expected.sorted(by: { $0.key < $1.key }) {
                let image = try ImageCodec.decode(path: try orientedJPEG(orientation), limits: .default).color
                let swapped = orientation >= 5
                #expect(image.width == (swapped ? 24 : 16), "orientation \(orientation)")
                #expect(image.height == (swapped ? 16 : 24), "orientation \(orientation)")
                func sample(_ corner: (Bool, Bool)) -> (Float, Float, Float) {
                    let x = corner.0 ? image.width * 3 / 4 : image.width / 4
                    let y = corner.1 ? image.height * 3 / 4 : image.height / 4
                    return S.pixel(image, x, y)
                }
                assertColor(sample(want.red), (1, 0, 0), tol: 0.12, "orientation \(orientation): stored TL")
                assertColor(sample(want.green), (0, 1, 0), tol: 0.12, "orientation \(orientation): stored TR")
            }
        }

        @Test func pNGWithAlphaKeepsAlphaThroughDecodeAndEncode() throws {
            let color = S.quadrants(width: 20, height: 10)
            let alpha = S.makePlane(width: 20, height: 10) { x, _ in Float(x) / 19 }
            let file = path("alpha.png")
            try ImageCodec.encode(color: color, alpha: alpha, bitDepth: 8, grey: false, format: .png, quality: 90, to: file)

            let header = try ImageCodec.probe(path: file, limits: .default)
            #expect(header.hasAlpha)
            #expect(header.bands == 4)
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            let a = try #require(decoded.alpha, "alpha must be decoded")
            #expect(a.channels == 1)
            #expect(a.width == 20)
            for x in 0..<20 {
                #expect(abs(a[0, 5, x] - (Float(x) / 19)) <= 0.5 / 255 + 1e-6, "alpha at x=\(x)")
            }
            // Colour is stored un-premultiplied: even where alpha is 0 the colour survives.
            assertColor(S.pixel(decoded.color, 0, 0), (1, 0, 0), tol: 1e-6, "colour under alpha 0")

            // Re-encode what was decoded: alpha survives a second round trip.
            let again = path("alpha2.png")
            try ImageCodec.encode(color: decoded.color, alpha: decoded.alpha, bitDepth: decoded.bitDepth,
                                  grey: decoded.isGrey, format: .png, quality: 90, to: again)
            let twice = try ImageCodec.decode(path: again, limits: .default)
            #expect((twice.alpha?.pixels) == (decoded.alpha?.pixels))
            #expect(twice.color.pixels == decoded.color.pixels)
        }

        @Test func imageWithoutAlphaHasNoAlpha() throws {
            let file = path("opaque.png")
            try ImageCodec.encode(color: S.quadrants(), alpha: nil, bitDepth: 8, grey: false, format: .png, quality: 90,
                                  to: file)
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            #expect(decoded.alpha == nil)
            #expect(!(try ImageCodec.probe(path: file, limits: .default).hasAlpha))
        }

        @Test func test16BitPNGKeepsPrecisionBeyond8Bits() throws {
            // Values 1/65535 apart: 8-bit storage would merge them.
            let ramp = S.makeColor(width: 64, height: 4) { x, y in
                let v = Float(20_000 + x * 3 + y) / 65535
                return (v, 1 - v, Float(x) / 63)
            }
            let alpha = S.makePlane(width: 64, height: 4) { x, _ in Float(30_000 + x) / 65535 }
            let file = path("deep.png")
            try ImageCodec.encode(color: ramp, alpha: alpha, bitDepth: 16, grey: false, format: .png, quality: 90, to: file)

            let header = try ImageCodec.probe(path: file, limits: .default)
            #expect(header.bitDepth == 16, "the written PNG is 16-bit")
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            #expect(decoded.bitDepth == 16)
            let tol: Float = 0.5 / 65535 + 1e-7
            for x in 0..<64 {
                #expect(abs(decoded.color[0, 2, x] - (ramp[0, 2, x])) <= tol, "red at \(x)")
                #expect(abs(decoded.color[1, 2, x] - (ramp[1, 2, x])) <= tol, "green at \(x)")
                #expect(abs(decoded.alpha![0, 2, x] - (alpha[0, 2, x])) <= tol, "alpha at \(x)")
            }
            // Neighbouring values differ by 1/65535 and stay distinct.
            #expect(decoded.color[0, 0, 0] != decoded.color[0, 1, 0])
        }

        @Test func greyJPEGDecodesToThreeEqualChannelsAndEncodesGrey() throws {
            let grey = S.makeColor(width: 32, height: 8) { x, _ in let v = Float(x) / 31; return (v, v, v) }
            let file = path("grey.jpg")
            try ImageCodec.encode(color: grey, alpha: nil, bitDepth: 8, grey: true, format: .jpeg, quality: 95, to: file)

            let header = try ImageCodec.probe(path: file, limits: .default)
            #expect(header.bands == 1, "a grey JPEG has one band")
            #expect(header.isGrey)
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            #expect(decoded.isGrey)
            #expect(decoded.color.channels == 3, "grey is replicated into RGB")
            for x in stride(from: 0, to: 32, by: 3) {
                let (r, g, b) = S.pixel(decoded.color, x, 4)
                #expect(r == g)
                #expect(g == b)
                #expect(abs(r - (Float(x) / 31)) <= 0.03, "grey level at \(x)")
            }
            // Writing it back with grey: true gives a grey PNG again.
            let back = path("grey.png")
            try ImageCodec.encode(color: decoded.color, alpha: nil, bitDepth: 8, grey: decoded.isGrey, format: .png,
                                  quality: 90, to: back)
            #expect(try ImageCodec.probe(path: back, limits: .default).bands == 1)
        }

        @Test func greyWithAlphaAnd16BitGreyPNG() throws {
            let grey = S.makeColor(width: 16, height: 4) { x, _ in let v = Float(40_000 + x) / 65535; return (v, v, v) }
            let alpha = S.makePlane(width: 16, height: 4) { x, _ in Float(x) / 15 }
            let file = path("grey16a.png")
            try ImageCodec.encode(color: grey, alpha: alpha, bitDepth: 16, grey: true, format: .png, quality: 90, to: file)
            let header = try ImageCodec.probe(path: file, limits: .default)
            #expect(header.bands == 2)
            #expect(header.bitDepth == 16)
            #expect(header.isGrey)
            #expect(header.hasAlpha)
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            #expect(decoded.isGrey)
            #expect(decoded.bitDepth == 16)
            for x in 0..<16 {
                #expect(abs(decoded.color[1, 1, x] - (grey[0, 1, x])) <= 0.5 / 65535 + 1e-7, "grey at \(x)")
                #expect(abs(decoded.alpha![0, 1, x] - (alpha[0, 1, x])) <= 0.5 / 65535 + 1e-7, "alpha at \(x)")
            }
            // 8-bit grey TIFF also works.
            let tif = path("grey8.tif")
            try ImageCodec.encode(color: grey, alpha: nil, bitDepth: 8, grey: true, format: .tiff, quality: 90, to: tif)
            let t = try ImageCodec.decode(path: tif, limits: .default)
            #expect(t.isGrey)
            #expect(t.bitDepth == 8)
            #expect(abs(t.color[0, 0, 3] - (grey[0, 0, 3])) <= 0.5 / 255 + 1e-6)
        }

        @Test func cMYKJPEGDecodesToSensibleRGB() throws {
            let file = S.fixture("cmyk-quads-16x24.jpg")
            let header = try ImageCodec.probe(path: file, limits: .default)
            #expect(header.isCMYK)
            #expect(header.bands == 4)
            #expect(!header.hasAlpha, "the fourth CMYK band is K, not alpha")
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            #expect(decoded.alpha == nil)
            #expect(decoded.color.width == 16)
            #expect(decoded.color.height == 24)
            // Check the colours are clearly the right ones (an exact match depends on the CMYK profile).
            let c = decoded.color
            let red = S.pixel(c, 4, 6), green = S.pixel(c, 12, 6), blue = S.pixel(c, 4, 18), white = S.pixel(c, 12, 18)
            // The fixture holds pure inks (M+Y, C+Y, C+M, none), so sRGB comes out darker than the screen primaries.
            #expect(red.0 > 0.75 && red.1 < 0.3 && red.2 < 0.3, "red quadrant: \(red)")
            #expect(green.1 > 0.4 && green.1 > green.0 + 0.3 && green.1 > green.2 + 0.15, "green quadrant: \(green)")
            #expect(blue.2 > 0.35 && blue.2 > blue.0 + 0.2 && blue.2 > blue.1 + 0.2, "blue quadrant: \(blue)")
            #expect(white.0 > 0.9 && white.1 > 0.9 && white.2 > 0.9, "white quadrant: \(white)")
        }

        @Test func embeddedICCProfileIsConvertedToSRGB() throws {
            // The file stores the quadrants as Display P3 numbers (sRGB red is about (0.92, 0.20, 0.14) in P3).
            let file = S.fixture("p3-quads-16x24.jpg")
            #expect(try ImageCodec.probe(path: file, limits: .default).hasICCProfile)
            let c = try ImageCodec.decode(path: file, limits: .default).color
            assertColor(S.pixel(c, 4, 6), (1, 0, 0), tol: 0.06, "red back in sRGB")
            assertColor(S.pixel(c, 12, 6), (0, 1, 0), tol: 0.06, "green back in sRGB")
            assertColor(S.pixel(c, 4, 18), (0, 0, 1), tol: 0.06, "blue back in sRGB")
            assertColor(S.pixel(c, 12, 18), (1, 1, 1), tol: 0.03, "white")
        }

        @Test func webPWithAlphaDecodes() throws {
            let color = S.quadrants(width: 32, height: 32)
            let alpha = S.makePlane(width: 32, height: 32) { x, _ in x < 16 ? 1 : 0.5 }
            let file = path("quads.webp")
            try ImageCodec.encode(color: color, alpha: alpha, bitDepth: 16, grey: false, format: .webp, quality: 95,
                                  to: file)
            let header = try ImageCodec.probe(path: file, limits: .default)
            #expect(header.format == "webp")
            #expect(header.bitDepth == 8, "WebP is always 8-bit")
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            #expect(decoded.sourceFormat == "webp")
            #expect(decoded.bitDepth == 8)
            assertColor(S.pixel(decoded.color, 8, 8), (1, 0, 0), tol: 0.1, "red")
            assertColor(S.pixel(decoded.color, 24, 24), (1, 1, 1), tol: 0.1, "white")
            let a = try #require(decoded.alpha)
            #expect(abs(a[0, 8, 4] - (1)) <= 0.02)
            #expect(abs(a[0, 8, 28] - (0.5)) <= 0.02)
        }

        @Test func decodeFromMemoryMatchesDecodeFromFile() throws {
            let file = try orientedJPEG(8)
            let fromFile = try ImageCodec.decode(path: file, limits: .default)
            let fromData = try ImageCodec.decode(data: try Data(contentsOf: URL(fileURLWithPath: file)), limits: .default)
            #expect(fromData.color == fromFile.color)
            #expect(fromData.header.orientation == 8)
        }

        @Test func aVIFDecodesWhenLibvipsHasTheHEIFLoader() throws {
            // Debian's libvips 8.14 ships heifload with libheif's AV1 decoder; the fixture is AV1.
            let file = S.fixture("quads-16x24.avif")
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            #expect(decoded.sourceFormat == "avif")
            #expect(decoded.color.width == 16)
            #expect(decoded.color.height == 24)
            assertColor(S.pixel(decoded.color, 4, 6), (1, 0, 0), tol: 0.15, "red")
            assertColor(S.pixel(decoded.color, 12, 18), (1, 1, 1), tol: 0.1, "white")
        }

        @Test func gIFDecodesFirstFrame() throws {
            let decoded = try ImageCodec.decode(path: S.fixture("quads-16x24.gif"), limits: .default)
            #expect(decoded.sourceFormat == "gif")
            #expect(decoded.header.pages == 1)
            assertColor(S.pixel(decoded.color, 4, 6), (1, 0, 0), tol: 0.01, "red")
            assertColor(S.pixel(decoded.color, 12, 6), (0, 1, 0), tol: 0.01, "green")
        }

        @Test func animatedGIFDecodesFirstFrameAndCountsEveryFrameAgainstTheLimit() throws {
            let file = S.fixture("anim-red-green-8x6.gif")
            let header = try ImageCodec.probe(path: file, limits: .default)
            #expect(header.pages == 2)
            #expect(header.height == 6, "one frame high")
            let decoded = try ImageCodec.decode(path: file, limits: .default)
            #expect(decoded.color.height == 6)
            assertColor(S.pixel(decoded.color, 4, 3), (1, 0, 0), tol: 0.01, "first frame is the red one")
            // 8 x 6 x 2 pages = 96 pixels.
            #expect(throws: Never.self) { _ = try ImageCodec.probe(path: file, limits: ImageLimits(maxPixels: 96)) }
            let error = assertImagingError(.tooManyPixels) {
                try ImageCodec.probe(path: file, limits: ImageLimits(maxPixels: 95))
            }
            #expect(error?.message.contains("x 2 pages") ?? false, "\(String(describing: error))")
        }

        @Test func unusualEncodingsOfOneColour() throws {
            // All hold sRGB (200, 30, 10); see tools/make_imaging_fixtures.sh.
            let want: (Float, Float, Float) = (200 / 255, 30 / 255, 10 / 255)
            let cases: [(file: String, format: String, depth: Int, tol: Float)] = [
                // sRGB -> CMYK -> sRGB through libvips's print profile: this saturated red is outside the CMYK gamut, so it
                // comes back desaturated (libvips's own CLI gives the same 211, 57, 50).
                ("flat-cmyk16.tif", "tiff", 16, 0.2),
                ("flat-lab-float.tif", "tiff", 16, 0.01),
                ("flat-scrgb-float.tif", "tiff", 16, 0.01),
                ("flat-palette.png", "png", 8, 0.01),
                ("flat.heic", "heif", 8, 0.03),
            ]
            for c in cases {
                let decoded = try ImageCodec.decode(path: S.fixture(c.file), limits: .default)
                #expect(decoded.sourceFormat == c.format, Comment(rawValue: c.file))
                #expect(decoded.bitDepth == c.depth, Comment(rawValue: c.file))
                #expect(!decoded.isGrey, Comment(rawValue: c.file))
                #expect(decoded.alpha == nil, Comment(rawValue: c.file))
                #expect(decoded.color.width == 8, Comment(rawValue: c.file))
                assertColor(S.pixel(decoded.color, 3, 3), want, tol: c.tol, c.file)
            }
        }

        @Test func concurrentDecodesAgree() throws {
            let file = path("noise.png")
            try ImageCodec.encode(color: S.noise(width: 96, height: 64), alpha: nil, bitDepth: 8, grey: false,
                                  format: .png, quality: 90, to: file)
            let reference = try ImageCodec.decode(path: file, limits: .default).color
            let results = ResultBox(count: 8)
            DispatchQueue.concurrentPerform(iterations: 8) { i in
                results.set(i, Result { try ImageCodec.decode(path: file, limits: .default).color })
            }
            for result in results.all { #expect(try result.get() == reference) }
        }
    }

    /// Collects results from concurrentPerform.
    final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var results: [Result<PlanarImage, Error>?]
        init(count: Int) { results = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: Result<PlanarImage, Error>) { lock.lock(); results[i] = r; lock.unlock() }
        var all: [Result<PlanarImage, Error>] { lock.lock(); defer { lock.unlock() }; return results.compactMap { $0 } }
    }
}
