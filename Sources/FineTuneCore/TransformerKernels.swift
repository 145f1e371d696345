// Kernels of the BERT encoder, in the conventions of Kernels.swift.
//
// Token batches are *packed*: the B sequences of a batch lie one after another, N = Σ L_b tokens in
// all, sequence b at rows [starts[b], starts[b + 1]) (B + 1 starts). No padding is stored or
// computed, so each sequence attends over exactly its own tokens: the same as a padded batch with
// an attention mask, without the padded work.
// Shape letters: N tokens, C channels, NH heads, HS = C / NH head size, F feed-forward width,
// V vocabulary, P positions, TV token types, B sequences, L_b length of sequence b.

import RealModule

// MARK: Embeddings

/// out[N, C] = wte[ids[n]] + wpe[n - starts[b]] + wtt[types[n]]
@inlinable
public func embeddingForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, ids: UnsafePointer<Int32>, types: UnsafePointer<Int32>,
                                              starts: UnsafePointer<Int>, wte: UnsafePointer<T>, wpe: UnsafePointer<T>,
                                              wtt: UnsafePointer<T>, B: Int, C: Int) {
    for b in 0..<B {
        for n in starts[b]..<starts[b + 1] {
            let w = wte + Int(ids[n]) * C, p = wpe + (n - starts[b]) * C, t = wtt + Int(types[n]) * C, o = out + n * C
            for c in 0..<C { o[c] = w[c] + p[c] + t[c] }
        }
    }
}

/// dwte[ids[n]] += dout[n];  dwpe[position] += dout[n];  dwtt[types[n]] += dout[n]
@inlinable
public func embeddingBackward<T: KernelScalar>(dwte: UnsafeMutablePointer<T>, dwpe: UnsafeMutablePointer<T>, dwtt: UnsafeMutablePointer<T>,
                                               dout: UnsafePointer<T>, ids: UnsafePointer<Int32>, types: UnsafePointer<Int32>,
                                               starts: UnsafePointer<Int>, B: Int, C: Int) {
    for b in 0..<B {
        for n in starts[b]..<starts[b + 1] {
            let d = dout + n * C, w = dwte + Int(ids[n]) * C, p = dwpe + (n - starts[b]) * C, t = dwtt + Int(types[n]) * C
            for c in 0..<C { w[c] += d[c]; p[c] += d[c]; t[c] += d[c] }
        }
    }
}

// MARK: Row reductions

// Sums over a row with eight independent accumulators: a single running sum waits on each add's
// latency (64-token softmax rows and 384-channel LayerNorm rows are latency-bound that way), while
// eight partial sums vectorise. The order of additions is fixed, so results stay deterministic.

/// Σ x[i] · y[i] over n elements (y = nil: Σ x[i]).
@inlinable @inline(__always)
public func rowDot<T: KernelScalar>(_ x: UnsafePointer<T>, _ y: UnsafePointer<T>?, _ n: Int) -> T {
    var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0, s4: T = 0, s5: T = 0, s6: T = 0, s7: T = 0
    var i = 0
    if let y {
        while i + 8 <= n {
            s0 += x[i] * y[i]; s1 += x[i + 1] * y[i + 1]; s2 += x[i + 2] * y[i + 2]; s3 += x[i + 3] * y[i + 3]
            s4 += x[i + 4] * y[i + 4]; s5 += x[i + 5] * y[i + 5]; s6 += x[i + 6] * y[i + 6]; s7 += x[i + 7] * y[i + 7]
            i += 8
        }
        while i < n { s0 += x[i] * y[i]; i += 1 }
    } else {
        while i + 8 <= n {
            s0 += x[i]; s1 += x[i + 1]; s2 += x[i + 2]; s3 += x[i + 3]
            s4 += x[i + 4]; s5 += x[i + 5]; s6 += x[i + 6]; s7 += x[i + 7]
            i += 8
        }
        while i < n { s0 += x[i]; i += 1 }
    }
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

/// max of x[0..<n], n ≥ 1, over four running maxima. (A NaN in a softmax row makes the row NaN
/// through exp and the sum whether or not the max sees it.)
@inlinable @inline(__always)
public func rowMax<T: KernelScalar>(_ x: UnsafePointer<T>, _ n: Int) -> T {
    var m0 = x[0], m1 = x[0], m2 = x[0], m3 = x[0]
    var i = 0
    while i + 4 <= n {
        m0 = Swift.max(m0, x[i]); m1 = Swift.max(m1, x[i + 1]); m2 = Swift.max(m2, x[i + 2]); m3 = Swift.max(m3, x[i + 3])
        i += 4
    }
    while i < n { m0 = Swift.max(m0, x[i]); i += 1 }
    return Swift.max(Swift.max(m0, m1), Swift.max(m2, m3))
}

// MARK: Residual

/// out[N] = a + b   (backward: the gradient of out flows unchanged to both a and b)
@inlinable
public func residualForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, a: UnsafePointer<T>, b: UnsafePointer<T>, N: Int) {
    for i in 0..<N { out[i] = a[i] + b[i] }
}

