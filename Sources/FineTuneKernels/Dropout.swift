// Dropout (shape legend in Linear.swift).

/// out = inp · mask / (1 - p), where mask keeps an element with probability 1 - p (p rounded up
/// to a multiple of 1/65536).
/// Example b owns elements [segmentStarts[b], segmentStarts[b + 1]) of the buffers (B + 1 starts);
/// the mask of its element e is a pure function of (seed, step, site, global example index, e),
/// never of the rank or of the example's position in the batch, so a batch computes the same
/// wherever its examples land. `mask` is written for backward.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func dropoutForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, mask: UnsafeMutablePointer<UInt8>,
                                            inp: UnsafePointer<T>, probability p: Double, key: DropoutKey,
                                            exampleIndices: UnsafePointer<Int>, segmentStarts: UnsafePointer<Int>, B: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .dropout) }
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
@inline(__always)
func dropoutForwardSpan<T: KernelScalar>(out: UnsafeMutablePointer<T>, mask: UnsafeMutablePointer<UInt8>, inp: UnsafePointer<T>,
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
@_specialize(where T == Float)
@_specialize(where T == Double)
public func dropoutBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                             mask: UnsafePointer<UInt8>, probability p: Double, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .dropout) }
    let scale = T(1 / (1 - p))
    for i in 0..<N { dinp[i] += dout[i] * (T(mask[i]) * scale) }
}

/// dinp[N] = dout · mask / (1 - p): `dropoutBackward` into a buffer of its own, without zeroing it
/// first (dinp may be dout itself).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func dropoutGradient<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                             mask: UnsafePointer<UInt8>, probability p: Double, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .dropout) }
    scaleByMask(dinp, dout, mask, T(1 / (1 - p)), N)
}

@inline(__always)
func scaleByMask<T: KernelScalar>(_ dinp: UnsafeMutablePointer<T>, _ dout: UnsafePointer<T>, _ mask: UnsafePointer<UInt8>, _ scale: T, _ N: Int) {
    for i in 0..<N { dinp[i] = dout[i] * (T(mask[i]) * scale) }
}
