import Foundation

/// What may be shown of requests in logs and errors.
public enum Redaction {
    /// A URL without its query string, fragment and user info (presigned URLs carry their signature and the
    /// session token in the query): `https://host/path (query hidden)`.
    public static func url(_ text: String) -> String {
        guard var parts = URLComponents(string: text) else { return "<url>" }
        let hidden = parts.query != nil || parts.fragment != nil || parts.user != nil || parts.password != nil
        parts.query = nil
        parts.fragment = nil
        parts.user = nil
        parts.password = nil
        return (parts.string ?? "<url>") + (hidden ? " (query hidden)" : "")
    }

    /// Header names whose values are never shown.
    public static let secretHeaders: Set<String> = ["authorization", "x-amz-security-token", "cookie",
                                                    "proxy-authorization"]

    /// `name: value` with the value of a secret header replaced.
    public static func header(_ name: String, _ value: String) -> String {
        secretHeaders.contains(name.lowercased()) ? "\(name): <redacted>" : "\(name): \(value)"
    }

    /// `text` with every occurrence of the given secrets (non-empty ones) replaced by `<redacted>`: a last guard
    /// on text that came from elsewhere (a server's error message) before it goes into an error or a log line.
    public static func scrub(_ text: String, secrets: [String]) -> String {
        var out = text
        for secret in secrets where secret.count >= 4 {
            out = out.replacingOccurrences(of: secret, with: "<redacted>")
        }
        return out
    }
}