// MARK: LayerNorm

/// out[N, C] = (inp - mean) / √(var + eps) · weight + bias, per row; mean[N] and rstd[N] saved for backward.
@inlinable
public func layerNormForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>, rstd: UnsafeMutablePointer<T>,
                                              inp: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
                                              eps: T, N: Int, C: Int) {
    for n in 0..<N {
        let x = inp + n * C, o = out + n * C
        let m = rowDot(x, nil, C) / T(C)
        // Centred values go through `o` so the variance is a plain dot product.
        for c in 0..<C { o[c] = x[c] - m }
        let v = rowDot(o, o, C) / T(C)
        let s = 1 / (v + eps).squareRoot()
        for c in 0..<C { o[c] = o[c] * s * weight[c] + bias[c] }
        mean[n] = m
        rstd[n] = s
    }
}

/// dinp[N, C] += ∂/∂inp;  dweight[C] += Σ dout · x̂;  dbias[C] += Σ dout
@inlinable
public func layerNormBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dweight: UnsafeMutablePointer<T>, dbias: UnsafeMutablePointer<T>,
                                               dout: UnsafePointer<T>, inp: UnsafePointer<T>, weight: UnsafePointer<T>,
                                               mean: UnsafePointer<T>, rstd: UnsafePointer<T>, N: Int, C: Int) {
    for n in 0..<N {
        let x = inp + n * C, d = dout + n * C, dx = dinp + n * C
        let m = mean[n], s = rstd[n]
        // Σ dnorm and Σ dnorm · norm, with dnorm = weight · d and norm = (x - m) · s, in eight lanes.
        var a0: T = 0, a1: T = 0, a2: T = 0, a3: T = 0, b0: T = 0, b1: T = 0, b2: T = 0, b3: T = 0
        var c = 0
        while c + 4 <= C {
            let d0 = weight[c] * d[c], d1 = weight[c + 1] * d[c + 1], d2 = weight[c + 2] * d[c + 2], d3 = weight[c + 3] * d[c + 3]
            a0 += d0; a1 += d1; a2 += d2; a3 += d3
            b0 += d0 * ((x[c] - m) * s); b1 += d1 * ((x[c + 1] - m) * s); b2 += d2 * ((x[c + 2] - m) * s); b3 += d3 * ((x[c + 3] - m) * s)
            c += 4
        }
        while c < C { let dn = weight[c] * d[c]; a0 += dn; b0 += dn * ((x[c] - m) * s); c += 1 }
        let dnormMean = ((a0 + a1) + (a2 + a3)) / T(C)
        let dnormNormMean = ((b0 + b1) + (b2 + b3)) / T(C)
        for c in 0..<C {
            let norm = (x[c] - m) * s
            let dnorm = weight[c] * d[c]
            dbias[c] += d[c]
            dweight[c] += norm * d[c]
            dx[c] += (dnorm - dnormMean - norm * dnormNormMean) * s
        }
    }
}

// MARK: Activations

/// out[N] = 0.5 · x · (1 + tanh(√(2/π) (x + 0.044715 x³)))   (transformers' "gelu_new")
@inlinable
public func geluTanhForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    let k = T.sqrt(2 / T.pi)
    for i in 0..<N {
        let x = inp[i]
        out[i] = x * (1 + T.tanh(k * (x + T(0.044715) * x * x * x))) / 2
    }
}

