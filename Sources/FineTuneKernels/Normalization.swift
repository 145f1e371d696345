// LayerNorm and the row reductions it and softmax share (shape legend in Linear.swift).

// Sums over a row with eight independent accumulators: a single running sum waits on each add's
// latency (64-token softmax rows and 384-channel LayerNorm rows are latency-bound that way), while
// eight partial sums vectorise. The order of additions is fixed, so results stay deterministic.

/// Σ x[i] · y[i] over n elements (y = nil: Σ x[i]).
@inline(__always)
func rowDot<T: KernelScalar>(_ x: UnsafePointer<T>, _ y: UnsafePointer<T>?, _ n: Int) -> T {
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
@inline(__always)
func rowMax<T: KernelScalar>(_ x: UnsafePointer<T>, _ n: Int) -> T {
    var m0 = x[0], m1 = x[0], m2 = x[0], m3 = x[0]
    var i = 0
    while i + 4 <= n {
        m0 = Swift.max(m0, x[i]); m1 = Swift.max(m1, x[i + 1]); m2 = Swift.max(m2, x[i + 2]); m3 = Swift.max(m3, x[i + 3])
        i += 4
    }
    while i < n { m0 = Swift.max(m0, x[i]); i += 1 }
    return Swift.max(Swift.max(m0, m1), Swift.max(m2, m3))
}

/// out[N, C] = (inp - mean) / √(var + eps) · weight + bias, per row; mean[N] and rstd[N] saved for backward.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func layerNormForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>, rstd: UnsafeMutablePointer<T>,
                                              inp: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
                                              eps: T, N: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .layerNorm) }
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

/// dinp[N, C] += ∂/∂inp;  dweight[C] += Σ dout · x̂;  dbias[C] += Σ dout.
/// With `overwritingInput`, dinp = ∂/∂inp instead (no zeroing first).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func layerNormBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dweight: UnsafeMutablePointer<T>, dbias: UnsafeMutablePointer<T>,
                                               dout: UnsafePointer<T>, inp: UnsafePointer<T>, weight: UnsafePointer<T>,
                                               mean: UnsafePointer<T>, rstd: UnsafePointer<T>, N: Int, C: Int,
                                               overwritingInput: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .layerNorm) }
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
            let g = (dnorm - dnormMean - norm * dnormNormMean) * s
            dx[c] = overwritingInput ? g : dx[c] + g
        }
    }
}
