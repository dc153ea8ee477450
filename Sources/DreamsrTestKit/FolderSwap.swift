#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Why a test helper could not set up what the test needs.
public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Puts a regular file where the folder `path` is, in one step. A watch folder recreates a missing folder at once,
/// so the folder must never be missing: a file made beside it (hidden, so never taken as an input) is swapped with it
/// (renameat2 RENAME_EXCHANGE, found with dlsym: Swift's Glibc does not declare it), then the old folder is removed
/// from its new place.
public func replaceFolderWithFile(_ path: String) throws {
    typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    guard let symbol = dlsym(nil, "renameat2") else { throw TestSetupError("renameat2 not found in libc") }
    let renameat2 = unsafeBitCast(symbol, to: RenameAt2.self)
    let url = URL(fileURLWithPath: path)
    let staged = url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".staged"
    _ = FileManager.default.createFile(atPath: staged, contents: Data("a file where a folder should be".utf8))
    let exchange: UInt32 = 2  // RENAME_EXCHANGE
    guard renameat2(AT_FDCWD, staged, AT_FDCWD, path, exchange) == 0 else {
        throw TestSetupError("could not replace \(path) with a file: errno \(errno)")
    }
    try FileManager.default.removeItem(atPath: staged)
}