@inlinable
public func geluTanhBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, inp: UnsafePointer<T>, N: Int) {
    let k = T.sqrt(2 / T.pi)
    for i in 0..<N {
        let x = inp[i]
        let u = k * (x + T(0.044715) * x * x * x)
        let t = T.tanh(u)
        let du = k * (1 + 3 * T(0.044715) * x * x)
        dinp[i] += dout[i] * ((1 + t) / 2 + x * (1 - t * t) * du / 2)
    }
}

/// out[N] = tanh(inp)
@inlinable
public func tanhForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    for i in 0..<N { out[i] = T.tanh(inp[i]) }
}

/// dinp[N] += dout · (1 - out²)   (from the forward output)
@inlinable
public func tanhBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, out: UnsafePointer<T>, N: Int) {
    for i in 0..<N { dinp[i] += dout[i] * (1 - out[i] * out[i]) }
}

// MARK: Attention

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

/// Multi-head self-attention over packed sequences, one sequence and head at a time, so each head's
/// L_b² scores are used while they are in cache:
/// out[N, C] (head h in channels [h·HS, (h+1)·HS)) = dropout(softmax(Q_h K_hᵀ / √HS)) V_h per sequence,
/// with q, k, v [N, C]. probs[Σ NH L_b²] receives the softmax at offsets[b] + h·L_b²; with `dropout`,
/// probsDropped and mask receive the dropped-out probabilities and the mask (the one `dropoutForward`
/// draws over the sequence's NH·L_b² scores); without, P·V uses probs and the two are not touched.
@inlinable
public func attentionForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, probs: UnsafeMutablePointer<T>,
                                              probsDropped: UnsafeMutablePointer<T>, mask: UnsafeMutablePointer<UInt8>,
                                              q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>, dropout: AttentionDropout?,
                                              starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>, B: Int, C: Int, NH: Int) {
    let HS = C / NH
    let scale = 1 / T(HS).squareRoot()
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        let rowKey = dropout.map { $0.key.row(exampleIndex: $0.exampleIndices[b]) }
        for h in 0..<NH {
            let o = offsets[b] + h * L * L
            let P = probs + o
            T.gemm(transA: false, transB: true, m: L, n: L, k: HS, alpha: scale, a: q + s * C + h * HS, lda: C,
                   b: k + s * C + h * HS, ldb: C, beta: 0, c: P, ldc: L)
            softmaxRows(P, rows: L, length: L)
            var used = UnsafePointer(P)
            if let dropout, let rowKey {
                dropoutForwardSpan(out: probsDropped + o, mask: mask + o, inp: P, count: L * L, firstElement: h * L * L,
                                   rowKey: rowKey, probability: dropout.probability, scale: T(1 / (1 - dropout.probability)))
                used = UnsafePointer(probsDropped + o)
            }
            T.gemm(transA: false, transB: false, m: L, n: HS, k: L, alpha: 1, a: used, lda: L,
                   b: v + s * C + h * HS, ldb: C, beta: 0, c: out + s * C + h * HS, ldc: C)
        }
    }
}

