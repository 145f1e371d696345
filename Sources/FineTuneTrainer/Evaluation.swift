import FineTuneCore
import FineTuneDistributed
import Foundation

/// Validation figures over a whole data set.
public struct EvaluationResult: Sendable {
    public var loss: Double
    /// Classification: fraction correct. Regression: nil.
    public var accuracy: Double?
    public var examples: Int

    /// "val_loss", "val_accuracy" (or "val_mse" for regression) with the given prefix.
    public func fields(prefix: String) -> [String: Any] {
        var o: [String: Any] = ["\(prefix)_loss": loss, "\(prefix)_examples": examples]
        if let accuracy { o["\(prefix)_accuracy"] = accuracy } else { o["\(prefix)_mse"] = loss }
        return o
    }
    public func value(of metric: MonitoredMetric) -> Double {
        metric == .valLoss ? loss : (accuracy ?? .nan)
    }
}

public enum Evaluation {
    /// Mean loss and accuracy of `model` on `data`. Each rank evaluates a contiguous slice and the
    /// sums are reduced in Double, so the figures equal a single-process evaluation up to the order
    /// of floating-point summation. Collective: every rank calls it.
    public static func run(model: FineTunableModel, data: ExampleSet, batchSize: Int, comm: Communicator) throws -> EvaluationResult {
        let mine = Sharding.slice(count: data.count, rank: comm.rank, size: comm.size)
        var sums = [0.0, 0.0, 0.0]  // loss, correct, count
        var start = mine.lowerBound
        while start < mine.upperBound {
            let end = min(start + batchSize, mine.upperBound)
            let stats = model.evaluate(data.batch(Array(start..<end)[...]))
            sums[0] += stats.lossSum; sums[1] += stats.correct; sums[2] += stats.count
            start = end
        }
        try sums.withUnsafeMutableBufferPointer { try comm.allreduceSum($0) }
        let n = max(sums[2], 1)
        let isClassifier = model.task.labels != nil
        return EvaluationResult(loss: sums[0] / n, accuracy: isClassifier ? sums[1] / n : nil, examples: Int(sums[2]))
    }
}
