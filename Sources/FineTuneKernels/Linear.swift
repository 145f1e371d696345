// Compute kernels, each a forward/backward pair of free functions over raw row-major buffers.
//
// Shape legend (all kernel files): B rows (examples of the local batch), N tokens (packed
// sequences) or elements, C input channels, OC output channels, K classes, F feed-forward width,
// NH heads, HS = C / NH head size, V vocabulary, P positions, TV token types.
// Conventions (after llm.c): outputs first, then inputs, then sizes; gradients carry a `d` prefix;
// backward passes ADD into parameter and input gradients (`+=`), which are zeroed once per step,
// except where a kernel says it overwrites. A nil input gradient means "not needed".
//
// Every public kernel is specialised for Float (training) and Double (the finite-difference
// tests) here, in the optimised kernel module: callers in unoptimised modules still run
// optimised code. Each times itself by kind when `KernelProfiler` is on.

/// out[B, OC] = inp[B, C] · weight[OC, C]ᵀ + bias[OC]
@_specialize(where T == Float)
@_specialize(where T == Double)
public func linearForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>,
                                           weight: UnsafePointer<T>, bias: UnsafePointer<T>?,
                                           B: Int, C: Int, OC: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .linear) }
    if let bias {
        for b in 0..<B { (out + b * OC).update(from: bias, count: OC) }
    }
    guard B > 0 else { return }
    T.gemm(transA: false, transB: true, m: B, n: OC, k: C, alpha: 1, a: inp, lda: C,
           b: weight, ldb: C, beta: bias == nil ? 0 : 1, c: out, ldc: OC)
}

/// dinp[B, C] += dout[B, OC] · weight[OC, C];  dweight[OC, C] += doutᵀ · inp;  dbias[OC] += Σ_B dout
/// With `overwritingInput`, dinp = dout · weight instead: a scratch buffer needs no zeroing first.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func linearBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>?, dweight: UnsafeMutablePointer<T>?,
                                            dbias: UnsafeMutablePointer<T>?, dout: UnsafePointer<T>,
                                            inp: UnsafePointer<T>, weight: UnsafePointer<T>,
                                            B: Int, C: Int, OC: Int, overwritingInput: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .linear) }
    guard B > 0 else { return }
    if let dinp {
        T.gemm(transA: false, transB: false, m: B, n: C, k: OC, alpha: 1, a: dout, lda: OC,
               b: weight, ldb: C, beta: overwritingInput ? 0 : 1, c: dinp, ldc: C)
    }
    if let dweight {  // nil: a frozen weight (LoRA's base), no product at all
        T.gemm(transA: true, transB: false, m: OC, n: C, k: B, alpha: 1, a: dout, lda: OC,
               b: inp, ldb: C, beta: 1, c: dweight, ldc: C)
    }
    if let dbias {
        for b in 0..<B {
            let row = dout + b * OC
            for o in 0..<OC { dbias[o] += row[o] }
        }
    }
}
