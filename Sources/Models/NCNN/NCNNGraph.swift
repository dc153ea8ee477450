import Checkpoints
import Foundation
import Tensor

/// A general ncnn network (`.param` + `.bin`) run on the dreamsr engine.
///
/// The layers are ordered topologically from the blobs they read and write (the file order need not be), each is
/// turned into an `NCNNLayerOp` at load (weights read from the .bin in file order, as ncnn does), and `forward` runs
/// them, dropping every blob after its last reader. Blobs are planar float32 tensors `[C, H, W]` (or `[W]` for the
/// vectors of pooling / inner-product layers). 3x3 stride-1 convolutions run as Winograd F(4x4,3x3)
/// (`WinogradConv3x3`, `threads` threads), other convolutions as im2col + small-N GEMM (`PackedConv2D`),
/// deconvolutions as one small convolution per output phase (`PackedTransposedConv2D`; BLAS + col2im when dilated). A layer type or parameter this runner does not implement is refused at load with the layer's type, name
/// and .param line. `forward` is synchronous and blocking; it is safe to call concurrently.
public final class NCNNGraph: Sendable {
    /// Layer types this runner implements (see `NCNNLayerOp` for the parameters each accepts).
    public static let supportedLayerTypes: Set<String> = [
        "Input", "Convolution", "Deconvolution", "Split", "Concat", "Eltwise", "BinaryOp", "Crop", "Pooling",
        "InnerProduct", "PReLU", "PixelShuffle", "Interp", "Scale",
    ]

    struct Step: Sendable {
        let op: NCNNLayerOp
        let layer: String
        let inputs: [Int]
        let outputs: [Int]
        /// Blobs whose last reader is this step (freed after it).
        let frees: [Int]
        /// The first input's buffer is read by nothing after this step (no later reader, no live Split alias, not
        /// the graph input or output): the layer may write its result into it.
        let mayOverwrite: Bool
    }

    public let source: String
    public let inputBlob: String
    public let outputBlob: String
    /// Layer count by type, for logs and tests.
    public let layerCounts: [String: Int]
    public let threads: Int
    /// Blob buffers and scratch kept from one forward to the next (`NCNNRetainedBuffers`).
    let retained = NCNNRetainedBuffers()
    let steps: [Step]
    let inputIndex: Int
    let outputIndex: Int
    let blobCount: Int

    /// Loads `paramPath` / `binPath`; `threads` defaults to the OpenBLAS thread count.
    public convenience init(paramPath: String, binPath: String, threads: Int? = nil) throws {
        let param = try NCNNParam(contentsOf: paramPath)
        var bin = try NCNNModelBin(contentsOf: binPath)
        try self.init(param: param, bin: &bin, source: paramPath, threads: threads)
    }

