import ArgumentParser
import DreamsrApp
import Foundation

/// `dreamsr models check [--pipeline P]`: which weights of a pipeline's model set are present, which are missing, and
/// the memory each needs, from safetensors headers only (nothing is loaded).
struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "Inspect the model weights pipelines need.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report present/missing weights of a DreamSR pipeline and the memory each needs (headers only).")

        @Option(help: "Pipeline name (PIPELINES_DIR/NAME.yaml) or file.")
        var pipeline: String = "dreamsr"
        @Option(help: "Folder of pipeline files (default: $DREAMSR_PIPELINES_DIR, else ./pipelines).")
        var pipelinesDir: String?
        @Option(help: "Models folder (default: $DREAMSR_MODELS_DIR, else ./models).")
        var modelsDir: String?

        func run() throws {
            let env = ProcessInfo.processInfo.environment
            let cwd = FileManager.default.currentDirectoryPath
            let dir = pipelinesDir ?? env["DREAMSR_PIPELINES_DIR"] ?? (cwd + "/pipelines")
            let models = modelsDir ?? env["DREAMSR_MODELS_DIR"] ?? (cwd + "/models")
            let def = try PipelineRunner.resolve(pipeline, pipelinesDirectory: dir)
            guard def.needsDreamSRModels, let paths = def.models else {
                print("pipeline '\(def.name)' uses no DreamSR model set (stages: \(def.stages.map(\.kind.rawValue).joined(separator: ", ")))")
                return
            }
            let base = URL(fileURLWithPath: models, relativeTo: URL(fileURLWithPath: cwd)).path
            let entries = ModelRegistry(paths: paths.resolved(base: base)).check()
            func gib(_ b: Int) -> String {
                b >= 1 << 30 ? String(format: "%.2f GiB", Double(b) / 1_073_741_824) : String(format: "%.1f MiB", Double(b) / 1_048_576)
            }
            var total = 0
            for e in entries {
                let c = e.component
                if e.present {
                    total += e.memoryBytes
                    let size = c.kind == .safetensors
                        ? "\(e.parameters) params, \(gib(e.fileBytes)) on disk, \(gib(e.memoryBytes)) as float32" : "tokenizer"
                    print("present  \(c.key.padding(toLength: 15, withPad: " ", startingAt: 0)) \(c.path)  (\(size))")
                } else {
                    print("MISSING  \(c.key.padding(toLength: 15, withPad: " ", startingAt: 0)) \(c.path): \(e.problem ?? "")")
                    print("         expected: \(c.expectedLayout)")
                }
            }
            let missing = entries.filter { !$0.present }.count
            print("pipeline \(def.name) (\(def.file)): \(entries.count - missing) present, \(missing) missing; "
                  + "weights need up to \(gib(total)) as float32")
            if missing > 0 { throw ExitCode(1) }
        }
    }
}
