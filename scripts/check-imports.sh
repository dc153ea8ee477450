#!/usr/bin/env bash
# Every module a target's sources import is declared in that target's dependencies in Package.swift (a target,
# a product, or a toolchain/system module), and every declared package is imported by some target.
# Exit 1 naming each undeclared import / unused package. Run by scripts/test.sh; no build needed.
set -euo pipefail
cd "$(dirname "$0")/.."
swift package dump-package > "${TMPDIR:-/tmp}/dreamsr-package.$$.json"
trap 'rm -f "${TMPDIR:-/tmp}/dreamsr-package.$$.json"' EXIT
python3 - "${TMPDIR:-/tmp}/dreamsr-package.$$.json" <<'PY'
import json, os, re, sys

# Modules that come with the toolchain or the OS, never declared in Package.swift.
TOOLCHAIN = {"Foundation", "FoundationEssentials", "FoundationNetworking", "FoundationXML", "Dispatch", "Glibc",
             "Musl", "Darwin", "WinSDK", "Android", "XCTest", "Testing", "Synchronization", "_Concurrency",
             "Observation", "RegexBuilder", "os", "Swift", "SwiftShims"}
IMPORT = re.compile(r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?(\w+)", re.M)

pkg = json.load(open(sys.argv[1]))
declared_packages = {d["sourceControl"][0]["location"]["remote"][0]["urlString"].rstrip("/").removesuffix(".git").split("/")[-1]
                     for d in pkg["dependencies"] if "sourceControl" in d}
problems, used_packages = [], set()
for t in pkg["targets"]:
    if t["type"] in ("system", "binary", "plugin"):
        continue
    deps = set()
    for d in t["dependencies"]:
        if "byName" in d: deps.add(d["byName"][0])
        elif "target" in d: deps.add(d["target"][0])
        elif "product" in d:
            deps.add(d["product"][0])
            used_packages.add(d["product"][1])
    path = t.get("path") or ("Tests/" if t["type"] == "test" else "Sources/") + t["name"]
    seen = {}
    for root, _, files in os.walk(path):
        for f in files:
            if not f.endswith(".swift"):
                continue
            text = re.sub(r"//[^\n]*", "", open(os.path.join(root, f), encoding="utf-8").read())
            for m in IMPORT.findall(text):
                seen.setdefault(m, os.path.join(root, f))
    for d in t["dependencies"]:
        if "product" in d and d["product"][0] not in seen:
            problems.append(f"{t['name']}: declares product {d['product'][0]} but none of its sources imports it")
    for module, where in sorted(seen.items()):
        if module in TOOLCHAIN or module in deps or module == t["name"]:
            continue
        problems.append(f"{t['name']}: imports {module} ({where}) but Package.swift does not declare it")
for p in sorted(declared_packages - used_packages):
    problems.append(f"package {p} is declared but no target depends on it")
for p in problems:
    print(p)
if problems:
    sys.exit(1)
print(f"imports: {len(pkg['targets'])} targets, every import declared")
PY
