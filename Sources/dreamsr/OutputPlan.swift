#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Imaging

/// A refusal of the command line itself (exit status 64, EX_USAGE): nothing has been read or written.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Where `dreamsr upscale` writes each input, decided and checked before any work:
/// - one input and an `-o` that is not a folder: that file; otherwise `-o` is a folder (created when missing) and each
///   output is `FOLDER/<input name>.<format>`; paths are resolved to real paths, so the file written is always a
///   direct entry of the chosen folder (the temporary-name-then-rename write replaces a symlink there, never writes
///   through it);
/// - an output that is an input (same file: same path, a symlink to it or a hard link of it) is refused, unless it
///   is that input's own output and `--overwrite` is given; an output that would replace another input is always
///   refused (that input would be gone before it is read);
/// - an output that exists and is not a regular file (a device node, a FIFO, a socket, a directory) is refused,
///   never replaced; two inputs that would write the same output are refused.
///
/// Folder inputs (`-i DIR`, `--recursive` for subfolders) put the command in folder mode: the outputs go to the
/// `-o` folder (mirroring subfolders), named `<stem><suffix>.<ext>` (suffix `_x4` by default), and an output that is
/// an input is always refused, `--overwrite` or not.
enum OutputPlan {
    struct Target {
        let input: String
        let output: String
        let format: ImageFormat
    }

    /// An input file; `subfolder` is set (relative, "" at the top) when it was found in a folder input.
    struct Source {
        let path: String
        let subfolder: String?
    }

