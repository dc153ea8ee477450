import ArgumentParser
import DreamsrApp

/// The `dreamsr` command line. Each subcommand lives in its own file; wiring lives in DreamsrApp.
@main
struct DreamsrCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dreamsr",
        abstract: "Ultra-high-resolution image super-resolution: one-shot CLI and streaming daemon.",
        version: BuildInfo.versionLine,
        subcommands: [
            // Each subcommand registers itself here (one line each).
            UpscaleCommand.self,
            TokenizeCommand.self,
            ForwardCommand.self,
            ServeCommand.self,
            ModelsCommand.self,
        ]
    )
}
