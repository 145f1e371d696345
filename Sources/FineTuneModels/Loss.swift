import FineTuneKernels
/// The task's loss of a batch from its logits [B, K]: fills `losses` [B] and, for a classifier,
/// `probabilities` [B, K]; returns the summed statistics. Without targets, only the count.
func lossStatistics(task: TaskKind, logits: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>,
                    losses: UnsafeMutablePointer<Float>, batch: Batch) -> BatchStatistics {
    let B = batch.count, K = task.outputCount
    var stats = BatchStatistics(count: Double(B))
    guard batch.hasTargets else { return stats }
    switch task {
    case .classification:
        softmaxCrossEntropyForward(losses: losses, probs: probabilities, logits: logits, targets: batch.classTargets, B: B, K: K)
        for b in 0..<B {
            stats.lossSum += Double(losses[b])
            if argmax(probabilities + b * K, K) == Int(batch.classTargets[b]) { stats.correct += 1 }
        }
    case .regression:
        squaredErrorForward(losses: losses, predictions: logits, targets: batch.regressionTargets, B: B, K: K)
        for b in 0..<B { stats.lossSum += Double(losses[b]) }
        stats.correct = stats.lossSum
    }
    return stats
}

/// dlogits[B, K] += gradient of the summed loss (after `lossStatistics` on the same batch).
func lossBackward(task: TaskKind, dlogits: UnsafeMutablePointer<Float>, ones: UnsafePointer<Float>, logits: UnsafePointer<Float>,
                  probabilities: UnsafePointer<Float>, batch: Batch) {
    let B = batch.count, K = task.outputCount
    switch task {
    case .classification:
        softmaxCrossEntropyBackward(dlogits: dlogits, dlosses: ones, probs: probabilities, targets: batch.classTargets, B: B, K: K)
    case .regression:
        squaredErrorBackward(dpredictions: dlogits, dlosses: ones, predictions: logits, targets: batch.regressionTargets, B: B, K: K)
    }
}

/// Probabilities [B][K] (classification: the softmax) or values [B][1] (regression) from logits.
func predictions(task: TaskKind, logits: [[Float]]) -> [[Float]] {
    guard case .classification = task else { return logits }
    return logits.map { row in
        var probabilities = [Float](repeating: 0, count: row.count), loss: Float = 0
        softmaxCrossEntropyForward(losses: &loss, probs: &probabilities, logits: row, targets: [0], B: 1, K: row.count)
        return probabilities
    }
}
