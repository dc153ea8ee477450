/// Errors of the app layer other than configuration (those are `ConfigError`): start-up problems such as an
/// endpoint that cannot listen or a model folder that is missing. They stop the daemon with this message.
public struct AppError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case http, models, imaging, wiring }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) { self.code = code; self.message = message }
    public var description: String { message }
    static func http(_ m: String) -> AppError { AppError(.http, m) }
    static func wiring(_ m: String) -> AppError { AppError(.wiring, m) }
}
