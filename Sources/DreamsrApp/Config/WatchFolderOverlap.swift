import Foundation
import WatchFolderConnector

extension DaemonConfig {
    /// Refuses folders that overlap (compared by real path, symlinks resolved, for folders that do not exist yet by
    /// their nearest existing parent): a watch folder's output folder that is the watch folder, lies inside it or
    /// contains it; an output folder inside another watch folder; the same watch folder twice; the Kafka output
    /// folder inside a watch folder. Otherwise the daemon would take its own outputs as new inputs (2 -> 8 -> 32 px
    /// ...) or two sources would fight over the same files. `error(i, problem)` builds the error for watch folder
    /// `i` (`i == folders.count`: the Kafka output). An `s3://` output prefix is no folder and overlaps nothing.
    static func checkFolderOverlap(_ folders: [WatchFolderConfig], kafkaOutput: String?,
                                   error: (Int, String) -> ConfigError) throws {
        let dirs = folders.map { resolvedPath($0.directory) }
        let outs = folders.map { resolvedPath($0.outputDirectory) }
        let why = "the daemon would take its own outputs as new inputs; use an output folder outside the watch folder"
        for i in folders.indices {
            let dir = folders[i].directory, out = folders[i].outputDirectory
            let local = folders[i].outputPrefix == nil
            if local && outs[i] == dirs[i] {
                throw error(i, "output folder \(out) is the watch folder \(dir) (real path \(dirs[i])): \(why)")
            }
            if local && isInside(outs[i], dirs[i]) {
                throw error(i, "output folder \(out) (real path \(outs[i])) is inside the watch folder \(dir) (real path \(dirs[i])): \(why)")
            }
            if local && isInside(dirs[i], outs[i]) {
                throw error(i, "the watch folder \(dir) (real path \(dirs[i])) is inside the output folder \(out) (real path \(outs[i])): inputs and outputs must be separate folders")
            }
            for j in folders.indices where j != i {
                if dirs[i] == dirs[j] {
                    throw error(max(i, j), "the watch folder \(dirs[i]) is listed twice (sources.watch.\(min(i, j)) and .\(max(i, j)))")
                }
                if local && (outs[i] == dirs[j] || isInside(outs[i], dirs[j])) {
                    throw error(i, "output folder \(out) (real path \(outs[i])) is inside the watch folder \(folders[j].directory) of sources.watch.\(j): \(why)")
                }
            }
        }
        if let kafkaOutput {
            let k = resolvedPath(kafkaOutput)
            for j in folders.indices where k == dirs[j] || isInside(k, dirs[j]) {
                throw error(folders.count, "the Kafka output folder \(kafkaOutput) (real path \(k)) is inside the watch folder \(folders[j].directory): \(why)")
            }
        }
    }

    /// `path` with symlinks resolved: the real path of its nearest existing ancestor plus the rest.
    static func resolvedPath(_ path: String) -> String {
        var head = URL(fileURLWithPath: path).standardizedFileURL.path
        var tail: [String] = []
        while true {
            if let real = realpath(head, nil) {
                defer { free(real) }
                let base = String(cString: real)
                return tail.isEmpty ? base : (base == "/" ? "" : base) + "/" + tail.reversed().joined(separator: "/")
            }
            guard head != "/" && !head.isEmpty else { return path }
            tail.append((head as NSString).lastPathComponent)
            head = (head as NSString).deletingLastPathComponent
        }
    }

    private static func isInside(_ child: String, _ parent: String) -> Bool {
        parent == "/" ? child != "/" : child.hasPrefix(parent + "/")
    }
}
