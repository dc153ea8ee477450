import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
private let posixRead = Glibc.read
private let posixWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let posixRead = Darwin.read
private let posixWrite = Darwin.write
#endif
import Tensor

/// How `AutoencoderKL.encode`/`decode` split an image into tiles.
///
/// Seam-free by construction: every GroupNorm uses statistics summed over the non-overlapping tile cores of the whole
/// image (per-channel sums and sums of squares, combined, then the same mean/variance applied to every tile), and each
/// tile is padded by the network's receptive radius (`VAEProgram.receptiveRadius`) so its core is computed exactly;
/// outputs are the cropped cores, no blending. The mid-block attention is exact (`.global`: keys and values of every
/// core position, memory 2·C·positions floats) or approximated within each padded tile (`.perTile`, as
/// multidiffusion-upscaler's tiled VAE; memory bounded by the tile).
///
/// Memory: one tile's activations at a time plus the states of the tiles waiting at the current GroupNorm — all in RAM
/// with `.memory`, in scratch files with `.disk` (then resident memory is bounded by the tile size), or in RAM up to a
/// budget and the rest in scratch files with `.spill`.
public struct VAETiling: Sendable, Equatable {
    public enum Attention: Sendable, Equatable {
        case global
        case perTile
        /// Global while the latent has at most `maxPositions` positions, per tile beyond.
        case auto(maxPositions: Int)
    }

    public enum StateStorage: Sendable, Equatable {
        case memory
        /// Scratch files in this directory (created if needed; files removed after the run).
        case disk(URL)
        /// In memory while the waiting tile states take at most `memoryBytes`, the rest in scratch files in the
        /// directory (created only when needed, removed after the run): small images pay no file I/O, large ones
        /// stay bounded by the tile plus the budget.
        case spill(URL, memoryBytes: Int)
    }

    /// Core tile size in input units (pixels for encode, latent pixels for decode); nil = untiled.
    public var tileSize: Int?
    /// Padding around each core in input units; nil = the exact receptive radius.
    public var padding: Int?
    public var attention: Attention
    public var storage: StateStorage
    /// GroupNorm statistics shared across tiles (seam-free). `false` normalises each padded tile with its own
    /// statistics, as naive tiled VAEs do (colour/contrast shifts between tiles); kept for comparison.
    public var sharedStatistics: Bool

    public init(tileSize: Int?, padding: Int? = nil, attention: Attention = .auto(maxPositions: 128 * 128),
                storage: StateStorage = .memory, sharedStatistics: Bool = true) {
        self.tileSize = tileSize
        self.padding = padding
        self.attention = attention
        self.storage = storage
        self.sharedStatistics = sharedStatistics
    }

    public static let untiled = VAETiling(tileSize: nil)
    public var isTiled: Bool { tileSize != nil }
}

/// A rectangle of a grid: rows `y..<y+h`, cols `x..<x+w`.
struct VAERect: Sendable, Equatable {
    var y: Int, x: Int, h: Int, w: Int
    var area: Int { h * w }
    func halved() -> VAERect { VAERect(y: y / 2, x: x / 2, h: h / 2, w: w / 2) }
    func doubled() -> VAERect { VAERect(y: y * 2, x: x * 2, h: h * 2, w: w * 2) }
}

/// One tile between ops: its activations `h` ([1, C, padded.h, padded.w]), the saved residual, and where its padded
/// window and owned core lie at the current resolution. Mutable and confined to the executor's thread: not Sendable.
final class VAETileState {
    var h: Tensor
    var residual: Tensor?
    var padded: VAERect
    var core: VAERect
    init(h: Tensor, padded: VAERect, core: VAERect) {
        self.h = h
        self.padded = padded
        self.core = core
    }
}

/// Where tile states wait while the other tiles reach the same GroupNorm.
protocol VAETileStore: AnyObject {
    func put(_ index: Int, _ state: VAETileState) throws
    func take(_ index: Int) throws -> VAETileState
}

