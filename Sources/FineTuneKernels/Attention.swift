// Multi-head self-attention over packed sequences (shape legend in Linear.swift).
//
// The B sequences of a batch lie one after another, N = Σ L_b tokens in all, sequence b at rows
// [starts[b], starts[b + 1]) (B + 1 starts). No padding is stored or computed, so each sequence
// attends over exactly its own tokens: the same as a padded batch with an attention mask, without
// the padded work. q, k, v are [N, C]; head h uses channels [h·HS, (h+1)·HS) of each.

/// Offsets of each sequence's attention block (NH · L_b² scores) in the probability buffers; the last
/// element is the total size.
public func attentionOffsets(starts: [Int], heads NH: Int) -> [Int] {
    var offsets = [0]
    for b in 0..<(starts.count - 1) {
        let L = starts[b + 1] - starts[b]
        offsets.append(offsets[b] + NH * L * L)
    }
    return offsets
}

/// Attention dropout for the fused kernels: probability, the site's key, and the global example
/// index of each sequence (the masks are those `dropoutForward` draws over each sequence's NH·L_b²
/// scores).
public struct AttentionDropout {
    public let probability: Double
    public let key: DropoutKey
    public let exampleIndices: UnsafePointer<Int>
    public init(probability: Double, key: DropoutKey, exampleIndices: UnsafePointer<Int>) {
        self.probability = probability; self.key = key; self.exampleIndices = exampleIndices
    }
}

/// An additive bias on the attention scores that depends on the query and key positions only
/// (MPNet's relative position bias): head h's score (i, j) of every sequence gets
/// values[h·stride² + i·stride + j]; stride ≥ the longest sequence. Backward accumulates the
/// scores' gradient into `gradient` in the same layout (summed over the sequences), when given.
public struct AttentionBias<T: KernelScalar> {
    public let values: UnsafePointer<T>
    public let gradient: UnsafeMutablePointer<T>?
    public let stride: Int
    public init(values: UnsafePointer<T>, gradient: UnsafeMutablePointer<T>?, stride: Int) {
        self.values = values; self.gradient = gradient; self.stride = stride
    }
}

/// One sequence and head at a time, so each head's L_b² scores are used while they are in cache:
/// out[N, C] (head h in channels [h·HS, (h+1)·HS)) = dropout(softmax(Q_h K_hᵀ / √HS + bias_h)) V_h per sequence.
/// probs[Σ NH L_b²] receives the softmax at offsets[b] + h·L_b²; with `dropout`, probsDropped and
/// mask receive the dropped-out probabilities and the mask (the one `dropoutForward` draws over the
/// sequence's NH·L_b² scores); without, P·V uses probs and the two are not touched.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func attentionForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, probs: UnsafeMutablePointer<T>,
                                              probsDropped: UnsafeMutablePointer<T>, mask: UnsafeMutablePointer<UInt8>,
                                              q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>, dropout: AttentionDropout?,
                                              bias: AttentionBias<T>? = nil,
                                              starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>, B: Int, C: Int, NH: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .attention) }
    let HS = C / NH
    let scale = 1 / T(HS).squareRoot()
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        let rowKey = dropout.map { $0.key.row(exampleIndex: $0.exampleIndices[b]) }
        for h in 0..<NH {
            let o = offsets[b] + h * L * L
            let P = probs + o
            let qh = q + s * C + h * HS, kh = k + s * C + h * HS, vh = v + s * C + h * HS
            T.gemm(transA: false, transB: true, m: L, n: L, k: HS, alpha: scale, a: qh, lda: C, b: kh, ldb: C, beta: 0, c: P, ldc: L)
            if let bias {
                let head = bias.values + h * bias.stride * bias.stride
                for i in 0..<L { for j in 0..<L { P[i * L + j] += head[i * bias.stride + j] } }
            }
            softmaxRows(P, rows: L, length: L)
            var used = UnsafePointer(P)
            if let dropout, let rowKey {
                dropoutForwardSpan(out: probsDropped + o, mask: mask + o, inp: P, count: L * L, firstElement: h * L * L,
                                   rowKey: rowKey, probability: dropout.probability, scale: T(1 / (1 - dropout.probability)))
                used = UnsafePointer(probsDropped + o)
            }
            T.gemm(transA: false, transB: false, m: L, n: HS, k: L, alpha: 1, a: used, lda: L,
                   b: vh, ldb: C, beta: 0, c: out + s * C + h * HS, ldc: C)
        }
    }
}