/// Backward of `attentionForward`, one sequence and head at a time: dv[N, C] += P'ᵀ · dout (P' the
/// probabilities after dropout), dq[N, C] += dS · K, dk[N, C] += dSᵀ · Q. dscores[Σ NH L_b²] is scratch.
@inlinable
public func attentionBackward<T: KernelScalar>(dq: UnsafeMutablePointer<T>, dk: UnsafeMutablePointer<T>, dv: UnsafeMutablePointer<T>,
                                               dscores: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                               probs: UnsafePointer<T>, probsDropped: UnsafePointer<T>, mask: UnsafePointer<UInt8>,
                                               q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>, dropoutProbability: Double,
                                               starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>, B: Int, C: Int, NH: Int) {
    let HS = C / NH
    let scale = 1 / T(HS).squareRoot()
    let dropped = dropoutProbability > 0
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        for h in 0..<NH {
            let o = offsets[b] + h * L * L
            let dP = dscores + o
            T.gemm(transA: false, transB: true, m: L, n: L, k: HS, alpha: 1, a: dout + s * C + h * HS, lda: C,
                   b: v + s * C + h * HS, ldb: C, beta: 0, c: dP, ldc: L)
            T.gemm(transA: true, transB: false, m: L, n: HS, k: L, alpha: 1, a: (dropped ? probsDropped : probs) + o, lda: L,
                   b: dout + s * C + h * HS, ldb: C, beta: 1, c: dv + s * C + h * HS, ldc: C)
            if dropped { dropoutGradient(dinp: dP, dout: dP, mask: mask + o, probability: dropoutProbability, N: L * L) }
            softmaxRowsBackward(dP, probs: probs + o, rows: L, length: L, scale: scale)
            T.gemm(transA: false, transB: false, m: L, n: HS, k: L, alpha: 1, a: dP, lda: L,
                   b: k + s * C + h * HS, ldb: C, beta: 1, c: dq + s * C + h * HS, ldc: C)
            T.gemm(transA: true, transB: false, m: L, n: HS, k: L, alpha: 1, a: dP, lda: L,
                   b: q + s * C + h * HS, ldb: C, beta: 1, c: dk + s * C + h * HS, ldc: C)
        }
    }
}

/// Softmax of each of `rows` rows of `length`, in place.
@inlinable @inline(__always)
public func softmaxRows<T: KernelScalar>(_ x: UnsafeMutablePointer<T>, rows: Int, length L: Int) {
    for i in 0..<rows {
        let row = x + i * L
        let maxScore = rowMax(row, L)
        for j in 0..<L { row[j] = T.kernelExp(row[j] - maxScore) }
        let inv = 1 / rowDot(row, nil, L)
        for j in 0..<L { row[j] *= inv }
    }
}

/// From dP (d loss / d softmax output) to the scores' gradient, in place: dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik) · scale.
@inlinable @inline(__always)
public func softmaxRowsBackward<T: KernelScalar>(_ dp: UnsafeMutablePointer<T>, probs: UnsafePointer<T>, rows: Int, length L: Int, scale: T) {
    for i in 0..<rows {
        let p = probs + i * L, d = dp + i * L
        let dot = rowDot(p, d, L)
        for j in 0..<L { d[j] = p[j] * (d[j] - dot) * scale }
    }
}

// MARK: Pooling

/// out[B, C] = mean of each sequence's rows of inp[N, C]   (sentence-transformers' mean pooling)
@inlinable
public func meanPoolForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, starts: UnsafePointer<Int>, B: Int, C: Int) {
    for b in 0..<B {
        let o = out + b * C
        for c in 0..<C { o[c] = 0 }
        let L = starts[b + 1] - starts[b]
        guard L > 0 else { continue }
        for n in starts[b]..<starts[b + 1] { for c in 0..<C { o[c] += inp[n * C + c] } }
        let inv = 1 / T(L)
        for c in 0..<C { o[c] *= inv }
    }
}

/// dinp[N, C] += dout[b] / L_b for each row of sequence b
@inlinable
public func meanPoolBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, starts: UnsafePointer<Int>, B: Int, C: Int) {
    for b in 0..<B {
        let L = starts[b + 1] - starts[b]
        guard L > 0 else { continue }
        let inv = 1 / T(L)
        for n in starts[b]..<starts[b + 1] { for c in 0..<C { dinp[n * C + c] += dout[b * C + c] * inv } }
    }
}

/// out[B, C] = inp[starts[b]]   (the [CLS] row of each sequence)
@inlinable
public func firstTokenForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, starts: UnsafePointer<Int>, B: Int, C: Int) {
    for b in 0..<B { (out + b * C).update(from: inp + starts[b] * C, count: C) }
}

/// dinp[starts[b]] += dout[b]
@inlinable
public func firstTokenBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, starts: UnsafePointer<Int>, B: Int, C: Int) {
    for b in 0..<B { for c in 0..<C { dinp[starts[b] * C + c] += dout[b * C + c] } }
}
