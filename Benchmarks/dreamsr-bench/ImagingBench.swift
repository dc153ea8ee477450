import ArgumentParser
import Foundation
import Imaging
import Raster

#if canImport(Glibc)
import Glibc
#endif

/// `dreamsr-bench imaging`: encode and decode one large image with dreamsr's Imaging module (planar float in and
/// out) and with the libvips command line (`vips copy`, uchar interleaved, no float conversion) on the same content,
/// in the same run. Prints times, ours/vips ratios and how much the encode grew our peak RSS beyond the input planes.
struct ImagingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imaging",
        abstract: "Imaging encode/decode vs the libvips CLI on one large image (times, ratios, peak RSS).")

    @Option(help: "Image width.") var width = 8000
    @Option(help: "Image height.") var height = 6000
    @Option(help: "Comma-separated formats, in this order (put webp last: its encoder peaks highest).")
    var formats = "png,jpeg,tiff,webp"
    @Option(help: "JPEG/WebP quality.") var quality = 90
    @Option(help: "Scratch folder (files of a few hundred MB are written).") var scratch = NSTemporaryDirectory()
    @Option(help: "The libvips CLI used as the baseline.") var vips = "vips"
    @Flag(help: "Keep the scratch files (to rerun a decode by hand).") var keep = false

    func run() throws {
        let formatList = try formats.split(separator: ",").map { name -> ImageFormat in
            guard let f = ImageFormat(rawValue: String(name)) else {
                throw ValidationError("unknown format \(name) (png, jpeg, webp, tiff)")
            }
            return f
        }
        try ImageCodec.initialize()
        let dir = URL(fileURLWithPath: scratch).appendingPathComponent("dreamsr-imaging-bench-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { if !keep { try? FileManager.default.removeItem(at: dir) } }

        let color = Self.photoLike(width: width, height: height)
        let planeMB = Double(color.pixels.count * 4) / 1_048_576
        print("imaging bench: \(width)x\(height), libvips \(ImageCodec.vipsVersion), colour planes \(Int(planeMB)) MB")

        // Baseline source: the same pixels as an uncompressed vips file (made once, not timed).
        let png = dir.appendingPathComponent("source.png").path
        try ImageCodec.encode(color: color, alpha: nil, bitDepth: 8, grey: false, format: .png, quality: quality,
                              to: png)
        let raw = dir.appendingPathComponent("source.v").path
        try Self.shell([vips, "copy", png, raw])

        print("format  ours-encode  vips-encode  ratio   ours-decode  vips-decode  ratio   encode-peak-growth")
        for format in formatList {
            let ours = dir.appendingPathComponent("ours.\(format.fileExtension)").path
            let before = Self.maxRSSMB()
            let te = try Self.time {
                try ImageCodec.encode(color: color, alpha: nil, bitDepth: 8, grey: false, format: format,
                                      quality: quality, to: ours)
            }
            let growth = Self.maxRSSMB() - before
            let td = try Self.time { _ = try ImageCodec.decode(path: ours, limits: ImageLimits(maxPixels: .max)) }

            let theirs = dir.appendingPathComponent("vips.\(format.fileExtension)").path
            let opts = (format == .jpeg || format == .webp) ? "[Q=\(quality)]"
                : format == .tiff ? "[compression=deflate,predictor=horizontal]" : "[compression=6]"
            let be = try Self.time { try Self.shell([vips, "copy", raw, theirs + opts]) }
            let decoded = dir.appendingPathComponent("vips-decoded.v").path
            let bd = try Self.time { try Self.shell([vips, "copy", theirs, decoded]) }
            try? FileManager.default.removeItem(atPath: decoded)

            func f(_ v: Double) -> String { String(format: "%8.2f s", v) }
            func r(_ v: Double) -> String { String(format: "%5.2fx", v) }
            print("\(format.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0))  \(f(te))   \(f(be))  "
                  + "\(r(te / be))  \(f(td))   \(f(bd))  \(r(td / bd))  +\(growth) MB")
        }
        print("peak RSS of dreamsr-bench: \(Self.maxRSSMB()) MB (the colour planes alone are \(Int(planeMB)) MB; "
              + "each decode allocates its own)")
    }

    /// Smooth gradients plus fine texture: compresses like a photo rather than like noise or a flat colour.
    static func photoLike(width: Int, height: Int) -> PlanarImage {
        var image = PlanarImage(width: width, height: height, channels: 3)
        let plane = width * height
        image.pixels.withUnsafeMutableBufferPointer { p in
            for y in 0..<height {
                let fy = Float(y) / Float(height)
                for x in 0..<width {
                    let fx = Float(x) / Float(width)
                    let texture = 0.05 * sin(Float(x) * 0.7) * cos(Float(y) * 0.9)
                    let i = y * width + x
                    p[i] = 0.5 + 0.4 * sin(6 * fx + 2 * fy) + texture
                    p[plane + i] = 0.5 + 0.4 * cos(5 * fy - 3 * fx) + texture
                    p[2 * plane + i] = fx * fy + texture
                }
            }
        }
        return image
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    static func maxRSSMB() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss / 1024
    }

    static func shell(_ args: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = args
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("\(args.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
    }
}
