import FineTuneKernels
/// The task's loss of a batch from its logits [B, K]: fills `losses` [B] and, for a classifier,
/// `probabilities` [B, K]; returns the summed statistics. Without targets, only the count.
func lossStatistics(task: TaskKind, objective: TrainingObjective?, logits: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>,
                    losses: UnsafeMutablePointer<Float>, batch: Batch) -> BatchStatistics {
    let B = batch.count, K = task.outputCount
    var stats = BatchStatistics(count: Double(B))
    guard batch.hasTargets else { return stats }
    switch task {
    case .classification:
        softmaxCrossEntropyForward(losses: losses, probs: probabilities, logits: logits, targets: batch.classTargets, B: B, K: K,
                                   smoothing: Float(objective?.labelSmoothing ?? 0))
        let weights = objective?.classWeights
        for b in 0..<B {
            stats.lossSum += Double(losses[b]) * Double(weights?[Int(batch.classTargets[b])] ?? 1)
            if argmax(probabilities + b * K, K) == Int(batch.classTargets[b]) { stats.correct += 1 }
        }
    case .regression:
        squaredErrorForward(losses: losses, predictions: logits, targets: batch.regressionTargets, B: B, K: K)
        for b in 0..<B { stats.lossSum += Double(losses[b]) }
        stats.correct = stats.lossSum
    case .maskedLanguageModel, .embedding, .causalLanguageModel:
        preconditionFailure("language modelling and sentence embeddings compute their loss elsewhere (MaskedLMHead, DecoderModel, ContrastiveLoss)")
    }
    return stats
}

/// What training minimises beyond the plain loss (evaluation always reports the plain one, so runs
/// with different objectives compare).
public struct TrainingObjective: Equatable, Sendable {
    /// Classification: the target distribution puts 1 − ε on the label and ε/K on every class (torch's label_smoothing).
    public var labelSmoothing = 0.0
    /// Classification: each example's loss times its label's weight (nil: all 1). The summed
    /// loss is still divided by the example count (torch's weighted mean divides by Σ weights; with
    /// "balanced" weights the two agree in expectation, and ours keeps every example's gradient
    /// independent of which other labels share its batch).
    public var classWeights: [Float]? = nil
    public init() {}
}

/// dlogits[B, K] += gradient of the summed loss (after `lossStatistics` on the same batch).
func lossBackward(task: TaskKind, objective: TrainingObjective, dlogits: UnsafeMutablePointer<Float>, ones: UnsafePointer<Float>, logits: UnsafePointer<Float>,
                  probabilities: UnsafePointer<Float>, batch: Batch) {
    let B = batch.count, K = task.outputCount
    switch task {
    case .classification:
        // Class weights scale each example's loss, so its gradient.
        let weights = objective.classWeights.map { w in batch.classTargets.map { w[Int($0)] } }
        (weights ?? []).withUnsafeBufferPointer { weighted in
            softmaxCrossEntropyBackward(dlogits: dlogits, dlosses: weights == nil ? ones : weighted.baseAddress!, probs: probabilities,
                                        targets: batch.classTargets, B: B, K: K, smoothing: Float(objective.labelSmoothing))
        }
    case .regression:
        squaredErrorBackward(dpredictions: dlogits, dlosses: ones, predictions: logits, targets: batch.regressionTargets, B: B, K: K)
    case .maskedLanguageModel, .embedding, .causalLanguageModel:
        preconditionFailure("language modelling and sentence embeddings compute their loss elsewhere (MaskedLMHead, DecoderModel, ContrastiveLoss)")
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
