import Tensor

/// Test-time augmentation (realesrgan-ncnn-vulkan's `-x`): each tile is restored in the 8 orientations of the
/// square (identity, flips, 90-degree rotations and their flips), every result is turned back and the 8 are
/// averaged. About 8 times the model's work for a slightly steadier result; a restorer that commutes with flips and
/// transposes gives exactly its plain output.
public struct TestTimeAugmentedRestorer: TileRestorer {
    public let base: any TileRestorer
    public var scale: Int { base.scale }
    public var name: String { base.name + "+tta" }

    public init(_ base: any TileRestorer) { self.base = base }

    /// One element of the dihedral group of the square, applied to the last two axes of an NCHW tensor as
    /// "flip x, flip y, then transpose"; `inverse` undoes it (transpose first, then the same flips).
    struct Orientation: Sendable, CaseIterable, Equatable {
        let flipX: Bool
        let flipY: Bool
        let transpose: Bool
        static let allCases: [Orientation] = (0..<8).map {
            Orientation(flipX: $0 & 1 != 0, flipY: $0 & 2 != 0, transpose: $0 & 4 != 0)
        }

        func apply(_ t: Tensor) -> Tensor { Self.transform(t, flipX: flipX, flipY: flipY, transpose: transpose, transposeFirst: false) }
        func inverse(_ t: Tensor) -> Tensor { Self.transform(t, flipX: flipX, flipY: flipY, transpose: transpose, transposeFirst: true) }

        /// out = transpose?(flip(in)) or flip(transpose?(in)), over [n, c, h, w].
        static func transform(_ t: Tensor, flipX: Bool, flipY: Bool, transpose: Bool, transposeFirst: Bool) -> Tensor {
            precondition(t.shape.count == 4, "expected an NCHW tensor, got \(t.shape)")
            let planes = t.shape[0] * t.shape[1], h = t.shape[2], w = t.shape[3]
            let (oh, ow) = transpose ? (w, h) : (h, w)
            let out = Tensor(zeros: [t.shape[0], t.shape[1], oh, ow])
            t.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for p in 0..<planes {
                        let s = p * h * w, d = p * oh * ow
                        for oy in 0..<oh {
                            for ox in 0..<ow {
                                // (oy, ox) of the output -> (y, x) of the input.
                                var y = oy, x = ox
                                if transposeFirst {
                                    // out = flip(transpose(in)): the flips act on the output grid.
                                    if flipX { x = ow - 1 - x }
                                    if flipY { y = oh - 1 - y }
                                    if transpose { swap(&x, &y) }
                                } else {
                                    if transpose { swap(&x, &y) }
                                    if flipX { x = w - 1 - x }
                                    if flipY { y = h - 1 - y }
                                }
                                dst[d + oy * ow + ox] = src[s + y * w + x]
                            }
                        }
                    }
                }
            }
            return out
        }
    }

    public func restore(_ tile: Tensor) throws -> Tensor {
        var sum: Tensor?
        for o in Orientation.allCases {
            let restored = o.inverse(try base.restore(o.apply(tile)))
            guard let acc = sum else {
                sum = restored
                continue
            }
            guard acc.shape == restored.shape else {
                throw UpscalingError(.modelOutputShape,
                                     "\(base.name) returned \(restored.shape) for a turned tile, \(acc.shape) for the plain one")
            }
            acc.withUnsafeMutableBufferPointer { a in
                restored.withUnsafeBufferPointer { r in for i in a.indices { a[i] += r[i] } }
            }
        }
        let out = sum!
        let n = Float(Orientation.allCases.count)
        out.withUnsafeMutableBufferPointer { a in for i in a.indices { a[i] /= n } }
        return out
    }
}
