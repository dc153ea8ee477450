import Foundation
import Yams

/// A typed, validating view of one YAML mapping. Every accessor names the full key path in its errors, unknown keys
/// are refused (`checkKeys`), and — when `envPrefix` is set — a scalar key can be overridden by an environment
/// variable `<envPrefix><PATH>` (path upper-cased, `.` -> `_`), e.g. `DREAMSR_METRICS_ADDRESS` for `metrics.address`.
/// Every variable name a parse consults is recorded (`consultedVariables`), so the caller can refuse the prefixed
/// variables nothing reads (a typo must not be silently ignored there either).
struct ConfigNode {
    let file: String
    let path: String
    let node: Node?
    let env: [String: String]
    let envPrefix: String?
    let consulted: ConsultedVariables

    /// The environment variable names read during one parse (shared by all nodes of that parse; single-threaded).
    final class ConsultedVariables {
        var names: Set<String> = []
    }

    var consultedVariables: Set<String> { consulted.names }

    static func parse(yaml: String, file: String, env: [String: String], envPrefix: String?) throws -> ConfigNode {
        do {
            let node = try Yams.compose(yaml: yaml)
            if let node, node.mapping == nil {
                throw ConfigError(file: file, key: "", problem: "the top level must be a mapping of keys", line: node.mark?.line)
            }
            return ConfigNode(file: file, path: "", node: node, env: env, envPrefix: envPrefix, consulted: ConsultedVariables())
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError(file: file, key: "", problem: "not valid YAML: \(error)")
        }
    }

    var line: Int? { node?.mark?.line }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    func envName(_ key: String) -> String? {
        envPrefix.map { $0 + keyPath(key).uppercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_") }
    }

    /// The environment variable overriding `key`, when one is set.
    func overridingVariable(_ key: String) -> String? {
        guard let name = envName(key) else { return nil }
        consulted.names.insert(name)
        return env[name] == nil ? nil : name
    }

    /// An error about `key`, blamed on its environment variable when one overrides it, else on the file line.
    func error(_ key: String, _ problem: String, at node: Node? = nil) -> ConfigError {
        if let variable = overridingVariable(key) {
            return ConfigError(file: file, key: keyPath(key), problem: problem, environmentVariable: variable)
        }
        return ConfigError(file: file, key: keyPath(key), problem: problem, line: (node ?? self.node)?.mark?.line)
    }

    func child(_ key: String) throws -> ConfigNode {
        let value = node?.mapping?[key]
        if let value, value.mapping == nil, !(value.scalar.map { $0.string.isEmpty || $0.string == "~" || $0.string == "null" } ?? false) {
            throw error(key, "expected a mapping of keys", at: value)
        }
        return ConfigNode(file: file, path: keyPath(key), node: value?.mapping == nil ? nil : value, env: env, envPrefix: envPrefix,
                          consulted: consulted)
    }

    func has(_ key: String) -> Bool { node?.mapping?[key] != nil || overridingVariable(key) != nil }

    func list(_ key: String) throws -> [ConfigNode] {
        guard let value = node?.mapping?[key] else { return [] }
        guard let seq = value.sequence else { throw error(key, "expected a list", at: value) }
        return seq.enumerated().map { i, item in
            ConfigNode(file: file, path: keyPath(key) + ".\(i)", node: item, env: env, envPrefix: envPrefix, consulted: consulted)
        }
    }

    /// Refuses keys that are not in `allowed` (a typo must not be silently ignored).
    func checkKeys(_ allowed: Set<String>) throws {
        guard let mapping = node?.mapping else { return }
        for (k, _) in mapping {
            guard let name = k.string, allowed.contains(name) else {
                throw error(k.string ?? "?", "unknown key (allowed: \(allowed.sorted().joined(separator: ", ")))", at: k)
            }
        }
    }

    /// The raw scalar text for `key`: the environment override first, then the file.
    private func raw(_ key: String) throws -> String? {
        if let name = overridingVariable(key), let v = env[name] { return v }
        guard let value = node?.mapping?[key] else { return nil }
        guard let scalar = value.scalar else { throw error(key, "expected a single value, not a list or mapping", at: value) }
        if scalar.string == "~" || scalar.string == "null" { return nil }
        return try interpolated(scalar.string, key: key, at: value)
    }

    /// A file value with `${NAME}` references expanded (see `ConfigInterpolation`); an error names the key and the
    /// variable, never a value. Variables read this way count as consulted (`${DREAMSR_...}` is not "unknown").
    /// Only the daemon configuration (the one parsed with an environment prefix) is interpolated; pipeline files
    /// are taken literally.
    func interpolated(_ text: String, key: String, at value: Node? = nil) throws -> String {
        guard envPrefix != nil else { return text }
        do {
            return try ConfigInterpolation.expand(text, env: env) { consulted.names.insert($0) }
        } catch {
            throw ConfigError(file: file, key: keyPath(key), problem: error.problem, line: (value ?? node)?.mark?.line)
        }
    }

    func string(_ key: String, default def: String) throws -> String { try optionalString(key) ?? def }

    func optionalString(_ key: String) throws -> String? {
        try raw(key)
    }

    func requiredString(_ key: String) throws -> String {
        guard let v = try optionalString(key), !v.isEmpty else { throw error(key, "required but missing") }
        return v
    }

    func int(_ key: String, default def: Int, min: Int = .min, max: Int = .max) throws -> Int {
        guard let text = try raw(key) else { return def }
        guard let v = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw error(key, "expected an integer, got '\(text)'", at: node?.mapping?[key])
        }
        guard v >= min && v <= max else {
            throw error(key, "\(v) is out of range \(min == .min ? "" : "\(min)")...\(max == .max ? "" : "\(max)")", at: node?.mapping?[key])
        }
        return v
    }

    func double(_ key: String, default def: Double, min: Double = -.infinity, max: Double = .infinity,
                exclusiveMin: Bool = false) throws -> Double {
        guard let text = try raw(key) else { return def }
        guard let v = Double(text.trimmingCharacters(in: .whitespaces)), v.isFinite else {
            throw error(key, "expected a number, got '\(text)'", at: node?.mapping?[key])
        }
        guard (exclusiveMin ? v > min : v >= min) && v <= max else {
            let lower = exclusiveMin ? "> \(min)" : ">= \(min)"
            throw error(key, "\(v) must be \(lower)\(max.isFinite ? " and <= \(max)" : "")", at: node?.mapping?[key])
        }
        return v
    }

    func bool(_ key: String, default def: Bool) throws -> Bool {
        guard let text = try raw(key) else { return def }
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw error(key, "expected true or false, got '\(text)'", at: node?.mapping?[key])
        }
    }

    func oneOf(_ key: String, _ allowed: [String], default def: String) throws -> String {
        let v = try string(key, default: def)
        guard allowed.contains(v) else {
            throw error(key, "'\(v)' is not one of \(allowed.joined(separator: ", "))", at: node?.mapping?[key])
        }
        return v
    }

    /// The value of `key` as one of an enum's cases (by raw value); a bad value names the key and every case.
    func choice<E: RawRepresentable & CaseIterable>(_ key: String, default def: E) throws -> E where E.RawValue == String {
        let v = try string(key, default: def.rawValue)
        guard let value = E(rawValue: v) else {
            throw error(key, "'\(v)' is not one of \(E.allCases.map(\.rawValue).joined(separator: ", "))", at: node?.mapping?[key])
        }
        return value
    }
}
