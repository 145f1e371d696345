@testable import FineTuneKernels
import XCTest

/// The contrastive-loss kernels (Contrastive.swift) against finite differences in Double, and the
/// whole MultipleNegativesRankingLoss chain (normalise, scaled scores, cross-entropy against each
/// anchor's positive) composed from them.
final class ContrastiveGradientTests: FiniteDifferenceTestCase {
    func testL2Normalize() {
        let N = 4, D = 7
        var x = randomArray(N * D, seed: 41, scale: 2)
        // One row of zeros below eps: the forward pass divides by eps, and so does the gradient.
        for d in 0..<D { x[3 * D + d] = 0 }
        let r = randomArray(N * D, seed: 42)
        func L(_ x: [Double]) -> Double {
            var y = [Double](repeating: 0, count: N * D), norms = [Double](repeating: 0, count: N)
            l2NormalizeForward(out: &y, norms: &norms, inp: x, N: N, D: D)
            return zip(y, r).map(*).reduce(0, +)
        }
        var y = [Double](repeating: 0, count: N * D), norms = [Double](repeating: 0, count: N)
        l2NormalizeForward(out: &y, norms: &norms, inp: x, N: N, D: D)
        XCTAssertEqual((0..<D).map { y[$0] * y[$0] }.reduce(0, +), 1, accuracy: 1e-12, "a unit row")
        XCTAssertEqual(Array(y[(3 * D)...]), [Double](repeating: 0, count: D))
        var dx = [Double](repeating: 0, count: N * D)
        l2NormalizeBackward(dinp: &dx, dout: r, out: y, norms: norms, N: N, D: D)
        // The zero row's finite difference steps h ≫ eps away from it: only the other rows are compared.
        var head = Array(x[..<(3 * D)])
        check("dx", x: &head, analytic: Array(dx[..<(3 * D)])) { L($0 + Array(x[(3 * D)...])) }
    }

    func testScaledScores() {
        let A = 3, K = 5, D = 4
        var anchors = randomArray(A * D, seed: 43), candidates = randomArray(K * D, seed: 44)
        let r = randomArray(A * K, seed: 45), scale = 20.0
        func L(_ a: [Double], _ c: [Double]) -> Double {
            var s = [Double](repeating: 0, count: A * K)
            scaledScoresForward(scores: &s, anchors: a, candidates: c, scale: scale, A: A, K: K, D: D)
            return zip(s, r).map(*).reduce(0, +)
        }
        var da = [Double](repeating: 0, count: A * D), dc = [Double](repeating: 0, count: K * D)
        scaledScoresBackward(danchors: &da, dcandidates: &dc, dscores: r, anchors: anchors, candidates: candidates, scale: scale, A: A, K: K, D: D)
        let c0 = candidates, a0 = anchors
        check("danchors", x: &anchors, analytic: da) { L($0, c0) }
        check("dcandidates", x: &candidates, analytic: dc) { L(a0, $0) }
    }

    /// MNRL: embeddings of 3 anchors, their 3 positives and 2 hard negatives; candidates are every
    /// positive and negative; anchor i's target is positive i. The summed loss's gradient w.r.t.
    /// the raw (unnormalised) embeddings, through normalisation, scores and cross-entropy.
    func testMultipleNegativesRankingLossChain() {
        let A = 3, K = 5, D = 6
        let targets: [Int32] = [0, 1, 2]
        var embeddings = randomArray((A + K) * D, seed: 46, scale: 1.5)
        func loss(_ e: [Double]) -> (loss: Double, unit: [Double], norms: [Double], probs: [Double]) {
            var unit = [Double](repeating: 0, count: e.count), norms = [Double](repeating: 0, count: A + K)
            l2NormalizeForward(out: &unit, norms: &norms, inp: e, N: A + K, D: D)
            var scores = [Double](repeating: 0, count: A * K), losses = [Double](repeating: 0, count: A), probs = [Double](repeating: 0, count: A * K)
            unit.withUnsafeBufferPointer { u in
                scaledScoresForward(scores: &scores, anchors: u.baseAddress!, candidates: u.baseAddress! + A * D, scale: 20, A: A, K: K, D: D)
            }
            softmaxCrossEntropyForward(losses: &losses, probs: &probs, logits: scores, targets: targets, B: A, K: K)
            return (losses.reduce(0, +), unit, norms, probs)
        }
        let f = loss(embeddings)
        var dscores = [Double](repeating: 0, count: A * K), dunit = [Double](repeating: 0, count: (A + K) * D)
        softmaxCrossEntropyBackward(dlogits: &dscores, dlosses: [1, 1, 1], probs: f.probs, targets: targets, B: A, K: K)
        dunit.withUnsafeMutableBufferPointer { du in
            f.unit.withUnsafeBufferPointer { u in
                scaledScoresBackward(danchors: du.baseAddress!, dcandidates: du.baseAddress! + A * D, dscores: dscores,
                                     anchors: u.baseAddress!, candidates: u.baseAddress! + A * D, scale: 20, A: A, K: K, D: D)
            }
        }
        var de = [Double](repeating: 0, count: (A + K) * D)
        l2NormalizeBackward(dinp: &de, dout: dunit, out: f.unit, norms: f.norms, N: A + K, D: D)
        check("dembeddings", x: &embeddings, analytic: de) { loss($0).loss }
    }
}
