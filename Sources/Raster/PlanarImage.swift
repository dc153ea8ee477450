/// A float image in planar (CHW) layout, values nominally in 0...1 (not clamped: models may overshoot).
///
/// This is the currency between imaging (decode/encode), the upscaling algorithms and the blender. Channel order for
/// colour images is R, G, B.
public struct PlanarImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    /// `channels * height * width` values, plane after plane.
    public var pixels: [Float]

    public init(width: Int, height: Int, channels: Int, pixels: [Float]) {
        precondition(width >= 0 && height >= 0 && channels > 0, "bad image geometry \(width)x\(height)x\(channels)")
        precondition(pixels.count == width * height * channels,
                     "\(pixels.count) values for \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A constant image.
    public init(width: Int, height: Int, channels: Int, fill: Float = 0) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [Float](repeating: fill, count: width * height * channels))
    }

    public var planeSize: Int { width * height }
    public var megapixels: Double { Double(width * height) / 1_000_000 }

    @inlinable
    public subscript(c: Int, y: Int, x: Int) -> Float {
        get { pixels[(c * height + y) * width + x] }
        set { pixels[(c * height + y) * width + x] = newValue }
    }

    /// The rectangle `rect` (must lie inside the image) as a new image.
    public func cropped(to rect: PixelRect) -> PlanarImage {
        precondition(rect.x >= 0 && rect.y >= 0 && rect.maxX <= width && rect.maxY <= height,
                     "crop \(rect) outside \(width)x\(height)")
        var out = [Float](repeating: 0, count: channels * rect.width * rect.height)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for c in 0..<channels {
                    for y in 0..<rect.height {
                        let s = (c * height + rect.y + y) * width + rect.x
                        let d = (c * rect.height + y) * rect.width
                        for x in 0..<rect.width { dst[d + x] = src[s + x] }
                    }
                }
            }
        }
        return PlanarImage(width: rect.width, height: rect.height, channels: channels, pixels: out)
    }
}

/// An axis-aligned integer rectangle in pixel (or latent) units.
public struct PixelRect: Hashable, Sendable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int
    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }
    public var maxX: Int { x + width }
    public var maxY: Int { y + height }
    public var description: String { "(\(x),\(y) \(width)x\(height))" }
}
