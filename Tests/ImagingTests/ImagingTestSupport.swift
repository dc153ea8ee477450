import Foundation
import Raster
import Testing

@testable import Imaging

/// Helpers shared by the Imaging tests: synthetic images, byte-level fixture surgery, temp folders.
enum ImagingTestSupport {
    /// Committed fixtures made by tools/make_imaging_fixtures.sh.
    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/imaging/\(name)").path
    }

    /// A 3-channel image from a per-pixel function returning (r, g, b).
    static func makeColor(width: Int, height: Int, _ f: (Int, Int) -> (Float, Float, Float)) -> PlanarImage {
        var image = PlanarImage(width: width, height: height, channels: 3)
        for y in 0..<height {
            for x in 0..<width {
                let (r, g, b) = f(x, y)
                image[0, y, x] = r
                image[1, y, x] = g
                image[2, y, x] = b
            }
        }
        return image
    }

    static func makePlane(width: Int, height: Int, _ f: (Int, Int) -> Float) -> PlanarImage {
        var image = PlanarImage(width: width, height: height, channels: 1)
        for y in 0..<height { for x in 0..<width { image[0, y, x] = f(x, y) } }
        return image
    }

    /// Flat quadrants: TL red, TR green, BL blue, BR white (like the committed fixtures, 16x24 by default).
    static func quadrants(width: Int = 16, height: Int = 24) -> PlanarImage {
        makeColor(width: width, height: height) { x, y in
            switch (x < width / 2, y < height / 2) {
            case (true, true): (1, 0, 0)
            case (false, true): (0, 1, 0)
            case (true, false): (0, 0, 1)
            case (false, false): (1, 1, 1)
            }
        }
    }

    static func pixel(_ image: PlanarImage, _ x: Int, _ y: Int) -> (Float, Float, Float) {
        (image[0, y, x], image[1, y, x], image[2, y, x])
    }

    /// A JPEG with an EXIF APP1 segment holding only the Orientation tag, inserted after SOI (and APP0 if present).
    static func withEXIFOrientation(_ jpeg: Data, orientation: UInt16) -> Data {
        var bytes = [UInt8](jpeg)
        precondition(bytes.count > 4 && bytes[0] == 0xFF && bytes[1] == 0xD8, "not a JPEG")
        var tiff: [UInt8] = [0x4D, 0x4D, 0x00, 0x2A, 0, 0, 0, 8]   // "MM", 42, IFD at offset 8
        tiff += [0, 1]                                               // one entry
        tiff += [0x01, 0x12, 0, 3, 0, 0, 0, 1]                       // Orientation, SHORT, count 1
        tiff += [UInt8(orientation >> 8), UInt8(orientation & 0xFF), 0, 0]
        tiff += [0, 0, 0, 0]                                         // no next IFD
        let payload: [UInt8] = Array("Exif".utf8) + [0, 0] + tiff
        let length = payload.count + 2
        let segment: [UInt8] = [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + payload
        var at = 2
        if bytes[2] == 0xFF && bytes[3] == 0xE0 {   // keep JFIF APP0 first
            at = 4 + (Int(bytes[4]) << 8 | Int(bytes[5]))
        }
        bytes.insert(contentsOf: segment, at: at)
        return Data(bytes)
    }

    /// A PNG whose IHDR claims width x height (8-bit RGB) with a tiny, empty IDAT: the header can be read, the
    /// pixels cannot.
    static func pngHeaderOnly(width: UInt32, height: UInt32) -> Data {
        func be32(_ v: UInt32) -> [UInt8] {
            [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
        }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be32(UInt32(data.count)) + body + be32(crc32(body))
        }
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        png += chunk("IHDR", be32(width) + be32(height) + [8, 2, 0, 0, 0])
        // A zlib stream holding one empty stored block: valid, but far too short for the claimed pixels.
        png += chunk("IDAT", [0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01])
        png += chunk("IEND", [])
        return Data(png)
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }

    static func makeTempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    /// Deterministic noise, so compressed files are not tiny (a truncation then cuts into pixel data).
    static func noise(width: Int, height: Int, seed: UInt64 = 42) -> PlanarImage {
        var state = seed
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24)
        }
        return makeColor(width: width, height: height) { _, _ in (next(), next(), next()) }
    }
}

/// Asserts that `body` throws an ImagingError with `code`; returns it for further checks.
@discardableResult
func assertImagingError<T>(_ code: ImagingError.Code, sourceLocation: SourceLocation = #_sourceLocation,
                           _ body: () throws -> T) -> ImagingError? {
    do {
        _ = try body()
        Issue.record("expected ImagingError.\(code), nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as ImagingError {
        #expect(error.code == code, "wrong code; message: \(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected ImagingError.\(code), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Collects libvips warnings routed through `ImageCodec.setWarningHandler` (keeps test output clean).
/// The codec suites share libvips's process-wide warning handler, so they run one test at a time, one suite after the
/// other (`.serialized` reaches the nested suites).
@Suite(.serialized) enum ImagingCodecTests {}

final class WarningLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    /// Installs a fresh log as the libvips warning handler.
    static func install() -> WarningLog {
        let log = WarningLog()
        ImageCodec.setWarningHandler { log.add($0) }
        return log
    }
}
