import Foundation
import PipelineRuntime

/// The live status page at `/`: jobs in flight with their stage and progress, per-stage queue depth, throughput over
/// the last hour and recent jobs with before/after thumbnails. One self-contained HTML document (inline CSS and SVG,
/// no scripts, no external assets) that reloads itself every few seconds; read-only.
public struct StatusPage: Sendable {
    public struct Stage: Sendable {
        public var name: String
        public var workers: Int
        public var queued: Int
    }

    public var pipeline: String
    public var state: String
    public var version: String
    public var stages: [Stage]
    public var inFlight: [InFlightJob]
    public var stats: PipelineStats
    public var throughput: [Int]
    public var recent: [JobBoard.Entry]
    public var now: ContinuousClock.Instant = .now
    public var refreshSeconds = 3

    public func render() -> String {
        var h = """
        <!doctype html><html lang="en"><head><meta charset="utf-8">
        <meta http-equiv="refresh" content="\(refreshSeconds)"><title>dreamsr: \(esc(pipeline))</title>
        <style>
        body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
        h1{font-size:20px;margin:0 0 4px} h2{font-size:15px;margin:24px 0 8px;color:#3b4456}
        .meta{color:#667085;font-size:12px} table{border-collapse:collapse;background:#fff;min-width:480px}
        td,th{padding:6px 10px;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:middle}
        th{font-weight:600;color:#475467;font-size:12px;text-transform:uppercase}
        .bar{width:160px;height:10px;background:#e4e7ec;border-radius:5px;overflow:hidden;display:inline-block}
        .bar>div{height:100%;background:#2e90fa} .ok{color:#067647} .error{color:#b42318} .abandoned{color:#b54708}
        .pill{display:inline-block;padding:1px 8px;border-radius:9px;background:#eef4ff;color:#3538cd;font-size:12px}
        .thumb{width:96px;height:72px;object-fit:contain;background:#e4e7ec;border-radius:4px}
        .none{color:#98a2b3;font-size:12px} .num{text-align:right;font-variant-numeric:tabular-nums}
        </style></head><body>
        <h1>dreamsr · \(esc(pipeline)) <span class="pill">\(esc(state))</span></h1>
        <div class="meta">\(esc(version)) · \(stats.itemsInFlight) in flight · \(String(format: "%.1f", stats.megapixelsInFlight)) MP reserved · \(stats.completed) ok, \(stats.failed) failed, \(stats.abandoned) abandoned since start</div>

        """
        h += "<h2>In flight (\(inFlight.count))</h2>"
        if inFlight.isEmpty {
            h += "<p class=\"none\">No job is running.</p>"
        } else {
            h += "<table id=\"in-flight\"><tr><th>job</th><th>source</th><th>stage</th><th>progress</th><th class=\"num\">elapsed</th></tr>"
            for job in inFlight {
                let p = job.progress
                let progress: String
                if let f = p.fraction {
                    progress = "<span class=\"bar\"><div style=\"width:\(Int(f * 100))%\"></div></span> \(p.done)/\(p.total)"
                } else {
                    progress = "<span class=\"none\">—</span>"
                }
                h += "<tr class=\"job\"><td>\(esc(job.id.rawValue))</td><td>\(esc(job.source.logDescription))</td>"
                    + "<td><span class=\"pill\">\(esc(p.stage ?? "queued"))</span></td><td>\(progress)</td>"
                    + "<td class=\"num\">\(duration(now - job.admitted))</td></tr>"
            }
            h += "</table>"
        }
        h += "<h2>Stages</h2><table id=\"stages\"><tr><th>stage</th><th class=\"num\">workers</th><th class=\"num\">queued</th></tr>"
        for s in stages {
            h += "<tr><td>\(esc(s.name))</td><td class=\"num\">\(s.workers)</td><td class=\"num\">\(s.queued)</td></tr>"
        }
        h += "</table>"
        h += "<h2>Throughput, last hour (\(throughput.reduce(0, +)) jobs)</h2>" + chart()
        h += "<h2>Recent jobs</h2>"
        if recent.isEmpty {
            h += "<p class=\"none\">No job has finished yet.</p>"
        } else {
            h += "<table id=\"recent\"><tr><th>before</th><th>after</th><th>job</th><th>outcome</th><th class=\"num\">seconds</th></tr>"
            for e in recent {
                let outcome = e.outcome.status.rawValue
                var detail = esc(e.source)
                if let w = e.outcome.width, let hgt = e.outcome.height { detail += " → \(w)×\(hgt)" }
                if e.outcome.status == .error {
                    detail += "<br><span class=\"error\">\(esc(e.outcome.errorStage ?? "")): \(esc(e.outcome.errorMessage ?? ""))</span>"
                }
                h += "<tr><td>\(thumb(e, "before"))</td><td>\(thumb(e, "after"))</td>"
                    + "<td>\(esc(e.id.rawValue))<br><span class=\"meta\">\(detail)</span></td>"
                    + "<td class=\"\(outcome)\">\(outcome)</td><td class=\"num\">\(String(format: "%.2f", e.seconds))</td></tr>"
            }
            h += "</table><p class=\"meta\">Thumbnails are made while this page is open.</p>"
        }
        return h + "</body></html>\n"
    }

    private func thumb(_ e: JobBoard.Entry, _ which: String) -> String {
        let has = which == "before" ? e.before != nil : e.after != nil
        return has ? "<img class=\"thumb\" alt=\"\(which)\" src=\"/thumbnails/\(e.number)/\(which).jpg\">"
                   : "<span class=\"none\">—</span>"
    }

    private func chart() -> String {
        let w = 480, hgt = 80, n = max(throughput.count, 1)
        let top = max(throughput.max() ?? 0, 1)
        var svg = "<svg width=\"\(w)\" height=\"\(hgt + 16)\" role=\"img\" aria-label=\"jobs per interval\">"
        for (i, c) in throughput.enumerated() {
            let bw = w / n
            let bh = c == 0 ? 1 : max(2, c * hgt / top)
            svg += "<rect x=\"\(i * bw + 2)\" y=\"\(hgt - bh)\" width=\"\(bw - 4)\" height=\"\(bh)\" fill=\"#2e90fa\"><title>\(c)</title></rect>"
        }
        svg += "<text x=\"0\" y=\"\(hgt + 14)\" font-size=\"11\" fill=\"#667085\">−60 min</text>"
        svg += "<text x=\"\(w - 30)\" y=\"\(hgt + 14)\" font-size=\"11\" fill=\"#667085\">now</text></svg>"
        return svg
    }

    private func duration(_ d: Duration) -> String {
        let s = max(0, Int(d.seconds))
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                         : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// Text for HTML element content and attribute values.
func esc(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(c)
        }
    }
    return out
}
