import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation

/// How a run ended.
public enum RunOutcome: String, Sendable, Codable {
    case completed, earlyStopped = "early_stopped", stoppedAfterSteps = "stopped_after_steps", preempted
}

/// The figures of a model over a data set. Classification: loss, accuracy, the confusion matrix
/// and what follows from it (per-class precision, recall and F1, macro-F1, Matthews correlation).
/// Regression: the loss (mean squared error), mean absolute error and R².
public struct EvaluationResult: Sendable, Equatable {
    public var loss: Double
    /// Classification: fraction correct. Regression: nil.
    public var accuracy: Double?
    public var examples: Int
    /// Classification: confusion[true class][predicted class], example counts.
    public var confusion: [[Int]]? = nil
    /// Regression: mean absolute error and the coefficient of determination (nil when the targets do not vary).
    public var meanAbsoluteError: Double? = nil
    public var r2: Double? = nil
    /// Masked-language modelling: the loss is the mean cross-entropy per masked token, the accuracy
    /// the share of masked tokens predicted right, `examples` the masked tokens; this is set.
    public var maskedLM = false
    /// exp(mean masked-token cross-entropy), as transformers' run_mlm reports it.
    public var perplexity: Double? { maskedLM ? Foundation.exp(loss) : nil }

    public init(loss: Double, accuracy: Double?, examples: Int, confusion: [[Int]]? = nil, meanAbsoluteError: Double? = nil, r2: Double? = nil) {
        self.loss = loss; self.accuracy = accuracy; self.examples = examples; self.confusion = confusion
        self.meanAbsoluteError = meanAbsoluteError; self.r2 = r2
    }

    /// Per class: precision, recall, F1 and support (examples of the class), from the confusion matrix.
    public struct ClassFigures: Sendable, Equatable, Encodable {
        public var precision: Double, recall: Double, f1: Double, support: Int
    }
    public var perClass: [ClassFigures]? {
        guard let m = confusion else { return nil }
        return m.indices.map { k in
            let truePositives = Double(m[k][k]), actual = m[k].reduce(0, +), predicted = m.reduce(0) { $0 + $1[k] }
            // sklearn's zero_division=0: a class never predicted (or absent) scores 0.
            let precision = predicted > 0 ? truePositives / Double(predicted) : 0
            let recall = actual > 0 ? truePositives / Double(actual) : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            return ClassFigures(precision: precision, recall: recall, f1: f1, support: actual)
        }
    }
    /// The unweighted mean of the F1 of the classes that occur in the data or the predictions (sklearn's macro F1).
    public var macroF1: Double? {
        guard let m = confusion, let figures = perClass else { return nil }
        let present = m.indices.filter { k in m[k].reduce(0, +) > 0 || m.reduce(0) { $0 + $1[k] } > 0 }
        return present.isEmpty ? 0 : present.reduce(0) { $0 + figures[$1].f1 } / Double(present.count)
    }
    /// Matthews correlation coefficient, multi-class (Gorodkin's R_K, as sklearn): 0 when undefined.
    public var mcc: Double? {
        guard let m = confusion else { return nil }
        let K = m.count
        let t = (0..<K).map { Double(m[$0].reduce(0, +)) }, p = (0..<K).map { k in Double(m.reduce(0) { $0 + $1[k] }) }
        let s = t.reduce(0, +), c = Double((0..<K).reduce(0) { $0 + m[$1][$1] })
        let covariance = c * s - zip(t, p).reduce(0) { $0 + $1.0 * $1.1 }
        let denominator = ((s * s - p.reduce(0) { $0 + $1 * $1 }) * (s * s - t.reduce(0) { $0 + $1 * $1 })).squareRoot()
        return denominator > 0 ? covariance / denominator : 0
    }

    public func value(of metric: MonitoredMetric) -> Double {
        switch metric {
        case .valLoss, .valMSE: return loss
        case .valAccuracy: return accuracy ?? .nan
        case .valMacroF1: return macroF1 ?? .nan
        case .valMCC: return mcc ?? .nan
        case .valMAE: return meanAbsoluteError ?? .nan
        case .valR2: return r2 ?? .nan
        case .valPerplexity: return perplexity ?? .nan
        }
    }

    /// The metrics this result has, as (suffix, value): loss, accuracy, macro_f1, mcc or mse, mae, r2.
    public var figures: [(String, Double?)] {
        if maskedLM { return [("loss", loss), ("accuracy", accuracy), ("perplexity", perplexity)] }
        if let accuracy { return [("loss", loss), ("accuracy", accuracy), ("macro_f1", macroF1), ("mcc", mcc)] }
        return [("loss", loss), ("mse", loss), ("mae", meanAbsoluteError), ("r2", r2)]
    }

    /// Encodes the figures as "<prefix>_loss", "<prefix>_accuracy", ... and "<prefix>_examples".
    func encode(prefix: String, to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: NamedKey.self)
        try c.encode(examples, forKey: NamedKey("\(prefix)_examples"))
        for (name, value) in figures { try c.encode(value, forKey: NamedKey("\(prefix)_\(name)")) }
    }

    /// "val_loss 0.4321 | val_accuracy 0.8500 | val_macro_f1 0.8012 | val_mcc 0.7810"
    func text(prefix: String) -> String {
        // Regression's loss is its MSE: shown once.
        figures.filter { $0.0 != "mse" }.compactMap { name, value in value.map { String(format: "%@_%@ %.4f", prefix, name, $0) } }
            .joined(separator: " | ")
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
