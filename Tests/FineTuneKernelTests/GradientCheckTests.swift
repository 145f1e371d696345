@testable import FineTuneKernels
import XCTest

/// Every backward pass against central finite differences in Double, element by element.
///
/// For a kernel y = f(x, θ) we take the scalar L = Σ r ⊙ y with a fixed random r, so dL/dy = r is
/// fed to backward, and compare each analytic dL/dx_i with (L(x_i + h) − L(x_i − h)) / 2h.
/// Tolerance: |analytic − numeric| ≤ 1e-6 · max(1, |numeric|) with h = 1e-5 (Double, so the
/// truncation error ~h² and rounding ~ε/h are both far below it). Shapes are non-square on purpose.
/// Helpers of the finite-difference tests.
class FiniteDifferenceTestCase: XCTestCase {
    let h = 1e-5
    let tolerance = 1e-6

    func randomArray(_ n: Int, seed: UInt64, scale: Double = 1) -> [Double] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in (rng.nextUnit() * 2 - 1) * scale }
    }

    /// Checks d(Σ r·f(x))/dx against finite differences of `loss` at every element of `x`.
    func check(_ name: String, x: inout [Double], analytic: [Double], loss: ([Double]) -> Double,
               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(x.count, analytic.count, name, file: file, line: line)
        var worst = 0.0
        for i in x.indices {
            let saved = x[i]
            x[i] = saved + h; let plus = loss(x)
            x[i] = saved - h; let minus = loss(x)
            x[i] = saved
            let numeric = (plus - minus) / (2 * h)
            let error = abs(analytic[i] - numeric) / max(1, abs(numeric))
            worst = max(worst, error)
            if error > tolerance {
                XCTFail("\(name)[\(i)]: analytic \(analytic[i]) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
        XCTAssertLessThanOrEqual(worst, tolerance, name, file: file, line: line)
    }

    func elementwise(_ name: String, forward: (UnsafeMutablePointer<Double>, UnsafePointer<Double>, Int) -> Void,
                     backward: (UnsafeMutablePointer<Double>, UnsafePointer<Double>, UnsafePointer<Double>, Int) -> Void) {
        let N = 37
        // Keep inputs away from ReLU's kink at 0, where the derivative is undefined.
        var x = randomArray(N, seed: 11, scale: 3).map { abs($0) < 0.01 ? 0.5 : $0 }
        let r = randomArray(N, seed: 12)
        func L(_ x: [Double]) -> Double {
            var y = [Double](repeating: 0, count: N)
            forward(&y, x, N)
            return zip(y, r).map(*).reduce(0, +)
        }
        var dx = [Double](repeating: 0, count: N)
        backward(&dx, r, x, N)
        check(name, x: &x, analytic: dx, loss: L)
    }

}

final class GradientCheckTests: FiniteDifferenceTestCase {
    func testLinear() {
        let B = 3, C = 5, OC = 4
        var inp = randomArray(B * C, seed: 1), weight = randomArray(OC * C, seed: 2), bias = randomArray(OC, seed: 3)
        let r = randomArray(B * OC, seed: 4)
        func L(_ inp: [Double], _ weight: [Double], _ bias: [Double]) -> Double {
            var out = [Double](repeating: 0, count: B * OC)
            linearForward(out: &out, inp: inp, weight: weight, bias: bias, B: B, C: C, OC: OC)
            return zip(out, r).map(*).reduce(0, +)
        }
        var dinp = [Double](repeating: 0, count: B * C), dweight = [Double](repeating: 0, count: OC * C), dbias = [Double](repeating: 0, count: OC)
        linearBackward(dinp: &dinp, dweight: &dweight, dbias: &dbias, dout: r, inp: inp, weight: weight, B: B, C: C, OC: OC)
        check("dinp", x: &inp, analytic: dinp) { L($0, weight, bias) }
        check("dweight", x: &weight, analytic: dweight) { L(inp, $0, bias) }
        check("dbias", x: &bias, analytic: dbias) { L(inp, weight, $0) }
    }

    /// LoRA's update on top of a linear layer: every input of the pair, and dinp's accumulating form.
    func testLoRA() {
        let B = 3, C = 5, OC = 4, R = 2, scale = 1.75
        var inp = randomArray(B * C, seed: 41), a = randomArray(R * C, seed: 42), b = randomArray(OC * R, seed: 43)
        let base = randomArray(B * OC, seed: 44), r = randomArray(B * OC, seed: 45)
        func L(_ inp: [Double], _ a: [Double], _ b: [Double]) -> Double {
            var out = base, h = [Double](repeating: 0, count: B * R)
            loraForward(out: &out, h: &h, inp: inp, a: a, b: b, scale: scale, B: B, C: C, OC: OC, R: R)
            return zip(out, r).map(*).reduce(0, +)
        }
        var out = base, h = [Double](repeating: 0, count: B * R)
        loraForward(out: &out, h: &h, inp: inp, a: a, b: b, scale: scale, B: B, C: C, OC: OC, R: R)
        var dinp = [Double](repeating: 1, count: B * C), da = [Double](repeating: 0, count: R * C), db = [Double](repeating: 0, count: OC * R)
        var dh = [Double](repeating: 0, count: B * R)
        loraBackward(dinp: &dinp, da: &da, db: &db, dh: &dh, dout: r, h: h, inp: inp, a: a, b: b, scale: scale, B: B, C: C, OC: OC, R: R)
        check("dinp (accumulated onto 1)", x: &inp, analytic: dinp.map { $0 - 1 }) { L($0, a, b) }
        check("da", x: &a, analytic: da) { L(inp, $0, b) }
        check("db", x: &b, analytic: db) { L(inp, a, $0) }
    }

    func testLinearBackwardAccumulates() {
        // Backward adds into existing gradients: two calls give twice one call.
        let B = 2, C = 3, OC = 2
        let inp = randomArray(B * C, seed: 5), weight = randomArray(OC * C, seed: 6), r = randomArray(B * OC, seed: 7)
        var once = [Double](repeating: 0, count: OC * C), twice = [Double](repeating: 0, count: OC * C)
        linearBackward(dinp: nil, dweight: &once, dbias: nil, dout: r, inp: inp, weight: weight, B: B, C: C, OC: OC)
        for _ in 0..<2 { linearBackward(dinp: nil, dweight: &twice, dbias: nil, dout: r, inp: inp, weight: weight, B: B, C: C, OC: OC) }
        for i in once.indices { XCTAssertEqual(twice[i], 2 * once[i], accuracy: 1e-12) }
    }

    func testOverwritingBackwardIgnoresWhatTheBufferHeld() {
        // The overwriting forms write what accumulating into zeros gives, whatever was there (NaN here).
        let B = 3, C = 4, OC = 5
        let inp = randomArray(B * C, seed: 5), weight = randomArray(OC * C, seed: 6), r = randomArray(B * OC, seed: 7)
        var dw = [Double](repeating: 0, count: OC * C)
        var accumulated = [Double](repeating: 0, count: B * C), overwritten = [Double](repeating: .nan, count: B * C)
        linearBackward(dinp: &accumulated, dweight: &dw, dbias: nil, dout: r, inp: inp, weight: weight, B: B, C: C, OC: OC)
        linearBackward(dinp: &overwritten, dweight: &dw, dbias: nil, dout: r, inp: inp, weight: weight, B: B, C: C, OC: OC,
                       overwritingInput: true)
        XCTAssertEqual(overwritten, accumulated)
        let slope = randomArray(B * C, seed: 8)
        var geluAccumulated = [Double](repeating: 0, count: B * C), geluOverwritten = [Double](repeating: .nan, count: B * C)
        geluBackward(dinp: &geluAccumulated, dout: inp, slope: slope, N: B * C)
        geluBackward(dinp: &geluOverwritten, dout: inp, slope: slope, N: B * C, overwritingInput: true)
        XCTAssertEqual(geluOverwritten, geluAccumulated)
    }

    func testReLU() {
        elementwise("relu", forward: { reluForward(out: $0, inp: $1, N: $2) },
                    backward: { reluBackward(dinp: $0, dout: $1, inp: $2, N: $3) })
    }

    func testGELU() {
        elementwise("gelu", forward: { geluForward(out: $0, inp: $1, N: $2) },
                    backward: { geluBackward(dinp: $0, dout: $1, inp: $2, N: $3) })
        // The form BERT trains with: the slope saved by forward, backward from it alone.
        elementwise("gelu (saved slope)", forward: { out, inp, n in
            var slope = [Double](repeating: 0, count: n)
            geluForward(out: out, slope: &slope, inp: inp, N: n)
        }, backward: { dinp, dout, inp, n in
            var out = [Double](repeating: 0, count: n), slope = out
            geluForward(out: &out, slope: &slope, inp: inp, N: n)
            geluBackward(dinp: dinp, dout: dout, slope: slope, N: n)
        })
    }

    func testGELUValuesMatchErfForm() {
        // Reference values of x·Φ(x) (PyTorch's F.gelu, approximate='none').
        let x: [Double] = [-3, -1, -0.5, 0, 0.5, 1, 3]
        let expected: [Double] = [-0.0040496, -0.1586553, -0.1542687, 0, 0.3457313, 0.8413447, 2.9959504]
        var y = [Double](repeating: 0, count: x.count)
        geluForward(out: &y, inp: x, N: x.count)
        for i in x.indices { XCTAssertEqual(y[i], expected[i], accuracy: 1e-6) }
    }

    func testDropout() {
        let B = 4, C = 6, p = 0.3
        var x = randomArray(B * C, seed: 21)
        let r = randomArray(B * C, seed: 22)
        let indices = [5, 17, 2, 40]
        let key = DropoutKey(seed: 9, step: 3, site: 1)
        var mask = [UInt8](repeating: 0, count: B * C)
        func L(_ x: [Double]) -> Double {
            var y = [Double](repeating: 0, count: B * C)
            var m = [UInt8](repeating: 0, count: B * C)
            dropoutForward(out: &y, mask: &m, inp: x, probability: p, key: key, exampleIndices: indices, segmentStarts: (0...B).map { $0 * C }, B: B)
            return zip(y, r).map(*).reduce(0, +)
        }
        var y = [Double](repeating: 0, count: B * C)
        dropoutForward(out: &y, mask: &mask, inp: x, probability: p, key: key, exampleIndices: indices, segmentStarts: (0...B).map { $0 * C }, B: B)
        XCTAssertTrue(mask.contains(0) && mask.contains(1), "the mask should drop some and keep some")
        var dx = [Double](repeating: 0, count: B * C)
        dropoutBackward(dinp: &dx, dout: r, mask: mask, probability: p, N: B * C)
        check("dropout", x: &x, analytic: dx, loss: L)
    }

    func testDropoutMaskDependsOnExampleNotOnPosition() {
        // The same example gets the same mask whichever slice of the batch (and so rank) holds it.
        let C = 64, p = 0.5
        let key = DropoutKey(seed: 1, step: 7, site: 0)
        let x = [Double](repeating: 1, count: 3 * C)
        var whole = [Double](repeating: 0, count: 3 * C), m = [UInt8](repeating: 0, count: 3 * C)
        dropoutForward(out: &whole, mask: &m, inp: x, probability: p, key: key, exampleIndices: [10, 11, 12], segmentStarts: [0, C, 2 * C, 3 * C], B: 3)
        var alone = [Double](repeating: 0, count: C), m1 = [UInt8](repeating: 0, count: C)
        dropoutForward(out: &alone, mask: &m1, inp: Array(x[0..<C]), probability: p, key: key, exampleIndices: [12], segmentStarts: [0, C], B: 1)
        XCTAssertEqual(Array(whole[(2 * C)..<(3 * C)]), alone)
        XCTAssertNotEqual(Array(whole[0..<C]), alone, "different examples should get different masks")
        // Another step gives another mask.
        var other = [Double](repeating: 0, count: C)
        dropoutForward(out: &other, mask: &m1, inp: Array(x[0..<C]), probability: p, key: DropoutKey(seed: 1, step: 8, site: 0),
                       exampleIndices: [12], segmentStarts: [0, C], B: 1)
        XCTAssertNotEqual(other, alone)
    }

    /// Plain and label-smoothed (ε = 0.1, 0.3); per-row loss weights (class weights) as dlosses.
    func testSoftmaxCrossEntropy() {
        let B = 3, K = 5
        let targets: [Int32] = [4, 0, 2]
        let dlosses = [0.7, -1.3, 2.0]
        for smoothing in [0.0, 0.1, 0.3] {
            var logits = randomArray(B * K, seed: 31, scale: 3)
            func L(_ logits: [Double]) -> Double {
                var losses = [Double](repeating: 0, count: B), probs = [Double](repeating: 0, count: B * K)
                softmaxCrossEntropyForward(losses: &losses, probs: &probs, logits: logits, targets: targets, B: B, K: K, smoothing: smoothing)
                return zip(losses, dlosses).map(*).reduce(0, +)
            }
            var losses = [Double](repeating: 0, count: B), probs = [Double](repeating: 0, count: B * K)
            softmaxCrossEntropyForward(losses: &losses, probs: &probs, logits: logits, targets: targets, B: B, K: K, smoothing: smoothing)
            for b in 0..<B { XCTAssertEqual(probs[(b * K)..<((b + 1) * K)].reduce(0, +), 1, accuracy: 1e-12) }
            // torch: (1 − ε)·CE + ε·mean_k(−log p_k)
            let b = 1, logP = (0..<K).map { Foundation.log(probs[b * K + $0]) }
            XCTAssertEqual(losses[b], -(1 - smoothing) * logP[Int(targets[b])] - smoothing * logP.reduce(0, +) / Double(K), accuracy: 1e-12)
            var dlogits = [Double](repeating: 0, count: B * K)
            softmaxCrossEntropyBackward(dlogits: &dlogits, dlosses: dlosses, probs: probs, targets: targets, B: B, K: K, smoothing: smoothing)
            check("dlogits (smoothing \(smoothing))", x: &logits, analytic: dlogits, loss: L)
        }
    }

    func testSoftmaxIsStableForLargeLogits() {
        var losses = [Float](repeating: 0, count: 1), probs = [Float](repeating: 0, count: 3)
        softmaxCrossEntropyForward(losses: &losses, probs: &probs, logits: [1000, 0, -1000], targets: [1], B: 1, K: 3)
        XCTAssertEqual(losses[0], 1000, accuracy: 1e-3)
        XCTAssertTrue(probs.allSatisfy { $0.isFinite })
    }

    func testSquaredError() {
        let B = 4, K = 2
        var predictions = randomArray(B * K, seed: 41)
        let targets = randomArray(B * K, seed: 42)
        let dlosses = [1.0, 0.5, -2.0, 3.0]
        func L(_ p: [Double]) -> Double {
            var losses = [Double](repeating: 0, count: B)
            squaredErrorForward(losses: &losses, predictions: p, targets: targets, B: B, K: K)
            return zip(losses, dlosses).map(*).reduce(0, +)
        }
        var d = [Double](repeating: 0, count: B * K)
        squaredErrorBackward(dpredictions: &d, dlosses: dlosses, predictions: predictions, targets: targets, B: B, K: K)
        check("dpredictions", x: &predictions, analytic: d, loss: L)
    }
}
