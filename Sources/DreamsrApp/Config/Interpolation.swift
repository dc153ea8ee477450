/// `${NAME}` interpolation of configuration string values (secrets and paths from the environment, e.g.
/// `${CREDENTIALS_DIRECTORY}/kafka.properties` under systemd `LoadCredential=`). Only the braced form is expanded;
/// `$$` is a literal `$`; any other `$` is kept as is. An unset variable is an error that names the variable and
/// never shows a value.
enum ConfigInterpolation {
    struct Failure: Error, Equatable {
        var problem: String
    }

    /// `text` with every `${NAME}` replaced by `env[NAME]`; `used` gets each variable name read.
    static func expand(_ text: String, env: [String: String], used: (String) -> Void = { _ in }) throws(Failure) -> String {
        guard text.contains("$") else { return text }
        var out = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            let after = rest.index(after: dollar)
            if after < rest.endIndex, rest[after] == "$" {
                out += "$"
                rest = rest[rest.index(after: after)...]
            } else if after < rest.endIndex, rest[after] == "{" {
                let nameStart = rest.index(after: after)
                guard let close = rest[nameStart...].firstIndex(of: "}") else {
                    throw Failure(problem: "unterminated '${' (write '$$' for a literal '$')")
                }
                let name = String(rest[nameStart..<close])
                guard isVariableName(name) else {
                    throw Failure(problem: "'${\(name)}' is not a variable reference: use ${NAME} with letters, digits and '_' (write '$$' for a literal '$')")
                }
                used(name)
                guard let value = env[name] else {
                    throw Failure(problem: "environment variable \(name) is not set (referenced as ${\(name)})")
                }
                out += value
                rest = rest[rest.index(after: close)...]
            } else {
                out += "$"
                rest = rest[after...]
            }
        }
        return out + rest
    }

    static func isVariableName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic) else {
            return false
        }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
    }
}
