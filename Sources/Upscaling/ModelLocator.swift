import Foundation
import Models

/// Where model folders are looked for, and how a `--model` value (a catalog name or a path) becomes files.
///
/// Search path, in order: `$DREAMSR_MODELS_DIR`, `./models`, `~/.local/share/dreamsr/models`,
/// `/usr/share/dreamsr/models`. A catalog model NAME lives in `<dir>/NAME/<STEM>.param|.bin`.
public enum ModelLocator {
    public static let environmentKey = "DREAMSR_MODELS_DIR"

    /// The model folders searched, in order (`environment` and `currentDirectory` for tests).
    public static func searchPath(environment: [String: String] = ProcessInfo.processInfo.environment,
                                  currentDirectory: String = FileManager.default.currentDirectoryPath) -> [String] {
        var dirs: [String] = []
        if let env = environment[environmentKey], !env.isEmpty {
            dirs.append(URL(fileURLWithPath: env, relativeTo: URL(fileURLWithPath: currentDirectory)).standardizedFileURL.path)
        }
        dirs.append((currentDirectory as NSString).appendingPathComponent("models"))
        if let home = environment["HOME"], !home.isEmpty {
            dirs.append((home as NSString).appendingPathComponent(".local/share/dreamsr/models"))
        }
        dirs.append("/usr/share/dreamsr/models")
        return dirs
    }

    /// A located model: its files and, when it is a catalog model, its catalog entry.
    public struct Located: Sendable {
        public let model: CatalogModel
        public let paramPath: String
        public let binPath: String
    }

    /// The folder of `model` in the first search-path directory that has both files, or nil.
    public static func installed(_ model: CatalogModel, searchPath: [String] = searchPath()) -> Located? {
        let fm = FileManager.default
        for dir in searchPath {
            let folder = (dir as NSString).appendingPathComponent(model.folderName)
            let p = (folder as NSString).appendingPathComponent(model.paramFileName)
            let b = (folder as NSString).appendingPathComponent(model.binFileName)
            if fm.fileExists(atPath: p), fm.fileExists(atPath: b) { return Located(model: model, paramPath: p, binPath: b) }
        }
        return nil
    }

    /// Resolves a `--model` value: a catalog name (also `FAMILY` plus `scale`, e.g. `realesr-animevideov3` with
    /// scale 2 -> `realesr-animevideov3-x2`), a folder holding one zoo `.param`/`.bin` pair, or a `.param` file.
    /// Without a value: the default model, or — when `scale` is given and differs from it — an installed photo model
    /// of that native scale, if there is one.
    public static func resolve(_ value: String?, scale: Int? = nil,
                               searchPath: [String] = searchPath()) throws -> Located {
        guard let value, !value.isEmpty else {
            let def = ModelCatalog.model(named: ModelCatalog.defaultModelName)!
            if let scale, scale != def.scale {
                let native = ModelCatalog.models.filter { $0.scale == scale && $0.kind == def.kind && $0.noise == nil }
                for m in native { if let found = installed(m, searchPath: searchPath) { return found } }
            }
            return try locate(def, searchPath: searchPath)
        }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: value, isDirectory: &isDir) {
            return try fromPath(value, isDirectory: isDir.boolValue, scale: scale)
        }
        if let m = ModelCatalog.model(named: value) { return try locate(m, searchPath: searchPath) }
        if let scale, let m = ModelCatalog.model(named: "\(value)-x\(scale)") { return try locate(m, searchPath: searchPath) }
        if value.contains("/") || value.hasSuffix(".param") {
            let last = (value as NSString).lastPathComponent
            let name = ModelCatalog.model(named: last)?.name ?? ModelCatalog.defaultModelName
            throw UpscalingError(.modelMissing, "model path '\(value)' does not exist; \(fetchHint(name))")
        }
        let close = ModelCatalog.suggestions(for: value)
        throw UpscalingError(.modelMissing, "unknown model '\(value)'"
                             + (close.isEmpty ? "" : " (did you mean \(close.joined(separator: ", "))?)")
                             + "; `dreamsr models list` shows every name")
    }

    /// How to get a model: `dreamsr models fetch NAME` (the quick start's scripts/fetch-models.sh fetches the default).
    static func fetchHint(_ name: String) -> String {
        "get it with `dreamsr models fetch \(name)`"
            + (name == ModelCatalog.defaultModelName ? " or scripts/fetch-models.sh" : "")
    }

    static func locate(_ m: CatalogModel, searchPath: [String]) throws -> Located {
        if let found = installed(m, searchPath: searchPath) { return found }
        throw UpscalingError(.modelMissing, "model '\(m.name)' is not installed (looked for \(m.folderName)/"
                             + "\(m.paramFileName) in \(searchPath.joined(separator: ", "))); \(fetchHint(m.name))")
    }

    static func fromPath(_ path: String, isDirectory: Bool, scale: Int?) throws -> Located {
        var param = path
        if isDirectory {
            let items = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            let params = items.filter { $0.hasSuffix(".param") }.sorted()
            if params.isEmpty, !items.isEmpty {
                // A models folder (holding NAME/ folders): the default model from it.
                return try resolve(nil, scale: scale, searchPath: [path])
            }
            guard params.count == 1 else {
                throw UpscalingError(.modelMissing, "model folder '\(path)' must hold exactly one .param file (with its "
                                     + ".bin), it holds \(params.count)" + (params.isEmpty ? "" : ": \(params.joined(separator: ", "))"))
            }
            param = (path as NSString).appendingPathComponent(params[0])
        }
        guard param.hasSuffix(".param") else {
            throw UpscalingError(.modelMissing, "model path '\(path)' is neither a folder nor a .param file")
        }
        let bin = String(param.dropLast(".param".count)) + ".bin"
        guard FileManager.default.fileExists(atPath: bin) else {
            throw UpscalingError(.modelMissing, "'\(bin)' is missing (it must sit next to '\(param)')")
        }
        let stem = ((param as NSString).lastPathComponent as NSString).deletingPathExtension
        guard let m = ModelCatalog.models.first(where: { $0.file.stem == stem }) else {
            throw UpscalingError(.modelMissing, "'\(param)' is not a model of the catalog (file names like "
                                 + "REALESRGAN_X4PLUS_UP4X.param; `dreamsr models list`): its scale and padding are unknown")
        }
        return Located(model: m, paramPath: param, binPath: bin)
    }
}
