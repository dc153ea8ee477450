import ArgumentParser
import DreamsrApp
import Foundation

/// `dreamsr serve`: the long-running daemon (watch folder and other sources, health and metrics endpoint).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the daemon: process images from the configured sources until SIGTERM/SIGINT.",
        discussion: """
        Quick start without a config file:
          dreamsr serve --watch IN_DIR --output OUT_DIR [--metrics 127.0.0.1:9464]
          dreamsr serve --kafka BOOTSTRAP --topic TOPIC --output OUT_DIR   (see docs/kafka.md)
        Files dropped into IN_DIR are upscaled into OUT_DIR; IN_DIR/processing, IN_DIR/done and IN_DIR/failed
        (with NAME.error.json) are created. With a config file: dreamsr serve --config conf/dreamsr.yaml
        (every key can be overridden by DREAMSR_* environment variables, see conf/dreamsr.yaml; a DREAMSR_* variable \
        no key reads is refused). String values may use ${NAME} (environment); Kafka secrets can come from files \
        (client_properties_file, <property>_file) or DREAMSR_KAFKA_PROPERTY_<NAME> (see docs/operations.md).

        Exit status: 0 stopped gracefully, or --check passed; 1 the daemon failed while running; 64 usage error; \
        78 invalid configuration (--check and the start refuse exactly the same configurations).
        """)

    @Option(help: "Daemon configuration file (YAML).")
    var config: String?

    @Option(help: "Quick start: the folder to watch for input images.")
    var watch: String?

    @Option(help: "Quick start: the folder for output images.")
    var output: String?

    @Option(help: "Quick start: Kafka bootstrap servers (host:port,...); needs --topic and --output.")
    var kafka: String?

    @Option(help: "Quick start: the Kafka input topic (results to TOPIC.results, dead letters to TOPIC.dlq, group dreamsr).")
    var topic: String?

    @Option(help: "Address for /health, /ready and /metrics, e.g. 127.0.0.1:9464.")
    var metrics: String?

    @Flag(help: "Only validate the configuration (and that the model files exist), print a summary, and exit.")
    var check = false

    func run() async throws {
        let cfg: DaemonConfig
        do {
            cfg = try loadServeConfig(ServeOptions(configPath: config, watch: watch, output: output, metricsAddress: metrics,
                                                   kafka: kafka, topic: topic))
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("dreamsr serve: invalid configuration: \(error)\n".utf8))
            throw ExitCode(78) // EX_CONFIG
        }
        if check {
            do {
                let summary = try checkServeConfig(cfg)
                try await checkWatchOutputs(cfg)
                print(summary)
                return
            } catch let error as ConfigError {
                FileHandle.standardError.write(Data("dreamsr serve: invalid configuration: \(error)\n".utf8))
                throw ExitCode(78)
            } catch let error as AppError where error.code == .models {
                FileHandle.standardError.write(Data("dreamsr serve: invalid configuration: \(error)\n".utf8))
                throw ExitCode(78)
            }
        }
        // Logging is set up inside runDaemon: its failures are written in the configured log format.
        do {
            try await runDaemon(config: cfg)
        } catch let error as ConfigError {
            writeServeFailure("invalid configuration: \(error)", format: cfg.logFormat)
            throw ExitCode(78)
        } catch let error as AppError where error.code == .models {
            // Missing or unusable weights found while wiring the pipeline: a configuration problem, as with --check.
            writeServeFailure("invalid configuration: \(error)", format: cfg.logFormat)
            throw ExitCode(78)
        } catch {
            writeServeFailure("\(error)", format: cfg.logFormat)
            throw ExitCode(1)
        }
    }
}
