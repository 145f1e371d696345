import FineTuneKernels
import Foundation

/// Retrieval quality of sentence embeddings, as sentence-transformers' InformationRetrievalEvaluator
/// computes it (version 6): each query's corpus documents ranked by cosine similarity, ties broken
/// by ascending corpus id, and over the queries that have a relevant document, the mean of
/// NDCG@10, MRR@10, MAP@100, recall@k, precision@k and accuracy@k (a relevant document in the top k).
public struct RetrievalMetrics: Codable, Equatable, Sendable {
    public var ndcgAt10: Double
    public var mrrAt10: Double
    public var mapAt100: Double
    /// By k = 1, 3, 5, 10.
    public var accuracyAt: [Int: Double]
    public var precisionAt: [Int: Double]
    public var recallAt: [Int: Double]
    /// Queries with at least one relevant document (the others are not scored, as sentence-transformers does).
    public var queries: Int

    public static let cutoffs = [1, 3, 5, 10]

    /// `queryEmbeddings` [Q, D] and `corpusEmbeddings` [C, D] (normalised here: cosine similarity),
    /// `relevant[q]`: the corpus rows relevant to query q, `corpusIDs`: the ids whose ascending
    /// order breaks score ties.
    public static func compute(queryEmbeddings: [Float], corpusEmbeddings: [Float], width D: Int, relevant: [Set<Int>],
                               corpusIDs: [String]) -> RetrievalMetrics {
        let Q = relevant.count, C = corpusIDs.count
        precondition(queryEmbeddings.count == Q * D && corpusEmbeddings.count == C * D, "embeddings [Q, D] and [C, D]")
        func unit(_ x: [Float], rows: Int) -> [Float] {
            var out = [Float](repeating: 0, count: x.count), norms = [Float](repeating: 0, count: rows)
            l2NormalizeForward(out: &out, norms: &norms, inp: x, N: rows, D: D)
            return out
        }
        let queries = unit(queryEmbeddings, rows: Q), corpus = unit(corpusEmbeddings, rows: C)
        // The tie order: each corpus row's rank among the ids sorted ascending.
        var idRank = [Int](repeating: 0, count: C)
        for (rank, row) in (0..<C).sorted(by: { corpusIDs[$0] < corpusIDs[$1] }).enumerated() { idRank[row] = rank }
        let deepest = max(100, cutoffs.max()!)
        var m = RetrievalMetrics(ndcgAt10: 0, mrrAt10: 0, mapAt100: 0, accuracyAt: [:], precisionAt: [:], recallAt: [:], queries: 0)
        for k in cutoffs { m.accuracyAt[k] = 0; m.precisionAt[k] = 0; m.recallAt[k] = 0 }
        // Scores of a block of queries at a time: [rows, C].
        let block = 64
        var scores = [Float](repeating: 0, count: block * C)
        for start in stride(from: 0, to: Q, by: block) {
            let rows = min(block, Q - start)
            queries.withUnsafeBufferPointer { q in
                scaledScoresForward(scores: &scores, anchors: q.baseAddress! + start * D, candidates: corpus, scale: 1, A: rows, K: C, D: D)
            }
            for r in 0..<rows {
                let q = start + r, relevantDocs = relevant[q]
                guard !relevantDocs.isEmpty else { continue }
                m.queries += 1
                let row = r * C
                let top = (0..<C).sorted { a, b in
                    scores[row + a] != scores[row + b] ? scores[row + a] > scores[row + b] : idRank[a] < idRank[b]
                }.prefix(deepest)
                let hits = top.map { relevantDocs.contains($0) }
                for k in cutoffs {
                    let found = hits.prefix(k).filter { $0 }.count
                    if found > 0 { m.accuracyAt[k]! += 1 }
                    m.precisionAt[k]! += Double(found) / Double(k)
                    m.recallAt[k]! += Double(found) / Double(relevantDocs.count)
                }
                if let first = hits.prefix(10).firstIndex(of: true) { m.mrrAt10 += 1 / Double(first + 1) }
                func dcg(_ relevance: [Bool]) -> Double {
                    relevance.prefix(10).enumerated().reduce(0) { $0 + ($1.element ? 1 / log2(Double($1.offset) + 2) : 0) }
                }
                m.ndcgAt10 += dcg(hits) / dcg([Bool](repeating: true, count: relevantDocs.count))
                var correct = 0, precisionSum = 0.0
                for (rank, hit) in hits.prefix(100).enumerated() where hit {
                    correct += 1
                    precisionSum += Double(correct) / Double(rank + 1)
                }
                m.mapAt100 += precisionSum / Double(min(100, relevantDocs.count))
            }
        }
        let n = Double(max(m.queries, 1))
        m.ndcgAt10 /= n; m.mrrAt10 /= n; m.mapAt100 /= n
        for k in cutoffs { m.accuracyAt[k]! /= n; m.precisionAt[k]! /= n; m.recallAt[k]! /= n }
        return m
    }
}