    public init(param: NCNNParam, bin: inout NCNNModelBin, source: String, threads: Int? = nil) throws {
        self.source = source
        self.threads = max(1, threads ?? BLASRuntime.threads)
        // Refuse unknown types before reading any weight.
        for l in param.layers where !Self.supportedLayerTypes.contains(l.type) {
            throw NCNNGraphError(.unsupportedLayer,
                                 "\(source): line \(l.line): layer '\(l.name)' has type '\(l.type)', which this runner "
                                 + "does not implement (it runs \(Self.supportedLayerTypes.sorted().joined(separator: ", ")))")
        }
        // Weights are stored in file order.
        var ops: [NCNNLayerOp] = []
        ops.reserveCapacity(param.layers.count)
        for l in param.layers { ops.append(try NCNNLayerOp(layer: l, bin: &bin, source: source)) }
        try bin.expectEnd()

        // Blob ids, producers, topological order.
        var ids: [String: Int] = [:]
        func id(_ name: String) -> Int {
            if let i = ids[name] { return i }
            ids[name] = ids.count
            return ids.count - 1
        }
        var producer: [Int: Int] = [:]
        for (li, l) in param.layers.enumerated() {
            for o in l.outputs {
                let b = id(o)
                if let p = producer[b] {
                    throw NCNNGraphError(.badGraph, "\(source): line \(l.line): blob '\(o)' of layer '\(l.name)' is "
                                         + "already produced by layer '\(param.layers[p].name)' (line \(param.layers[p].line))")
                }
                producer[b] = li
            }
        }
        for l in param.layers {
            for i in l.inputs where producer[id(i)] == nil {
                throw NCNNGraphError(.badGraph, "\(source): line \(l.line): layer '\(l.name)' reads blob '\(i)', which no "
                                     + "layer produces")
            }
        }
        let inputs = param.layers.enumerated().filter { $0.element.type == "Input" }
        guard inputs.count == 1, inputs[0].element.outputs.count == 1 else {
            throw NCNNGraphError(.badGraph, "\(source): expected exactly one Input layer with one blob, found \(inputs.count)")
        }
        // Kahn's algorithm, preferring file order.
        let n = param.layers.count
        var pending = param.layers.map { l in Set(l.inputs.map { producer[id($0)]! }).count }
        var readers: [[Int]] = Array(repeating: [], count: n)
        for (li, l) in param.layers.enumerated() {
            for p in Set(l.inputs.map({ producer[id($0)]! })) { readers[p].append(li) }
        }
        var ready = (0..<n).filter { pending[$0] == 0 }
        var order: [Int] = []
        while !ready.isEmpty {
            ready.sort()
            let li = ready.removeFirst()
            order.append(li)
            for r in readers[li] {
                pending[r] -= 1
                if pending[r] == 0 { ready.append(r) }
            }
        }
        guard order.count == n else {
            let stuck = param.layers.indices.filter { !order.contains($0) }.map { param.layers[$0] }.first!
            throw NCNNGraphError(.badGraph, "\(source): line \(stuck.line): layer '\(stuck.name)' is part of a cycle")
        }
        // The output: the blob no layer reads (exactly one).
        var read = Set<Int>()
        for l in param.layers { for i in l.inputs { read.insert(id(i)) } }
        let unread = param.layers.flatMap(\.outputs).filter { !read.contains(id($0)) }
        guard unread.count == 1 else {
            throw NCNNGraphError(.badGraph, "\(source): expected one output blob (read by no layer), found "
                                 + "\(unread.count): \(unread.prefix(5).joined(separator: ", "))")
        }
        var lastUse: [Int: Int] = [:]
        for (pos, li) in order.enumerated() { for i in param.layers[li].inputs { lastUse[id(i)] = pos } }
        let outputId = id(unread[0])
        // Split outputs share their input's buffer: `root` maps every blob to the blob that owns its buffer.
        var root: [Int: Int] = [:]
        for li in order {
            let l = param.layers[li]
            for o in l.outputs.map(id) { root[o] = l.type == "Split" ? root[id(l.inputs[0]), default: id(l.inputs[0])] : o }
        }
        var aliases: [Int: [Int]] = [:]
        for (b, r) in root { aliases[r, default: []].append(b) }
        var steps: [Step] = []
        for (pos, li) in order.enumerated() {
            let l = param.layers[li]
            let ins = l.inputs.map(id)
            let frees = Set(ins).filter { lastUse[$0] == pos && $0 != outputId }.sorted()
            var mayOverwrite = false
            if let first = ins.first, let r = root[first] {
                let shared = aliases[r] ?? [first]
                mayOverwrite = r != id(inputs[0].element.outputs[0]) && !shared.contains(outputId)
                    && shared.allSatisfy { (lastUse[$0] ?? -1) <= pos }
                    && ins.dropFirst().allSatisfy { root[$0] != r }
            }
            steps.append(Step(op: ops[li], layer: l.name, inputs: ins, outputs: l.outputs.map(id), frees: frees,
                              mayOverwrite: mayOverwrite))
        }
        self.steps = steps
        self.inputBlob = inputs[0].element.outputs[0]
        self.outputBlob = unread[0]
        self.inputIndex = id(inputBlob)
        self.outputIndex = outputId
        self.blobCount = ids.count
        self.layerCounts = param.layers.reduce(into: [:]) { $0[$1.type, default: 0] += 1 }
    }

    /// Runs the network on `[1, C, H, W]` (or `[C, H, W]`) and returns the output blob as `[1, C', H', W']`.
    public func forward(_ input: Tensor) throws -> Tensor { try forward(input, keepPacked: true) }

    /// `keepPacked: false` converts every blob to planar after each layer (and runs every layer's planar form): the
    /// reference the packed path is tested against.
    func forward(_ input: Tensor, keepPacked: Bool) throws -> Tensor {
        let out = try run(try Self.chwInput(input), replacingPooling: [], stopAtNextPooling: false, keepPacked: keepPacked)
        return out.rank == 3 ? out.reshaped([1] + out.shape) : out
    }

