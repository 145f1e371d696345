import Foundation

/// The learning curves of a run, read at its end for a one-line hint when they show clear
/// over-fitting (validation loss climbing off its best while the training loss keeps falling below
/// it) or under-fitting (validation loss still falling at the end and the training loss no better).
/// Losses are compared because every task has one; the training side is the fixed training subset
/// in evaluation mode when there is one (--train-eval-examples), else the running training loss.
public struct FitHistory: Sendable {
    public struct Point: Sendable {
        public var step: Int
        public var validation: EvaluationResult
        public var training: EvaluationResult?
        /// The mean training loss of the last logged steps (with dropout).
        public var trainingLoss: Double?
        public init(step: Int, validation: EvaluationResult, training: EvaluationResult?, trainingLoss: Double?) {
            self.step = step; self.validation = validation; self.training = training; self.trainingLoss = trainingLoss
        }
        var trainLoss: Double? { training?.loss ?? trainingLoss }
    }
    public var points: [Point]
    public var monitor: MonitoredMetric
    public init(points: [Point], monitor: MonitoredMetric) { self.points = points; self.monitor = monitor }

    /// Validation loss this far above its minimum counts as climbing.
    static let riseFraction = 0.10
    /// Training loss below this fraction of the validation loss is a gap (over-fitting needs one).
    static let gapFraction = 0.7
    /// Training loss above this fraction of the validation loss: no better than it (under-fitting).
    static let noGapFraction = 0.9
    /// A last interval that lowered the validation loss by this fraction is still improving.
    static let stillImprovingFraction = 0.02

    public var hint: String? {
        guard points.count >= 2, let last = points.last, let lastTrain = last.trainLoss else { return nil }
        let losses = points.map(\.validation.loss)
        guard losses.allSatisfy(\.isFinite), lastTrain.isFinite else { return nil }
        let bestIndex = losses.indices.min { losses[$0] < losses[$1] }!
        let best = points[bestIndex], lastLoss = losses.last!
        if bestIndex < points.count - 1 && lastLoss > best.validation.loss * (1 + FitHistory.riseFraction)
            && lastTrain < lastLoss * FitHistory.gapFraction {
            return String(format: "over-fitting: validation loss rose from %.4f (step %d) to %.4f while the training loss fell to %.4f; " +
                          "best/ holds step %d. More regularisation (--dropout, --weight-decay, --label-smoothing), fewer epochs " +
                          "or --patience, or training fewer parameters (--freeze-layers) may help.",
                          best.validation.loss, best.step, lastLoss, lastTrain, best.step)
        }
        let previous = losses[losses.count - 2]
        if bestIndex == points.count - 1 && lastLoss < previous * (1 - FitHistory.stillImprovingFraction)
            && lastTrain >= lastLoss * FitHistory.noGapFraction {
            return String(format: "under-fitting: validation loss still falling (%.4f to %.4f over the last interval) and the training loss " +
                          "(%.4f) no better; more epochs, a higher --lr or training more parameters may help.", previous, lastLoss, lastTrain)
        }
        return nil
    }
}
