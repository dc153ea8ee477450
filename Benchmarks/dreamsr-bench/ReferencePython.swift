import Foundation

/// The Python interpreter with the PyTorch reference stack used for benchmark baselines:
/// `$DREAMSR_REF_PYTHON`, else `.venv-ref/bin/python` (made by `scripts/setup-reference-env.sh`).
enum ReferencePython {
    static var defaultPath: String {
        if let p = ProcessInfo.processInfo.environment["DREAMSR_REF_PYTHON"], !p.isEmpty { return p }
        return ".venv-ref/bin/python"
    }
}
