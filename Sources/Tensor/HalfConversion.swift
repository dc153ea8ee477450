import CKernels

extension Tensor {
    /// A float32 tensor widened from IEEE half values (`count` = product of `shape`); `bits` may be unaligned.
    public convenience init(float16Bits bits: UnsafeRawPointer, shape: [Int]) {
        self.init(zeros: shape)
        if UInt(bitPattern: bits) % 2 == 0 {
            ck_f16_to_f32(data, bits.assumingMemoryBound(to: UInt16.self), count)
        } else {
            let tmp = UnsafeMutablePointer<UInt16>.allocate(capacity: max(count, 1))
            defer { tmp.deallocate() }
            UnsafeMutableRawPointer(tmp).copyMemory(from: bits, byteCount: count * 2)
            ck_f16_to_f32(data, tmp, count)
        }
    }
}
