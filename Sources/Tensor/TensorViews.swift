/// Read-only memory that outlives every tensor viewing it (a memory-mapped checkpoint). A conformer promises that
/// `bytes` stays valid and unchanged for its whole lifetime; `Tensor(viewing:byteOffset:shape:)` keeps it alive.
public protocol TensorStorage: AnyObject, Sendable {
    var bytes: UnsafeRawBufferPointer { get }
}

/// Views and copies between tensors, bounds-checked, with no pointer leaving the tensors.
extension Tensor {
    /// A zero-copy float32 view of `storage`'s bytes at `byteOffset` (must be 4-byte aligned and hold `shape`
    /// values). The view is read-only when the storage is (a read-only mapping: writing crashes).
    public convenience init(viewing storage: some TensorStorage, byteOffset: Int, shape: [Int]) {
        let n = shape.reduce(1, *)
        let bytes = storage.bytes
        precondition(shape.allSatisfy { $0 >= 0 } && byteOffset >= 0 && byteOffset + n * 4 <= bytes.count,
                     "view of \(shape) at byte \(byteOffset) outside \(bytes.count) bytes")
        guard let base = bytes.baseAddress else {
            // Only an empty view fits in an empty storage; give it a buffer of its own.
            self.init(zeros: shape)
            return
        }
        let start = base + byteOffset
        precondition(UInt(bitPattern: start) % 4 == 0, "float32 view at an unaligned byte offset \(byteOffset)")
        self.init(viewing: UnsafeMutableRawPointer(mutating: start).assumingMemoryBound(to: Float.self), shape: shape,
                  owner: storage)
    }

    /// A tensor holding a copy of little-endian float32 `bytes` (exactly `shape` values; may be unaligned).
    public convenience init(float32Bytes bytes: UnsafeRawBufferPointer, shape: [Int]) {
        self.init(zeros: shape)
        precondition(bytes.count == count * 4, "\(bytes.count) bytes for \(shape) float32 values")
        guard count > 0 else { return }
        UnsafeMutableRawPointer(data).copyMemory(from: bytes.baseAddress!, byteCount: count * 4)
    }

    /// A view of `shape` values starting at flat index `offset`, sharing this tensor's buffer (it keeps this tensor
    /// alive). Bounds-checked.
    public func view(offset: Int = 0, shape newShape: [Int]) -> Tensor {
        let n = newShape.reduce(1, *)
        precondition(newShape.allSatisfy { $0 >= 0 } && offset >= 0 && offset + n <= count,
                     "view of \(newShape) at \(offset) outside \(shape)")
        return Tensor(viewing: data + offset, shape: newShape, owner: self)
    }

    /// Copies `count` values of `source`, starting at flat index `sourceOffset`, into this tensor at flat index
    /// `offset` (default: the rest of `source`). Bounds-checked; `source` may be this tensor (ranges may overlap).
    public func copyValues(from source: Tensor, at sourceOffset: Int = 0, count n: Int? = nil, to offset: Int = 0) {
        let n = n ?? (source.count - sourceOffset)
        precondition(n >= 0 && sourceOffset >= 0 && sourceOffset + n <= source.count,
                     "copy of \(n) values at \(sourceOffset) outside source \(source.shape)")
        precondition(offset >= 0 && offset + n <= count, "copy of \(n) values at \(offset) outside \(shape)")
        guard n > 0 else { return }
        withExtendedLifetime((self, source)) {
            UnsafeMutableRawPointer(data + offset).copyMemory(from: source.data + sourceOffset, byteCount: n * 4)
        }
    }

    /// `self[i] = body(a[i])` for every flat index (counts must match; `a` may be `self`).
    @inlinable
    public func assign(_ a: Tensor, _ body: (Float) -> Float) {
        precondition(a.count == count, "elementwise \(shape) from \(a.shape)")
        withExtendedLifetime((self, a)) {
            for i in 0..<count { data[i] = body(a.data[i]) }
        }
    }

    /// `self[i] = body(a[i], b[i])` for every flat index (counts must match; `a` or `b` may be `self`).
    @inlinable
    public func assign(_ a: Tensor, _ b: Tensor, _ body: (Float, Float) -> Float) {
        precondition(a.count == count && b.count == count, "elementwise \(shape) from \(a.shape), \(b.shape)")
        withExtendedLifetime((self, a, b)) {
            for i in 0..<count { data[i] = body(a.data[i], b.data[i]) }
        }
    }

    /// Sets every value to `value`.
    public func fill(_ value: Float) {
        withExtendedLifetime(self) { data.update(repeating: value, count: count) }
    }
}

extension Optional where Wrapped == Tensor {
    /// Calls `body` with the tensor's pointer (kept alive for the call), or with nil when there is no tensor (an
    /// optional bias or norm weight handed to a C kernel).
    @inlinable
    public func withUnsafePointerOrNil<R>(_ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        switch self {
        case .some(let t): try t.withUnsafePointer { try body($0) }
        case .none: try body(nil)
        }
    }
}
