import FineTuneJSON
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

/// report.html: one self-contained page of a run (inline SVG, no scripts, no network) drawn from
/// its metrics.jsonl, training_config.json and run.json: the learning curves (training loss, the
/// validation loss and the training subset's when logged, so over-fitting shows), the monitored
/// metric, the learning rate, throughput per rank, the best evaluation and early stopping marked,
/// and a summary table.
public enum RunReport {
    /// One line of a chart.
    struct Series {
        var name: String, color: String
        var points: [(x: Double, y: Double)]
        var dots = false
    }

    /// Writes `runFolder`/report.html (or `output`) and returns its path.
    @discardableResult
    public static func write(runFolder: String, output: String? = nil) throws -> String {
        let path = output ?? "\(runFolder)/report.html"
        try AtomicFiles.write(Data(try html(runFolder: runFolder).utf8), to: path)
        return path
    }

    public static func html(runFolder: String) throws -> String {
        let metricsPath = "\(runFolder)/metrics.jsonl"
        guard let data = FileManager.default.contents(atPath: metricsPath) else {
            throw FineTuneError("\(metricsPath): missing (is \(runFolder) a run folder?)")
        }
        var records: [[String: JSONValue]] = []
        for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() {
            guard case .object(let o)? = try? decodeJSON(JSONValue.self, from: Data(line.utf8)) else {
                throw FineTuneError("\(metricsPath):\(n + 1): not a JSON object")
            }
            records.append(o)
        }
        func of(_ type: String) -> [[String: JSONValue]] { records.filter { $0["type"]?.string == type } }
        func points(_ rows: [[String: JSONValue]], _ key: String) -> [(x: Double, y: Double)] {
            rows.compactMap { r in r["step"]?.number.flatMap { x in r[key]?.number.map { (x, $0) } } }
        }
        let train = of("train"), evals = of("eval"), end = of("end").last, test = of("test").last
        let monitor = end?["monitor"]?.string ?? "val_loss"
        let bestStep = end?["best_step"]?.number
        var markers: [(x: Double, label: String)] = bestStep.map { [($0, "best")] } ?? []
        if let stop = evals.last(where: { $0["early_stopping"] == .bool(true) })?["step"]?.number { markers.append((stop, "early stop")) }

        var charts: [String] = []
        var losses = [Series(name: "training loss", color: "#1f77b4", points: points(train, "loss"))]
        losses.append(Series(name: "validation loss", color: "#d62728", points: points(evals, "val_loss"), dots: true))
        let trainEval = points(evals, "train_eval_loss")
        if !trainEval.isEmpty { losses.append(Series(name: "training subset loss (evaluation mode)", color: "#2ca02c", points: trainEval, dots: true)) }
        charts.append(chart(title: "Loss", series: losses, markers: markers))
        let metric = monitor.hasPrefix("val_") ? String(monitor.dropFirst(4)) : monitor
        if metric != "loss", !points(evals, monitor).isEmpty {
            var series = [Series(name: monitor, color: "#d62728", points: points(evals, monitor), dots: true)]
            let subset = points(evals, "train_eval_" + metric)
            if !subset.isEmpty { series.append(Series(name: "train_eval_" + metric, color: "#2ca02c", points: subset, dots: true)) }
            charts.append(chart(title: "Monitored metric: \(monitor)", series: series, markers: markers))
        }
        charts.append(chart(title: "Learning rate", series: [Series(name: "lr", color: "#9467bd", points: points(train, "lr"))], markers: []))
        // Tokens per second of each rank's own compute: a straggler shows as a lower line.
        let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        let ranks = train.map { r -> [Double] in
            if case .array(let a)? = r["tokens_per_s_by_rank"] { return a.compactMap(\.number) } else { return [] }
        }
        let rankCount = ranks.map(\.count).max() ?? 0
        let throughput = (0..<rankCount).map { rank in
            Series(name: "rank \(rank)", color: colors[rank % colors.count],
                   points: zip(train, ranks).compactMap { r, values in rank < values.count ? r["step"]?.number.map { ($0, values[rank]) } : nil })
        }
        if !throughput.isEmpty { charts.append(chart(title: "Throughput per rank (tokens/s of its own compute)", series: throughput, markers: [])) }

        // The summary table.
        var rows: [(String, String)] = []
        let config = FileManager.default.contents(atPath: "\(runFolder)/training_config.json")
            .flatMap { try? decodeJSON(JSONValue.self, from: $0) }?.object
        let options = config?["options"]?.object ?? [:]
        func text(_ v: JSONValue?) -> String {
            switch v {
            case .string(let s)?: return s
            case .integer(let i)?: return String(i)
            case .double(let d)?: return String(format: "%g", d)
            case .bool(let b)?: return String(b)
            default: return "-"
            }
        }
        for key in ["model", "train", "valid", "test", "epochs", "batch_size", "lr", "lr_schedule", "weight_decay", "freeze_layers", "lora_rank", "grad_accum"] {
            if let v = options[key], v != .null { rows.append((key.replacingOccurrences(of: "_", with: " "), text(v))) }
        }
        if let run = FileManager.default.contents(atPath: "\(runFolder)/run.json").flatMap({ try? decodeJSON(JSONValue.self, from: $0) })?.object {
            rows.append(("ranks", text(run["world_size"])))
            if case .array(let hosts)? = run["hosts"] { rows.append(("hosts", hosts.map { text($0) }.joined(separator: ", "))) }
            rows.append(("started", text(run["started"])))
            // Runs recorded before trainable_parameters existed train all of them.
            let trainable = run["trainable_parameters"].map { text($0) } ?? text(run["parameters"])
            rows.append(("parameters (trainable)", "\(text(run["parameters"])) (\(trainable))"))
        }
        if let end {
            rows.append(("outcome", "\(text(end["outcome"])): \(text(end["reason"]))"))
            rows.append(("best \(monitor)", "\(end["best_metric"]?.number.map { String(format: "%.4f", $0) } ?? "-") at step \(text(end["best_step"]))"))
            if let hint = end["hint"]?.string { rows.append(("hint", hint)) }
        }
        if let last = evals.last {
            rows.append(("last evaluation (step \(text(last["step"])))", last.filter { $0.key.hasPrefix("val_") && $0.key != "val_examples" }
                .sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.number.map { String(format: "%.4f", $0) } ?? "-")" }.joined(separator: ", ")))
        }
        if let test {
            rows.append(("test (\(text(test["model"])) model)", test.filter { $0.key.hasPrefix("test_") && $0.key != "test_examples" }
                .sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.number.map { String(format: "%.4f", $0) } ?? "-")" }.joined(separator: ", ")))
        }
        let table = rows.map { "<tr><th>\(escape($0.0))</th><td>\(escape($0.1))</td></tr>" }.joined(separator: "\n")
        return """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>finetune-dist run: \(escape(runFolder))</title>
        <style>body{font-family:sans-serif;margin:24px;max-width:1000px}table{border-collapse:collapse;margin-bottom:24px}
        th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
        svg{display:block;margin-bottom:24px}</style></head>
        <body><h1>Run \(escape(runFolder))</h1>
        <table>
        \(table)
        </table>
        \(charts.joined(separator: "\n"))
        <p>Written by finetune-dist \(Provenance.version) from metrics.jsonl, training_config.json and run.json.</p>
        </body></html>
        """
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten.
    static func ticks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
        guard high > low else { return [low] }
        let raw = (high - low) / Double(count), magnitude = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var values: [Double] = []
        var v = Foundation.ceil(low / step) * step
        while v <= high + step * 1e-9 { values.append(v); v += step }
        return values
    }

    /// A line chart: axes with round ticks, one polyline per series (dots for evaluations), dashed
    /// vertical markers, a legend.
    static func chart(title: String, series: [Series], markers: [(x: Double, label: String)]) -> String {
        let width = 900.0, height = 300.0, left = 70.0, right = 20.0, top = 30.0, bottom = 40.0
        let all = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        guard !all.isEmpty else { return "" }
        let xMin = min(0, all.map(\.x).min()!), xMax = max(all.map(\.x).max()!, xMin + 1)
        var yMin = all.map(\.y).min()!, yMax = all.map(\.y).max()!
        if yMax - yMin < 1e-12 { yMin -= 0.5 * max(abs(yMin), 1e-3); yMax += 0.5 * max(abs(yMax), 1e-3) }
        let plotW = width - left - right, plotH = height - top - bottom
        func sx(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * plotW }
        func sy(_ y: Double) -> Double { top + (1 - (y - yMin) / (yMax - yMin)) * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func label(_ v: Double) -> String { abs(v) >= 1e4 || (abs(v) < 1e-3 && v != 0) ? String(format: "%.2g", v) : String(format: "%g", (v * 1e6).rounded() / 1e6) }
        var svg = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height + 24.0 * Double((series.count + 2) / 3)))\" font-size=\"12\">",
                   "<text x=\"\(f(left))\" y=\"18\" font-weight=\"bold\" font-size=\"14\">\(escape(title))</text>",
                   "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#999\"/>"]
        for y in ticks(yMin, yMax) {
            svg.append("<line x1=\"\(f(left))\" x2=\"\(f(left + plotW))\" y1=\"\(f(sy(y)))\" y2=\"\(f(sy(y)))\" stroke=\"#eee\"/>")
            svg.append("<text x=\"\(f(left - 6))\" y=\"\(f(sy(y) + 4))\" text-anchor=\"end\">\(label(y))</text>")
        }
        for x in ticks(xMin, xMax) {
            svg.append("<text x=\"\(f(sx(x)))\" y=\"\(f(top + plotH + 16))\" text-anchor=\"middle\">\(label(x))</text>")
        }
        svg.append("<text x=\"\(f(left + plotW / 2))\" y=\"\(f(top + plotH + 34))\" text-anchor=\"middle\">step</text>")
        for m in markers where m.x >= xMin && m.x <= xMax {
            svg.append("<line class=\"marker\" x1=\"\(f(sx(m.x)))\" x2=\"\(f(sx(m.x)))\" y1=\"\(f(top))\" y2=\"\(f(top + plotH))\" stroke=\"#555\" stroke-dasharray=\"4 3\"/>")
            let nearRight = sx(m.x) > left + 0.8 * plotW  // label on the line's left, inside the plot
            svg.append("<text x=\"\(f(sx(m.x) + (nearRight ? -3 : 3)))\" y=\"\(f(top + 12))\" text-anchor=\"\(nearRight ? "end" : "start")\">\(escape(m.label)) (step \(label(m.x)))</text>")
        }
        for s in series {
            let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite }
            guard !pts.isEmpty else { continue }
            svg.append("<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.5\" points=\"\(pts.map { "\(f(sx($0.x))),\(f(sy($0.y)))" }.joined(separator: " "))\"/>")
            if s.dots { for p in pts { svg.append("<circle cx=\"\(f(sx(p.x)))\" cy=\"\(f(sy(p.y)))\" r=\"3\" fill=\"\(s.color)\"/>") } }
        }
        for (i, s) in series.enumerated() {
            let x = left + Double(i % 3) * 280, y = height + 24.0 * Double(i / 3) + 4
            svg.append("<line x1=\"\(f(x))\" x2=\"\(f(x + 20))\" y1=\"\(f(y))\" y2=\"\(f(y))\" stroke=\"\(s.color)\" stroke-width=\"3\"/>")
            svg.append("<text x=\"\(f(x + 26))\" y=\"\(f(y + 4))\">\(escape(s.name))</text>")
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n")
    }
}
