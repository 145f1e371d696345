@testable import FineTuneKernels
import XCTest

/// The decoder kernels' backward passes against finite differences (see GradientCheckTests), and
/// causal attention's forward against a plain masked-softmax reference.
final class DecoderGradientTests: FiniteDifferenceTestCase {
    func testRMSNorm() {
        let N = 3, C = 7
        var inp = randomArray(N * C, seed: 1, scale: 2), weight = randomArray(C, seed: 2)
        let r = randomArray(N * C, seed: 3)
        func L(_ inp: [Double], _ weight: [Double]) -> Double {
            var out = [Double](repeating: 0, count: N * C), rstd = [Double](repeating: 0, count: N)
            rmsNormForward(out: &out, rstd: &rstd, inp: inp, weight: weight, eps: 1e-5, N: N, C: C)
            return zip(out, r).map(*).reduce(0, +)
        }
        var out = [Double](repeating: 0, count: N * C), rstd = [Double](repeating: 0, count: N)
        rmsNormForward(out: &out, rstd: &rstd, inp: inp, weight: weight, eps: 1e-5, N: N, C: C)
        // The definition, directly.
        for n in 0..<N {
            let row = inp[(n * C)..<((n + 1) * C)]
            let s = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(C) + 1e-5).squareRoot()
            for c in 0..<C { XCTAssertEqual(out[n * C + c], inp[n * C + c] * s * weight[c], accuracy: 1e-12) }
        }
        var dinp = [Double](repeating: 0.5, count: N * C), dweight = [Double](repeating: 0, count: C)
        rmsNormBackward(dinp: &dinp, dweight: &dweight, dout: r, inp: inp, weight: weight, rstd: rstd, N: N, C: C)
        check("dinp (accumulated onto 0.5)", x: &inp, analytic: dinp.map { $0 - 0.5 }) { L($0, weight) }
        check("dweight", x: &weight, analytic: dweight) { L(inp, $0) }
        var overwritten = [Double](repeating: .nan, count: N * C)
        rmsNormBackward(dinp: &overwritten, dweight: nil, dout: r, inp: inp, weight: weight, rstd: rstd, N: N, C: C, overwritingInput: true)
        for i in overwritten.indices { XCTAssertEqual(overwritten[i], dinp[i] - 0.5, accuracy: 1e-12) }
    }

    func testRotaryIsARotationAndItsBackwardTheTranspose() {
        // Two sequences (positions restart), 3 heads of size 4.
        let starts = [0, 3, 8], B = 2, H = 3, HS = 4, N = 8
        let table = rotaryTable(positions: 6, headSize: HS, theta: 10_000)
        let cos = table.cos.map(Double.init), sin = table.sin.map(Double.init)
        var x = randomArray(N * H * HS, seed: 5)
        let r = randomArray(N * H * HS, seed: 6)
        func L(_ x: [Double]) -> Double {
            var y = x
            rotaryForward(&y, cos: cos, sin: sin, starts: starts, B: B, H: H, HS: HS)
            return zip(y, r).map(*).reduce(0, +)
        }
        var rotated = x
        rotaryForward(&rotated, cos: cos, sin: sin, starts: starts, B: B, H: H, HS: HS)
        // Position 0 of each sequence is not rotated; norms of each (i, i + HS/2) pair are kept.
        for i in 0..<(H * HS) {
            XCTAssertEqual(rotated[i], x[i], accuracy: 1e-12)
            XCTAssertEqual(rotated[3 * H * HS + i], x[3 * H * HS + i], accuracy: 1e-12)
        }
        XCTAssertNotEqual(rotated[H * HS], x[H * HS])
        var dx = r
        rotaryBackward(&dx, cos: cos, sin: sin, starts: starts, B: B, H: H, HS: HS)
        check("dx", x: &x, analytic: dx, loss: L)
        // inv_freq as transformers computes it: 1 / 10000^(2i/HS); position 2, i = 1: angle 2 · 0.01.
        XCTAssertEqual(Double(table.cos[2 * 2 + 1]), Foundation.cos(0.02), accuracy: 1e-7)
    }

    func testSwiGLU() {
        let N = 11
        var gate = randomArray(N, seed: 7, scale: 3), up = randomArray(N, seed: 8, scale: 2)
        let r = randomArray(N, seed: 9)
        func L(_ gate: [Double], _ up: [Double]) -> Double {
            var out = [Double](repeating: 0, count: N)
            swigluForward(out: &out, gate: gate, up: up, N: N)
            return zip(out, r).map(*).reduce(0, +)
        }
        var dgate = [Double](repeating: .nan, count: N), dup = [Double](repeating: .nan, count: N)
        swigluBackward(dgate: &dgate, dup: &dup, dout: r, gate: gate, up: up, N: N)
        check("dgate", x: &gate, analytic: dgate) { L($0, up) }
        check("dup", x: &up, analytic: dup) { L(gate, $0) }
    }

    func testVocabularyCrossEntropyAndGatherScatter() {
        let M = 3, V = 9, N = 5, C = 4
        var logits = randomArray(M * V, seed: 10, scale: 3)
        let targets: [Int32] = [2, 8, 0], dl = randomArray(M, seed: 11)
        func L(_ logits: [Double]) -> Double {
            var work = logits, losses = [Double](repeating: 0, count: M)
            vocabularyCrossEntropyForward(losses: &losses, logits: &work, targets: targets, M: M, V: V)
            return zip(losses, dl).map(*).reduce(0, +)
        }
        var work = logits, losses = [Double](repeating: 0, count: M)
        vocabularyCrossEntropyForward(losses: &losses, logits: &work, targets: targets, M: M, V: V)
        for m in 0..<M {
            let row = logits[(m * V)..<((m + 1) * V)]
            XCTAssertEqual(losses[m], Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +)) - row[m * V + Int(targets[m])], accuracy: 1e-12)
        }
        vocabularyCrossEntropyBackward(probsToGradient: &work, dlosses: dl, targets: targets, M: M, V: V)
        check("dlogits", x: &logits, analytic: work, loss: L)

        var inp = randomArray(N * C, seed: 12)
        let rows: [Int32] = [4, 1, 4], r = randomArray(3 * C, seed: 13)
        func G(_ inp: [Double]) -> Double {
            var out = [Double](repeating: 0, count: 3 * C)
            gatherRows(out: &out, inp: inp, rows: rows, M: 3, C: C)
            return zip(out, r).map(*).reduce(0, +)
        }
        var dinp = [Double](repeating: 0, count: N * C)
        scatterAddRows(dinp: &dinp, dout: r, rows: rows, M: 3, C: C)
        check("gather", x: &inp, analytic: dinp, loss: G)
    }

    /// Sequences of 1, 5 and 70 tokens (70 spans three query blocks), 6 query heads over 2 key/value heads.
    func testCausalGroupedQueryAttention() {
        let lengths = [1, 5, 70], NH = 6, NKV = 2, HS = 3
        let starts = lengths.reduce(into: [0]) { $0.append($0.last! + $1) }, B = lengths.count, N = starts.last!
        let offsets = attentionOffsets(starts: starts, heads: NH)
        var q = randomArray(N * NH * HS, seed: 20), k = randomArray(N * NKV * HS, seed: 21), v = randomArray(N * NKV * HS, seed: 22)
        let r = randomArray(N * NH * HS, seed: 23)
        func attend(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: N * NH * HS), probs = [Double](repeating: 0, count: offsets.last!)
            causalAttentionForward(out: &out, probs: &probs, q: q, k: k, v: v, starts: starts, offsets: offsets, B: B, NH: NH, NKV: NKV, HS: HS)
            return out
        }
        func L(_ q: [Double], _ k: [Double], _ v: [Double]) -> Double { zip(attend(q, k, v), r).map(*).reduce(0, +) }
        // Reference: every score, masked, softmax, for each query token.
        let out = attend(q, k, v)
        for b in 0..<B {
            for h in 0..<NH {
                let g = h / (NH / NKV)
                for i in starts[b]..<starts[b + 1] {
                    var weights: [Double] = []
                    for j in starts[b]...i {
                        var dot = 0.0
                        for c in 0..<HS { dot += q[i * NH * HS + h * HS + c] * k[j * NKV * HS + g * HS + c] }
                        weights.append(dot / Double(HS).squareRoot())
                    }
                    let top = weights.max()!
                    weights = weights.map { Foundation.exp($0 - top) }
                    let sum = weights.reduce(0, +)
                    for c in 0..<HS {
                        var expected = 0.0
                        for (t, j) in (starts[b]...i).enumerated() { expected += weights[t] / sum * v[j * NKV * HS + g * HS + c] }
                        XCTAssertEqual(out[i * NH * HS + h * HS + c], expected, accuracy: 1e-12, "b \(b) h \(h) i \(i)")
                    }
                }
            }
        }
        var probs = [Double](repeating: 0, count: offsets.last!), scratch = [Double](repeating: 0, count: causalAttentionScratchCount(longest: 70))
        var o = [Double](repeating: 0, count: N * NH * HS)
        causalAttentionForward(out: &o, probs: &probs, q: q, k: k, v: v, starts: starts, offsets: offsets, B: B, NH: NH, NKV: NKV, HS: HS)
        var dq = [Double](repeating: .nan, count: N * NH * HS), dk = [Double](repeating: .nan, count: N * NKV * HS), dv = dk
        causalAttentionBackward(dq: &dq, dk: &dk, dv: &dv, scratch: &scratch, dout: r, probs: probs, q: q, k: k, v: v,
                                starts: starts, offsets: offsets, B: B, NH: NH, NKV: NKV, HS: HS)
        check("dq", x: &q, analytic: dq) { L($0, k, v) }
        check("dk", x: &k, analytic: dk) { L(q, $0, v) }
        check("dv", x: &v, analytic: dv) { L(q, k, $0) }
    }
}
