import DreamsrApp
import Foundation
import Metrics
import Testing

@Suite struct ConfigTests {
    @Test func shippedConfigAndPipelineParse() throws {
        let config = try DaemonConfig.load(path: repoRoot + "/conf/dreamsr.yaml", env: [:])
        #expect(config.pipeline.name == "realesrgan")
        #expect(config.pipeline.stages.map(\.kind) == [.decode, .restore, .encode])
        #expect(config.pipeline.stage(.texture) == nil, "no texture stage until FLUX weights are configured")
        #expect(config.metricsAddress == "127.0.0.1:9464")
        #expect(config.modelsDirectory == repoRoot + "/models")
        #expect(config.watchFolders.count == 1)
        #expect(config.watchFolders[0].stabilityInterval == .seconds(1))
        #expect(config.gracePeriod == .seconds(30))
    }

    @Test func builtInPipelineMatchesTheShippedFile() throws {
        var file = try PipelineDefinition.load(path: repoRoot + "/pipelines/realesrgan.yaml")
        let builtIn = try #require(try PipelineDefinition.builtIn(named: "realesrgan"))
        file.file = builtIn.file
        #expect(file == builtIn)
    }

    @Test func environmentOverridesScalars() throws {
        let config = try DaemonConfig.load(path: repoRoot + "/conf/dreamsr.yaml", env: [
            "DREAMSR_METRICS_ADDRESS": ":9999", "DREAMSR_SHUTDOWN_GRACE_SECONDS": "5",
            "DREAMSR_SOURCES_WATCH_0_DIR": "/tmp/in", "DREAMSR_MODELS_DIR": "/opt/models",
        ])
        #expect(config.metricsAddress == ":9999")
        #expect(config.gracePeriod == .seconds(5))
        #expect(config.watchFolders[0].directory == "/tmp/in")
        #expect(config.modelsDirectory == "/opt/models")
    }

    func parseError(_ yaml: String, env: [String: String] = [:]) -> ConfigError? {
        do {
            _ = try DaemonConfig.parse(yaml: yaml, file: "test.yaml", baseDirectory: "/tmp", env: env)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func invalidConfigNamesFileKeyAndProblem() throws {
        let unknown = try #require(parseError("metrics:\n  adress: 1.2.3.4:5\n"))
        #expect(unknown.file == "test.yaml" && unknown.key == "metrics.adress" && unknown.problem.contains("unknown key"))
        #expect(unknown.line == 2)
        #expect(unknown.description.hasPrefix("test.yaml:"))

        let badType = try #require(parseError("shutdown:\n  grace_seconds: soon\n"))
        #expect(badType.key == "shutdown.grace_seconds" && badType.problem.contains("expected a number"))

        let badEnv = try #require(parseError("{}", env: ["DREAMSR_SHUTDOWN_GRACE_SECONDS": "-1"]))
        #expect(badEnv.key == "shutdown.grace_seconds" && badEnv.environmentVariable == "DREAMSR_SHUTDOWN_GRACE_SECONDS")

        let badAddress = try #require(parseError("metrics:\n  address: nowhere\n"))
        #expect(badAddress.key == "metrics.address")

        let missingDir = try #require(parseError("sources:\n  watch:\n    - output: /tmp/o\n"))
        #expect(missingDir.key == "sources.watch.0.dir" && missingDir.problem.contains("required"))

        let badFormat = try #require(parseError("sources:\n  watch:\n    - dir: /a\n      output: /b\n      format: bmp\n"))
        #expect(badFormat.key == "sources.watch.0.format")

        let unknownPipeline = try #require(parseError("pipeline: dreamsr-full\n"))
        #expect(unknownPipeline.key == "pipeline" && unknownPipeline.problem.contains("not built in"))

        let notYAML = try #require(parseError("metrics: [unclosed\n"))
        #expect(notYAML.problem.contains("YAML"))
    }

    @Test func missingPipelineFileIsReported() throws {
        let dir = try tempDir()
        #expect(throws: ConfigError.self) {
            try DaemonConfig.parse(yaml: "pipelines_dir: \(dir)\npipeline: nope\n", file: "c.yaml", baseDirectory: "/")
        }
    }

    func pipelineError(_ stages: String) -> ConfigError? {
        do {
            _ = try PipelineDefinition.parse(yaml: "name: p\nstages:\n" + stages, file: "p.yaml")
            return nil
        } catch {
            return error as? ConfigError
        }
    }

    @Test func invalidPipelinesAreRefused() throws {
        #expect(pipelineError("  - stage: decode\n  - stage: restore\n    model: m\n  - stage: encode\n") == nil)
        let order = try #require(pipelineError("  - stage: decode\n  - stage: encode\n  - stage: restore\n    model: m\n"))
        #expect(order.key == "stages.2.stage" && order.problem.contains("cannot follow"))
        let noModel = try #require(pipelineError("  - stage: decode\n  - stage: restore\n  - stage: encode\n"))
        #expect(noModel.key == "stages.1.model")
        let blend = try #require(pipelineError("  - stage: decode\n  - stage: blend\n  - stage: encode\n"))
        #expect(blend.problem.contains("texture"))
        let unknown = try #require(pipelineError("  - stage: decode\n  - stage: sharpen\n  - stage: encode\n"))
        #expect(unknown.problem.contains("unknown stage"))
        let geometry = try #require(pipelineError("  - stage: decode\n  - stage: restore\n    model: m\n    tile: 64\n    overlap: 40\n  - stage: encode\n"))
        #expect(geometry.key == "stages.1.overlap")
    }

    @Test func quickStartUsesTheBuiltInPipeline() throws {
        let c = try DaemonConfig.quickStart(watch: "in", output: "out", metricsAddress: "127.0.0.1:0", env: [:])
        #expect(c.pipeline.name == "realesrgan")
        #expect(c.watchFolders.count == 1 && c.watchFolders[0].directory.hasSuffix("/in"))
        #expect(c.metricsAddress == "127.0.0.1:0")
    }
}

@Suite struct StageWiringTests {
    @Test func dreamsrStagesWithoutWeightsAreRefusedAtStartUpNotFaked() throws {
        let def = try PipelineDefinition.parse(yaml: """
            name: dreamsr-full
            stages:
              - stage: decode
              - stage: restore
                model: realesrgan-x4plus
              - stage: texture
              - stage: blend
              - stage: encode
            """, file: "dreamsr-full.yaml")
        var config = try DaemonConfig.quickStart(watch: "/tmp/i", output: "/tmp/o", metricsAddress: nil, env: [:])
        config.modelsDirectory = "/nonexistent-models"
        do {
            _ = try ImagePipelineFactory().makePipeline(def, config: config, logger: .init(label: "t"),
                                                        metricsFactory: NOOPMetricsHandler.instance)
            Issue.record("a texture stage was wired without FLUX/DreamSR weights")
        } catch let e as AppError {
            #expect(e.message.contains("dreamsr-full.yaml"))
            #expect(e.message.contains("/nonexistent-models/flux1-dev/transformer"))
            #expect(e.message.contains("FLUX.1 transformer"))
        }
    }

