import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

public enum Evaluation {
    /// Mean loss and accuracy of `model` on `data`. Each rank evaluates a contiguous slice and the
    /// sums are reduced in Double, so the figures equal a single-process evaluation up to the order
    /// of floating-point summation. Collective: every rank calls it.
    public static func run(model: FineTunableModel, data: ExampleSet, batchSize: Int, comm: Communicator) throws -> EvaluationResult {
        precondition(batchSize > 0, "evaluation batch size must be positive")
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
