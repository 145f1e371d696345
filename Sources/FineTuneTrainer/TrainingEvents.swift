import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation

/// How a run ended.
public enum RunOutcome: String, Sendable, Codable {
    case completed, earlyStopped = "early_stopped", stoppedAfterSteps = "stopped_after_steps", preempted
}

/// Loss and accuracy (classification) or mean-squared error (regression) over a data set.
public struct EvaluationResult: Sendable, Equatable {
    public var loss: Double
    /// Classification: fraction correct. Regression: nil.
    public var accuracy: Double?
    public var examples: Int

    public func value(of metric: MonitoredMetric) -> Double {
        metric == .valLoss ? loss : (accuracy ?? .nan)
    }

    /// Encodes the figures as "<prefix>_loss", "<prefix>_accuracy" (or "<prefix>_mse") and "<prefix>_examples".
    func encode(prefix: String, to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: NamedKey.self)
        try c.encode(loss, forKey: NamedKey("\(prefix)_loss"))
        try c.encode(examples, forKey: NamedKey("\(prefix)_examples"))
        if let accuracy { try c.encode(accuracy, forKey: NamedKey("\(prefix)_accuracy")) } else { try c.encode(loss, forKey: NamedKey("\(prefix)_mse")) }
    }

    /// "val_loss 0.4321 | val_accuracy 0.8500"
    func text(prefix: String) -> String {
        var text = String(format: "%@_loss %.4f", prefix, loss)
        if let accuracy { text += String(format: " | %@_accuracy %.4f", prefix, accuracy) }
        return text
    }
}

struct NamedKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// A training line: the mean loss and throughput since the previous one.
public struct TrainLog: Encodable, Sendable {
    public var step: Int, totalSteps: Int, epoch: Double
    /// Mean loss of the steps since the last line whose loss was finite; nil when none was.
    public var loss: Double?
    public var lr: Double, examplesPerSecond: Double
    /// Each rank's tokens (examples for tabular data) per second of its own compute, so a straggler shows.
    public var tokensPerSecondByRank: [Double]
    enum CodingKeys: String, CodingKey {
        case type, step, totalSteps = "total_steps", epoch, loss, lr, examplesPerSecond = "examples_per_s"
        case tokensPerSecondByRank = "tokens_per_s_by_rank"
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("train", forKey: .type); try c.encode(step, forKey: .step); try c.encode(totalSteps, forKey: .totalSteps)
        try c.encode(epoch, forKey: .epoch); try c.encode(loss, forKey: .loss); try c.encode(lr, forKey: .lr)
        try c.encode(examplesPerSecond, forKey: .examplesPerSecond); try c.encode(tokensPerSecondByRank, forKey: .tokensPerSecondByRank)
    }
}

/// A validation pass and the early-stopping decision it led to.
public struct EvaluationRecord: Encodable, Sendable {
    public var step: Int, epoch: Double
    public var result: EvaluationResult
    public var improved: Bool
    public var evaluationsWithoutImprovement: Int
    public var patience: Int?
    public var earlyStopping: Bool
    enum CodingKeys: String, CodingKey {
        case type, step, epoch, improved, evaluationsWithoutImprovement = "evaluations_without_improvement", earlyStopping = "early_stopping"
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("eval", forKey: .type); try c.encode(step, forKey: .step); try c.encode(epoch, forKey: .epoch)
        try c.encode(improved, forKey: .improved); try c.encode(evaluationsWithoutImprovement, forKey: .evaluationsWithoutImprovement)
        try c.encode(earlyStopping, forKey: .earlyStopping)
        try result.encode(prefix: "val", to: encoder)
    }
}

/// A step whose update was skipped (--on-nonfinite skip).
public struct SkippedStep: Encodable, Sendable {
    public var step: Int
    public var report: NonFiniteReport
    enum CodingKeys: String, CodingKey { case type, step, reason, rank, ranks }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("skipped", forKey: .type); try c.encode(step, forKey: .step); try c.encode("non-finite", forKey: .reason)
        try c.encode(report.firstRank, forKey: .rank); try c.encode(report.ranks, forKey: .ranks)
    }
}