    @Test func theDefaultPipelineWiresExactlyTheListedStages() throws {
        let config = try DaemonConfig.quickStart(watch: "/tmp/i", output: "/tmp/o", metricsAddress: nil, env: [:])
        let handle = try ImagePipelineFactory().makePipeline(config.pipeline, config: config, logger: .init(label: "t"),
                                                             metricsFactory: NOOPMetricsHandler.instance)
        #expect(handle.stats().queueDepths.keys.sorted() == ["decode", "encode", "restore"])
        #expect(handle.lifecycle() == .created)
    }
}

/// Issue 12 item 13: the environment is validated like the file, and `serve --check` refuses what `serve` refuses.
@Suite(.timeLimit(.minutes(2))) struct ConfigEnvironmentTests {
    func parseError(_ yaml: String, env: [String: String]) -> ConfigError? {
        do {
            _ = try DaemonConfig.parse(yaml: yaml, file: "test.yaml", baseDirectory: "/tmp", env: env)
            return nil
        } catch {
            return error as? ConfigError
        }
    }

    @Test func unknownDreamsrVariablesAreRefusedByNameWithASuggestion() throws {
        let typo = try #require(parseError("{}", env: ["DREAMSR_METRICS_ADRESS": "127.0.0.1:1", "PATH": "/bin"]))
        #expect(typo.environmentVariable == "DREAMSR_METRICS_ADRESS")
        #expect(typo.description.hasPrefix("environment variable DREAMSR_METRICS_ADRESS: unknown variable"), "\(typo)")
        #expect(typo.problem.contains("did you mean DREAMSR_METRICS_ADDRESS?"), "\(typo)")

        // A second watch folder's variable without a second entry in the file is read by nothing: refused.
        let yaml = "sources:\n  watch:\n    - dir: /a\n      output: /b\n"
        let extra = try #require(parseError(yaml, env: ["DREAMSR_SOURCES_WATCH_1_DIR": "/c"]))
        #expect(extra.environmentVariable == "DREAMSR_SOURCES_WATCH_1_DIR")
        #expect(extra.problem.contains("did you mean DREAMSR_SOURCES_WATCH_0_DIR?"))

        // Far from every known name: named, no suggestion.
        let far = try #require(parseError("{}", env: ["DREAMSR_COMPLETELY_DIFFERENT_THING": "1"]))
        #expect(far.environmentVariable == "DREAMSR_COMPLETELY_DIFFERENT_THING" && !far.problem.contains("did you mean"))

        // Variables a key reads, and the engine's own (kernel choice), are accepted.
        #expect(parseError(yaml, env: ["DREAMSR_SOURCES_WATCH_0_DIR": "/c", "DREAMSR_LOG_LEVEL": "debug",
                                       "DREAMSR_KERNEL_ISA": "scalar", "DREAMSR_LIMITS_MAX_FILE_BYTES": "1000"]) == nil)
    }

    @Test func badValuesFromTheEnvironmentAreBlamedOnTheVariableNotAFileLine() throws {
        let yaml = "log_level: info\nshutdown:\n  grace_seconds: 5\nmetrics:\n  address: 127.0.0.1:9464\n"
        let grace = try #require(parseError(yaml, env: ["DREAMSR_SHUTDOWN_GRACE_SECONDS": "-1"]))
        #expect(grace.line == nil && grace.environmentVariable == "DREAMSR_SHUTDOWN_GRACE_SECONDS")
        #expect(grace.description.hasPrefix("environment variable DREAMSR_SHUTDOWN_GRACE_SECONDS (key 'shutdown.grace_seconds'): "),
                "\(grace)")
        let level = try #require(parseError(yaml, env: ["DREAMSR_LOG_LEVEL": "loud"]))
        #expect(level.line == nil && level.environmentVariable == "DREAMSR_LOG_LEVEL", "\(level)")
        let address = try #require(parseError(yaml, env: ["DREAMSR_METRICS_ADDRESS": "nowhere"]))
        #expect(address.line == nil && address.environmentVariable == "DREAMSR_METRICS_ADDRESS", "\(address)")
        // The same bad value in the file is still blamed on its line.
        let inFile = try #require(parseError("shutdown:\n  grace_seconds: -1\n", env: [:]))
        #expect(inFile.line == 2 && inFile.environmentVariable == nil)
    }

    @Test func checkRefusesAConfigurationWithoutSources() throws {
        for yaml in ["sources: {}\n", "sources:\n  watch: []\n", "{}\n"] {
            var config = try DaemonConfig.parse(yaml: yaml, file: "c.yaml", baseDirectory: "/tmp", env: [:])
            config.modelsDirectory = try Daemon.modelsDir()
            #expect(throws: ConfigError.self, "\(yaml)") { try checkServeConfig(config, factory: FakeFactory()) }
        }
    }

    /// `serve` and `serve --check` exit 78 with the same message for each configuration the start refuses.
    @Test func serveAndCheckRefuseTheSameConfigurationsWithExit78() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/in", withIntermediateDirectories: true)
        try Data("sources: {}\n".utf8).write(to: URL(fileURLWithPath: dir + "/nosources.yaml"))
        try Data("sources:\n  watch: []\n".utf8).write(to: URL(fileURLWithPath: dir + "/emptywatch.yaml"))
        let quick = ["serve", "--watch", dir + "/in", "--output", dir + "/out", "--metrics", "127.0.0.1:0"]
        let cases: [(String, [String], [String: String], String)] = [
            ("no sources", ["serve", "--config", dir + "/nosources.yaml"], [:], "no source configured"),
            ("empty watch list", ["serve", "--config", dir + "/emptywatch.yaml"], [:], "no source configured"),
            ("missing models folder", quick, ["DREAMSR_MODELS_DIR": dir + "/no-models"], "does not exist"),
            ("unknown variable", quick, ["DREAMSR_SHUTDOWN_GRACE_SECOND": "1"],
             "environment variable DREAMSR_SHUTDOWN_GRACE_SECOND: unknown variable"),
        ]
        for (what, args, env, message) in cases {
            for check in [true, false] {
                let log = dir + "/log-\(UUID().uuidString).txt"
                let p = try Daemon.start(args + (check ? ["--check"] : []), log: log, env: env)
                defer { if p.isRunning { p.terminate() } }
                let status = try await Daemon.waitForExit(p)
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                #expect(status == 78, "\(what) (--check: \(check)): exit \(status)\n\(text)")
                #expect(text.contains(message), "\(what) (--check: \(check)):\n\(text)")
            }
        }
    }
}

