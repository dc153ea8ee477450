/// The app's configuration error: names the file, the key (dotted path) and the problem, and the line when known.
/// Surfaces from `DaemonConfig.load` / `PipelineDefinition.load`; the daemon refuses to start on it.
public struct ConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String
    public var problem: String
    public var line: Int?

    public init(file: String, key: String, problem: String, line: Int? = nil) {
        self.file = file
        self.key = key
        self.problem = problem
        self.line = line
    }

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        return key.isEmpty ? "\(location): \(problem)" : "\(location): key '\(key)': \(problem)"
    }
}