final class VAEMemoryTileStore: VAETileStore {
    private var states: [Int: VAETileState] = [:]
    func put(_ index: Int, _ state: VAETileState) { states[index] = state }
    func take(_ index: Int) throws -> VAETileState {
        guard let s = states.removeValue(forKey: index) else { throw VAEError(.badTiling, "tile \(index) has no state") }
        return s
    }
}

/// Tile states in memory up to a byte budget, beyond it in scratch files (the scratch folder is made on first use).
final class VAESpillTileStore: VAETileStore {
    private let memory = VAEMemoryTileStore()
    private var disk: VAEDiskTileStore?
    private let parent: URL
    private let budget: Int
    private var resident: [Int: Int] = [:]
    private var residentBytes = 0

    init(parent: URL, memoryBytes: Int) {
        self.parent = parent
        budget = max(0, memoryBytes)
    }

    static func bytes(_ s: VAETileState) -> Int {
        4 * (s.h.count + (s.residual.map { $0 === s.h ? 0 : $0.count } ?? 0))
    }

    func put(_ index: Int, _ state: VAETileState) throws {
        let bytes = Self.bytes(state)
        if residentBytes + bytes <= budget {
            memory.put(index, state)
            resident[index] = bytes
            residentBytes += bytes
        } else {
            if disk == nil { disk = try VAEDiskTileStore(parent: parent) }
            try disk!.put(index, state)
        }
    }

    func take(_ index: Int) throws -> VAETileState {
        if let bytes = resident.removeValue(forKey: index) {
            residentBytes -= bytes
            return try memory.take(index)
        }
        guard let disk else { throw VAEError(.badTiling, "tile \(index) has no state") }
        return try disk.take(index)
    }
}

/// Tile states in scratch files (one file per tile: header of shapes and rects, then the raw floats).
final class VAEDiskTileStore: VAETileStore {
    let directory: URL
    /// Shapes and rects per stored tile; `residualIsH`: the residual is the same tensor as `h` (right after a
    /// shortcut-free beginResidual), written once and shared again when read back.
    private var meta: [Int: (hShape: [Int], resShape: [Int]?, residualIsH: Bool, padded: VAERect, core: VAERect)] = [:]

    init(parent: URL) throws {
        directory = parent.appendingPathComponent("dreamsr-vae-\(UUID().uuidString)")
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw VAEError(.io, "cannot create VAE scratch directory \(directory.path): \(error.localizedDescription)")
        }
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    private func url(_ i: Int) -> URL { directory.appendingPathComponent("tile\(i).f32") }

    func put(_ index: Int, _ s: VAETileState) throws {
        let u = url(index)
        let fd = open(u.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw VAEError(.io, "cannot create VAE tile state \(u.path): errno \(errno)") }
        defer { close(fd) }
        let residualIsH = s.residual === s.h
        for t in [s.h] + (residualIsH ? [] : s.residual.map { [$0] } ?? []) {
            try t.withUnsafeMutablePointer { try transfer(fd, UnsafeMutableRawPointer($0), t.count * 4, u, write: true) }
        }
        meta[index] = (s.h.shape, residualIsH ? nil : s.residual?.shape, residualIsH, s.padded, s.core)
    }

    func take(_ index: Int) throws -> VAETileState {
        guard let m = meta.removeValue(forKey: index) else { throw VAEError(.badTiling, "tile \(index) has no state") }
        let u = url(index)
        let fd = open(u.path, O_RDONLY)
        guard fd >= 0 else { throw VAEError(.io, "cannot open VAE tile state \(u.path): errno \(errno)") }
        defer { close(fd) }
        // Read straight into the tensors (no intermediate buffers: resident memory stays one tile state).
        func read(_ shape: [Int]) throws -> Tensor {
            let t = Tensor(zeros: shape)
            try t.withUnsafeMutablePointer { try transfer(fd, UnsafeMutableRawPointer($0), t.count * 4, u, write: false) }
            return t
        }
        let s = VAETileState(h: try read(m.hShape), padded: m.padded, core: m.core)
        if m.residualIsH { s.residual = s.h } else if let r = m.resShape { s.residual = try read(r) }
        return s
    }