    /// Extensions picked up from a folder input (anything else there, hidden files included, is left alone).
    static let folderExtensions: Set<String> = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "gif", "heic", "heif", "avif"]

    /// The files of `args`: files as given; folders listed (image extensions only, sorted, hidden entries and
    /// `excluding` skipped; subfolders only when `recursive`; symlinked folders never followed).
    static func sources(_ args: [String], recursive: Bool, excluding: String?) throws -> [Source] {
        var out: [Source] = []
        let excluded = excluding.flatMap(realPath)
        for arg in args {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: arg, isDirectory: &isDir), isDir.boolValue else {
                out.append(Source(path: arg, subfolder: nil))
                continue
            }
            var found: [Source] = []
            func walk(_ dir: String, _ rel: String) throws {
                let names: [String]
                do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
                    throw UsageError("cannot list the input folder \(quoted(dir)): \(error.localizedDescription)")
                }
                for name in names.sorted() where !name.hasPrefix(".") {
                    let path = dir + "/" + name
                    var st = stat()
                    guard lstat(path, &st) == 0 else { continue }
                    let kind = st.st_mode & S_IFMT
                    if kind == S_IFDIR {
                        if recursive, realPath(path) != excluded { try walk(path, rel.isEmpty ? name : rel + "/" + name) }
                    } else if folderExtensions.contains((name as NSString).pathExtension.lowercased()) {
                        found.append(Source(path: path, subfolder: rel))
                    }
                }
            }
            try walk(arg.hasSuffix("/") && arg.count > 1 ? String(arg.dropLast()) : arg, "")
            if found.isEmpty {
                throw UsageError("the input folder \(quoted(arg)) holds no image files (\(folderExtensions.sorted().joined(separator: ", ")))"
                                 + (recursive ? "" : "; add --recursive to include its subfolders"))
            }
            out += found
        }
        return out
    }

    static func plan(inputs: [String], output: String, format: ImageFormat?, overwrite: Bool) throws -> [Target] {
        try plan(sources: inputs.map { Source(path: $0, subfolder: nil) }, output: output, format: format,
                 overwrite: overwrite, suffix: "")
    }

    /// `suffix` is added to the stem of the outputs of folder inputs.
    static func plan(sources: [Source], output: String, format: ImageFormat?, overwrite: Bool, suffix: String) throws -> [Target] {
        let inputs = sources.map(\.path)
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: output, isDirectory: &isDir)
        let folderMode = sources.contains { $0.subfolder != nil }
        let asFolder = inputs.count > 1 || folderMode || (exists && isDir.boolValue) || output.hasSuffix("/")
        if folderMode && overwrite {
            throw UsageError("--overwrite is for file inputs: in folder mode an output never replaces an input")
        }
        var targets: [Target]
        if asFolder {
            do {
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            } catch {
                throw UsageError("cannot create the output folder \(quoted(output)): \(error.localizedDescription)")
            }
            let folder = try realFolder(output)
            targets = sources.map { source in
                let name = (source.path as NSString).lastPathComponent
                let base = (name as NSString).deletingPathExtension
                let fmt = format ?? ImageFormat(fileExtension: (name as NSString).pathExtension) ?? .png
                let sub = source.subfolder.map { $0.isEmpty ? "" : $0 + "/" } ?? ""
                let stem = source.subfolder == nil ? base : base + suffix
                return Target(input: source.path, output: folder + "/" + sub + stem + "." + fmt.fileExtension, format: fmt)
            }
            // Mirrored subfolders that already exist must be real folders of the output folder: a symlink (or a file)
            // there would send outputs outside it.
            for sub in Set(sources.compactMap(\.subfolder).filter { !$0.isEmpty }) {
                var path = folder
                for part in sub.split(separator: "/") {
                    path += "/" + part
                    var st = stat()
                    guard lstat(path, &st) == 0 else { break }
                    guard (st.st_mode & S_IFMT) == S_IFDIR else {
                        throw UsageError("\(quoted(path)) in the output folder is "
                                         + ((st.st_mode & S_IFMT) == S_IFLNK ? "a symlink" : "not a folder")
                                         + ": refusing to write outputs through it (remove it or choose another -o folder)")
                    }
                }
            }
        } else {
            let parent = (output as NSString).deletingLastPathComponent
            let folder = try realFolder(parent.isEmpty ? "." : parent)
            let name = (output as NSString).lastPathComponent
            guard let fmt = format ?? ImageFormat(fileExtension: (name as NSString).pathExtension) else {
                throw UsageError("cannot tell the output format from \(quoted(output)): use --format png|jpeg|webp|tiff")
            }
            targets = [Target(input: inputs[0], output: folder + "/" + name, format: fmt)]
        }

        var byOutput: [String: String] = [:]
        for t in targets {
            if let other = byOutput[t.output] {
                throw UsageError("inputs \(quoted(other)) and \(quoted(t.input)) would both be written to \(quoted(t.output)); "
                                 + "upscale them into different folders")
            }
            byOutput[t.output] = t.input
        }
        let inputFiles = inputs.map(fileIdentity)
        for (i, t) in targets.enumerated() {
            guard let out = try existingOutput(t.output) else { continue }
            for (j, input) in inputFiles.enumerated() where input == out {
                if i == j && overwrite { continue }
                if i == j && sources[i].subfolder != nil {
                    throw UsageError("the output \(quoted(t.output)) is the input \(quoted(t.input)) itself: folder mode never "
                                     + "replaces an input (choose another -o folder or --suffix)")
                }
                if i == j {
                    throw UsageError("the output \(quoted(t.output)) is the input \(quoted(t.input)) itself: refusing to "
                                     + "overwrite a source (give another -o, or --overwrite to replace it)")
                }
                throw UsageError("the output of \(quoted(t.input)), \(quoted(t.output)), is the input \(quoted(inputs[j])): "
                                 + "writing it would destroy that input before it is read")
            }
        }
        return targets
    }

    /// The real path of an existing file or folder, nil when there is none.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The real path of an existing folder.
    private static func realFolder(_ path: String) throws -> String {
        guard let resolved = realpath(path, nil) else {
            throw UsageError("the output folder \(quoted(path)) does not exist")
        }
        defer { free(resolved) }
        let real = String(cString: resolved)
        var st = stat()
        guard stat(real, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw UsageError("\(quoted(path)) is not a folder")
        }
        return real == "/" ? "" : real
    }

    struct FileIdentity: Equatable {
        let device: UInt64
        let inode: UInt64
    }

    /// Device and inode of the file a path names (following symlinks); nil when it does not exist.
    private static func fileIdentity(_ path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The identity of an output path that exists, after checking it is a regular file (or a symlink to one, or a
    /// dangling symlink: the write replaces the link itself).
    private static func existingOutput(_ path: String) throws -> FileIdentity? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        if (st.st_mode & S_IFMT) == S_IFLNK {
            var target = stat()
            guard stat(path, &target) == 0 else { return nil }
            st = target
        }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            let what = kind == S_IFDIR ? "a folder" : kind == S_IFCHR ? "a character device" : kind == S_IFBLK ? "a block device"
                : kind == S_IFIFO ? "a FIFO" : kind == S_IFSOCK ? "a socket" : "not a regular file"
            throw UsageError("the output \(quoted(path)) is \(what): refusing to replace it with an image")
        }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }
}

/// A file name or message made safe for one line of output: quoted, with newlines and other control characters
/// escaped, so a name cannot forge extra `dreamsr: error:` lines.
func quoted(_ text: String) -> String {
    "\"" + oneLine(text).replacingOccurrences(of: "\"", with: "\\\"") + "\""
}

/// `text` with control characters (newline, carriage return, escape, ...) escaped: always a single line.
func oneLine(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\\": out += "\\\\"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                || scalar.value == 0x2028 || scalar.value == 0x2029 {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out
}
