// Token embeddings over packed sequences (shape legend in Linear.swift): the B sequences of a
// batch lie one after another, N = Σ L_b tokens in all, sequence b at rows [starts[b], starts[b + 1]).
// Position t of a sequence reads row t + positionOffset of wpe (BERT 0; RoBERTa and MPNet count
// from padding_idx + 1); families without token types pass no wtt.

/// out[N, C] = wte[ids[n]] + wpe[n - starts[b] + positionOffset] (+ wtt[types[n]])   (wte [V, C], wpe [P, C], wtt [TV, C])
@_specialize(where T == Float)
@_specialize(where T == Double)
public func embeddingForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, ids: UnsafePointer<Int32>, types: UnsafePointer<Int32>,
                                              starts: UnsafePointer<Int>, wte: UnsafePointer<T>, wpe: UnsafePointer<T>,
                                              wtt: UnsafePointer<T>?, positionOffset: Int = 0, B: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .embeddings) }
    for b in 0..<B {
        for n in starts[b]..<starts[b + 1] {
            let w = wte + Int(ids[n]) * C, p = wpe + (n - starts[b] + positionOffset) * C, o = out + n * C
            if let wtt {
                let t = wtt + Int(types[n]) * C
                for c in 0..<C { o[c] = w[c] + p[c] + t[c] }
            } else {
                for c in 0..<C { o[c] = w[c] + p[c] }
            }
        }
    }
}

/// dwte[ids[n]] += dout[n];  dwpe[position + positionOffset] += dout[n];  dwtt[types[n]] += dout[n]
@_specialize(where T == Float)
@_specialize(where T == Double)
public func embeddingBackward<T: KernelScalar>(dwte: UnsafeMutablePointer<T>, dwpe: UnsafeMutablePointer<T>, dwtt: UnsafeMutablePointer<T>?,
                                               dout: UnsafePointer<T>, ids: UnsafePointer<Int32>, types: UnsafePointer<Int32>,
                                               starts: UnsafePointer<Int>, positionOffset: Int = 0, B: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .embeddings) }
    for b in 0..<B {
        for n in starts[b]..<starts[b + 1] {
            let d = dout + n * C, w = dwte + Int(ids[n]) * C, p = dwpe + (n - starts[b] + positionOffset) * C
            if let dwtt {
                let t = dwtt + Int(types[n]) * C
                for c in 0..<C { w[c] += d[c]; p[c] += d[c]; t[c] += d[c] }
            } else {
                for c in 0..<C { w[c] += d[c]; p[c] += d[c] }
            }
        }
    }
}