    private func transfer(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ bytes: Int, _ u: URL, write: Bool) throws {
        var done = 0
        while done < bytes {
            let n = write ? posixWrite(fd, p + done, min(bytes - done, 1 << 30))
                          : posixRead(fd, p + done, min(bytes - done, 1 << 30))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw VAEError(.io, "\(write ? "write to" : "read from") VAE tile state \(u.path) failed after \(done) of \(bytes) bytes (errno \(errno))")
            }
            done += n
        }
    }
}

/// Copies the window `rect` of each of `channels` planes of `src` (planes `srcW` wide, `srcH` high) to `dst`, whose
/// planes are `dstW` wide and `dstH` high, at row `dstY`, column `dstX`.
func copyPlanarWindow(channels: Int, _ rect: VAERect, from src: UnsafePointer<Float>, srcH: Int, srcW: Int,
                      to dst: UnsafeMutablePointer<Float>, dstH: Int, dstW: Int, dstY: Int = 0, dstX: Int = 0) {
    for c in 0..<channels {
        for row in 0..<rect.h {
            (dst + (c * dstH + dstY + row) * dstW + dstX).update(
                from: src + (c * srcH + rect.y + row) * srcW + rect.x, count: rect.w)
        }
    }
}

/// `copyPlanarWindow` between two tensors (bounds-checked against both).
private func copyWindow(channels: Int, _ rect: VAERect, from src: Tensor, srcH: Int, srcW: Int,
                        to dst: Tensor, dstH: Int, dstW: Int) {
    precondition(src.count >= channels * srcH * srcW && dst.count >= channels * dstH * dstW
                 && rect.y >= 0 && rect.x >= 0 && rect.y + rect.h <= srcH && rect.x + rect.w <= srcW
                 && rect.h <= dstH && rect.w <= dstW, "window \(rect) of \(src.shape) into \(dst.shape)")
    src.withUnsafePointer { sp in
        dst.withUnsafeMutablePointer { dp in
            copyPlanarWindow(channels: channels, rect, from: sp, srcH: srcH, srcW: srcW, to: dp, dstH: dstH, dstW: dstW)
        }
    }
}

/// Runs an encoder or decoder op list over the tiles of one image, synchronising the tiles at every GroupNorm (and at
/// the mid-block attention when it is global). With one tile this is the plain untiled forward.
struct VAEExecutor {
    let model: AutoencoderKL
    let ops: [VAEOp]
    let tiling: VAETiling
    /// Tile cores start at multiples of this (input units): 2^(levels-1) for the encoder's stride-2 grid.
    let alignment: Int

    private enum Sync {
        case norm(scale: [Float], shift: [Float], silu: Bool)
        case attention(name: String, keys: Tensor, values: Tensor)
    }

    /// Splits `length` into `ceil(length/tile)` near-equal parts whose boundaries are multiples of `alignment`.
    static func splits(_ length: Int, tile: Int, alignment: Int) -> [Int] {
        let units = length / alignment
        let n = max(1, min(units, (length + tile - 1) / tile))
        var b = (0...n).map { Int((Double($0) * Double(units) / Double(n)).rounded()) * alignment }
        b[n] = length
        return b
    }

