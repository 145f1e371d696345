import COpenBLAS
import Foundation
import RealModule

/// A floating-point type the kernels run on. Training uses `Float` (sgemm); the finite-difference
/// tests run the very same kernels in `Double` (dgemm), so the check is of the code that trains.
public protocol KernelScalar: Real, BinaryFloatingPoint, Sendable {
    /// Row-major C = alpha * op(A) * op(B) + beta * C, with op(A) [M, K] and op(B) [K, N].
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
                     a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// e^x for the kernels' elementwise loops (softmax, GELU's backward). Float: a branch-free
    /// polynomial the compiler vectorises; Double: libm, so the finite-difference checks see exact math.
    static func kernelExp(_ x: Self) -> Self
    /// erf(x) for GELU, on the same terms as `kernelExp`.
    static func kernelErf(_ x: Self) -> Self
    /// The standard normal's Φ(x) and φ(x) for GELU and its slope, on the same terms (Float: one exponential for both).
    static func kernelNormal(_ x: Self) -> (cdf: Self, pdf: Self)
}

@inline(__always)
private func cblasTranspose(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: KernelScalar {
    @inline(__always)
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, cblasTranspose(transA), cblasTranspose(transB),
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }
}

extension Float {
    /// e^x within 2 ulp for x in [-87.3, 88.3] (0 below; +inf above, where e^x is within 1.5x of
    /// Float's largest value: the kernels only pass x ≤ 0; NaN stays NaN), branch-free so loops over
    /// it vectorise (libm's expf is a call per element).
    /// Cephes' expf: x = n·ln2 + r, |r| ≤ ln2/2, e^r by a polynomial, 2^n put into the exponent bits.
    @inline(__always)
    public static func kernelExp(_ x: Float) -> Float {
        let clamped = Swift.min(Swift.max(x, -87.33654), 88.37626)
        // Round x/ln2 to nearest with the 1.5·2^23 trick: SSE2 has no vector round instruction.
        let magic: Float = 12_582_912
        let shifted = clamped * 1.442_695_04 + magic
        let n = shifted - magic
        let r = (clamped - n * 0.693_359_375) + n * 2.121_944_4e-4
        var p: Float = 1.987_569_1e-4
        p = p * r + 1.398_199_9e-3
        p = p * r + 8.333_452e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_5e-1
        p = p * r + 5.000_000_1e-1
        p = p * (r * r) + r + 1
        // shifted's low mantissa bits hold n (two's complement around magic's bit pattern).
        let exponentBits = (shifted.bitPattern &- magic.bitPattern &+ 127) &<< 23
        let result = p * Float(bitPattern: exponentBits)
        return x < -87.33654 ? 0 : (x > 88.37626 ? .infinity : (x.isNaN ? x : result))
    }

    /// erf(x) within 6e-7 absolute (the formula's 1.5e-7 plus Float rounding): Abramowitz & Stegun
    /// 7.1.26, the approximation PyTorch's own vectorised CPU GELU evaluates in Float the same way.
    @inline(__always)
    public static func kernelErf(_ x: Float) -> Float { erfAndGaussian(x).erf }

    /// erf(x) and e^(−x²), which the approximation computes on the way.
    @inline(__always)
    static func erfAndGaussian(_ x: Float) -> (erf: Float, gaussian: Float) {
        let a = Swift.abs(x)
        let t = 1 / (1 + 0.327_591_1 * a)
        var r: Float = 1.061_405_429
        r = r * t - 1.453_152_027
        r = r * t + 1.421_413_741
        r = r * t - 0.284_496_736
        r = r * t + 0.254_829_592
        let gaussian = kernelExp(-a * a)
        let y = 1 - r * t * gaussian
        return (Float(bitPattern: y.bitPattern | (x.bitPattern & 0x8000_0000)), gaussian)
    }

    @inline(__always)
    public static func kernelNormal(_ x: Float) -> (cdf: Float, pdf: Float) {
        // Φ(x) = (1 + erf(x/√2)) / 2 and φ(x) = e^(−x²/2) / √(2π), where e^(−x²/2) = e^(−(x/√2)²).
        let (erf, gaussian) = erfAndGaussian(x * 0.707_106_77)
        return ((1 + erf) / 2, gaussian * 0.398_942_3)
    }
}

extension Double: KernelScalar {
    @inline(__always) public static func kernelExp(_ x: Double) -> Double { Foundation.exp(x) }
    @inline(__always) public static func kernelErf(_ x: Double) -> Double { Foundation.erf(x) }
    @inline(__always) public static func kernelNormal(_ x: Double) -> (cdf: Double, pdf: Double) {
        ((1 + Foundation.erf(x / 2.squareRoot())) / 2, Foundation.exp(-x * x / 2) / (2 * Double.pi).squareRoot())
    }

    @inline(__always)
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                            a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, cblasTranspose(transA), cblasTranspose(transB),
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }
}
