@testable import FineTuneKernels
import XCTest

/// Finite-difference checks (Double, element by element, tolerance 1e-6 relative) of the encoder kernels.
final class TransformerGradientTests: FiniteDifferenceTestCase {
    // Two packed sequences of lengths 3 and 5 (N = 8).
    let starts = [0, 3, 8]
    var N: Int { starts.last! }

    func testEmbedding() {
        let C = 4, V = 7, P = 6, TV = 2
        let ids: [Int32] = [1, 4, 4, 0, 6, 1, 2, 4], types: [Int32] = [0, 0, 1, 0, 0, 1, 1, 1]
        var wte = randomArray(V * C, seed: 1), wpe = randomArray(P * C, seed: 2), wtt = randomArray(TV * C, seed: 3)
        let r = randomArray(N * C, seed: 4)
        func L(_ wte: [Double], _ wpe: [Double], _ wtt: [Double]) -> Double {
            var out = [Double](repeating: 0, count: N * C)
            embeddingForward(out: &out, ids: ids, types: types, starts: starts, wte: wte, wpe: wpe, wtt: wtt, B: 2, C: C)
            return zip(out, r).map(*).reduce(0, +)
        }
        var dwte = [Double](repeating: 0, count: V * C), dwpe = [Double](repeating: 0, count: P * C), dwtt = [Double](repeating: 0, count: TV * C)
        embeddingBackward(dwte: &dwte, dwpe: &dwpe, dwtt: &dwtt, dout: r, ids: ids, types: types, starts: starts, B: 2, C: C)
        check("dwte", x: &wte, analytic: dwte) { L($0, wpe, wtt) }
        check("dwpe", x: &wpe, analytic: dwpe) { L(wte, $0, wtt) }
        check("dwtt", x: &wtt, analytic: dwtt) { L(wte, wpe, $0) }
    }

    /// MPNet and RoBERTa: positions from padding_idx + 1, no token types.
    func testEmbeddingWithPositionOffsetWithoutTokenTypes() {
        let C = 4, V = 7, P = 8, offset = 2
        let ids: [Int32] = [1, 4, 4, 0, 6, 1, 2, 4], types = [Int32](repeating: 0, count: 8)
        var wte = randomArray(V * C, seed: 1), wpe = randomArray(P * C, seed: 2)
        let r = randomArray(N * C, seed: 4)
        func L(_ wte: [Double], _ wpe: [Double]) -> Double {
            var out = [Double](repeating: 0, count: N * C)
            embeddingForward(out: &out, ids: ids, types: types, starts: starts, wte: wte, wpe: wpe, wtt: nil, positionOffset: offset, B: 2, C: C)
            return zip(out, r).map(*).reduce(0, +)
        }
        var dwte = [Double](repeating: 0, count: V * C), dwpe = [Double](repeating: 0, count: P * C)
        embeddingBackward(dwte: &dwte, dwpe: &dwpe, dwtt: nil, dout: r, ids: ids, types: types, starts: starts, positionOffset: offset, B: 2, C: C)
        check("dwte", x: &wte, analytic: dwte) { L($0, wpe) }
        check("dwpe", x: &wpe, analytic: dwpe) { L(wte, $0) }
        // Rows below the offset (padding_idx and before) are never read.
        XCTAssertEqual(Array(dwpe[0..<(offset * C)]), [Double](repeating: 0, count: offset * C))
    }

    /// MPNet's buckets against transformers' relative_position_bucket (num_buckets 32, max_distance
    /// 128), values printed by transformers 5.25 / torch 2.15 for these distances (key − query).
    func testRelativePositionBuckets() {
        let relative = [-300, -129, -128, -127, -64, -33, -32, -31, -17, -16, -15, -9, -8, -7, -1, 0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 127, 128, 300]
        let torch = [15, 15, 15, 15, 14, 12, 12, 11, 10, 10, 9, 8, 8, 7, 1, 0, 17, 23, 24, 24, 25, 26, 26, 27, 28, 28, 30, 31, 31, 31]
        XCTAssertEqual(relative.map { relativePositionBucket($0, buckets: 32, maxDistance: 128) }, torch)
    }

