import FineTuneKernels

/// MultipleNegativesRankingLoss (InfoNCE with in-batch negatives) over a global batch, as
/// sentence-transformers 6 computes it with cosine similarity: anchor a is scored against every
/// candidate of the batch (all positives, then each column of hard negatives), scale · cos, and
/// the loss is the cross-entropy of its own positive. `symmetric` adds the "doc_to_query"
/// direction with its own softmax (MultipleNegativesSymmetricRankingLoss, partition_mode
/// "per_direction"): positive a scored against every anchor; the two cross-entropies are averaged.
/// Every rank computes it over the gathered embeddings of the whole global batch (cheap beside
/// the encoder), so each anchor sees every rank's examples as negatives and the result does not
/// depend on the rank count.
public struct ContrastiveLoss: Sendable, Equatable {
    public var scale: Float
    public var symmetric: Bool
    public init(scale: Float = 20, symmetric: Bool = false) { self.scale = scale; self.symmetric = symmetric }

    /// `embeddings` [columns, A, D]: column 0 the anchors, 1 their positives, 2... hard negatives
    /// (row a of every column belongs to anchor a). Returns each anchor's loss [A] and writes
    /// `gradient` [columns, A, D] = d (Σ_a loss_a) / d embeddings.
    public func lossAndGradient(embeddings: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Float>, columns: Int, A: Int, D: Int) -> [Float] {
        precondition(columns >= 2 && A >= 1)
        let rows = columns * A, K = (columns - 1) * A
        var unit = [Float](repeating: 0, count: rows * D), norms = [Float](repeating: 0, count: rows)
        var dUnit = [Float](repeating: 0, count: rows * D)
        var losses = [Float](repeating: 0, count: A)
        let targets = (0..<A).map { Int32($0) }
        unit.withUnsafeMutableBufferPointer { unitBuffer in
            let u = unitBuffer.baseAddress!
            l2NormalizeForward(out: u, norms: &norms, inp: embeddings, N: rows, D: D)
            let anchors = UnsafePointer(u), candidates = UnsafePointer(u + A * D)
            dUnit.withUnsafeMutableBufferPointer { dUnitBuffer in
                let du = dUnitBuffer.baseAddress!
                // query -> doc: scores [A, K], target a (its positive is candidate a).
                let weight: Float = symmetric ? 0.5 : 1
                direction(queries: anchors, documents: candidates, dQueries: du, dDocuments: du + A * D, Q: A, K: K, D: D,
                          weight: weight, targets: targets, losses: &losses)
                // doc -> query: each positive against every anchor, target a.
                if symmetric {
                    direction(queries: candidates, documents: anchors, dQueries: du + A * D, dDocuments: du, Q: A, K: A, D: D,
                              weight: weight, targets: targets, losses: &losses)
                }
                gradient.update(repeating: 0, count: rows * D)
                l2NormalizeBackward(dinp: gradient, dout: du, out: u, norms: norms, N: rows, D: D)
            }
        }
        return losses
    }

    /// One direction: losses[q] += weight · CE(scale · queries[q] · documentsᵀ, target q); the
    /// gradients of the weighted sum added into dQueries [Q, D] and dDocuments [K, D].
    private func direction(queries: UnsafePointer<Float>, documents: UnsafePointer<Float>, dQueries: UnsafeMutablePointer<Float>,
                           dDocuments: UnsafeMutablePointer<Float>, Q: Int, K: Int, D: Int, weight: Float, targets: [Int32], losses: inout [Float]) {
        var scores = [Float](repeating: 0, count: Q * K), probabilities = [Float](repeating: 0, count: Q * K)
        var rowLosses = [Float](repeating: 0, count: Q), dScores = [Float](repeating: 0, count: Q * K)
        let weights = [Float](repeating: weight, count: Q)
        scaledScoresForward(scores: &scores, anchors: queries, candidates: documents, scale: scale, A: Q, K: K, D: D)
        softmaxCrossEntropyForward(losses: &rowLosses, probs: &probabilities, logits: scores, targets: targets, B: Q, K: K)
        for q in 0..<Q { losses[q] += weight * rowLosses[q] }
        softmaxCrossEntropyBackward(dlogits: &dScores, dlosses: weights, probs: probabilities, targets: targets, B: Q, K: K)
        scaledScoresBackward(danchors: dQueries, dcandidates: dDocuments, dscores: dScores, anchors: queries, candidates: documents,
                             scale: scale, A: Q, K: K, D: D)
    }
}