    func plan(height: Int, width: Int) throws -> [(core: VAERect, padded: VAERect)] {
        guard let tile = tiling.tileSize else {
            let r = VAERect(y: 0, x: 0, h: height, w: width)
            return [(r, r)]
        }
        guard tile >= alignment, tile % alignment == 0 else {
            throw VAEError(.badTiling, "VAE tile size \(tile) must be a positive multiple of \(alignment)")
        }
        let radius = Int(VAEProgram.receptiveRadius(ops).rounded(.up))
        var pad = tiling.padding ?? radius
        pad = (pad + alignment - 1) / alignment * alignment
        let ys = Self.splits(height, tile: tile, alignment: alignment)
        let xs = Self.splits(width, tile: tile, alignment: alignment)
        var out: [(VAERect, VAERect)] = []
        for i in 0..<(ys.count - 1) {
            for j in 0..<(xs.count - 1) {
                let core = VAERect(y: ys[i], x: xs[j], h: ys[i + 1] - ys[i], w: xs[j + 1] - xs[j])
                let y0 = max(0, core.y - pad), x0 = max(0, core.x - pad)
                let y1 = min(height, core.y + core.h + pad), x1 = min(width, core.x + core.w + pad)
                out.append((core, VAERect(y: y0, x: x0, h: y1 - y0, w: x1 - x0)))
            }
        }
        return out
    }

    /// Runs every batch item of `input` ([B, C, H, W]) into `output` ([B, C', H', W']).
    func run(_ input: Tensor, into output: Tensor) throws {
        let (b, c, hh, ww) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let tiles = try plan(height: hh, width: ww)
        try input.withUnsafePointer { inp in
            try output.withUnsafeMutablePointer { outp in
                for n in 0..<b {
                    try runOne(inp + n * c * hh * ww, channels: c, height: hh, width: ww, tiles: tiles,
                               output: outp + n * output.count / b, outShape: Array(output.shape.dropFirst()))
                }
            }
        }
    }

    private func isSync(_ op: VAEOp, globalAttention: Bool) -> Bool {
        switch op {
        case .norm: return tiling.sharedStatistics
        case .attention: return globalAttention
        default: return false
        }
    }

