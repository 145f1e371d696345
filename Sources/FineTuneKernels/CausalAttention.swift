// Causal grouped-query attention over packed sequences (Llama, Qwen2; shape legend in Linear.swift).
//
// As in Attention.swift the B sequences lie one after another (rows [starts[b], starts[b + 1])), so
// no token attends across documents and no padding is computed. q is [N, NH·HS]; k and v are
// [N, NKV·HS], query head h reading key/value head h / (NH / NKV). Token i attends to j ≤ i only:
// query rows go in blocks of `causalQueryBlock`, and a block's scores are computed against the keys
// up to its last row, so the upper triangle is never computed (only the few scores above the
// diagonal inside a block are, and are set to zero).

/// Query rows per block: the computed share of the L² scores is (1 + block/L)/2 (0.56 at L = 256).
public let causalQueryBlock = 32

/// Scratch `causalAttentionBackward` needs: one block of score rows of the longest sequence.
public func causalAttentionScratchCount(longest L: Int) -> Int { causalQueryBlock * L }

/// out[N, NH·HS] = softmax(Q_h K_gᵀ / √HS, causal) V_g per sequence and head; probs[Σ NH L_b²]
/// receives each head's probabilities at offsets[b] + h·L_b² (row i holds columns 0...i; columns
/// up to the end of its block are 0, the rest is not written).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func causalAttentionForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, probs: UnsafeMutablePointer<T>,
                                                    q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                                    starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>,
                                                    B: Int, NH: Int, NKV: Int, HS: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .attention) }
    let Cq = NH * HS, Ckv = NKV * HS, group = NH / NKV
    let scale = 1 / T(HS).squareRoot()
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        for h in 0..<NH {
            let P = probs + offsets[b] + h * L * L
            let qh = q + s * Cq + h * HS, kh = k + s * Ckv + (h / group) * HS, vh = v + s * Ckv + (h / group) * HS
            for i0 in stride(from: 0, to: L, by: causalQueryBlock) {
                let i1 = min(i0 + causalQueryBlock, L), rows = i1 - i0
                let S = P + i0 * L
                T.gemm(transA: false, transB: true, m: rows, n: i1, k: HS, alpha: scale, a: qh + i0 * Cq, lda: Cq,
                       b: kh, ldb: Ckv, beta: 0, c: S, ldc: L)
                for r in 0..<rows {
                    let row = S + r * L, length = i0 + r + 1
                    softmaxRows(row, rows: 1, length: length)
                    for j in length..<i1 { row[j] = 0 }
                }
                T.gemm(transA: false, transB: false, m: rows, n: HS, k: i1, alpha: 1, a: S, lda: L,
                       b: vh, ldb: Ckv, beta: 0, c: out + (s + i0) * Cq + h * HS, ldc: Cq)
            }
        }
    }
}

/// Backward of `causalAttentionForward`: dq [N, NH·HS], dk and dv [N, NKV·HS] are WRITTEN (dk and
/// dv sum over the query heads sharing them). scratch holds `causalAttentionScratchCount` values.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func causalAttentionBackward<T: KernelScalar>(dq: UnsafeMutablePointer<T>, dk: UnsafeMutablePointer<T>, dv: UnsafeMutablePointer<T>,
                                                     scratch: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, probs: UnsafePointer<T>,
                                                     q: UnsafePointer<T>, k: UnsafePointer<T>,
                                                     v: UnsafePointer<T>, starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>,
                                                     B: Int, NH: Int, NKV: Int, HS: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .attention) }
    let Cq = NH * HS, Ckv = NKV * HS, group = NH / NKV
    let scale = 1 / T(HS).squareRoot()
    let N = starts[B] - starts[0]
    (dk + starts[0] * Ckv).update(repeating: 0, count: N * Ckv)
    (dv + starts[0] * Ckv).update(repeating: 0, count: N * Ckv)
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        for h in 0..<NH {
            let P = UnsafePointer(probs + offsets[b] + h * L * L)
            let at = s * Cq + h * HS, kvAt = s * Ckv + (h / group) * HS
            for i0 in stride(from: 0, to: L, by: causalQueryBlock) {
                let i1 = min(i0 + causalQueryBlock, L), rows = i1 - i0
                let dO = dout + at + i0 * Cq, Pb = P + i0 * L
                // dP = dO · Vᵀ over the keys the block saw; dV += Pᵀ · dO.
                T.gemm(transA: false, transB: true, m: rows, n: i1, k: HS, alpha: 1, a: dO, lda: Cq, b: v + kvAt, ldb: Ckv,
                       beta: 0, c: scratch, ldc: L)
                T.gemm(transA: true, transB: false, m: i1, n: HS, k: rows, alpha: 1, a: Pb, lda: L, b: dO, ldb: Cq,
                       beta: 1, c: dv + kvAt, ldc: Ckv)
                // Zero probabilities above the diagonal make their dS zero: full block rows are safe.
                softmaxRowsBackward(scratch, probs: Pb, rows: rows, length: i1, scale: scale, stride: L)
                T.gemm(transA: false, transB: false, m: rows, n: HS, k: i1, alpha: 1, a: scratch, lda: L, b: k + kvAt, ldb: Ckv,
                       beta: 0, c: dq + at + i0 * Cq, ldc: Cq)
                T.gemm(transA: true, transB: false, m: i1, n: HS, k: rows, alpha: 1, a: scratch, lda: L, b: q + at + i0 * Cq, ldb: Cq,
                       beta: 1, c: dk + kvAt, ldc: Ckv)
            }
        }
    }
}
