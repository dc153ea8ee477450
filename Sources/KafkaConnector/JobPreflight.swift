import Foundation
import Jobs

/// Checks made after parsing and before the model runs, for failures no retry can fix (issue 12, items 5 and 10):
/// a source that is not a regular file, an output folder that is a file, an output path through a symbolic link
/// (which would write outside `kafka.output_dir`), a name too long for its temporary name. Each throws a
/// non-retriable error with the exact reason; the job is dead-lettered once, without a model run.
enum JobPreflight {
    /// The source must be an existing, readable regular file (a symlink to one is fine: the path is the message's
    /// own choice). Folders, devices (`/dev/zero`), FIFOs and sockets are refused without opening them.
    static func checkSource(_ path: String) throws(KafkaConnectorError) {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let reason = errno == ENOENT || errno == ENOTDIR ? "does not exist" : "cannot be read (\(String(cString: strerror(errno))))"
            throw KafkaConnectorError(.source, "source file '\(path)' \(reason)")
        }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            throw KafkaConnectorError(.source, "source '\(path)' is \(describe(kind)), not a regular file")
        }
        guard access(path, R_OK) == 0 else {
            throw KafkaConnectorError(.source, "source file '\(path)' is not readable")
        }
    }

    /// Makes sure `output` (a file path) can be written: creates its missing folders and refuses a folder on the
    /// way that is a file. When `root` is given and `output` lies under it, every folder below `root` is opened
    /// with O_NOFOLLOW relative to its parent (openat), so a symbolic link inside `root` is refused instead of
    /// followed outside it. The file name must leave room for the temporary name written first.
    static func prepareOutput(_ output: String, root: String?) throws(KafkaConnectorError) {
        func fail(_ why: String) -> KafkaConnectorError { KafkaConnectorError(.output, "output '\(output)': \(why)") }
        let name = (output as NSString).lastPathComponent
        if name.utf8.count > OutputFiles.maxNameBytes {
            throw fail("file name is \(name.utf8.count) bytes, limit \(OutputFiles.maxNameBytes) (NAME_MAX 255 less room for the temporary name written first)")
        }
        if output.utf8.count >= Int(PATH_MAX) {
            throw fail("path is \(output.utf8.count) bytes, limit \(Int(PATH_MAX) - 1) (PATH_MAX)")
        }
        let parent = (output as NSString).deletingLastPathComponent
        var base = "/"
        var relative = parent
        var confined = false
        if let root {
            var rootPath = root
            while rootPath.count > 1 && rootPath.hasSuffix("/") { rootPath.removeLast() }
            let prefix = rootPath.hasSuffix("/") ? rootPath : rootPath + "/"
            if parent == rootPath || parent.hasPrefix(prefix) {
                do {
                    try FileManager.default.createDirectory(atPath: rootPath, withIntermediateDirectories: true)
                } catch {
                    throw fail("cannot create kafka.output_dir '\(rootPath)': \(error.localizedDescription)")
                }
                base = rootPath
                relative = String(parent.dropFirst(min(parent.count, prefix.count)))
                confined = true
            }
        }
        var fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("cannot open folder '\(base)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var walked = base == "/" ? "" : base
        for component in relative.split(separator: "/") where component != "." {
            walked += "/" + component
            let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (confined ? O_NOFOLLOW : 0)
            var next = openat(fd, String(component), flags)
            if next < 0 && errno == ENOENT {
                if mkdirat(fd, String(component), 0o755) != 0 && errno != EEXIST {
                    throw fail("cannot create folder '\(walked)': \(String(cString: strerror(errno)))")
                }
                next = openat(fd, String(component), flags)
            }
            if next < 0 {
                let openError = errno
                var st = stat()
                if fstatat(fd, String(component), &st, AT_SYMLINK_NOFOLLOW) == 0 {
                    let kind = st.st_mode & S_IFMT
                    if kind == S_IFLNK {
                        throw fail("folder '\(walked)' is a symbolic link; outputs must stay inside kafka.output_dir")
                    }
                    if kind != S_IFDIR {
                        throw fail("'\(walked)' is \(describe(kind)), not a folder")
                    }
                }
                throw fail("cannot open folder '\(walked)': \(String(cString: strerror(openError)))")
            }
            close(fd)
            fd = next
        }
        var st = stat()
        if fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            throw fail("is an existing folder")
        }
    }

    static func describe(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: "a folder"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        case S_IFREG: "a regular file"
        default: "not a regular file"
        }
    }
}
