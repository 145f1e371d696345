// Kernels of contrastive sentence-embedding losses (MultipleNegativesRankingLoss / InfoNCE, as
// sentence-transformers computes them): unit vectors by L2 normalisation, then scaled cosine
// scores of anchors against candidates, whose softmax cross-entropy (Losses.swift) is the loss.
// Shapes: N rows of width D; A anchors, K candidates; scores [A, K].

/// out[N, D] = x / max(‖x‖, eps) per row, norms[N] = ‖x‖ (torch's F.normalize, eps 1e-12).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func l2NormalizeForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, norms: UnsafeMutablePointer<T>, inp: UnsafePointer<T>,
                                                N: Int, D: Int, eps: T = 1e-12) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for n in 0..<N {
        let x = inp + n * D, y = out + n * D
        var sum: T = 0
        for d in 0..<D { sum += x[d] * x[d] }
        let norm = T.sqrt(sum)
        norms[n] = norm
        let inverse = 1 / max(norm, eps)
        for d in 0..<D { y[d] = x[d] * inverse }
    }
}

/// dinp[N, D] += (dout − y·(y·dout)) / ‖x‖ per row (y the normalised row); where ‖x‖ ≤ eps the
/// forward pass divided by the constant eps: dinp += dout / eps.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func l2NormalizeBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, out: UnsafePointer<T>,
                                                 norms: UnsafePointer<T>, N: Int, D: Int, eps: T = 1e-12) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for n in 0..<N {
        let y = out + n * D, g = dout + n * D, dx = dinp + n * D
        guard norms[n] > eps else {
            for d in 0..<D { dx[d] += g[d] / eps }
            continue
        }
        var dot: T = 0
        for d in 0..<D { dot += y[d] * g[d] }
        let inverse = 1 / norms[n]
        for d in 0..<D { dx[d] += (g[d] - y[d] * dot) * inverse }
    }
}

/// scores[A, K] = scale · anchors[A, D] · candidates[K, D]ᵀ (cosine similarities times the scale
/// when both are unit rows).
public func scaledScoresForward<T: KernelScalar>(scores: UnsafeMutablePointer<T>, anchors: UnsafePointer<T>, candidates: UnsafePointer<T>,
                                                 scale: T, A: Int, K: Int, D: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    T.gemm(transA: false, transB: true, m: A, n: K, k: D, alpha: scale, a: anchors, lda: D, b: candidates, ldb: D, beta: 0, c: scores, ldc: K)
}

/// danchors[A, D] += scale · dscores · candidates; dcandidates[K, D] += scale · dscoresᵀ · anchors
/// (either may be nil when its gradient is not needed).
public func scaledScoresBackward<T: KernelScalar>(danchors: UnsafeMutablePointer<T>?, dcandidates: UnsafeMutablePointer<T>?,
                                                  dscores: UnsafePointer<T>, anchors: UnsafePointer<T>, candidates: UnsafePointer<T>,
                                                  scale: T, A: Int, K: Int, D: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    if let danchors {
        T.gemm(transA: false, transB: false, m: A, n: D, k: K, alpha: scale, a: dscores, lda: K, b: candidates, ldb: D, beta: 1, c: danchors, ldc: D)
    }
    if let dcandidates {
        T.gemm(transA: true, transB: false, m: K, n: D, k: A, alpha: scale, a: dscores, lda: K, b: anchors, ldb: D, beta: 1, c: dcandidates, ldc: D)
    }
}