    private func runOne(_ input: UnsafePointer<Float>, channels: Int, height: Int, width: Int,
                        tiles: [(core: VAERect, padded: VAERect)], output: UnsafeMutablePointer<Float>,
                        outShape: [Int]) throws {
        let store: VAETileStore
        switch tiling.storage {
        case .memory: store = VAEMemoryTileStore()
        case .disk(let dir):
            store = tiles.count > 1 ? VAESpillTileStore(parent: dir, memoryBytes: 0) : VAEMemoryTileStore()
        case .spill(let dir, let bytes):
            store = tiles.count > 1 ? VAESpillTileStore(parent: dir, memoryBytes: bytes) : VAEMemoryTileStore()
        }
        for (i, t) in tiles.enumerated() {
            let h = Tensor(zeros: [1, channels, t.padded.h, t.padded.w])
            h.withUnsafeMutablePointer { hp in
                copyPlanarWindow(channels: channels, t.padded, from: input, srcH: height, srcW: width,
                                 to: hp, dstH: t.padded.h, dstW: t.padded.w)
            }
            try store.put(i, VAETileState(h: h, padded: t.padded, core: t.core))
        }
        // What the rest of the program still needs around a core, from each op on: the receptive radius of the ops
        // left (in pixels of the resolution there) and the grid alignment their downsamplings need. At every
        // synchronisation point each tile is cropped to core ± that radius: the margin that was only needed by the
        // ops already run is dropped, so later (larger, wider) levels compute and store far fewer halo pixels.
        let suffixMargin = ops.indices.map { Int(VAEProgram.receptiveRadius(Array(ops[$0...])).rounded(.up)) }
        let suffixAlignment = ops.indices.map { i in
            1 << ops[i...].reduce(0) { n, op in if case .downsample = op { return n + 1 } else { return n } }
        }
        // Image size at the current resolution (for the attention position count).
        var curH = height, curW = width
        var pc = 0
        var pending: Sync?
        while true {
            var next = pc
            var globalAttention = false
            func attentionIsGlobal() -> Bool {
                switch tiling.attention {
                case .global: return true
                case .perTile: return tiles.count == 1
                case .auto(let maxPositions): return tiles.count == 1 || curH * curW <= maxPositions
                }
            }
            while next < ops.count {
                switch ops[next] {
                case .downsample: curH /= 2; curW /= 2
                case .upsample: curH *= 2; curW *= 2
                default: break
                }
                if case .attention = ops[next] { globalAttention = attentionIsGlobal() }
                if isSync(ops[next], globalAttention: globalAttention) { break }
                next += 1
            }
            var stats: GroupNormStatistics?
            var keys: Tensor?, values: Tensor?
            var kvOffset = 0
            for i in tiles.indices {
                let s = try store.take(i)
                if let pending { apply(pending, to: s) }
                for op in ops[pc..<next] { execute(op, s) }
                if next == ops.count {
                    crop(s, into: output, shape: outShape)
                    continue
                }
                if tiles.count > 1 { Self.shrink(s, margin: suffixMargin[next], alignment: suffixAlignment[next]) }
                let core = VAERect(y: s.core.y - s.padded.y, x: s.core.x - s.padded.x, h: s.core.h, w: s.core.w)
                switch ops[next] {
                case .norm:
                    if stats == nil { stats = GroupNormStatistics(channels: s.h.shape[1]) }
                    stats!.accumulate(s.h, y0: core.y, rows: core.h, x0: core.x, cols: core.w)
                case .attention(let name):
                    let ch = s.h.shape[1]
                    if keys == nil {
                        keys = Tensor(zeros: [ch, curH * curW])
                        values = Tensor(zeros: [ch, curH * curW])
                    }
                    let x = Tensor(zeros: [ch, core.h * core.w])
                    copyWindow(channels: ch, core, from: s.h, srcH: s.padded.h, srcW: s.padded.w,
                               to: x, dstH: core.h, dstW: core.w)
                    let (k, v) = keyValues(name, x, positions: core.area)
                    for c in 0..<ch {
                        keys!.copyValues(from: k, at: c * core.area, count: core.area, to: c * keys!.shape[1] + kvOffset)
                        values!.copyValues(from: v, at: c * core.area, count: core.area, to: c * values!.shape[1] + kvOffset)
                    }
                    kvOffset += core.area
                default: break
                }
                try store.put(i, s)
            }
            if next == ops.count { break }
            switch ops[next] {
            case .norm(let name, let silu):
                let (gamma, beta) = model.norms[name]!
                let (scale, shift) = stats!.affine(groups: model.config.normGroups, eps: model.config.normEps,
                                                   gamma: gamma, beta: beta)
                pending = .norm(scale: scale, shift: shift, silu: silu)
            case .attention(let name):
                precondition(kvOffset == keys!.shape[1], "tile cores cover \(kvOffset) of \(keys!.shape[1]) positions")
                pending = .attention(name: name, keys: keys!, values: values!)
            default: preconditionFailure("not a sync op")
            }
            pc = next + 1
        }
    }

    /// Crops a tile's window (and its residual) to `core ± margin`, rounded outward to multiples of `alignment` and
    /// never beyond the current window. Every pixel kept is exact: the window was padded by the whole program's
    /// receptive radius, and the ops run so far have used up at most the part beyond `margin`.
    static func shrink(_ s: VAETileState, margin: Int, alignment: Int) {
        func span(core: Int, coreLength: Int, start: Int, length: Int) -> (Int, Int) {
            let a = max(start, (core - margin) / alignment * alignment)
            let b = min(start + length, (core + coreLength + margin + alignment - 1) / alignment * alignment)
            return (a, b - a)
        }
        let (y, h) = span(core: s.core.y, coreLength: s.core.h, start: s.padded.y, length: s.padded.h)
        let (x, w) = span(core: s.core.x, coreLength: s.core.w, start: s.padded.x, length: s.padded.w)
        guard h < s.padded.h || w < s.padded.w else { return }
        let window = VAERect(y: y, x: x, h: h, w: w)
        let local = VAERect(y: y - s.padded.y, x: x - s.padded.x, h: h, w: w)
        func crop(_ t: Tensor) -> Tensor {
            let out = Tensor(zeros: [1, t.shape[1], h, w])
            copyWindow(channels: t.shape[1], local, from: t, srcH: s.padded.h, srcW: s.padded.w, to: out, dstH: h, dstW: w)
            return out
        }
        let shared = s.residual === s.h
        s.h = crop(s.h)
        if shared { s.residual = s.h } else if let r = s.residual { s.residual = crop(r) }
        s.padded = window
    }

