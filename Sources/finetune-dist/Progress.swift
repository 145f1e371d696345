import ArgumentParser
import FineTuneKernels
import FineTuneModels
import FineTuneTrainer
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension ProgressMode: ExpressibleByArgument {
    /// `auto` resolved. A rank started by mpirun writes into a pseudo-terminal that mpirun forwards
    /// (Open MPI gives every rank one whatever mpirun itself writes to), so its own standard
    /// output says nothing: under mpirun, rank 0 looks at mpirun's (its parent's) standard output
    /// instead. Ranks started by a remote daemon or by Slurm see no terminal and
    /// print lines, which is what a batch log wants.
    static func resolve(_ mode: ProgressMode, descriptor: Int32 = STDOUT_FILENO) -> (mode: ProgressMode, terminal: String?) {
        guard mode == .auto else { return (mode, mode == .bar ? terminalPath(descriptor) : nil) }
        if let terminal = terminalPath(descriptor) { return (.bar, terminal) }
        return (.lines, nil)
    }

    /// The terminal the user sees on `descriptor` (standard output or error): our own, or
    /// mpirun's when we are its child.
    static func terminalPath(_ descriptor: Int32 = STDOUT_FILENO) -> String? {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OMPI_COMM_WORLD_RANK"] != nil || environment["PMIX_RANK"] != nil else {
            return isatty(descriptor) != 0 ? "/dev/fd/\(descriptor)" : nil
        }
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(getppid())/fd/\(descriptor)") else { return nil }
        return target.hasPrefix("/dev/pts/") || target.hasPrefix("/dev/tty") ? target : nil
    }
}

/// Rank 0's console: prints the trainer's lines and, in bar mode, keeps one status line redrawn
/// below them. Everything it shows comes from the trainer's events; nothing here changes a run.
final class ProgressDisplay {
    let mode: ProgressMode
    let monitor: MonitoredMetric
    private let columns: Int
    private var barShown = false
    private var lastDraw = Date.distantPast
    private var lastEvaluationLine = Date()
    // For the ETA: the first step this process saw, and when.
    private var firstStep: (step: Int, time: Date)? = nil
    private var latest: (step: Int, totalSteps: Int, epoch: Double)? = nil
    private var recentLosses: [Double] = []
    private var examplesPerSecond: Double? = nil
    private var lastMetric: (value: Double, step: Int)? = nil
    private var evaluation: (done: Int, total: Int)? = nil

    init(mode requested: ProgressMode, monitor: MonitoredMetric) {
        let (mode, terminal) = ProgressMode.resolve(requested)
        self.mode = mode
        self.monitor = monitor
        columns = terminal.flatMap(Self.terminalColumns) ?? 100
    }

    func handle(_ event: TrainingEvent) {
        switch event {
        case .stepFinished(let step, let total, let epoch, let loss):
            if firstStep == nil { firstStep = (step - 1, Date()) }
            latest = (step, total, epoch)
            if let loss { recentLosses.append(loss); if recentLosses.count > 20 { recentLosses.removeFirst() } }
            evaluation = nil
            if mode == .bar { drawBar(force: step == total) }
        case .train(let log):
            examplesPerSecond = log.examplesPerSecond
            if mode == .lines, let line = event.consoleLine { printLine(line + lineSuffix()) }
        case .evaluating(let done, let total):
            evaluation = (done, total)
            if mode == .bar { drawBar(force: false) }
            // A long evaluation says how far it is, every 10 s, in lines mode.
            if mode == .lines && done < total && Date().timeIntervalSince(lastEvaluationLine) > 10 {
                printLine("evaluating: \(done)/\(total) examples")
                lastEvaluationLine = Date()
            }
        case .end:
            // The summary is the last word: the bar is not drawn again below it.
            if barShown { write("\r\u{1B}[2K"); barShown = false }
            latest = nil
            if let line = event.consoleLine { write(line + "\n") }
        case .evaluation(let record):
            evaluation = nil
            lastMetric = (record.result.value(of: monitor), record.step)
            lastEvaluationLine = Date()
            if let line = event.consoleLine { printLine(line) }
        default:
            if let line = event.consoleLine { printLine(line) }
        }
    }