/// The test set, evaluated once at the end.
public struct TestRecord: Encodable, Sendable {
    public var step: Int
    /// "best" or "final".
    public var model: String
    public var modelStep: Int
    public var result: EvaluationResult
    enum CodingKeys: String, CodingKey { case type, step, model, modelStep = "model_step" }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("test", forKey: .type); try c.encode(step, forKey: .step); try c.encode(model, forKey: .model)
        try c.encode(modelStep, forKey: .modelStep)
        try result.encode(prefix: "test", to: encoder)
    }
}

/// How the run ended and its best evaluation.
public struct EndRecord: Encodable, Sendable {
    public var step: Int
    public var outcome: RunOutcome
    public var bestStep: Int?, bestMetric: Double?
    public var monitor: MonitoredMetric
    enum CodingKeys: String, CodingKey { case type, step, outcome, bestStep = "best_step", bestMetric = "best_metric", monitor }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("end", forKey: .type); try c.encode(step, forKey: .step); try c.encode(outcome, forKey: .outcome)
        try c.encode(bestStep, forKey: .bestStep); try c.encode(bestMetric, forKey: .bestMetric); try c.encode(monitor, forKey: .monitor)
    }
}

/// What the trainer reports as it goes. One value feeds both the console (rank 0 prints
/// `consoleLine`) and metrics.jsonl (the records); reports and pictures read the same records.
public enum TrainingEvent: Sendable {
    case started(String)
    case note(String)
    case train(TrainLog)
    case evaluation(EvaluationRecord)
    case skipped(SkippedStep)
    case test(TestRecord)
    case end(EndRecord)

    /// The line the console shows, if any.
    public var consoleLine: String? {
        switch self {
        case .started(let s), .note(let s): return s
        case .train(let t):
            return String(format: "step %d/%d | epoch %.2f | loss %@ | lr %.3e | %.0f examples/s",
                          t.step, t.totalSteps, t.epoch, t.loss.map { String(format: "%.4f", $0) } ?? "n/a", t.lr, t.examplesPerSecond)
        case .evaluation(let e):
            var text = "eval at step \(e.step) | " + e.result.text(prefix: "val")
            text += e.improved ? " | best so far, saved best/"
                               : " | no improvement (\(e.evaluationsWithoutImprovement)/\(e.patience.map(String.init) ?? "-"))"
            if e.earlyStopping { text += " | early stopping" }
            return text
        case .skipped(let s): return "\(s.report.describe(step: s.step)): update skipped (--on-nonfinite skip)"
        case .test(let t): return "test (\(t.model) model, step \(t.modelStep)): " + t.result.text(prefix: "test")
        case .end(let e):
            var summary = "finished: \(e.outcome.rawValue) at step \(e.step)"
            if let best = e.bestStep, let metric = e.bestMetric {
                summary += String(format: ", best %@ %.4f at step %d (in best/)", e.monitor.rawValue, metric, best)
            }
            return summary
        }
    }

    /// The metrics.jsonl record, if the event has one.
    var record: (any Encodable)? {
        switch self {
        case .started, .note: return nil
        case .train(let r): return r
        case .evaluation(let r): return r
        case .skipped(let r): return r
        case .test(let r): return r
        case .end(let r): return r
        }
    }
}

/// metrics.jsonl: one JSON object a line, appended and flushed by rank 0 as the run goes.
public final class MetricsLog {
    private let handle: FileHandle
    public let path: String
    private let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // A diverged run's NaN loss is written as the string "NaN", never dropped.
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return e
    }()

    /// Opens `path` for appending. On resume, lines from steps after `keepThroughStep` (logged
    /// after the checkpoint by the run that was interrupted) are dropped so the log reads as one run.
    public init(path: String, keepThroughStep: Int?) throws {
        self.path = path
        let fm = FileManager.default
        if let keep = keepThroughStep, let old = fm.contents(atPath: path) {
            let kept = String(decoding: old, as: UTF8.self).split(separator: "\n").filter { line in
                guard case .object(let o)? = try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)),
                      let step = o["step"]?.number else { return false }
                return Int(step) <= keep
            }
            try AtomicFiles.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
        } else if keepThroughStep == nil {
            try AtomicFiles.write(Data(), to: path)
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw FineTuneError("\(path): cannot open for writing") }
        try h.seekToEnd()
        handle = h
    }

    public func append(_ record: any Encodable) throws {
        do {
            try handle.write(contentsOf: try encoder.encode(record) + Data("\n".utf8))
        } catch {
            throw FineTuneError("\(path): cannot append a line: \(error.localizedDescription)")
        }
    }
}
