// Elementwise work and whole-buffer checks (shape legend in Linear.swift).

/// out[N] = a + b   (backward: the gradient of out flows unchanged to both a and b)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func residualForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, a: UnsafePointer<T>, b: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .elementwise) }
    for i in 0..<N { out[i] = a[i] + b[i] }
}

/// x[N] = 0 (a backward scratch buffer that is accumulated into).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func zeroFill<T: KernelScalar>(_ x: UnsafeMutablePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .elementwise) }
    x.update(repeating: 0, count: N)
}

/// Whether every value is finite: NaN and ±Inf are the floats whose exponent bits are all ones.
/// An integer max over the exponent fields vectorises (a float sum would be one long dependency chain).
public func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
    let bits = UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)
    var largest: UInt32 = 0
    for i in 0..<count { largest = max(largest, bits[i] & 0x7F80_0000) }
    return largest != 0x7F80_0000
}

/// Σ values², in Double: blocks of 1,024 summed in eight Float lanes (vectorised), each block's
/// total added in Double so a 20M-element sum keeps its precision.
public func sumOfSquares(_ values: UnsafePointer<Float>, count n: Int) -> Double {
    var total = 0.0, i = 0
    while i < n {
        let end = min(n, i + 1_024)
        var lanes = SIMD8<Float>()
        while i + 8 <= end {
            let x = UnsafeRawPointer(values + i).loadUnaligned(as: SIMD8<Float>.self)
            lanes += x * x
            i += 8
        }
        var block = Double(lanes.sum())
        while i < end { block += Double(values[i] * values[i]); i += 1 }
        total += block
    }
    return total
}

/// A checksum of the values' bit patterns (order-dependent, non-negative), to compare replicas across ranks.
public func bitwiseChecksum(_ values: UnsafePointer<Float>, count n: Int) -> Int64 {
    // Four independent lanes so the loop is not one long dependency chain.
    var lanes: (UInt64, UInt64, UInt64, UInt64) = (1, 2, 3, 4)
    let p = UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)
    var i = 0
    while i + 4 <= n {
        lanes.0 = (lanes.0 ^ UInt64(p[i])) &* 0x100_0000_01B3
        lanes.1 = (lanes.1 ^ UInt64(p[i + 1])) &* 0x100_0000_01B3
        lanes.2 = (lanes.2 ^ UInt64(p[i + 2])) &* 0x100_0000_01B3
        lanes.3 = (lanes.3 ^ UInt64(p[i + 3])) &* 0x100_0000_01B3
        i += 4
    }
    while i < n { lanes.0 = (lanes.0 ^ UInt64(p[i])) &* 0x100_0000_01B3; i += 1 }
    let mixed = mix64(lanes.0) ^ mix64(lanes.1 &+ 1) ^ mix64(lanes.2 &+ 2) ^ mix64(lanes.3 &+ 3)
    // Non-negative, so that max(sum, -sum) over ranks exposes any difference.
    return Int64(bitPattern: mixed >> 2)
}

/// IEEE 754 binary16 to binary32, subnormals, infinities and NaN included.
@inlinable
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        // zero or subnormal: mantissa · 2^-24
        let magnitude = Float(mantissa) * 0x1.0p-24
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
}

/// Little-endian stored floats (a safetensors tensor's bytes) to Float: F32, F64, F16 or BF16 by
/// `bytesPerElement` and `isBrainFloat`. Here in the kernel module so large checkpoints convert at
/// full speed in any build.
public func convertStoredFloats(_ source: UnsafeRawPointer, bytesPerElement: Int, isBrainFloat: Bool,
                                into destination: UnsafeMutablePointer<Float>, count n: Int) {
    switch (bytesPerElement, isBrainFloat) {
    case (4, _):
        // Little-endian hosts only (x86_64, aarch64): the bytes are already in place.
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: 4 * n)
    case (8, _):
        for i in 0..<n { destination[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
    case (2, false):
        for i in 0..<n { destination[i] = halfToFloat(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
    case (2, true):
        for i in 0..<n { destination[i] = Float(bitPattern: UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
    default:
        preconditionFailure("unsupported float width \(bytesPerElement)")
    }
}

/// x[N] += y[N] (a received chunk of a ring allreduce into one's own).
public func addInPlace(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count N: Int) {
    for i in 0..<N { x[i] += y[i] }
}
