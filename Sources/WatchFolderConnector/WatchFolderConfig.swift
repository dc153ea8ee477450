/// Settings of one watch folder. Inputs are dropped into `directory`; `processing/`, `done/` and `failed/` are
/// created inside it. Outputs go to `outputDirectory` as `<input stem>.<format>` (the same input name always gives
/// the same output name, so re-processing overwrites).
public struct WatchFolderConfig: Sendable, Equatable {
    public var directory: String
    public var outputDirectory: String
    /// Output format / file extension (png, jpeg, webp, tiff).
    public var outputFormat: String
    /// Pipeline name passed with each job; nil: the default pipeline.
    public var pipeline: String?
    /// Rescan period (also the fallback when inotify is unavailable, e.g. NFS/SMB). Default 2 s.
    public var pollInterval: Duration
    /// A file is taken only once its size and mtime have not changed for this long. Default 1 s.
    public var stabilityInterval: Duration
    /// Jobs from this folder submitted to the pipeline at once (more wait in the folder). Default 8.
    public var maxConcurrentJobs: Int
    /// Use inotify for prompt pick-up (polling always runs as well). Default true.
    public var useInotify: Bool

    public init(directory: String, outputDirectory: String, outputFormat: String = "png", pipeline: String? = nil,
                pollInterval: Duration = .seconds(2), stabilityInterval: Duration = .seconds(1),
                maxConcurrentJobs: Int = 8, useInotify: Bool = true) {
        self.directory = directory
        self.outputDirectory = outputDirectory
        self.outputFormat = outputFormat
        self.pipeline = pipeline
        self.pollInterval = pollInterval
        self.stabilityInterval = stabilityInterval
        self.maxConcurrentJobs = maxConcurrentJobs
        self.useInotify = useInotify
    }

    public var processingDirectory: String { directory + "/processing" }
    public var doneDirectory: String { directory + "/done" }
    public var failedDirectory: String { directory + "/failed" }
}

/// The watch folder's error type: only set-up problems surface (folders that cannot be created or read); a job's
/// failure is written next to its input in `failed/`.
public struct WatchFolderError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var path: String
    public init(_ message: String, path: String) { self.message = message; self.path = path }
    public var description: String { "\(path): \(message)" }
}
