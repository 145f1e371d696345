@testable import FineTuneKernels
import Foundation
import XCTest

/// The finite-difference checks run the kernels in Double, where exp and erf are libm's and every
/// sum is exact enough. Training runs them in Float, with a polynomial exp and erf that vectorise,
/// sums over eight partial accumulators and a 16-lane AdamW. These tests hold the Float path to
/// the Double one it was checked through.
final class FloatKernelTests: XCTestCase {
    func testKernelExpIsWithinTwoUlpOverItsRange() {
        var worstUlps = 0.0
        var x: Float = -87.3
        while x <= 88.3 {
            let got = Double(Float.kernelExp(x)), want = Foundation.exp(Double(x))
            worstUlps = max(worstUlps, abs(got - want) / Double(Float(want).ulp))
            x = (x + 7.3e-5).nextUp  // ~2.4M points
        }
        for x: Float in [1e-30, -1e-30, 1e-7, -1e-7, 1e-3, -1e-3] {
            XCTAssertEqual(Double(Float.kernelExp(x)), Foundation.exp(Double(x)), accuracy: 2 * Double(Float(1).ulp), "exp(\(x))")
        }
        XCTAssertLessThanOrEqual(worstUlps, 2, "worst error of kernelExp in ulp")
        XCTAssertEqual(Float.kernelExp(0), 1)
        XCTAssertEqual(Float.kernelExp(-90), 0)
        XCTAssertEqual(Float.kernelExp(-.infinity), 0)
        XCTAssertEqual(Float.kernelExp(.infinity), .infinity)
        XCTAssertTrue(Float.kernelExp(.nan).isNaN)
    }

    func testKernelErfIsWithinItsStatedBound() {
        var worst = 0.0
        for i in 0...240_000 {
            let x = Float(i) / 20_000 - 6
            worst = max(worst, abs(Double(Float.kernelErf(x)) - Foundation.erf(Double(x))))
            XCTAssertEqual(Float.kernelErf(-x), -Float.kernelErf(x), "erf is odd at \(x)")
        }
        XCTAssertLessThanOrEqual(worst, 6e-7, "worst absolute error of kernelErf")
        XCTAssertEqual(Float.kernelErf(.infinity), 1)
        XCTAssertEqual(Float.kernelErf(-.infinity), -1)
        XCTAssertTrue(Float.kernelErf(.nan).isNaN)
    }

