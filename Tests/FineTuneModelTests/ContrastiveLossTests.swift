import FineTuneModels
import Foundation
import XCTest

/// MultipleNegativesRankingLoss against sentence-transformers 6 on the same embeddings
/// (Tests/fixture-scripts/make_contrastive_fixture.py): anchors, positives and a column of hard
/// negatives, plain and symmetric; the loss and its gradient w.r.t. every embedding.
final class ContrastiveLossTests: XCTestCase {
    struct Reference: Decodable {
        struct Case: Decodable { var loss: Double; var gradient: [Double] }
        var losses: [String: Case]
        var embeddings: [Double]
    }

    func testLossAndGradientEqualSentenceTransformers() throws {
        let url = URL(fileURLWithPath: "\(fixturesDirectory)/contrastive/reference.json")
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        let columns = 3, A = 6, D = 8
        let embeddings = reference.embeddings.map { Float($0) }
        for (name, symmetric) in [("plain", false), ("symmetric", true)] {
            let expected = try XCTUnwrap(reference.losses[name])
            var gradient = [Float](repeating: .nan, count: columns * A * D)
            let losses = ContrastiveLoss(scale: 20, symmetric: symmetric)
                .lossAndGradient(embeddings: embeddings, gradient: &gradient, columns: columns, A: A, D: D)
            // sentence-transformers averages over the anchors; ours are per anchor, the gradient of their sum.
            let mean = losses.reduce(0.0) { $0 + Double($1) } / Double(A)
            XCTAssertEqual(mean, expected.loss, accuracy: 1e-5 * max(1, abs(expected.loss)), name)
            let scale = expected.gradient.map(abs).max()!
            for i in gradient.indices {
                XCTAssertEqual(Double(gradient[i]) / Double(A), expected.gradient[i], accuracy: 1e-5 * scale, "\(name) gradient[\(i)]")
            }
        }
    }

    /// A symmetric loss is the mean of the two directions: each anchor's loss lies between what
    /// the plain loss gives and what scoring only against anchors gives, and with one example it
    /// is the plain loss over its own positive and negatives.
    func testOneAnchorScoresOnlyItsOwnTexts() {
        let D = 4
        let embeddings: [Float] = [1, 0, 0, 0, /* positive */ 1, 0.1, 0, 0, /* negative */ 0, 1, 0, 0]
        var gradient = [Float](repeating: 0, count: 3 * D)
        let loss = ContrastiveLoss(scale: 20).lossAndGradient(embeddings: embeddings, gradient: &gradient, columns: 3, A: 1, D: D)[0]
        let cosine = Float(1 / (1 + 0.01).squareRoot())
        let expected = -log(exp(20 * cosine) / (exp(20 * cosine) + exp(0)))
        XCTAssertEqual(loss, expected, accuracy: 1e-5)
        XCTAssertTrue(gradient.allSatisfy(\.isFinite))
    }
}
