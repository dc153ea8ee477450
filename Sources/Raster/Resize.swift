import CKernels

extension PlanarImage {
    /// Lanczos3 resampling of every channel to exactly `width` x `height` (antialiased when shrinking; edges
    /// clamp-normalised, no dark borders): the C kernel `ck_resize_lanczos3`. The same size returns the image.
    public func resizedLanczos3(width: Int, height: Int) throws -> PlanarImage {
        guard width > 0, height > 0, self.width > 0, self.height > 0 else {
            throw RasterError(.invalidGeometry, "cannot resize \(self.width)x\(self.height) to \(width)x\(height)")
        }
        if width == self.width && height == self.height { return self }
        var rc: Int32 = 0
        let count = channels * width * height
        let out = [Float](unsafeUninitializedCapacity: count) { buf, n in
            rc = pixels.withUnsafeBufferPointer { src in
                ck_resize_lanczos3(src.baseAddress, Int32(self.width), Int32(self.height), Int32(channels),
                                   buf.baseAddress, Int32(width), Int32(height))
            }
            n = count
        }
        if rc != 0 {
            throw RasterError(.outOfMemory, "no memory to resize \(self.width)x\(self.height) to \(width)x\(height)")
        }
        return PlanarImage(width: width, height: height, channels: channels, pixels: out)
    }
}
