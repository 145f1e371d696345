import FineTuneModels
import FineTuneIO

public enum MonitoredMetric: String, Sendable, CaseIterable, Codable {
    case valLoss = "val_loss", valAccuracy = "val_accuracy", valMacroF1 = "val_macro_f1", valMCC = "val_mcc"
    case valMSE = "val_mse", valMAE = "val_mae", valR2 = "val_r2"
    case valPerplexity = "val_perplexity"
    /// Sentence embeddings: retrieval of each anchor's positive among the validation texts.
    case valNDCG10 = "val_ndcg@10", valMRR10 = "val_mrr@10", valMAP100 = "val_map@100"
    case valRecall1 = "val_recall@1", valRecall10 = "val_recall@10", valAccuracy1 = "val_accuracy@1"
    /// Whether larger is better: the scores (accuracy, F1, MCC, R², retrieval); the errors, perplexity and the loss fall.
    public var maximize: Bool { ![.valLoss, .valMSE, .valMAE, .valPerplexity].contains(self) }
    /// The metrics a task has: a classifier loss, accuracy, macro-F1, MCC; regression loss, MSE, MAE,
    /// R²; masked-language modelling loss, (masked-token) accuracy, perplexity; sentence embeddings
    /// NDCG@10 (the first: the default), MRR@10, MAP@100, recall@1 and @10, accuracy@1.
    public static func available(for task: TaskKind) -> [MonitoredMetric] {
        switch task {
        case .classification: return [.valLoss, .valAccuracy, .valMacroF1, .valMCC]
        case .regression: return [.valLoss, .valMSE, .valMAE, .valR2]
        case .maskedLanguageModel, .causalLanguageModel: return [.valLoss, .valAccuracy, .valPerplexity]
        case .embedding: return [.valNDCG10, .valMRR10, .valMAP100, .valRecall1, .valRecall10, .valAccuracy1]
        }
    }
}

/// Early stopping and the choice of best/: after each evaluation, whether the monitored metric
/// improved on the best so far (by more than `minDelta`) and whether `patience` evaluations have
/// passed without improvement. A pure decision over the trainer state, taken by rank 0.
public struct EarlyStopping: Sendable {
    public var monitor: MonitoredMetric
    public var patience: Int?
    public var minDelta: Double

    public init(monitor: MonitoredMetric, patience: Int?, minDelta: Double) {
        self.monitor = monitor; self.patience = patience; self.minDelta = minDelta
    }

    public struct Decision: Equatable, Sendable {
        public var improved: Bool
        public var stop: Bool
    }

    /// The decision for a new value of the metric. A non-finite value never improves.
    public func decide(_ value: Double, best: Double?, evaluationsWithoutImprovement: Int) -> Decision {
        let improved: Bool
        if !value.isFinite {
            improved = false
        } else if let best {
            improved = monitor.maximize ? value > best + minDelta : value < best - minDelta
        } else {
            improved = true
        }
        let without = improved ? 0 : evaluationsWithoutImprovement + 1
        return Decision(improved: improved, stop: patience.map { without >= $0 } ?? false)
    }

    /// The state after `decision` on `value` at the state's current step.
    public func apply(_ decision: Decision, value: Double, to state: inout TrainerState) {
        if decision.improved {
            state.bestMetric = value
            state.bestStep = state.step
            state.evaluationsWithoutImprovement = 0
        } else {
            state.evaluationsWithoutImprovement += 1
        }
        state.earlyStopped = decision.stop
    }
}
