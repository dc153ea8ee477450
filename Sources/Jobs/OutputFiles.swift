import Foundation

/// The naming rule for outputs being written: a hidden temporary beside the final name, renamed into place when
/// complete, so no partial file is ever visible under a final name. Sources remove stale temporaries on start.
public enum OutputFiles {
    static let marker = ".dreamsr-partial-"
    /// NAME_MAX of Linux file systems (bytes of one path component).
    public static let nameMax = 255
    /// The longest final file name whose temporary name (`.NAME` + marker + a pid of up to 7 digits) still fits
    /// in NAME_MAX: 230 bytes.
    public static let maxNameBytes = nameMax - (1 + marker.utf8.count + 7)

    /// The name of a job's output when the job names no file: `<id>.<ext>`, `jpg` for jpeg and `tif` for tiff.
    public static func fileName(id: String, format: String) -> String {
        "\(id).\(format == "jpeg" ? "jpg" : format == "tiff" ? "tif" : format)"
    }

    /// `dir/.NAME.dreamsr-partial-<pid>` for `dir/NAME`.
    public static func temporaryPath(for finalPath: String) -> String {
        let url = URL(fileURLWithPath: finalPath)
        let dir = url.deletingLastPathComponent().path
        return dir + "/." + url.lastPathComponent + marker + String(getpid())
    }

    /// True for this naming rule and for the image codec's own temporaries (`.NAME.<hex>.dreamsr-tmp`).
    public static func isTemporary(_ fileName: String) -> Bool {
        fileName.hasPrefix(".") && (fileName.contains(marker) || fileName.hasSuffix(".dreamsr-tmp"))
    }
}
