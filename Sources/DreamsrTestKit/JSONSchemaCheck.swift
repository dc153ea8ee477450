import Foundation

/// A JSON value as parsed for schema checks: booleans, integers and other numbers kept apart (JSON Schema's
/// `integer` is a number with no fractional part).
public indirect enum JSONValue: Decodable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let v = try? c.decode(Bool.self) { self = .bool(v); return }
        if let v = try? c.decode(Int64.self) { self = .integer(v); return }
        if let v = try? c.decode(Double.self) { self = v == v.rounded() && abs(v) < 9e15 ? .integer(Int64(v)) : .number(v); return }
        if let v = try? c.decode(String.self) { self = .string(v); return }
        if let v = try? c.decode([JSONValue].self) { self = .array(v); return }
        self = .object(try c.decode([String: JSONValue].self))
    }

    public static func parse(_ bytes: some Collection<UInt8>) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var integer: Int64? { if case .integer(let v) = self { return v } else { return nil } }

    var numeric: Double? {
        switch self {
        case .integer(let v): return Double(v)
        case .number(let v): return v
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let v): return "\(v)"
        case .integer(let v): return "\(v)"
        case .number(let v): return "\(v)"
        case .string(let v): return "\"\(v)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\"\($0)\":\(o[$0]!)" }.joined(separator: ",") + "}"
        }
    }

    /// JSON equality (1 and 1.0 are equal; object key order does not matter).
    func sameValue(as other: JSONValue) -> Bool {
        switch (self, other) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.sameValue(as: $1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.allSatisfy { key, value in b[key].map { value.sameValue(as: $0) } ?? false }
        default:
            if let a = numeric, let b = other.numeric { return a == b }
            return false
        }
    }
}

/// Checks JSON instances against a JSON Schema (draft 2020-12), for the keywords our committed schemas use:
/// `type`, `enum`, `const`, `properties`, `required`, `additionalProperties`, `items`, `minimum`, `maximum`,
/// `minLength`, `maxLength`, `pattern`, `allOf`, `if`/`then`/`else`, `not`, and the annotations `$schema`, `$id`,
/// `title`, `description`. A schema using any other keyword is refused (`unsupported keyword`), so a check can never
/// pass by ignoring a rule.
public struct JSONSchemaCheck: Sendable {
    public let schema: JSONValue

    static let annotations: Set<String> = ["$schema", "$id", "title", "description", "examples"]
    static let keywords: Set<String> = ["type", "enum", "const", "properties", "required", "additionalProperties", "items",
                                        "minimum", "maximum", "minLength", "maxLength", "pattern", "allOf", "if", "then",
                                        "else", "not"]

    public init(schema: JSONValue) {
        self.schema = schema
    }

    public init(schemaFile path: String) throws {
        schema = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    /// Every violation, as `path: problem` (empty when the instance is valid).
    public func violations(_ instance: JSONValue) -> [String] {
        var out: [String] = []
        check(instance, against: schema, at: "$", into: &out)
        return out
    }

    public func violations(json bytes: some Collection<UInt8>) -> [String] {
        do {
            return violations(try JSONValue.parse(bytes))
        } catch {
            return ["$: not JSON: \(error)"]
        }
    }

    private func check(_ value: JSONValue, against schema: JSONValue, at path: String, into out: inout [String]) {
        if case .bool(let allowed) = schema {
            if !allowed { out.append("\(path): no value is allowed here") }
            return
        }
        guard case .object(let rules) = schema else {
            out.append("\(path): schema is not an object or boolean")
            return
        }
        for key in rules.keys where !Self.keywords.contains(key) && !Self.annotations.contains(key) {
            out.append("\(path): unsupported keyword '\(key)' in the schema")
        }
        if let type = rules["type"] {
            let names: [String]
            switch type {
            case .string(let one): names = [one]
            case .array(let many): names = many.compactMap(\.string)
            default: names = []
            }
            if !names.contains(where: { Self.matches(value, type: $0) }) {
                out.append("\(path): expected \(names.joined(separator: " or ")), got \(value)")
            }
        }
        if let constant = rules["const"], !value.sameValue(as: constant) {
            out.append("\(path): must be \(constant), got \(value)")
        }
        if case .array(let options)? = rules["enum"], !options.contains(where: { value.sameValue(as: $0) }) {
            out.append("\(path): \(value) is not one of \(JSONValue.array(options))")
        }
        if let number = value.numeric {
            if let minimum = rules["minimum"]?.numeric, number < minimum { out.append("\(path): \(value) < minimum \(minimum)") }
            if let maximum = rules["maximum"]?.numeric, number > maximum { out.append("\(path): \(value) > maximum \(maximum)") }
        }
        if case .string(let text) = value {
            let length = text.unicodeScalars.count
            if let min = rules["minLength"]?.integer, length < min { out.append("\(path): shorter than \(min)") }
            if let max = rules["maxLength"]?.integer, length > max { out.append("\(path): longer than \(max)") }
            if let pattern = rules["pattern"]?.string {
                if let regex = try? NSRegularExpression(pattern: pattern) {
                    if regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil {
                        out.append("\(path): '\(text)' does not match \(pattern)")
                    }
                } else {
                    out.append("\(path): bad pattern \(pattern) in the schema")
                }
            }
        }
        if case .object(let object) = value {
            let properties: [String: JSONValue]
            if case .object(let p)? = rules["properties"] { properties = p } else { properties = [:] }
            if case .array(let required)? = rules["required"] {
                for name in required.compactMap(\.string) where object[name] == nil {
                    out.append("\(path): missing required '\(name)'")
                }
            }
            for (key, member) in object.sorted(by: { $0.key < $1.key }) {
                if let sub = properties[key] {
                    check(member, against: sub, at: "\(path).\(key)", into: &out)
                } else if let extra = rules["additionalProperties"] {
                    if case .bool(false) = extra {
                        out.append("\(path): unexpected property '\(key)'")
                    } else {
                        check(member, against: extra, at: "\(path).\(key)", into: &out)
                    }
                }
            }
        }
        if case .array(let items) = value, let itemSchema = rules["items"] {
            for (index, item) in items.enumerated() { check(item, against: itemSchema, at: "\(path)[\(index)]", into: &out) }
        }
        if case .array(let all)? = rules["allOf"] {
            for sub in all { check(value, against: sub, at: path, into: &out) }
        }
        if let condition = rules["if"] {
            var probe: [String] = []
            check(value, against: condition, at: path, into: &probe)
            if probe.isEmpty {
                if let then = rules["then"] { check(value, against: then, at: path, into: &out) }
            } else if let otherwise = rules["else"] {
                check(value, against: otherwise, at: path, into: &out)
            }
        }
        if let negated = rules["not"] {
            var probe: [String] = []
            check(value, against: negated, at: path, into: &probe)
            if probe.isEmpty { out.append("\(path): must not match \(negated)") }
        }
    }

    static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("integer", .integer), ("number", .integer), ("number", .number),
             ("string", .string), ("array", .array), ("object", .object):
            return true
        default:
            return false
        }
    }
}
