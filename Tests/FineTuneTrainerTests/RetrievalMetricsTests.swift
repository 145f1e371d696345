import FineTuneTrainer
import Foundation
import XCTest

/// RetrievalMetrics against sentence-transformers' InformationRetrievalEvaluator on fixed random
/// embeddings (Tests/fixture-scripts/make_retrieval_metrics_fixture.py): every metric within 1e-6,
/// with score ties broken by corpus id and queries without a relevant document left out.
final class RetrievalMetricsTests: XCTestCase {
    struct Reference: Decodable {
        var width: Int
        var queries: [Float], corpus: [Float]
        var corpus_ids: [String]
        var relevant: [[Int]]
        var metrics: [String: [String: Double]]
    }

    func testMetricsEqualSentenceTransformers() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/retrieval_metrics.json").path
        let r = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        let m = RetrievalMetrics.compute(queryEmbeddings: r.queries, corpusEmbeddings: r.corpus, width: r.width,
                                         relevant: r.relevant.map(Set.init), corpusIDs: r.corpus_ids)
        XCTAssertEqual(m.queries, r.relevant.filter { !$0.isEmpty }.count)
        XCTAssertEqual(m.ndcgAt10, r.metrics["ndcg@k"]!["10"]!, accuracy: 1e-6)
        XCTAssertEqual(m.mrrAt10, r.metrics["mrr@k"]!["10"]!, accuracy: 1e-6)
        XCTAssertEqual(m.mapAt100, r.metrics["map@k"]!["100"]!, accuracy: 1e-6)
        for k in RetrievalMetrics.cutoffs {
            XCTAssertEqual(m.accuracyAt[k]!, r.metrics["accuracy@k"]!["\(k)"]!, accuracy: 1e-6, "accuracy@\(k)")
            XCTAssertEqual(m.precisionAt[k]!, r.metrics["precision@k"]!["\(k)"]!, accuracy: 1e-6, "precision@\(k)")
            XCTAssertEqual(m.recallAt[k]!, r.metrics["recall@k"]!["\(k)"]!, accuracy: 1e-6, "recall@\(k)")
        }
    }

    /// Ties: ten documents with the same cosine to the query rank by ascending id, not by row.
    func testTiesAreBrokenByCorpusID() {
        let corpus: [Float] = [1, 0, 2, 0, 0, 1]   // rows 0 and 1 tie, row 2 is orthogonal
        let ids = ["b", "a", "c"]
        let first = RetrievalMetrics.compute(queryEmbeddings: [1, 0], corpusEmbeddings: corpus, width: 2, relevant: [[1]], corpusIDs: ids)
        XCTAssertEqual(first.accuracyAt[1], 1, "row 1 (id a) ranks before row 0 (id b)")
        let second = RetrievalMetrics.compute(queryEmbeddings: [1, 0], corpusEmbeddings: corpus, width: 2, relevant: [[0]], corpusIDs: ids)
        XCTAssertEqual(second.accuracyAt[1], 0)
        XCTAssertEqual(second.mrrAt10, 0.5, accuracy: 1e-12)
    }
}
