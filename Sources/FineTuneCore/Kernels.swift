// Compute kernels, each a forward/backward pair of free functions over raw row-major buffers.
//
// Shape legend: B rows (examples of the local batch), C input channels, OC output channels,
// K classes, N elements of an elementwise tensor.
// Conventions (after llm.c): outputs first, then inputs, then sizes; gradients carry a `d` prefix;
// backward passes ADD into parameter and input gradients (`+=`), which are zeroed once per step.
// A nil input gradient means "not needed" (the first layer has no input gradient).

import RealModule

// MARK: Linear

/// out[B, OC] = inp[B, C] · weight[OC, C]ᵀ + bias[OC]
@inlinable
public func linearForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>,
                                           weight: UnsafePointer<T>, bias: UnsafePointer<T>?,
                                           B: Int, C: Int, OC: Int) {
    if let bias {
        for b in 0..<B { (out + b * OC).update(from: bias, count: OC) }
    }
    guard B > 0 else { return }
    T.gemm(transA: false, transB: true, m: B, n: OC, k: C, alpha: 1, a: inp, lda: C,
           b: weight, ldb: C, beta: bias == nil ? 0 : 1, c: out, ldc: OC)
}

/// dinp[B, C] += dout[B, OC] · weight[OC, C];  dweight[OC, C] += doutᵀ · inp;  dbias[OC] += Σ_B dout
/// With `overwritingInput`, dinp = dout · weight instead: a scratch buffer needs no zeroing first.
@inlinable
public func linearBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>?, dweight: UnsafeMutablePointer<T>,
                                            dbias: UnsafeMutablePointer<T>?, dout: UnsafePointer<T>,
                                            inp: UnsafePointer<T>, weight: UnsafePointer<T>,
                                            B: Int, C: Int, OC: Int, overwritingInput: Bool = false) {
    guard B > 0 else { return }
    if let dinp {
        T.gemm(transA: false, transB: false, m: B, n: C, k: OC, alpha: 1, a: dout, lda: OC,
               b: weight, ldb: C, beta: overwritingInput ? 0 : 1, c: dinp, ldc: C)
    }
    T.gemm(transA: true, transB: false, m: OC, n: C, k: B, alpha: 1, a: dout, lda: OC,
           b: inp, ldb: C, beta: 1, c: dweight, ldc: C)
    if let dbias {
        for b in 0..<B {
            let row = dout + b * OC
            for o in 0..<OC { dbias[o] += row[o] }
        }
    }
}

// MARK: Activations

/// out[N] = max(inp, 0)
@inlinable
public func reluForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    for i in 0..<N { out[i] = inp[i] > 0 ? inp[i] : 0 }
}

/// dinp[N] += dout where inp > 0
@inlinable
public func reluBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                          inp: UnsafePointer<T>, N: Int) {
    for i in 0..<N where inp[i] > 0 { dinp[i] += dout[i] }
}

/// out[N] = x · Φ(x) = 0.5 · x · (1 + erf(x / √2))   (the exact "gelu" of BERT and PyTorch)
@inlinable
public func geluForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    let invSqrt2 = 1 / T.sqrt(2)
    for i in 0..<N {
        let x = inp[i]
        out[i] = x * (1 + T.kernelErf(x * invSqrt2)) / 2
    }
}

/// The same, also saving slope[N] = Φ(x) + x · φ(x), GELU's derivative, for `geluBackward(..., slope:)`:
/// Φ and φ share one exponential here, and backward needs none.
@inlinable
public func geluForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, slope: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    for i in 0..<N {
        let x = inp[i]
        let (cdf, pdf) = T.kernelNormal(x)
        out[i] = x * cdf
        slope[i] = cdf + x * pdf
    }
}

/// dinp[N] += dout · slope, with the slope saved by the forward pass (`overwritingInput`: dinp = dout · slope).
@inlinable
public func geluBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, slope: UnsafePointer<T>, N: Int,
                                          overwritingInput: Bool = false) {
    if overwritingInput {
        for i in 0..<N { dinp[i] = dout[i] * slope[i] }
    } else {
        for i in 0..<N { dinp[i] += dout[i] * slope[i] }
    }
}

/// dinp[N] += dout · (Φ(x) + x · φ(x))
@inlinable
public func geluBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                          inp: UnsafePointer<T>, N: Int) {
    let invSqrt2 = 1 / T.sqrt(2)
    let invSqrt2Pi = 1 / T.sqrt(2 * T.pi)
    for i in 0..<N {
        let x = inp[i]
        let cdf = (1 + T.kernelErf(x * invSqrt2)) / 2
        let pdf = T.kernelExp(-x * x / 2) * invSqrt2Pi
        dinp[i] += dout[i] * (cdf + x * pdf)
    }
}

// MARK: Dropout

/// out = inp · mask / (1 - p), where mask keeps an element with probability 1 - p (p rounded up
/// to a multiple of 1/65536).
/// Example b owns elements [segmentStarts[b], segmentStarts[b + 1]) of the buffers (B + 1 starts);
/// the mask of its element e is a pure function of (seed, step, site, global example index, e),
/// never of the rank or of the example's position in the batch, so a batch computes the same
/// wherever its examples land. `mask` is written for backward.
@inlinable
public func dropoutForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, mask: UnsafeMutablePointer<UInt8>,
                                            inp: UnsafePointer<T>, probability p: Double, key: DropoutKey,
                                            exampleIndices: UnsafePointer<Int>, segmentStarts: UnsafePointer<Int>, B: Int) {
    let scale = T(1 / (1 - p))
    for b in 0..<B {
        let start = segmentStarts[b]
        dropoutForwardSpan(out: out + start, mask: mask + start, inp: inp + start, count: segmentStarts[b + 1] - start,
                           firstElement: 0, rowKey: key.row(exampleIndex: exampleIndices[b]), probability: p, scale: scale)
    }
}

