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
        #expect(badEnv.key == "shutdown.grace_seconds" && badEnv.problem.contains("DREAMSR_SHUTDOWN_GRACE_SECONDS"))

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
