// Elementwise activations (shape legend in Linear.swift).

/// out[N] = max(inp, 0)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func reluForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for i in 0..<N { out[i] = inp[i] > 0 ? inp[i] : 0 }
}

/// dinp[N] += dout where inp > 0
@_specialize(where T == Float)
@_specialize(where T == Double)
public func reluBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                          inp: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for i in 0..<N where inp[i] > 0 { dinp[i] += dout[i] }
}

/// out[N] = x · Φ(x) = 0.5 · x · (1 + erf(x / √2))   (the exact "gelu" of BERT and PyTorch)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func geluForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .gelu) }
    let invSqrt2 = 1 / T.sqrt(2)
    for i in 0..<N {
        let x = inp[i]
        out[i] = x * (1 + T.kernelErf(x * invSqrt2)) / 2
    }
}

/// The same, also saving slope[N] = Φ(x) + x · φ(x), GELU's derivative, for `geluBackward(..., slope:)`:
/// Φ and φ share one exponential here, and backward needs none.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func geluForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, slope: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .gelu) }
    for i in 0..<N {
        let x = inp[i]
        let (cdf, pdf) = T.kernelNormal(x)
        out[i] = x * cdf
        slope[i] = cdf + x * pdf
    }
}

/// dinp[N] += dout · slope, with the slope saved by the forward pass (`overwritingInput`: dinp = dout · slope).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func geluBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, slope: UnsafePointer<T>, N: Int,
                                          overwritingInput: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .gelu) }
    if overwritingInput {
        for i in 0..<N { dinp[i] = dout[i] * slope[i] }
    } else {
        for i in 0..<N { dinp[i] += dout[i] * slope[i] }
    }
}

/// dinp[N] += dout · (Φ(x) + x · φ(x))
@_specialize(where T == Float)
@_specialize(where T == Double)
public func geluBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                          inp: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .gelu) }
    let invSqrt2 = 1 / T.sqrt(2)
    let invSqrt2Pi = 1 / T.sqrt(2 * T.pi)
    for i in 0..<N {
        let x = inp[i]
        let cdf = (1 + T.kernelErf(x * invSqrt2)) / 2
        let pdf = T.kernelExp(-x * x / 2) * invSqrt2Pi
        dinp[i] += dout[i] * (cdf + x * pdf)
    }
}

/// out[N] = 0.5 · x · (1 + tanh(√(2/π) (x + 0.044715 x³)))   (transformers' "gelu_new")
@_specialize(where T == Float)
@_specialize(where T == Double)
public func geluTanhForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .gelu) }
    let k = T.sqrt(2 / T.pi)
    for i in 0..<N {
        let x = inp[i]
        out[i] = x * (1 + T.tanh(k * (x + T(0.044715) * x * x * x))) / 2
    }
}

/// dinp[N] += dout · d gelu_new(x)/dx  (`overwritingInput`: dinp = ...)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func geluTanhBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, inp: UnsafePointer<T>, N: Int,
                                              overwritingInput: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .gelu) }
    let k = T.sqrt(2 / T.pi)
    for i in 0..<N {
        let x = inp[i]
        let u = k * (x + T(0.044715) * x * x * x)
        let t = T.tanh(u)
        let du = k * (1 + 3 * T(0.044715) * x * x)
        let d = dout[i] * ((1 + t) / 2 + x * (1 - t * t) * du / 2)
        dinp[i] = overwritingInput ? d : dinp[i] + d
    }
}

/// out[N] = tanh(inp)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func tanhForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for i in 0..<N { out[i] = T.tanh(inp[i]) }
}

/// dinp[N] += dout · (1 - out²)   (from the forward output; `overwritingInput`: dinp = ...)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func tanhBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, out: UnsafePointer<T>, N: Int,
                                          overwritingInput: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for i in 0..<N {
        let d = dout[i] * (1 - out[i] * out[i])
        dinp[i] = overwritingInput ? d : dinp[i] + d
    }
}
