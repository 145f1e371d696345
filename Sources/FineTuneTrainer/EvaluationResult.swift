import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation

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
    /// Sentence embeddings: retrieval figures (the loss is not defined: NaN, and not reported).
    public var retrieval: RetrievalMetrics? = nil
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
        case .valNDCG10: return retrieval?.ndcgAt10 ?? .nan
        case .valMRR10: return retrieval?.mrrAt10 ?? .nan
        case .valMAP100: return retrieval?.mapAt100 ?? .nan
        case .valRecall1: return retrieval?.recallAt[1] ?? .nan
        case .valRecall10: return retrieval?.recallAt[10] ?? .nan
        case .valAccuracy1: return retrieval?.accuracyAt[1] ?? .nan
        }
    }

    /// The metrics this result has, as (suffix, value): loss, accuracy, macro_f1, mcc or mse, mae, r2.
    public var figures: [(String, Double?)] {
        if maskedLM { return [("loss", loss), ("accuracy", accuracy), ("perplexity", perplexity)] }
        if let r = retrieval {
            return [("ndcg@10", r.ndcgAt10), ("mrr@10", r.mrrAt10), ("map@100", r.mapAt100), ("recall@1", r.recallAt[1]),
                    ("recall@10", r.recallAt[10]), ("accuracy@1", r.accuracyAt[1])]
        }
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