    private func apply(_ sync: Sync, to s: VAETileState) {
        switch sync {
        case .norm(let scale, let shift, let silu):
            // The residual may share h's buffer (right after beginResidual): write a new tensor then.
            let dst = s.residual === s.h ? Tensor(zeros: s.h.shape) : s.h
            GroupNorm.apply(s.h, into: dst, scale: scale, shift: shift, silu: silu)
            s.h = dst
        case .attention(let name, let keys, let values):
            s.h = attend(name, s.h, keys: keys, values: values)
        }
    }

    private func execute(_ op: VAEOp, _ s: VAETileState) {
        switch op {
        case .conv(let name):
            s.h = model.convs[name]!(s.h)
        case .beginResidual(let shortcut):
            s.residual = shortcut.map { model.convs[$0]!(s.h) } ?? s.h
        case .endResidual:
            if s.residual === s.h { s.h = s.h.copy() }
            s.h.add(s.residual!)
            s.residual = nil
        case .norm(let name, let silu):
            // Per-tile statistics (sharedStatistics == false): this padded tile only.
            var stats = GroupNormStatistics(channels: s.h.shape[1])
            stats.accumulate(s.h)
            let (gamma, beta) = model.norms[name]!
            let (scale, shift) = stats.affine(groups: model.config.normGroups, eps: model.config.normEps,
                                              gamma: gamma, beta: beta)
            apply(.norm(scale: scale, shift: shift, silu: silu), to: s)
        case .attention(let name):
            // Per-tile attention: keys and values from this padded tile only.
            let n = s.padded.area
            let (k, v) = keyValues(name, s.h, positions: n)
            s.h = attend(name, s.h, keys: k, values: v)
        case .downsample(let name):
            s.h = model.convs[name]!(s.h)
            s.padded = s.padded.halved()
            s.core = s.core.halved()
        case .upsample(let name):
            s.h = Self.upsampleConv(model.convs[name]!, s.h)
            s.padded = s.padded.doubled()
            s.core = s.core.doubled()
        }
    }

