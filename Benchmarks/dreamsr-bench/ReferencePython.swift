import Foundation

/// The Python interpreter with the PyTorch reference stack used for benchmark baselines:
/// `$DREAMSR_REF_PYTHON`, else `.venv-ref/bin/python` (made by `scripts/setup-reference-env.sh`).
enum ReferencePython {
    static var defaultPath: String {
        if let p = ProcessInfo.processInfo.environment["DREAMSR_REF_PYTHON"], !p.isEmpty { return p }
        return ".venv-ref/bin/python"
    }
}

/// Runs a baseline program (Python reference, CLI tool) and returns its standard output; a non-zero exit is an
/// error carrying the output. Shared by the benchmarks that measure a baseline in the same run.
enum BaselineProcess {
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw BaselineError(description: "\(executable) \(arguments.joined(separator: " ")) exited \(p.terminationStatus):\n\(text)")
        }
        return text
    }

    /// The baselines print their result as one JSON object on the last line of standard output.
    static func lastLineJSON(_ executable: String, _ arguments: [String]) throws -> [String: Any] {
        let text = try run(executable, arguments)
        guard let line = text.split(separator: "\n").last,
              let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw BaselineError(description: "baseline printed no JSON result line:\n\(text)")
        }
        return obj
    }
}

struct BaselineError: Error, CustomStringConvertible {
    let description: String
}