/// Backward of `attentionForward`, one sequence and head at a time. dq, dk, dv [N, C] are WRITTEN,
/// not added to (every element belongs to exactly one sequence and head): dV = P'ᵀ · dout (P' the
/// probabilities after dropout), dQ = dS · K, dK = dSᵀ · Q. dscores[Σ NH L_b²] is scratch. With a
/// `bias` that has a gradient buffer, the scores' gradient is added to it.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func attentionBackward<T: KernelScalar>(dq: UnsafeMutablePointer<T>, dk: UnsafeMutablePointer<T>, dv: UnsafeMutablePointer<T>,
                                               dscores: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                               probs: UnsafePointer<T>, probsDropped: UnsafePointer<T>, mask: UnsafePointer<UInt8>,
                                               q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>, dropoutProbability: Double,
                                               bias: AttentionBias<T>? = nil, starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>, B: Int, C: Int, NH: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .attention) }
    let HS = C / NH
    let scale = 1 / T(HS).squareRoot()
    let dropped = dropoutProbability > 0
    let dropScale = T(1 / (1 - dropoutProbability))
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        for h in 0..<NH {
            let o = offsets[b] + h * L * L
            let dP = dscores + o
            let at = s * C + h * HS
            let dO = dout + at
            T.gemm(transA: false, transB: true, m: L, n: L, k: HS, alpha: 1, a: dO, lda: C, b: v + at, ldb: C, beta: 0, c: dP, ldc: L)
            T.gemm(transA: true, transB: false, m: L, n: HS, k: L, alpha: 1, a: (dropped ? probsDropped : probs) + o, lda: L,
                   b: dO, ldb: C, beta: 0, c: dv + at, ldc: C)
            if dropped { scaleByMask(dP, dP, mask + o, dropScale, L * L) }
            // The scale folds into the softmax backward, except when the bias needs the unscaled dS.
            let biasGradient = bias?.gradient
            softmaxRowsBackward(dP, probs: probs + o, rows: L, length: L, scale: biasGradient == nil ? scale : 1)
            if let bias, let biasGradient {
                let head = biasGradient + h * bias.stride * bias.stride
                for i in 0..<L { for j in 0..<L { head[i * bias.stride + j] += dP[i * L + j] } }
            }
            let alpha = biasGradient == nil ? 1 : scale
            T.gemm(transA: false, transB: false, m: L, n: HS, k: L, alpha: alpha, a: dP, lda: L, b: k + at, ldb: C, beta: 0, c: dq + at, ldc: C)
            T.gemm(transA: true, transB: false, m: L, n: HS, k: L, alpha: alpha, a: dP, lda: L, b: q + at, ldb: C, beta: 0, c: dk + at, ldc: C)
        }
    }
}

/// Softmax of each of `rows` rows of `length`, in place.
@inline(__always)
func softmaxRows<T: KernelScalar>(_ x: UnsafeMutablePointer<T>, rows: Int, length L: Int) {
    for i in 0..<rows {
        let row = x + i * L
        let maxScore = rowMax(row, L)
        for j in 0..<L { row[j] = T.kernelExp(row[j] - maxScore) }
        let inv = 1 / rowDot(row, nil, L)
        for j in 0..<L { row[j] *= inv }
    }
}

/// From dP (d loss / d softmax output) to the scores' gradient, in place: dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik) · scale.
/// Rows lie `stride` apart (default: `length`).
@inline(__always)
func softmaxRowsBackward<T: KernelScalar>(_ dp: UnsafeMutablePointer<T>, probs: UnsafePointer<T>, rows: Int, length L: Int, scale: T,
                                          stride: Int? = nil) {
    let stride = stride ?? L
    for i in 0..<rows {
        let p = probs + i * stride, d = dp + i * stride
        let dot = rowDot(p, d, L)
        for j in 0..<L { d[j] = p[j] * (d[j] - dot) * scale }
    }
}
