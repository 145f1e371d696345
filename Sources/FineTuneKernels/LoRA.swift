// LoRA (Hu et al. 2021; PEFT's lora.Linear): a frozen linear layer W plus a trained low-rank
// update scale·B·A, so y = x·Wᵀ + b + scale·(x·Aᵀ)·Bᵀ. Shapes: B rows, C inputs, OC outputs,
// R the rank; A [R, C], B [OC, R] (PyTorch layout), scale = alpha / R. Dropout on x, when used,
// is applied by the caller (the input here is the dropped x).

/// h[B, R] = inp[B, C]·Aᵀ;  out[B, OC] += scale·h·Bᵀ  (out already holds x·Wᵀ + b)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func loraForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, h: UnsafeMutablePointer<T>, inp: UnsafePointer<T>,
                                         a: UnsafePointer<T>, b: UnsafePointer<T>, scale: T, B: Int, C: Int, OC: Int, R: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .linear) }
    guard B > 0 else { return }
    T.gemm(transA: false, transB: true, m: B, n: R, k: C, alpha: 1, a: inp, lda: C, b: a, ldb: C, beta: 0, c: h, ldc: R)
    T.gemm(transA: false, transB: true, m: B, n: OC, k: R, alpha: scale, a: h, lda: R, b: b, ldb: R, beta: 1, c: out, ldc: OC)
}

/// db[OC, R] += scale·doutᵀ·h;  dh[B, R] = scale·dout·B;  da[R, C] += dhᵀ·inp;  dinp[B, C] += dh·A
/// (or = with `overwritingInput`; skipped when nil). `dh` is scratch.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func loraBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>?, da: UnsafeMutablePointer<T>, db: UnsafeMutablePointer<T>,
                                          dh: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, h: UnsafePointer<T>, inp: UnsafePointer<T>,
                                          a: UnsafePointer<T>, b: UnsafePointer<T>, scale: T, B: Int, C: Int, OC: Int, R: Int,
                                          overwritingInput: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .linear) }
    guard B > 0 else { return }
    T.gemm(transA: true, transB: false, m: OC, n: R, k: B, alpha: scale, a: dout, lda: OC, b: h, ldb: R, beta: 1, c: db, ldc: R)
    T.gemm(transA: false, transB: false, m: B, n: R, k: OC, alpha: scale, a: dout, lda: OC, b: b, ldb: R, beta: 0, c: dh, ldc: R)
    T.gemm(transA: true, transB: false, m: R, n: C, k: B, alpha: 1, a: dh, lda: R, b: inp, ldb: C, beta: 1, c: da, ldc: C)
    if let dinp {
        T.gemm(transA: false, transB: false, m: B, n: C, k: R, alpha: 1, a: dh, lda: R, b: a, ldb: C, beta: overwritingInput ? 0 : 1, c: dinp, ldc: C)
    }
}
