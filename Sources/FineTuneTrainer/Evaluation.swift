import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

public enum Evaluation {
    /// Mean loss and accuracy of `model` on `data`. Each rank evaluates a contiguous slice and the
    /// sums are reduced in Double, so the figures equal a single-process evaluation up to the order
    /// of floating-point summation. Collective: every rank calls it.
    public static func run(model: FineTunableModel, data: ExampleSet, batchSize: Int, comm: Communicator,
                           subset: [Int]? = nil, progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> EvaluationResult {
        precondition(batchSize > 0, "evaluation batch size must be positive")
        if model.task == .embedding, let pairs = data as? PairDataset {
            return try retrieval(model: model, data: pairs, batchSize: batchSize, comm: comm, subset: subset, progress: progress)
        }
        let examples = subset ?? Array(0..<data.count)
        let mine = Sharding.batchAlignedSlice(count: examples.count, batchSize: batchSize, rank: comm.rank, size: comm.size)
        let K = model.task.outputCount
        // Language models: the statistics are per scored token (masked, or next), nothing per example.
        let isClassifier = model.task.labels != nil, maskedLM = model.task == .maskedLanguageModel || model.task == .causalLanguageModel
        // loss, correct, count, then regression's Σ|error|, Σy, Σy², then the confusion matrix (K × K).
        var sums = [Double](repeating: 0, count: 6 + (isClassifier ? K * K : 0))
        var start = mine.lowerBound
        while start < mine.upperBound {
            let end = min(start + batchSize, mine.upperBound)
            let batch = data.batch(examples[start..<end])
            let stats = model.evaluate(batch)
            sums[0] += stats.lossSum; sums[1] += stats.correct; sums[2] += stats.count
            // Masked-language modelling: the statistics are per masked token, nothing per example.
            for (b, row) in (maskedLM ? [] : model.lastLogits()).enumerated() {
                if isClassifier {
                    let predicted = row.withUnsafeBufferPointer { argmax($0.baseAddress!, K) }  // as accuracy counts it
                    sums[6 + Int(batch.classTargets[b]) * K + predicted] += 1
                } else {
                    for k in 0..<K {
                        let y = Double(batch.regressionTargets[b * K + k])
                        sums[3] += abs(Double(row[k]) - y); sums[4] += y; sums[5] += y * y
                    }
                }
            }
            start = end
            // Every rank holds about an equal share, so rank 0's fraction stands for the whole set's.
            progress?(examples.count * (start - mine.lowerBound) / max(mine.count, 1), examples.count)
        }
        try sums.withUnsafeMutableBufferPointer { try comm.allreduceSum($0) }
        let n = max(sums[2], 1)
        var result = EvaluationResult(loss: sums[0] / n, accuracy: isClassifier || maskedLM ? sums[1] / n : nil, examples: Int(sums[2]))
        result.maskedLM = maskedLM
        if maskedLM {
            return result
        } else if isClassifier {
            result.confusion = (0..<K).map { t in (0..<K).map { p in Int(sums[6 + t * K + p]) } }
        } else {
            let values = n * Double(K)
            result.meanAbsoluteError = sums[3] / values
            // R² = 1 − SSE / SST; SSE is the loss sum (squared errors), SST the targets' spread.
            let totalSquares = sums[5] - sums[4] * sums[4] / values
            result.r2 = totalSquares > 0 ? 1 - sums[0] / totalSquares : nil
        }
        return result
    }

    /// Sentence embeddings: retrieval of each anchor's positives among all positives and negatives
    /// (sentence-transformers' InformationRetrievalEvaluator). Every rank embeds a contiguous slice
    /// of the distinct texts, one allgather gives every rank all of them, and each computes the same
    /// figures. `subset`: the examples to build the task from (all by default).
    static func retrieval(model: FineTunableModel, data: PairDataset, batchSize: Int, comm: Communicator, subset: [Int]?,
                          progress: ((_ done: Int, _ total: Int) -> Void)?) throws -> EvaluationResult {
        let task = data.retrieval(of: subset)
        let texts = task.queries + task.corpus, D = model.embeddingWidth!
        let slices = (0..<comm.size).map { Sharding.batchAlignedSlice(count: texts.count, batchSize: batchSize, rank: $0, size: comm.size) }
        let mine = slices[comm.rank]
        var embeddings = [Float](repeating: 0, count: texts.count * D)
        var start = mine.lowerBound
        while start < mine.upperBound {
            let end = min(start + batchSize, mine.upperBound)
            _ = model.forward(data.textBatch(texts[start..<end]), mode: .evaluation)
            embeddings.withUnsafeMutableBufferPointer { model.copyLastEmbeddings(to: $0.baseAddress! + start * D) }
            start = end
            progress?(texts.count * (start - mine.lowerBound) / max(mine.count, 1), texts.count)
        }
        try embeddings.withUnsafeMutableBufferPointer { try comm.allgatherInPlace($0, counts: slices.map { $0.count * D }) }
        let Q = task.queries.count
        let metrics = RetrievalMetrics.compute(queryEmbeddings: Array(embeddings[..<(Q * D)]), corpusEmbeddings: Array(embeddings[(Q * D)...]),
                                               width: D, relevant: task.relevant, corpusIDs: task.corpusIDs)
        var result = EvaluationResult(loss: .nan, accuracy: nil, examples: metrics.queries)
        result.retrieval = metrics
        return result
    }
}