    func testRelativePositionBias() {
        let NH = 2, buckets = 32, L = 5, stride = 6
        var table = randomArray(buckets * NH, seed: 40)
        let r = randomArray(NH * stride * stride, seed: 41)
        func forward(_ table: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: NH * stride * stride)
            relativePositionBiasForward(out: &out, table: table, L: L, stride: stride, NH: NH, buckets: buckets, maxDistance: 128)
            return out
        }
        // Row i, column j of head h is the table entry of bucket(j − i).
        let out = forward(table)
        XCTAssertEqual(out[(1 * stride + 3) * stride + 1], table[relativePositionBucket(-2, buckets: buckets, maxDistance: 128) * NH + 1])
        var dtable = [Double](repeating: 0, count: buckets * NH)
        relativePositionBiasBackward(dtable: &dtable, dout: r, L: L, stride: stride, NH: NH, buckets: buckets, maxDistance: 128)
        check("dtable", x: &table, analytic: dtable) { zip(forward($0), r).map(*).reduce(0, +) }
    }

    func testLayerNorm() {
        let rows = 5, C = 6
        var x = randomArray(rows * C, seed: 5, scale: 2), w = randomArray(C, seed: 6), b = randomArray(C, seed: 7)
        let r = randomArray(rows * C, seed: 8)
        func L(_ x: [Double], _ w: [Double], _ b: [Double]) -> Double {
            var out = [Double](repeating: 0, count: rows * C), mean = [Double](repeating: 0, count: rows), rstd = mean
            layerNormForward(out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, eps: 1e-12, N: rows, C: C)
            return zip(out, r).map(*).reduce(0, +)
        }
        var out = [Double](repeating: 0, count: rows * C), mean = [Double](repeating: 0, count: rows), rstd = mean
        layerNormForward(out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, eps: 1e-12, N: rows, C: C)
        var dx = [Double](repeating: 0, count: rows * C), dw = [Double](repeating: 0, count: C), db = dw
        layerNormBackward(dinp: &dx, dweight: &dw, dbias: &db, dout: r, inp: x, weight: w, mean: mean, rstd: rstd, N: rows, C: C)
        check("dx", x: &x, analytic: dx) { L($0, w, b) }
        check("dweight", x: &w, analytic: dw) { L(x, $0, b) }
        check("dbias", x: &b, analytic: db) { L(x, w, $0) }
    }

    func testGELUTanhAndTanh() {
        elementwise("gelu_new", forward: { geluTanhForward(out: $0, inp: $1, N: $2) },
                    backward: { geluTanhBackward(dinp: $0, dout: $1, inp: $2, N: $3) })
        // tanh's backward takes the forward output.
        elementwise("tanh", forward: { tanhForward(out: $0, inp: $1, N: $2) },
                    backward: { dinp, dout, inp, n in
                        var out = [Double](repeating: 0, count: n)
                        tanhForward(out: &out, inp: inp, N: n)
                        tanhBackward(dinp: dinp, dout: dout, out: out, N: n)
                    })
    }

    /// softmax(QKᵀ/√HS) [dropout] V over two packed sequences (lengths 3 and 5: heads start inside
    /// dropout's blocks of four), 2 heads of size 3; with and without dropout on the probabilities.
    func testAttention() {
        let C = 6, NH = 2, B = 2
        let offsets = attentionOffsets(starts: starts, heads: NH)
        let r = randomArray(N * C, seed: 9)
        let indices = [4, 9]
        for dropout in [0.0, 0.3] {
            var q = randomArray(N * C, seed: 10), k = randomArray(N * C, seed: 11), v = randomArray(N * C, seed: 12)
            let key = DropoutKey(seed: 3, step: 1, site: 2)
            func forward(_ q: [Double], _ k: [Double], _ v: [Double]) -> (out: [Double], probs: [Double], dropped: [Double], mask: [UInt8]) {
                var probs = [Double](repeating: 0, count: offsets.last!), dropped = probs, out = [Double](repeating: 0, count: N * C)
                var mask = [UInt8](repeating: 0, count: probs.count)
                indices.withUnsafeBufferPointer { ix in
                    let d = dropout > 0 ? AttentionDropout(probability: dropout, key: key, exampleIndices: ix.baseAddress!) : nil
                    attentionForward(out: &out, probs: &probs, probsDropped: &dropped, mask: &mask, q: q, k: k, v: v, dropout: d,
                                     starts: starts, offsets: offsets, B: B, C: C, NH: NH)
                }
                return (out, probs, dropped, mask)
            }
            func L(_ q: [Double], _ k: [Double], _ v: [Double]) -> Double { zip(forward(q, k, v).out, r).map(*).reduce(0, +) }
            let f = forward(q, k, v)
            // dq, dk, dv are written, not added to: they start full of NaN to show every element is written.
            var dq = [Double](repeating: .nan, count: N * C), dk = dq, dv = dq, scratch = [Double](repeating: 0, count: offsets.last!)
            attentionBackward(dq: &dq, dk: &dk, dv: &dv, dscores: &scratch, dout: r, probs: f.probs, probsDropped: f.dropped, mask: f.mask,
                              q: q, k: k, v: v, dropoutProbability: dropout, starts: starts, offsets: offsets, B: B, C: C, NH: NH)
            check("fused dq p=\(dropout)", x: &q, analytic: dq) { L($0, k, v) }
            check("fused dk p=\(dropout)", x: &k, analytic: dk) { L(q, $0, v) }
            check("fused dv p=\(dropout)", x: &v, analytic: dv) { L(q, k, $0) }

            if dropout > 0 {
                // Each head's mask is its part of the mask dropoutForward draws over the whole sequence.
                var whole = f.probs, mask = [UInt8](repeating: 0, count: f.probs.count)
                dropoutForward(out: &whole, mask: &mask, inp: f.probs, probability: dropout, key: key, exampleIndices: indices,
                               segmentStarts: offsets, B: B)
                XCTAssertEqual(mask, f.mask)
                XCTAssertEqual(whole, f.dropped)
            }
        }
    }

    /// The same with an additive score bias (MPNet's relative positions): d bias as well.
    func testAttentionWithScoreBias() {
        let C = 6, NH = 2, B = 2, stride = 5
        let offsets = attentionOffsets(starts: starts, heads: NH)
        let r = randomArray(N * C, seed: 9)
        var q = randomArray(N * C, seed: 10), k = randomArray(N * C, seed: 11), v = randomArray(N * C, seed: 12)
        var bias = randomArray(NH * stride * stride, seed: 13)
        func forward(_ q: [Double], _ k: [Double], _ v: [Double], _ bias: [Double]) -> (out: [Double], probs: [Double]) {
            var probs = [Double](repeating: 0, count: offsets.last!), dropped = probs, out = [Double](repeating: 0, count: N * C)
            var mask = [UInt8](repeating: 0, count: probs.count)
            bias.withUnsafeBufferPointer { b in
                attentionForward(out: &out, probs: &probs, probsDropped: &dropped, mask: &mask, q: q, k: k, v: v, dropout: nil,
                                 bias: AttentionBias(values: b.baseAddress!, gradient: nil, stride: stride),
                                 starts: starts, offsets: offsets, B: B, C: C, NH: NH)
            }
            return (out, probs)
        }
        func L(_ q: [Double], _ k: [Double], _ v: [Double], _ bias: [Double]) -> Double { zip(forward(q, k, v, bias).out, r).map(*).reduce(0, +) }
        let f = forward(q, k, v, bias)
        var dq = [Double](repeating: .nan, count: N * C), dk = dq, dv = dq, scratch = [Double](repeating: 0, count: offsets.last!)
        var dbias = [Double](repeating: 0, count: bias.count)
        bias.withUnsafeBufferPointer { b in
            dbias.withUnsafeMutableBufferPointer { db in
                attentionBackward(dq: &dq, dk: &dk, dv: &dv, dscores: &scratch, dout: r, probs: f.probs, probsDropped: f.probs, mask: [UInt8](repeating: 0, count: 1),
                                  q: q, k: k, v: v, dropoutProbability: 0, bias: AttentionBias(values: b.baseAddress!, gradient: db.baseAddress!, stride: stride),
                                  starts: starts, offsets: offsets, B: B, C: C, NH: NH)
            }
        }
        check("biased dq", x: &q, analytic: dq) { L($0, k, v, bias) }
        check("biased dk", x: &k, analytic: dk) { L(q, $0, v, bias) }
        check("biased dv", x: &v, analytic: dv) { L(q, k, $0, bias) }
        check("dbias", x: &bias, analytic: dbias) { L(q, k, v, $0) }
    }

    func testAttentionOfOneSequenceIgnoresTheOthers() {
        // Packing: the output rows of sequence 0 do not change when sequence 1's tokens change.
        let C = 6, NH = 2
        let offsets = attentionOffsets(starts: starts, heads: NH)
        func out(_ seed: UInt64) -> [Double] {
            var q = randomArray(N * C, seed: 20), k = randomArray(N * C, seed: 21), v = randomArray(N * C, seed: 22)
            let other = randomArray(5 * C, seed: seed)
            for i in 0..<(5 * C) { q[3 * C + i] = other[i]; k[3 * C + i] = other[i]; v[3 * C + i] = other[i] }
            var probs = [Double](repeating: 0, count: offsets.last!), unused = probs, mask = [UInt8](repeating: 0, count: probs.count)
            var o = [Double](repeating: 0, count: N * C)
            attentionForward(out: &o, probs: &probs, probsDropped: &unused, mask: &mask, q: q, k: k, v: v, dropout: nil,
                             starts: starts, offsets: offsets, B: 2, C: C, NH: NH)
            return o
        }
        let a = out(30), b = out(31)
        XCTAssertEqual(Array(a[0..<(3 * C)]), Array(b[0..<(3 * C)]))
        XCTAssertNotEqual(Array(a[(3 * C)...]), Array(b[(3 * C)...]))
    }

    func testPooling() {
        let C = 3, B = 2
        var x = randomArray(N * C, seed: 13)
        let r = randomArray(B * C, seed: 14)
        for mean in [true, false] {
            func L(_ x: [Double]) -> Double {
                var out = [Double](repeating: 0, count: B * C)
                if mean { meanPoolForward(out: &out, inp: x, starts: starts, B: B, C: C) } else { firstTokenForward(out: &out, inp: x, starts: starts, B: B, C: C) }
                return zip(out, r).map(*).reduce(0, +)
            }
            var dx = [Double](repeating: 0, count: N * C)
            if mean { meanPoolBackward(dinp: &dx, dout: r, starts: starts, B: B, C: C) } else { firstTokenBackward(dinp: &dx, dout: r, starts: starts, B: B, C: C) }
            check(mean ? "mean pool" : "first token", x: &x, analytic: dx, loss: L)
        }
    }
}

