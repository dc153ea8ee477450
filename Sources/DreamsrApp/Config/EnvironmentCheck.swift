extension DaemonConfig {
    /// `DREAMSR_*` variables that are not configuration keys but are read elsewhere (kernel selection and tuning, the
    /// test and reference tooling); every other `DREAMSR_*` variable must be one a configuration key reads.
    public static let nonConfigurationVariables: Set<String> = [
        "DREAMSR_KERNEL_ISA", "DREAMSR_WINOGRAD_TILES", "DREAMSR_NCNN_PROFILE",
        "DREAMSR_BIN", "DREAMSR_TEST_LOG", "DREAMSR_TOKENIZERS_DIR", "DREAMSR_REF_PYTHON",
        "DREAMSR_MOTO_PYTHON", "DREAMSR_MOTO_VENV",
    ]

    /// Refuses `DREAMSR_*` variables that no key of this configuration reads (a typo such as
    /// `DREAMSR_METRICS_ADRESS`, or `DREAMSR_SOURCES_WATCH_1_DIR` without a second watch entry in the file), naming
    /// each one, with the closest known name when one is near.
    static func refuseUnknownVariables(_ root: ConfigNode, env: [String: String]) throws {
        let known = root.consultedVariables.union(nonConfigurationVariables)
        let unknown = env.keys.filter { $0.hasPrefix(envPrefix) && !known.contains($0) }.sorted()
        guard let first = unknown.first else { return }
        let named = unknown.map { name in
            closest(to: name, in: known).map { "\(name) (did you mean \($0)?)" } ?? name
        }
        throw ConfigError(file: root.file, key: "",
                          problem: "unknown variable\(unknown.count > 1 ? "s" : "") \(named.joined(separator: ", ")): "
                              + "no key of \(root.file) reads \(unknown.count > 1 ? "them" : "it") (keys map to "
                              + "\(envPrefix)<KEY_PATH>, upper case, '.' -> '_', list items by index)",
                          environmentVariable: first)
    }

    /// The known name with the smallest edit distance to `name`, when that distance is small (at most 3).
    static func closest(to name: String, in known: Set<String>) -> String? {
        let scored = known.map { ($0, editDistance(name, $0)) }.filter { $0.1 <= 3 }
        return scored.min { ($0.1, $0.0) < ($1.1, $1.0) }?.0
    }

    /// Levenshtein distance (insertions, deletions, substitutions) over bytes.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        var row = Array(0...y.count)
        for (i, cx) in x.enumerated() {
            var diagonal = row[0]
            row[0] = i + 1
            for (j, cy) in y.enumerated() {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (cx == cy ? 0 : 1))
                diagonal = above
            }
        }
        return row[y.count]
    }
}
