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
enum OutputPlan {
    struct Target {
        let input: String
        let output: String
    }

    static func plan(inputs: [String], output: String, format: ImageFormat?, overwrite: Bool) throws -> [Target] {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: output, isDirectory: &isDir)
        let asFolder = inputs.count > 1 || (exists && isDir.boolValue) || output.hasSuffix("/")
        var targets: [Target]
        if asFolder {
            do {
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            } catch {
                throw UsageError("cannot create the output folder \(quoted(output)): \(error.localizedDescription)")
            }
            let folder = try realFolder(output)
            targets = inputs.map { input in
                let name = (input as NSString).lastPathComponent
                let base = (name as NSString).deletingPathExtension
                let ext = format?.fileExtension ?? ImageFormat(fileExtension: (name as NSString).pathExtension)?.fileExtension ?? "png"
                return Target(input: input, output: folder + "/" + base + "." + ext)
            }
        } else {
            let parent = (output as NSString).deletingLastPathComponent
            let folder = try realFolder(parent.isEmpty ? "." : parent)
            targets = [Target(input: inputs[0], output: folder + "/" + (output as NSString).lastPathComponent)]
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
