import DreamSRPipeline
import Models
import Raster
import Testing

/// The sizes a DreamSR image is computed at and the LR regions its patches are captioned from.
@Suite(.timeLimit(.minutes(1))) struct DreamSRImageGeometryTests {
    @Test func outputPaddedAndLatentSizes() throws {
        let g = try DreamSRImageGeometry(lrWidth: 47, lrHeight: 33, scale: 4)
        #expect((g.outWidth, g.outHeight) == (188, 132))
        #expect((g.padWidth, g.padHeight) == (192, 144), "sides rounded up to a multiple of 16")
        #expect((g.latentWidth, g.latentHeight) == (24, 18))
        let exact = try DreamSRImageGeometry(lrWidth: 32, lrHeight: 16, scale: 2)
        #expect((exact.padWidth, exact.padHeight) == (64, 32), "a multiple of 16 is not padded")
        #expect(throws: DreamSRPipelineError.self) { try DreamSRImageGeometry(lrWidth: 0, lrHeight: 8, scale: 4) }
        #expect(throws: DreamSRPipelineError.self) { try DreamSRImageGeometry(lrWidth: 8, lrHeight: 8, scale: 0) }
    }

    /// Each patch's LR region starts at the patch's corner, is patch/scale pixels (clipped, at least 1), and together
    /// the regions cover every LR pixel.
    @Test(arguments: [(47, 33, 4), (20, 90, 2), (5, 3, 4)])
    func patchRegionsCoverTheLRImage(w: Int, h: Int, scale: Int) throws {
        var cfg = DreamSRConfig()
        cfg.patchSize = 128
        cfg.patchOverlap = 32
        let g = try DreamSRImageGeometry(lrWidth: w, lrHeight: h, scale: scale)
        let plan = try DreamSRPatchPlan(latentWidth: g.latentWidth, latentHeight: g.latentHeight, config: cfg)
        let regions = g.patchRegionsLR(plan, patchSize: cfg.patchSize)
        #expect(regions.count == plan.count)
        var covered = [Bool](repeating: false, count: w * h)
        for (i, r) in regions.enumerated() {
            #expect(r.x >= 0 && r.y >= 0 && r.width >= 1 && r.height >= 1 && r.maxX <= w && r.maxY <= h, "\(i): \(r)")
            let (y, x) = plan.origin(i)
            #expect(r.x == min(w - 1, x * 8 / scale) && r.y == min(h - 1, y * 8 / scale), "\(i): \(r)")
            #expect(r.width == min(w - r.x, (cfg.patchSize + scale - 1) / scale), "\(i): \(r)")
            for yy in r.y..<r.maxY { for xx in r.x..<r.maxX { covered[yy * w + xx] = true } }
        }
        #expect(covered.allSatisfy { $0 }, "some LR pixel is in no patch's region")
    }
}