    /// Ends the bar's line so the shell prompt starts on its own.
    func finish() {
        if barShown { write("\n"); barShown = false }
    }

    // MARK: Rendering

    private func printLine(_ line: String) {
        if barShown { write("\r\u{1B}[2K") }
        write(line + "\n")
        if barShown { drawBar(force: true) }
    }

    private func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    private var eta: String {
        guard let first = firstStep, let now = latest, now.step > first.step else { return "--" }
        let seconds = Date().timeIntervalSince(first.time) / Double(now.step - first.step) * Double(now.totalSteps - now.step)
        return Self.duration(seconds)
    }

    private func lineSuffix() -> String {
        var text = " | ETA \(eta)"
        if let m = lastMetric { text += String(format: " | %@ %.4f (step %d)", monitor.rawValue, m.value, m.step) }
        return text
    }

    private func drawBar(force: Bool) {
        guard let now = latest else { return }
        guard force || Date().timeIntervalSince(lastDraw) > 0.2 else { return }
        lastDraw = Date()
        var parts: [String] = []
        let fraction = Double(now.step) / Double(max(now.totalSteps, 1))
        let width = 20, filled = Int((fraction * Double(width)).rounded(.down))
        parts.append(String(format: "epoch %.2f", now.epoch))
        parts.append("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]")
        parts.append("step \(now.step)/\(now.totalSteps)")
        if !recentLosses.isEmpty { parts.append(String(format: "loss %.4f", recentLosses.reduce(0, +) / Double(recentLosses.count))) }
        if let rate = examplesPerSecond { parts.append(String(format: "%.0f ex/s", rate)) }
        parts.append("ETA \(eta)")
        if let m = lastMetric { parts.append(String(format: "%@ %.4f", monitor.rawValue, m.value)) }
        if let e = evaluation { parts.append("evaluating \(e.done)/\(e.total)") }
        var text = parts.joined(separator: " | ")
        // A narrow terminal loses the bar first, then the epoch, then whatever does not fit.
        for removable in [1, 0] where text.count > columns - 1 && parts.count > removable {
            parts.remove(at: removable)
            text = parts.joined(separator: " | ")
        }
        if text.count > columns - 1 { text = String(text.prefix(columns - 1)) }
        write("\r\u{1B}[2K" + text)
        barShown = true
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "--" }
        let s = Int(seconds.rounded())
        if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" }
        if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s)s"
    }

    static func terminalColumns(_ path: String) -> Int? {
        let own = path.hasPrefix("/dev/fd/") ? Int32(path.dropFirst(8)) : nil
        let fd = own ?? open(path, O_RDONLY | O_NOCTTY)
        guard fd >= 0 else { return nil }
        defer { if own == nil { close(fd) } }
        var size = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 20 else { return nil }
        return Int(size.ws_col)
    }
}

/// Progress of `eval` and `predict` on rank 0's standard error (standard output carries results):
/// "evaluating 1200/5000 examples", redrawn on a terminal, a line every 10 s otherwise.
final class PassProgress {
    private let mode: ProgressMode
    private let verb: String
    private var last = Date()
    private var drawn = false

    init(mode requested: ProgressMode, verb: String) {
        mode = ProgressMode.resolve(requested, descriptor: STDERR_FILENO).mode
        self.verb = verb
    }

    func update(done: Int, total: Int) {
        switch mode {
        case .bar:
            guard done == total || Date().timeIntervalSince(last) > 0.2 else { return }
            FileHandle.standardError.write(Data("\r\u{1B}[2K\(verb) \(done)/\(total) examples".utf8))
            drawn = true
        case .lines:
            guard done < total && Date().timeIntervalSince(last) > 10 else { return }
            FileHandle.standardError.write(Data("\(verb) \(done)/\(total) examples\n".utf8))
        case .auto, .none:
            return
        }
        last = Date()
    }

    func finish() {
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)); drawn = false }
    }
}