    /// Nearest 2x upsampling then `conv` (3x3, padding 1), computed for bands of output rows so the 4x larger
    /// upsampled input is never held whole (it would be the largest tensor of the decoder).
    static func upsampleConv(_ conv: Conv2D, _ x: Tensor, bandBytes: Int = 32 << 20) -> Tensor {
        let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3])
        let (oh, ow) = (2 * h, 2 * w)
        let out = Tensor(zeros: [1, conv.outChannels, oh, ow])
        let bandRows = max(2, min(oh, bandBytes / max(1, c * ow * 4)))
        var r0 = 0
        while r0 < oh {
            let r1 = min(oh, r0 + bandRows)
            // Upsampled rows a..<b feed output rows r0..<r1 (one row of context each side inside the image).
            let a = max(0, r0 - 1), b = min(oh, r1 + 1)
            let i0 = a / 2, i1 = (b - 1) / 2 + 1
            let src = Tensor(zeros: [1, c, i1 - i0, w])
            for ch in 0..<c {
                src.copyValues(from: x, at: (ch * h + i0) * w, count: (i1 - i0) * w, to: ch * (i1 - i0) * w)
            }
            let up = src.upsampledNearest2x()
            let band = Tensor(zeros: [1, c, b - a, ow])
            let skip = a - 2 * i0
            for ch in 0..<c {
                band.copyValues(from: up, at: (ch * 2 * (i1 - i0) + skip) * ow, count: (b - a) * ow, to: ch * (b - a) * ow)
            }
            let bandConv = Conv2D(weight: conv.weight, bias: conv.bias,
                                  padding: (top: r0 == 0 ? 1 : 0, left: 1, bottom: r1 == oh ? 1 : 0, right: 1))
            let y = bandConv(band)
            precondition(y.shape[2] == r1 - r0, "upsample band rows \(y.shape[2]) vs \(r1 - r0)")
            for ch in 0..<conv.outChannels {
                out.copyValues(from: y, at: ch * (r1 - r0) * ow, count: (r1 - r0) * ow, to: (ch * oh + r0) * ow)
            }
            r0 = r1
        }
        return out
    }

    /// `W x + b` for a [C, C] projection over `positions` planar positions of `x` (`[C, positions]` values).
    private func project(_ name: String, _ x: Tensor, positions n: Int) -> Tensor {
        let (w, b) = model.projections[name]!
        let c = w.shape[0]
        precondition(x.count >= w.shape[1] * n, "\(name): input \(x.shape) has fewer than \(w.shape[1]) × \(n) values")
        let out = Tensor(zeros: [c, n])
        out.withUnsafeMutablePointer { op in
            w.withUnsafePointer { wp in
                x.withUnsafePointer { xp in
                    BLAS.sgemm(m: c, n: n, k: w.shape[1], a: wp, lda: w.shape[1], b: xp, ldb: n, c: op, ldc: n)
                }
            }
            b.withUnsafePointer { bp in ck_add_channel_bias(op, bp, c, n) }
        }
        return out
    }

    private func keyValues(_ name: String, _ x: Tensor, positions n: Int) -> (Tensor, Tensor) {
        (project(name + ".k", x, positions: n), project(name + ".v", x, positions: n))
    }

    /// Single-head attention of the normalised tile `x` ([1, C, h, w]) against `keys`/`values` ([C, Nk]), then
    /// proj_out. Scores are computed for blocks of queries so memory stays bounded.
    private func attend(_ name: String, _ x: Tensor, keys: Tensor, values: Tensor) -> Tensor {
        let c = x.shape[1], n = x.count / c, nk = keys.shape[1]
        let q = project(name + ".q", x, positions: n)
        let o = Tensor(zeros: [c, n])
        let block = max(1, min(n, (4 << 20) / max(1, nk)))
        let scores = Tensor(zeros: [block, nk])
        q.withUnsafePointer { qp in
            keys.withUnsafePointer { kp in
                values.withUnsafePointer { vp in
                    scores.withUnsafeMutablePointer { sp in
                        o.withUnsafeMutablePointer { op in
                            var q0 = 0
                            while q0 < n {
                                let b = min(block, n - q0)
                                BLAS.sgemm(transA: true, m: b, n: nk, k: c, alpha: 1 / Float(c).squareRoot(), a: qp + q0,
                                           lda: n, b: kp, ldb: nk, c: sp, ldc: nk)
                                ck_softmax_rows(sp, nk, b, nk)
                                BLAS.sgemm(transB: true, m: c, n: b, k: nk, a: vp, lda: nk, b: sp, ldb: nk,
                                           c: op + q0, ldc: n)
                                q0 += b
                            }
                        }
                    }
                }
            }
        }
        return project(name + ".proj_out", o, positions: n).reshaped(x.shape)
    }

    private func crop(_ s: VAETileState, into output: UnsafeMutablePointer<Float>, shape: [Int]) {
        let (c, oh, ow) = (shape[0], shape[1], shape[2])
        precondition(s.h.shape[1] == c, "output channels \(s.h.shape[1]) vs \(c)")
        let local = VAERect(y: s.core.y - s.padded.y, x: s.core.x - s.padded.x, h: s.core.h, w: s.core.w)
        s.h.withUnsafePointer { hp in
            copyPlanarWindow(channels: c, local, from: hp, srcH: s.padded.h, srcW: s.padded.w,
                             to: output, dstH: oh, dstW: ow, dstY: s.core.y, dstX: s.core.x)
        }
    }
}
