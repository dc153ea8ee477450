import CKernels

/// A dense float32 tensor in row-major order (NCHW for images, [tokens, features] for sequences).
///
/// `Tensor` is a reference type over one 64-byte aligned buffer: ops that produce new values allocate new tensors,
/// `reshaped` / `view` share the buffer. The buffer is reached only through scoped accessors
/// (`withUnsafePointer`, `withUnsafeMutableBufferPointer`, ...) that keep the tensor alive for the call, so a pointer
/// can never outlive its tensor (optimised builds may end a tensor's life right after its last use).
///
/// `@unchecked Sendable`: the values are mutable memory the compiler cannot check; ownership is handed between
/// compute lanes, and a tensor is never mutated from two threads at once (the lanes serialise work; parallel kernels
/// write disjoint rows).
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    /// The values. Internal: outside this module only the scoped accessors hand out pointers.
    @usableFromInline let data: UnsafeMutablePointer<Float>
    /// Keeps the owner of `data` alive for views (another tensor's buffer, a memory-mapped file).
    private let owner: AnyObject?
    private let ownsBuffer: Bool

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
        self.data = raw.assumingMemoryBound(to: Float.self)
        self.owner = nil
        self.ownsBuffer = true
    }

    /// A tensor whose values are not initialised, for kernels that write every value before anything reads it
    /// (package-internal; debug builds fill it with NaN, so a value left unwritten fails the parity tests loudly).
    package init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        #if DEBUG
        raw.initializeMemory(as: Float.self, repeating: .nan, count: max(count, 1))
        #else
        raw.bindMemory(to: Float.self, capacity: max(count, 1))
        #endif
        self.data = raw.assumingMemoryBound(to: Float.self)
        self.owner = nil
        self.ownsBuffer = true
    }

    /// A tensor holding a copy of `values` (count must match the shape).
    public convenience init(shape: [Int], values: [Float]) {
        self.init(zeros: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { src in
            data.update(from: src.baseAddress!, count: count)
        }
    }

    /// A tensor whose values are produced by `body(index)`.
    public convenience init(shape: [Int], generator body: (Int) -> Float) {
        self.init(zeros: shape)
        for i in 0..<count { data[i] = body(i) }
    }

    /// A view over memory owned by `owner` (no copy). The caller guarantees `pointer` holds `shape` floats.
    init(viewing pointer: UnsafeMutablePointer<Float>, shape: [Int], owner: AnyObject) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = pointer
        self.owner = owner
        self.ownsBuffer = false
    }

    deinit {
        guard ownsBuffer else { return }
        #if DEBUG
        // Debug builds (the tests) poison a buffer before freeing it: a raw `data` pointer used after its tensor
        // died (e.g. taken from a temporary) then reads NaN, and parity tests fail loudly instead of passing by luck.
        data.update(repeating: .nan, count: count)
        #endif
        UnsafeMutableRawPointer(data).deallocate()
    }

    public var rank: Int { shape.count }

    /// Same buffer, new shape.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(viewing: data, shape: newShape, owner: self)
    }

    /// The tensor whose buffer holds this one's values: itself when it owns its buffer, the tensor it views
    /// (`reshaped`, `view`, `prefixView`), nil when it views memory owned by something else (a mapped file).
    package var bufferOwner: Tensor? { ownsBuffer ? self : owner as? Tensor }

    /// A tensor of `shape` over the first values of this one's buffer (no copy; keeps this tensor alive): a larger
    /// recycled buffer serving a smaller tensor. Its values are whatever the buffer holds.
    package func prefixView(_ newShape: [Int]) -> Tensor {
        precondition(newShape.allSatisfy { $0 >= 0 } && newShape.reduce(1, *) <= count,
                     "prefix \(newShape) does not fit in \(shape)")
        return Tensor(viewing: data, shape: newShape, owner: self)
    }

    /// A deep copy.
    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Calls `body` with the tensor's values; the tensor stays alive until `body` returns. The pointer must not escape.
    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeBufferPointer(start: data, count: count)) }
    }

    /// Calls `body` with the tensor's values, writable; the tensor stays alive until `body` returns.
    @inlinable
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeMutableBufferPointer(start: data, count: count)) }
    }

    /// Calls `body` with a pointer to the first value (for C kernels); the tensor stays alive until `body` returns.
    @inlinable
    public func withUnsafePointer<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafePointer(data)) }
    }

    /// Calls `body` with a writable pointer to the first value (for C kernels); the tensor stays alive until `body` returns.
    @inlinable
    public func withUnsafeMutablePointer<R>(_ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(data) }
    }

    public func toArray() -> [Float] { withUnsafeBufferPointer { Array($0) } }

    /// One value by flat (row-major) index; bounds-checked.
    @inlinable
    public subscript(flat index: Int) -> Float {
        get {
            precondition(index >= 0 && index < count, "index \(index) out of range for \(shape)")
            return withExtendedLifetime(self) { data[index] }
        }
        set {
            precondition(index >= 0 && index < count, "index \(index) out of range for \(shape)")
            withExtendedLifetime(self) { data[index] = newValue }
        }
    }

    /// Largest absolute value (0 for an empty tensor).
    public func maxAbs() -> Float {
        var m: Float = 0
        for i in 0..<count { m = max(m, abs(data[i])) }
        return m
    }

    /// Largest absolute elementwise difference to `other` (shapes must match).
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(shape == other.shape, "shape \(shape) vs \(other.shape)")
        var m: Float = 0
        for i in 0..<count { m = max(m, abs(data[i] - other.data[i])) }
        return m
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor\(shape)" }
}
