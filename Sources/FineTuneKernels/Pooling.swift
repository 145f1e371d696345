// Sentence pooling over packed sequences (shape legend in Linear.swift; sequence b is rows
// [starts[b], starts[b + 1]) of inp).

/// out[B, C] = mean of each sequence's rows of inp[N, C]   (sentence-transformers' mean pooling)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func meanPoolForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, starts: UnsafePointer<Int>, B: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
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

/// dinp[N, C] += dout[b] / L_b for each row of sequence b  (`overwritingInput`: dinp = ...)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func meanPoolBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, starts: UnsafePointer<Int>, B: Int, C: Int,
                                              overwritingInput: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for b in 0..<B {
        let L = starts[b + 1] - starts[b]
        guard L > 0 else { continue }
        let inv = 1 / T(L)
        for n in starts[b]..<starts[b + 1] {
            for c in 0..<C {
                let d = dout[b * C + c] * inv
                dinp[n * C + c] = overwritingInput ? d : dinp[n * C + c] + d
            }
        }
    }
}

/// out[B, C] = inp[starts[b]]   (the [CLS] row of each sequence)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func firstTokenForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, starts: UnsafePointer<Int>, B: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for b in 0..<B { (out + b * C).update(from: inp + starts[b] * C, count: C) }
}

/// dinp[starts[b]] += dout[b]
@_specialize(where T == Float)
@_specialize(where T == Double)
public func firstTokenBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, starts: UnsafePointer<Int>, B: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for b in 0..<B { for c in 0..<C { dinp[starts[b] * C + c] += dout[b * C + c] } }
}

/// out[M, C] = inp[rows[m]] for m < M: the rows of chosen tokens (the masked positions of
/// masked-language modelling, so the vocabulary projection runs on those rows only).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func gatherRowsForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, rows: UnsafePointer<Int32>, M: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for m in 0..<M { (out + m * C).update(from: inp + Int(rows[m]) * C, count: C) }
}

/// dinp[rows[m]] += dout[m] (a row chosen twice gets both gradients).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func gatherRowsBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, rows: UnsafePointer<Int32>, M: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for m in 0..<M {
        let target = dinp + Int(rows[m]) * C, source = dout + m * C
        for c in 0..<C { target[c] += source[c] }
    }
}