    /// `[1, C, H, W]` or `[C, H, W]` as `[C, H, W]`.
    static func chwInput(_ input: Tensor) throws -> Tensor {
        let x: Tensor
        switch input.rank {
        case 4 where input.shape[0] == 1: x = input.reshaped(Array(input.shape.dropFirst()))
        case 3: x = input
        default: throw NCNNGraphError(.badInput, "expected a [1, C, H, W] tensor, got \(input.shape)")
        }
        guard x.shape.allSatisfy({ $0 > 0 }) else { throw NCNNGraphError(.badInput, "empty input \(input.shape)") }
        return x
    }

    /// Runs the steps on a `[C, H, W]` input and returns the output blob (planar). The first
    /// `replacingPooling.count` global pooling layers output those vectors instead of pooling their input; with
    /// `stopAtNextPooling`, the run stops at the next global pooling layer and returns that layer's input (statistics
    /// shared across tiles: NCNNSharedStatistics.swift).
    func run(_ x: Tensor, replacingPooling: [Tensor], stopAtNextPooling: Bool, keepPacked: Bool = true) throws -> Tensor {
        let context = NCNNRunContext(threads: threads, profile: NCNNRunContext.profilingEnabled, retained: retained)
        defer {
            context.workers.shutdown()
            context.retain(into: retained)
        }
        var blobs = [NCNNBlob?](repeating: nil, count: blobCount)
        blobs[inputIndex] = NCNNBlob(planar: x)
        var pooling = 0
        for step in steps {
            if case .input = step.op { continue }
            var outs: [NCNNBlob]
            do {
                // `ins` ends here, so the buffers of blobs freed below are no longer referenced by this step.
                let ins = step.inputs.map { blobs[$0]! }
                if case .globalPooling = step.op, pooling < replacingPooling.count || stopAtNextPooling {
                    if pooling == replacingPooling.count { return ins[0].planar(context) }
                    outs = [NCNNBlob(planar: replacingPooling[pooling])]
                    pooling += 1
                } else {
                    if case .globalPooling = step.op { pooling += 1 }
                    do {
                        let label = !NCNNRunContext.profilingPerLayer ? step.op.typeName
                            : "\(step.layer)(\(step.op.typeName)) in " + (ins.first?.chw.map { "\($0.c)x\($0.h)x\($0.w)" } ?? "-")
                        outs = try context.timed(label) {
                            try step.op.forward(blobs: ins, outputs: step.outputs.count,
                                                mayOverwrite: step.mayOverwrite && keepPacked, context: context)
                        }
                        if !keepPacked { outs = outs.map { NCNNBlob(planar: $0.planar(context)) } }
                    } catch let e as NCNNGraphError {
                        throw NCNNGraphError(e.code, "\(source): layer '\(step.layer)': \(e.message)")
                    }
                }
            }
            for (b, t) in zip(step.outputs, outs) { blobs[b] = t }
            outs = []
            for b in step.frees { context.release(&blobs[b]) }
        }
        guard let result = blobs[outputIndex] else {
            throw NCNNGraphError(.badGraph, "\(source): the output blob '\(outputBlob)' was not produced")
        }
        let out = result.planar(context)
        context.reportProfile(source)
        return out
    }
}

/// Blob buffers and Winograd scratch kept by a graph between forwards, so the next tile reuses the previous
/// tile's buffers instead of faulting in (and the kernel clearing) fresh pages for every blob, as ncnn's pooled
/// allocator does. At most `NCNNRunContext.poolBudgetBytes` of buffers; a forward takes them all at its start and
/// gives them back at its end (concurrent forwards: the first to finish keeps its set). Freed with the graph.
final class NCNNRetainedBuffers: @unchecked Sendable {
    private let lock = NSLock()
    private var buffers: [Tensor] = []
    private var scratch: ConvScratch?

    func take() -> (buffers: [Tensor], scratch: ConvScratch?) {
        lock.lock()
        defer { buffers = []; scratch = nil; lock.unlock() }
        return (buffers, scratch)
    }

    func give(buffers b: [Tensor], scratch s: ConvScratch) {
        lock.lock()
        defer { lock.unlock() }
        if buffers.isEmpty { buffers = b }
        if scratch == nil { scratch = s }
    }

    /// Bytes of blob buffers held (tests).
    var bytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return buffers.reduce(0) { $0 + $1.count * 4 }
    }
}

