// swift-tools-version: 6.1
import PackageDescription

// Optimisation for hot C kernels even in debug builds (tests run debug builds).
let kernelCFlags: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno"])]

let package = Package(
    name: "dreamsr",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "dreamsr", targets: ["dreamsr"]),
        .executable(name: "dreamsr-mock-kafka", targets: ["dreamsr-mock-kafka"]),
        .executable(name: "dreamsr-bench", targets: ["dreamsr-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"4.0.0"),
    ],
    targets: [
        // MARK: C libraries and kernels
        .target(name: "CKernels", cSettings: kernelCFlags),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CVips", pkgConfig: "vips", providers: [.apt(["libvips-dev"])]),
        .target(name: "CVipsShim", dependencies: ["CVips"], cSettings: kernelCFlags),
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The build's commit (scripts/build-release.sh defines it); nothing else.
        .target(name: "CBuildInfo"),

        // MARK: Engine (no I/O, no vips, no kafka)
        .target(name: "Tensor", dependencies: ["CKernels", "COpenBLAS"]),
        .target(name: "Checkpoints", dependencies: ["Tensor", "CKernels"]),
        .target(name: "Tokenizers", dependencies: ["CZlib"]),
        .target(name: "Models", dependencies: ["Tensor", "Checkpoints", "CKernels"]),
        .target(name: "Raster", dependencies: ["CKernels"]),
        .target(name: "Upscaling", dependencies: ["Raster", "Tensor", "Models"]),
        // The DreamSR pipeline (model set, prompt encoding, image <-> latent, samplers, colour fix): engine only.
        .target(name: "DreamSRPipeline", dependencies: ["Tensor", "Checkpoints", "Models", "Tokenizers", "Raster", "CKernels"]),

        // MARK: Imaging (the only module that talks to libvips)
        .target(name: "Imaging", dependencies: ["CVipsShim", "Raster"]),

        // MARK: Service
        // Locks, cancellation flags, durations, health problems: what the runtime and the connectors share.
        .target(name: "Support"),
        .target(name: "Jobs"),
        .target(name: "Captioning", dependencies: [.product(name: "Logging", package: "swift-log"),
                                                   .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "PipelineRuntime", dependencies: [
            "Jobs", "Support",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "WatchFolderConnector", dependencies: [
            "Jobs", "Support", "ObjectStorage",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // S3 (SigV4, GET, single and multipart PUT) and presigned uploads, over libcurl.
        .target(name: "ObjectStorage", dependencies: [
            "CCurl", "Support",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "KafkaConnector", dependencies: [
            // PipelineRuntime: only for SourceMetrics (the retry / dead-letter counters every source shares).
            "Jobs", "Support", "PipelineRuntime", "CRdKafka", "CCurl", "Captioning", "ObjectStorage",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "DreamsrApp", dependencies: [
            "CBuildInfo", "Tensor", "Checkpoints", "Models", "Tokenizers", "Captioning", "Raster", "Imaging", "Upscaling",
            "DreamSRPipeline",
            "Jobs", "Support", "PipelineRuntime", "WatchFolderConnector", "KafkaConnector", "ObjectStorage",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .executableTarget(name: "dreamsr", dependencies: [
            "DreamsrApp", "DreamSRPipeline", "Imaging", "Upscaling", "Tensor", "Tokenizers", "Jobs",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "dreamsr-mock-kafka", dependencies: ["CRdKafka"]),
        .executableTarget(name: "dreamsr-bench", dependencies: [
            "DreamsrApp", "Checkpoints", "DreamSRPipeline", "Imaging", "Jobs", "KafkaConnector", "Models", "PipelineRuntime", "Raster",
            "Support", "Tensor", "Upscaling", "WatchFolderConnector",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Benchmarks/dreamsr-bench"),

        // MARK: Test support and tests
        .target(name: "DreamsrTestKit", dependencies: ["Jobs", "Support", "PipelineRuntime", "Raster", "Tensor",
                                                     .product(name: "Logging", package: "swift-log"),
                                                     .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CKernels", "DreamsrTestKit"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "Tensor", "CKernels", "DreamsrTestKit"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers"]),
        .testTarget(name: "CaptioningTests", dependencies: ["Captioning", "DreamsrTestKit"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Checkpoints", "Tensor", "CKernels", "DreamsrTestKit"]),
        .testTarget(name: "RasterTests", dependencies: ["Raster", "CKernels"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "Raster", "DreamsrTestKit"]),
        .testTarget(name: "UpscalingTests", dependencies: ["Upscaling", "Raster", "Models", "Tensor", "Checkpoints",
                                                        "DreamsrTestKit", "Imaging"]),
        .testTarget(name: "DreamSRPipelineTests", dependencies: ["DreamSRPipeline", "Raster", "Models", "Tensor", "Checkpoints"]),
        .testTarget(name: "PipelineRuntimeTests", dependencies: ["PipelineRuntime", "Jobs", "Support", "DreamsrTestKit",
                                                              .product(name: "Logging", package: "swift-log"),
                                                              .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(name: "WatchFolderConnectorTests", dependencies: ["WatchFolderConnector", "PipelineRuntime", "Jobs", "Support",
                                                                   "DreamsrTestKit", "ObjectStorage",
                                                                   .product(name: "Logging", package: "swift-log"),
                                                                   .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(name: "ObjectStorageTests", dependencies: ["ObjectStorage", "DreamsrTestKit",
                                                            .product(name: "Crypto", package: "swift-crypto"),
                                                            .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "KafkaConnectorTests", dependencies: ["KafkaConnector", "ObjectStorage", "PipelineRuntime", "Jobs", "Support", "DreamsrTestKit",
                                                             "Captioning", .product(name: "CoreMetrics", package: "swift-metrics"),
                                                             .product(name: "Logging", package: "swift-log"),
                                                             .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(name: "DreamsrAppTests", dependencies: [
            "DreamsrApp", "DreamSRPipeline", "DreamsrTestKit", "Checkpoints", "Imaging", "Jobs", "KafkaConnector",
            "ObjectStorage", "PipelineRuntime", "Raster", "Models",
            "Support", "Tensor", "Upscaling", "WatchFolderConnector",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
    ]
)

// The AddressSanitizer step of scripts/test.sh builds only the engine and its tests (DREAMSR_ENGINE_ONLY=1, in its
// own build path): the service side (NIO, Kafka, libvips, the app) has no tensor memory and would double CI time.
// Target dependencies outside this set are dropped; an engine target that starts importing one fails that build.
if Context.environment["DREAMSR_ENGINE_ONLY"] != nil {
    let engine: Set<String> = [
        "CKernels", "COpenBLAS", "CZlib", "Tensor", "Checkpoints", "Tokenizers", "Models", "Raster", "Upscaling",
        "DreamSRPipeline", "Support", "Jobs", "PipelineRuntime", "DreamsrTestKit",
        "TensorTests", "CheckpointsTests", "ModelsTests", "UpscalingTests", "DreamSRPipelineTests",
    ]
    package.products = []
    package.targets = package.targets.filter { engine.contains($0.name) }
    for target in package.targets {
        target.dependencies = target.dependencies.filter { dependency in
            switch dependency {
            case .targetItem(let name, _), .byNameItem(let name, _): engine.contains(name)
            default: true
            }
        }
    }
}
