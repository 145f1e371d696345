import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation

/// How a run ended.
public enum RunOutcome: String, Sendable, Codable {
    case completed, earlyStopped = "early_stopped", stoppedAfterSteps = "stopped_after_steps", preempted
}

/// A training line: the mean loss and throughput since the previous one.
public struct TrainLog: Encodable, Sendable {
    public var step: Int, totalSteps: Int, epoch: Double
    /// Mean loss of the steps since the last line whose loss was finite; nil when none was.
    public var loss: Double?
    public var lr: Double, examplesPerSecond: Double
    /// Each rank's tokens (examples for tabular data) per second of its own compute, so a straggler shows.
    public var tokensPerSecondByRank: [Double]
    /// Bytes rank 0 put into collectives in the last step (frozen parameters send none).
    public var bytesExchangedPerStep: Int = 0
    /// Mean global gradient norm before clipping (only with --max-grad-norm).
    public var gradientNorm: Double? = nil
    enum CodingKeys: String, CodingKey {
        case type, step, totalSteps = "total_steps", epoch, loss, lr, examplesPerSecond = "examples_per_s"
        case tokensPerSecondByRank = "tokens_per_s_by_rank", bytesExchangedPerStep = "bytes_exchanged_per_step", gradientNorm = "grad_norm"
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("train", forKey: .type); try c.encode(step, forKey: .step); try c.encode(totalSteps, forKey: .totalSteps)
        try c.encode(epoch, forKey: .epoch); try c.encode(loss, forKey: .loss); try c.encode(lr, forKey: .lr)
        try c.encode(examplesPerSecond, forKey: .examplesPerSecond); try c.encode(tokensPerSecondByRank, forKey: .tokensPerSecondByRank)
        try c.encode(bytesExchangedPerStep, forKey: .bytesExchangedPerStep)
        if let gradientNorm { try c.encode(gradientNorm, forKey: .gradientNorm) }
    }
}

/// A validation pass and the early-stopping decision it led to.
public struct EvaluationRecord: Encodable, Sendable {
    public var step: Int, epoch: Double
    public var result: EvaluationResult
    /// --train-eval-examples: the same figures on a fixed subset of the training data, in evaluation mode.
    public var trainResult: EvaluationResult? = nil
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
        try trainResult?.encode(prefix: "train_eval", to: encoder)
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
    /// Why the run ended, in words.
    public var reason: String = ""
    /// A one-line reading of the learning curves when they show clear over- or under-fitting.
    public var hint: String? = nil
    enum CodingKeys: String, CodingKey { case type, step, outcome, bestStep = "best_step", bestMetric = "best_metric", monitor, reason, hint }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("end", forKey: .type); try c.encode(step, forKey: .step); try c.encode(outcome, forKey: .outcome)
        try c.encode(bestStep, forKey: .bestStep); try c.encode(bestMetric, forKey: .bestMetric); try c.encode(monitor, forKey: .monitor)
        try c.encode(reason, forKey: .reason); try c.encode(hint, forKey: .hint)
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
    /// After every optimizer step, for progress displays (no console line, no record): the step
    /// just finished, the run's total, the epoch position and the step's loss (global mean).
    case stepFinished(step: Int, totalSteps: Int, epoch: Double, loss: Double?)
    /// During an evaluation, after each of rank 0's batches: examples of the evaluated set done
    /// (counted on rank 0 and scaled to the whole set) and its size.
    case evaluating(done: Int, total: Int)

    /// The line the console shows, if any.
    public var consoleLine: String? {
        switch self {
        case .started(let s), .note(let s): return s
        case .train(let t):
            return String(format: "step %d/%d | epoch %.2f | loss %@ | lr %.3e | %.0f examples/s",
                          t.step, t.totalSteps, t.epoch, t.loss.map { String(format: "%.4f", $0) } ?? "n/a", t.lr, t.examplesPerSecond)
        case .evaluation(let e):
            var text = "eval at step \(e.step) | " + e.result.text(prefix: "val")
            if let t = e.trainResult { text += " | " + t.text(prefix: "train_eval") }
            text += e.improved ? " | best so far, saved best/"
                               : " | no improvement (\(e.evaluationsWithoutImprovement)/\(e.patience.map(String.init) ?? "-"))"
            if e.earlyStopping { text += " | early stopping" }
            return text
        case .skipped(let s): return "\(s.report.describe(step: s.step)): update skipped (--on-nonfinite skip)"
        case .test(let t): return "test (\(t.model) model, step \(t.modelStep)): " + t.result.text(prefix: "test")
        case .stepFinished, .evaluating: return nil
        case .end(let e):
            var summary = "finished: \(e.outcome.rawValue) at step \(e.step)" + (e.reason.isEmpty ? "" : " (\(e.reason))")
            if let best = e.bestStep, let metric = e.bestMetric {
                summary += String(format: ", best %@ %.4f at step %d (in best/)", e.monitor.rawValue, metric, best)
            }
            if let hint = e.hint { summary += "\nhint: " + hint }
            return summary
        }
    }

    /// The scalars TensorBoard shows for this event, at its step: the same numbers as metrics.jsonl.
    public var tensorBoardScalars: (step: Int, values: [(tag: String, value: Double)])? {
        func figures(_ result: EvaluationResult, _ prefix: String) -> [(tag: String, value: Double)] {
            result.figures.compactMap { name, value in value.map { ("\(prefix)/\(name)", $0) } }
        }
        switch self {
        case .train(let t):
            var values: [(tag: String, value: Double)] = [("train/learning_rate", t.lr), ("train/examples_per_s", t.examplesPerSecond)]
            if let loss = t.loss { values.insert(("train/loss", loss), at: 0) }
            if let norm = t.gradientNorm { values.append(("train/grad_norm", norm)) }
            for (rank, rate) in t.tokensPerSecondByRank.enumerated() { values.append(("throughput/rank_\(rank)", rate)) }
            return (t.step, values)
        case .evaluation(let e):
            return (e.step, figures(e.result, "val") + (e.trainResult.map { figures($0, "train_eval") } ?? []))
        case .test(let t):
            return (t.step, figures(t.result, "test"))
        default:
            return nil
        }
    }

    /// The metrics.jsonl record, if the event has one.
    var record: (any Encodable)? {
        switch self {
        case .started, .note, .stepFinished, .evaluating: return nil
        case .train(let r): return r
        case .evaluation(let r): return r
        case .skipped(let r): return r
        case .test(let r): return r
        case .end(let r): return r
        }
    }
}