/// `dropoutForward` over `count` consecutive elements of one example's segment, the first being
/// element `firstElement` of the segment (so part of a segment, e.g. one attention head's scores,
/// gets the very mask the whole segment would). out/mask/inp point at that first element.
@inlinable @inline(__always)
public func dropoutForwardSpan<T: KernelScalar>(out: UnsafeMutablePointer<T>, mask: UnsafeMutablePointer<UInt8>, inp: UnsafePointer<T>,
                                                count: Int, firstElement: Int, rowKey: DropoutRowKey, probability p: Double, scale: T) {
    // One 64-bit hash gives four 16-bit uniforms: element e keeps when lane e & 3 of hash e >> 2 is
    // ≥ p · 65536, that is when threshold − 1 − lane is negative (a sign bit: no branches).
    let threshold = UInt64((p * 65536).rounded(.up))
    @inline(__always) func keeps(_ bits: UInt64, _ lane: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: (threshold &- 1 &- ((bits >> (16 * UInt64(lane))) & 0xFFFF)) >> 63)
    }
    @inline(__always) func one(_ i: Int) {
        let e = firstElement + i
        let keep = keeps(rowKey.bits(e >> 2), e & 3)
        mask[i] = keep
        out[i] = inp[i] * (T(keep) * scale)
    }
    var i = 0
    // Up to the first whole block of four, then whole blocks, then the rest.
    while i < count && (firstElement + i) & 3 != 0 { one(i); i += 1 }
    while i + 4 <= count {
        let bits = rowKey.bits((firstElement + i) >> 2)
        for lane in 0..<4 {
            let keep = keeps(bits, lane)
            mask[i + lane] = keep
            out[i + lane] = inp[i + lane] * (T(keep) * scale)
        }
        i += 4
    }
    while i < count { one(i); i += 1 }
}

/// dinp[N] += dout · mask / (1 - p)
@inlinable
public func dropoutBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                             mask: UnsafePointer<UInt8>, probability p: Double, N: Int) {
    let scale = T(1 / (1 - p))
    for i in 0..<N { dinp[i] += dout[i] * (T(mask[i]) * scale) }
}

/// dinp[N] = dout · mask / (1 - p): `dropoutBackward` into a buffer of its own, without zeroing it first.
@inlinable
public func dropoutGradient<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                             mask: UnsafePointer<UInt8>, probability p: Double, N: Int) {
    let scale = T(1 / (1 - p))
    for i in 0..<N { dinp[i] = dout[i] * (T(mask[i]) * scale) }
}

// MARK: Losses

/// Softmax cross-entropy, summed (not averaged) over the B rows: the trainer divides the
/// allreduced gradient sum by the global example count.
/// losses[B] = -log softmax(logits[b])[target[b]];  probs[B, K] = softmax(logits)
@inlinable
public func softmaxCrossEntropyForward<T: KernelScalar>(losses: UnsafeMutablePointer<T>, probs: UnsafeMutablePointer<T>,
                                                        logits: UnsafePointer<T>, targets: UnsafePointer<Int32>,
                                                        B: Int, K: Int) {
    for b in 0..<B {
        let row = logits + b * K, p = probs + b * K
        var maxLogit = row[0]
        for k in 1..<K where row[k] > maxLogit { maxLogit = row[k] }
        var sum: T = 0
        for k in 0..<K { p[k] = T.exp(row[k] - maxLogit); sum += p[k] }
        for k in 0..<K { p[k] /= sum }
        let t = Int(targets[b])
        losses[b] = -(row[t] - maxLogit - T.log(sum))
    }
}

/// dlogits[B, K] += dlosses[b] · (probs - onehot(target))
@inlinable
public func softmaxCrossEntropyBackward<T: KernelScalar>(dlogits: UnsafeMutablePointer<T>, dlosses: UnsafePointer<T>,
                                                         probs: UnsafePointer<T>, targets: UnsafePointer<Int32>,
                                                         B: Int, K: Int) {
    for b in 0..<B {
        let t = Int(targets[b])
        for k in 0..<K {
            let indicator: T = k == t ? 1 : 0
            dlogits[b * K + k] += dlosses[b] * (probs[b * K + k] - indicator)
        }
    }
}

/// Squared error per row: losses[B] = Σ_k (pred[b, k] - target[b, k])²  (K outputs, usually 1)
@inlinable
public func squaredErrorForward<T: KernelScalar>(losses: UnsafeMutablePointer<T>, predictions: UnsafePointer<T>,
                                                 targets: UnsafePointer<T>, B: Int, K: Int) {
    for b in 0..<B {
        var sum: T = 0
        for k in 0..<K { let d = predictions[b * K + k] - targets[b * K + k]; sum += d * d }
        losses[b] = sum
    }
}

/// dpredictions[B, K] += dlosses[b] · 2 (pred - target)
@inlinable
public func squaredErrorBackward<T: KernelScalar>(dpredictions: UnsafeMutablePointer<T>, dlosses: UnsafePointer<T>,
                                                  predictions: UnsafePointer<T>, targets: UnsafePointer<T>,
                                                  B: Int, K: Int) {
    for b in 0..<B {
        for k in 0..<K { dpredictions[b * K + k] += dlosses[b] * 2 * (predictions[b * K + k] - targets[b * K + k]) }
    }
}
