/// The app's configuration error: names the file, the key (dotted path) and the problem, and the line when known.
/// A value that came from an environment variable is blamed on that variable (`environmentVariable`), not on a line
/// of the file. Surfaces from `DaemonConfig.load` / `PipelineDefinition.load`; the daemon refuses to start on it.
public struct ConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String
    public var problem: String
    public var line: Int?
    /// The `DREAMSR_*` variable the bad value (or the unknown name) came from; nil when it came from the file.
    public var environmentVariable: String?

    public init(file: String, key: String, problem: String, line: Int? = nil, environmentVariable: String? = nil) {
        self.file = file
        self.key = key
        self.problem = problem
        self.line = line
        self.environmentVariable = environmentVariable
    }

    public var description: String {
        if let variable = environmentVariable {
            return key.isEmpty ? "environment variable \(variable): \(problem)"
                : "environment variable \(variable) (key '\(key)'): \(problem)"
        }
        let location = line.map { "\(file):\($0)" } ?? file
        return key.isEmpty ? "\(location): \(problem)" : "\(location): key '\(key)': \(problem)"
    }
}