    func random(_ n: Int, seed: UInt64, scale: Double = 3) -> [Double] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in (rng.nextUnit() * 2 - 1) * scale }
    }

    func assertClose(_ float: [Float], _ double: [Double], relative: Double, absolute: Double, _ name: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(float.count, double.count, name, file: file, line: line)
        for i in double.indices where abs(Double(float[i]) - double[i]) > absolute + relative * abs(double[i]) {
            XCTFail("\(name)[\(i)]: Float \(float[i]) vs Double \(double[i])", file: file, line: line)
            return
        }
    }

    func testFloatGELUFollowsTheDoubleKernels() {
        let x = random(5_000, seed: 1, scale: 6), dout = random(5_000, seed: 2)
        var yD = [Double](repeating: 0, count: x.count), slopeD = yD, dxD = yD
        geluForward(out: &yD, slope: &slopeD, inp: x, N: x.count)
        geluBackward(dinp: &dxD, dout: dout, slope: slopeD, N: x.count)
        let xF = x.map(Float.init), doutF = dout.map(Float.init)
        var yF = [Float](repeating: 0, count: x.count), slopeF = yF, dxF = yF
        geluForward(out: &yF, slope: &slopeF, inp: xF, N: x.count)
        geluBackward(dinp: &dxF, dout: doutF, slope: slopeF, N: x.count)
        // erf's 1.5e-7 absolute error, times |x| ≤ 6, on top of Float rounding.
        assertClose(yF, yD, relative: 1e-6, absolute: 1e-6, "gelu")
        assertClose(dxF, dxD, relative: 1e-6, absolute: 1e-6, "gelu backward")
    }

    func testFloatAttentionAndLayerNormFollowTheDoubleKernels() {
        // Sequences of 1, 7, 13 and 64 tokens (every remainder of the 8-lane sums), 2 heads of 5 channels.
        let lengths = [1, 7, 13, 64], NH = 2, C = 10
        let starts = lengths.reduce(into: [0]) { $0.append($0.last! + $1) }
        let N = starts.last!, offsets = attentionOffsets(starts: starts, heads: NH), B = lengths.count
        let q = random(N * C, seed: 3), k = random(N * C, seed: 4), v = random(N * C, seed: 5), dout = random(N * C, seed: 6)
        func run<T: KernelScalar>(_: T.Type) -> (probs: [T], ctx: [T], dq: [T], dk: [T], dv: [T], ln: [T], dln: [T]) {
            let q = q.map { T($0) }, k = k.map { T($0) }, v = v.map { T($0) }, dout = dout.map { T($0) }
            var probs = [T](repeating: 0, count: offsets.last!), dropped = probs, scratch = probs, mask = [UInt8](repeating: 0, count: probs.count)
            var ctx = [T](repeating: 0, count: N * C), dq = ctx, dk = ctx, dv = ctx
            [3, 5, 8, 13].withUnsafeBufferPointer { indices in
                let dropout = AttentionDropout(probability: 0.2, key: DropoutKey(seed: 1, step: 1, site: 1), exampleIndices: indices.baseAddress!)
                attentionForward(out: &ctx, probs: &probs, probsDropped: &dropped, mask: &mask, q: q, k: k, v: v, dropout: dropout,
                                 starts: starts, offsets: offsets, B: B, C: C, NH: NH)
            }
            attentionBackward(dq: &dq, dk: &dk, dv: &dv, dscores: &scratch, dout: dout, probs: probs, probsDropped: dropped, mask: mask,
                              q: q, k: k, v: v, dropoutProbability: 0.2, starts: starts, offsets: offsets, B: B, C: C, NH: NH)
            let weight = (0..<C).map { T(1 + Double($0) / 10) }, bias = (0..<C).map { T(Double($0) / 20) }
            var ln = [T](repeating: 0, count: N * C), dln = ln, mean = [T](repeating: 0, count: N), rstd = mean
            var dw = [T](repeating: 0, count: C), db = dw
            layerNormForward(out: &ln, mean: &mean, rstd: &rstd, inp: q, weight: weight, bias: bias, eps: T(1e-12), N: N, C: C)
            layerNormBackward(dinp: &dln, dweight: &dw, dbias: &db, dout: dout, inp: q, weight: weight, mean: mean, rstd: rstd, N: N, C: C)
            return (probs, ctx, dq, dk, dv, ln, dln)
        }
        let f = run(Float.self), d = run(Double.self)
        assertClose(f.probs, d.probs, relative: 1e-5, absolute: 1e-7, "softmax")
        assertClose(f.ctx, d.ctx, relative: 1e-5, absolute: 1e-6, "attention output")
        assertClose(f.dq, d.dq, relative: 1e-4, absolute: 1e-5, "dq")
        assertClose(f.dk, d.dk, relative: 1e-4, absolute: 1e-5, "dk")
        assertClose(f.dv, d.dv, relative: 1e-5, absolute: 1e-6, "dv")
        assertClose(f.ln, d.ln, relative: 1e-5, absolute: 1e-6, "layernorm")
        assertClose(f.dln, d.dln, relative: 1e-4, absolute: 1e-5, "layernorm backward")
    }

    func testRowReductionsOfEveryLength() {
        let x = random(41, seed: 7), y = random(41, seed: 8)
        for n in 0...41 {
            let dot = zip(x.prefix(n), y.prefix(n)).reduce(0) { $0 + $1.0 * $1.1 }
            XCTAssertEqual(rowDot(x, y, n), dot, accuracy: 1e-12, "dot of \(n)")
            XCTAssertEqual(rowDot(x, nil, n), x.prefix(n).reduce(0, +), accuracy: 1e-12, "sum of \(n)")
            if n > 0 { XCTAssertEqual(rowMax(x, n), x.prefix(n).max()!, "max of \(n)") }
        }
    }

    func testDropoutGradientEqualsBackwardIntoZeros() {
        let n = 1_003, p = 0.3
        let x = random(n, seed: 9).map(Float.init), dout = random(n, seed: 10).map(Float.init)
        var y = [Float](repeating: 0, count: n), mask = [UInt8](repeating: 0, count: n)
        dropoutForward(out: &y, mask: &mask, inp: x, probability: p, key: DropoutKey(seed: 1, step: 2, site: 3),
                       exampleIndices: [4, 5], segmentStarts: [0, 501, n], B: 2)
        let kept = mask.filter { $0 == 1 }.count
        XCTAssertEqual(Double(kept) / Double(n), 1 - p, accuracy: 0.05)
        for i in 0..<n { XCTAssertEqual(y[i], mask[i] == 1 ? x[i] / Float(1 - p) : 0, accuracy: 1e-6) }
        var accumulated = [Float](repeating: 0, count: n), written = [Float](repeating: .nan, count: n)
        dropoutBackward(dinp: &accumulated, dout: dout, mask: mask, probability: p, N: n)
        dropoutGradient(dinp: &written, dout: dout, mask: mask, probability: p, N: n)
        XCTAssertEqual(written, accumulated)
    }
}
