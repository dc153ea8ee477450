import ArgumentParser

/// `dreamsr-bench`: each benchmark prints its time AND the ratio against its named baseline measured in the same run.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dreamsr-bench",
        abstract: "dreamsr benchmarks (each measures its baseline in the same run and prints the ratio).",
        subcommands: [
            // Each benchmark registers itself here (one line each).
            RealESRGANBench.self,
            ImagingBench.self,
            FluxBlocksBench.self,
            DaemonBench.self,
            DreamSRStepBench.self,
            VAEDecodeBench.self,
            TextEncodersBench.self,
            KafkaBench.self,
            ScaleOutBench.self,
            LowPrecisionGemmBench.self,
            HTTPBench.self,
            NCNNZooBench.self,
            FluxStepBench.self,
            DreamSRFullBench.self,
        ]
    )
}
