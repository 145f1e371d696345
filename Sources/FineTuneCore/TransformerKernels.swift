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
        var m: T = 0
        for c in 0..<C { m += x[c] }
        m /= T(C)
        var v: T = 0
        for c in 0..<C { let d = x[c] - m; v += d * d }
        v /= T(C)
        let s = 1 / (v + eps).squareRoot()
        for c in 0..<C { o[c] = (x[c] - m) * s * weight[c] + bias[c] }
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
        var dnormMean: T = 0, dnormNormMean: T = 0
        for c in 0..<C {
            let norm = (x[c] - m) * s
            let dnorm = weight[c] * d[c]
            dnormMean += dnorm
            dnormNormMean += dnorm * norm
        }
        dnormMean /= T(C)
        dnormNormMean /= T(C)
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

/// Multi-head self-attention over packed sequences.
/// out[N, C] (head h in channels [h·HS, (h+1)·HS)) = softmax(Q_h K_hᵀ / √HS) V_h for each sequence,
/// with q, k, v [N, C]. probs[Σ NH L_b²] receives the softmax (before dropout) at offsets[b] + h·L_b²;
/// when `dropoutProbs` is given it already holds the dropped-out probabilities to multiply V with
/// (the caller applies dropout between the two halves: see `attentionScores` / `attentionContext`).
@inlinable
public func attentionScores<T: KernelScalar>(probs: UnsafeMutablePointer<T>, q: UnsafePointer<T>, k: UnsafePointer<T>,
                                             starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>, B: Int, C: Int, NH: Int) {
    let HS = C / NH
    let scale = 1 / T(HS).squareRoot()
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        for h in 0..<NH {
            let P = probs + offsets[b] + h * L * L
            T.gemm(transA: false, transB: true, m: L, n: L, k: HS, alpha: scale, a: q + s * C + h * HS, lda: C,
                   b: k + s * C + h * HS, ldb: C, beta: 0, c: P, ldc: L)
            for i in 0..<L {
                let row = P + i * L
                var maxScore = row[0]
                for j in 1..<L where row[j] > maxScore { maxScore = row[j] }
                var sum: T = 0
                for j in 0..<L { row[j] = T.exp(row[j] - maxScore); sum += row[j] }
                let inv = 1 / sum
                for j in 0..<L { row[j] *= inv }
            }
        }
    }
}

/// out[N, C] = P · V per sequence and head, P the (possibly dropped-out) probabilities.
@inlinable
public func attentionContext<T: KernelScalar>(out: UnsafeMutablePointer<T>, probs: UnsafePointer<T>, v: UnsafePointer<T>,
                                              starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>, B: Int, C: Int, NH: Int) {
    let HS = C / NH
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        for h in 0..<NH {
            T.gemm(transA: false, transB: false, m: L, n: HS, k: L, alpha: 1, a: probs + offsets[b] + h * L * L, lda: L,
                   b: v + s * C + h * HS, ldb: C, beta: 0, c: out + s * C + h * HS, ldc: C)
        }
    }
}

/// Backward of `attentionContext`: dprobs = dout · Vᵀ (overwritten), dv[N, C] += Pᵀ · dout.
@inlinable
public func attentionContextBackward<T: KernelScalar>(dprobs: UnsafeMutablePointer<T>, dv: UnsafeMutablePointer<T>,
                                                      dout: UnsafePointer<T>, probs: UnsafePointer<T>, v: UnsafePointer<T>,
                                                      starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>, B: Int, C: Int, NH: Int) {
    let HS = C / NH
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        for h in 0..<NH {
            let o = offsets[b] + h * L * L
            T.gemm(transA: false, transB: true, m: L, n: L, k: HS, alpha: 1, a: dout + s * C + h * HS, lda: C,
                   b: v + s * C + h * HS, ldb: C, beta: 0, c: dprobs + o, ldc: L)
            T.gemm(transA: true, transB: false, m: L, n: HS, k: L, alpha: 1, a: probs + o, lda: L,
                   b: dout + s * C + h * HS, ldb: C, beta: 1, c: dv + s * C + h * HS, ldc: C)
        }
    }
}

/// Backward of `attentionScores`: from dprobs (d loss / d softmax output, overwritten with the
/// scaled score gradient), dq[N, C] += dS · K, dk[N, C] += dSᵀ · Q.
@inlinable
public func attentionScoresBackward<T: KernelScalar>(dq: UnsafeMutablePointer<T>, dk: UnsafeMutablePointer<T>,
                                                     dprobs: UnsafeMutablePointer<T>, probs: UnsafePointer<T>,
                                                     q: UnsafePointer<T>, k: UnsafePointer<T>,
                                                     starts: UnsafePointer<Int>, offsets: UnsafePointer<Int>, B: Int, C: Int, NH: Int) {
    let HS = C / NH
    let scale = 1 / T(HS).squareRoot()
    for b in 0..<B {
        let s = starts[b], L = starts[b + 1] - s
        guard L > 0 else { continue }
        for h in 0..<NH {
            let o = offsets[b] + h * L * L
            // Softmax backward: dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik), times the 1/√HS of the scores.
            for i in 0..<L {
                let p = probs + o + i * L, dp = dprobs + o + i * L
                var dot: T = 0
                for j in 0..<L { dot += p[j] * dp[j] }
                for j in 0..<L { dp[j] = p[j] * (dp[j] - dot) * scale }
            }
            T.gemm(transA: false, transB: false, m: L, n: HS, k: L, alpha: 1, a: dprobs + o, lda: L,
                   b: k + s * C + h * HS, ldb: C, beta: 1, c: dq + s * C + h * HS, ldc: C)
            T.gemm(transA: true, transB: false, m: L, n: HS, k: L, alpha: 1, a: dprobs + o, lda: L,
                   b: q + s * C + h * HS, ldb: C, beta: 1, c: dk + s * C + h * HS, ldc: C)
        }
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