/// Per-forward resources shared by the layers (worker threads, Winograd scratch, recycled blob buffers).
final class NCNNRunContext: @unchecked Sendable {
    let workers: ParallelWorkers
    let scratch: ConvScratch
    /// Buffers of blobs that died (during this forward or an earlier one of the same graph): a later layer output
    /// reuses the smallest one that holds it (and is at most twice its size), as a prefix view, instead of a fresh
    /// allocation (whose pages the kernel would fault in and clear again). Used from the forward's own thread only
    /// (never inside `parallel`).
    private var pool: [Tensor]
    private var pooledBytes: Int
    /// Upper bound on the bytes the pool holds (buffers beyond it are freed).
    static let poolBudgetBytes = 256 << 20

    /// A tensor of `shape` whose values are unspecified (a recycled buffer or an uninitialised one): for outputs
    /// the layer writes completely.
    func uninitializedTensor(_ shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        var best = -1
        for (i, t) in pool.enumerated() where t.count >= n && t.count <= 2 * n && (best < 0 || t.count < pool[best].count) {
            best = i
        }
        guard best >= 0 else { return Tensor(uninitialized: shape) }
        let base = pool.remove(at: best)
        pooledBytes -= base.count * 4
        return base.shape == shape ? base : base.prefixView(shape)
    }

    /// Drops a blob whose last reader has run; its buffer joins the pool when nothing else references it (no
    /// Split alias, view or caller).
    func release(_ blob: inout NCNNBlob?) {
        guard var base = Self.deadBuffer(&blob), isKnownUniquelyReferenced(&base),
              pooledBytes + base.count * 4 <= Self.poolBudgetBytes else { return }
        pool.append(base)
        pooledBytes += base.count * 4
    }

    /// The tensor owning the buffer of `blob`'s tensor when that tensor was referenced by `blob` alone (the blob is
    /// cleared; a prefix view or reshape dies here, so its owner may be uniquely referenced by the caller).
    private static func deadBuffer(_ blob: inout NCNNBlob?) -> Tensor? {
        guard var t = blob?.tensor else { return nil }
        blob = nil
        guard isKnownUniquelyReferenced(&t) else { return nil }
        return t.bufferOwner
    }

    /// Hands the pool and scratch back to `retained` for the next forward.
    func retain(into retained: NCNNRetainedBuffers) {
        retained.give(buffers: pool, scratch: scratch)
        pool = []
        pooledBytes = 0
    }
    /// Seconds per layer type (and "pack16" / "unpack16" layout conversions, also counted in their layer's time)
    /// when profiling; nil otherwise.
    private var profile: [String: Double]?

    /// `DREAMSR_NCNN_PROFILE=1`: every forward prints its time per layer type to stderr; `=layers`: per layer
    /// (name and type) instead (diagnosis only).
    static let profilingEnabled = ["1", "layers"].contains(ProcessInfo.processInfo.environment["DREAMSR_NCNN_PROFILE"])
    static let profilingPerLayer = ProcessInfo.processInfo.environment["DREAMSR_NCNN_PROFILE"] == "layers"

    init(threads: Int, profile: Bool = false, retained: NCNNRetainedBuffers? = nil) {
        workers = ParallelWorkers(count: threads)
        self.profile = profile ? [:] : nil
        let kept = retained?.take()
        pool = kept?.buffers ?? []
        pooledBytes = pool.reduce(0) { $0 + $1.count * 4 }
        scratch = kept?.scratch ?? ConvScratch()
    }

    /// Runs `body` over contiguous slices of `0..<n`, one per worker (on the calling thread alone when `n` < 2).
    func parallel(_ n: Int, _ body: (Range<Int>) -> Void) {
        let parts = min(workers.count, n)
        guard parts > 1 else { body(0..<n); return }
        workers.run { i in
            guard i < parts else { return }
            body((i * n / parts)..<((i + 1) * n / parts))
        }
    }

    /// Runs `body`, adding its wall time to `label` when profiling.
    func timed<T>(_ label: String, _ body: () throws -> T) rethrows -> T {
        guard profile != nil else { return try body() }
        let t = DispatchTime.now()
        defer { profile![label, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9 }
        return try body()
    }

    /// Prints the profile (largest first) to stderr when profiling.
    func reportProfile(_ source: String) {
        guard let profile else { return }
        let total = profile.filter { !$0.key.hasPrefix("pack16") && !$0.key.hasPrefix("unpack16") }.values.reduce(0, +)
        let parts = profile.sorted { $0.value > $1.value }.map { "\($0.key) " + String(format: "%.4f", $0.value) }
        let line = "ncnn profile \(URL(fileURLWithPath: source).lastPathComponent): total " + String(format: "%.4f", total)
            + " s: " + parts.joined(separator: ", ") + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
