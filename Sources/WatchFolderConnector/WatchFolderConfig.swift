import ObjectStorage

/// Settings of one watch folder. Inputs are dropped into `directory`; `processing/`, `done/` and `failed/` are
/// created inside it. Outputs go to `outputDirectory` as `<input stem>.<format>`; a name that is taken (an earlier
/// output, or another input with the same stem: `a.png` and `a.webp`) gets the first free `<stem>-N.<format>`, so no
/// output ever replaces another.
///
/// With `outputPrefix` (`output: s3://bucket/prefix/`) each output is written to `stagingDirectory`, uploaded to
/// `<prefix><stem>.<format>` (a key that exists, or that another job of this run was given, gets the first free
/// `<stem>-N.<format>`: HEAD check, then a PUT with `If-None-Match: *`) and removed; `outputDirectory` then holds
/// the prefix's URI, for display only.
public struct WatchFolderConfig: Sendable, Equatable {
    public var directory: String
    public var outputDirectory: String
    /// `s3://bucket/prefix/` outputs are uploaded under; nil: outputs go to `outputDirectory`.
    public var outputPrefix: S3Location?
    /// The object storage the prefix lives in (endpoint, region, credentials, retries); needed with `outputPrefix`.
    public var objectStorage: S3Configuration?
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
    /// Wait before the first retry of a retriable failure (and the first re-check of a broken folder); doubles
    /// with each further attempt up to `maxRetryDelay`. Default 1 s.
    public var retryDelay: Duration
    /// Cap of the retry / re-check delay. Default 60 s.
    public var maxRetryDelay: Duration
    /// Retriable failures of one input (the pipeline ran and failed) before it goes to `failed/`. Default 10.
    /// Waiting for a broken output folder is not counted: the model does not run then.
    public var maxRetries: Int
    /// A file inotify saw being written and not yet closed is taken anyway once unchanged this long (a writer that
    /// holds a file open without writing, or a hard link, which inotify reports as created and never closed).
    /// Default 60 s.
    public var openWriterLimit: Duration

    public init(directory: String, outputDirectory: String, outputFormat: String = "png", pipeline: String? = nil,
                pollInterval: Duration = .seconds(2), stabilityInterval: Duration = .seconds(1),
                maxConcurrentJobs: Int = 8, useInotify: Bool = true, retryDelay: Duration = .seconds(1),
                maxRetryDelay: Duration = .seconds(60), maxRetries: Int = 10, openWriterLimit: Duration = .seconds(60)) {
        self.directory = directory
        self.outputDirectory = outputDirectory
        self.outputFormat = outputFormat
        self.pipeline = pipeline
        self.pollInterval = pollInterval
        self.stabilityInterval = stabilityInterval
        self.maxConcurrentJobs = maxConcurrentJobs
        self.useInotify = useInotify
        self.retryDelay = retryDelay
        self.maxRetryDelay = maxRetryDelay
        self.maxRetries = maxRetries
        self.openWriterLimit = openWriterLimit
    }

    /// Names a writer uses while a file is incomplete, never taken: hidden (`.name`), `*.part`, `*.tmp`,
    /// `*.crdownload`, `*~`.
    public static func isTemporaryName(_ name: String) -> Bool {
        if name.hasPrefix(".") || name.hasSuffix("~") { return true }
        let lower = name.lowercased()
        return [".part", ".tmp", ".crdownload"].contains { lower.hasSuffix($0) }
    }

    public var processingDirectory: String { directory + "/processing" }
    public var doneDirectory: String { directory + "/done" }
    public var failedDirectory: String { directory + "/failed" }
    /// Where outputs bound for `outputPrefix` are written before their upload (hidden, inside `processing/`).
    public var stagingDirectory: String { processingDirectory + "/.outputs" }
}

/// The watch folder's error type: only set-up problems surface (folders that cannot be created or read); a job's
/// failure is written next to its input in `failed/`.
public struct WatchFolderError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var path: String
    public init(_ message: String, path: String) { self.message = message; self.path = path }
    public var description: String { "\(path): \(message)" }
}
