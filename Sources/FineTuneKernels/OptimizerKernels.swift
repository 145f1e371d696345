// The optimizers' updates over ranges of the flat buffers. They are memory-bound (AdamW reads 4
// floats and writes 3 per parameter), so each is a single streaming pass.
import Foundation
#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// torch.optim.AdamW's update of elements [range] of p (parameters), with gradients g · gradientScale,
/// first moment m and second moment v, indexed like p. `step` is the 1-based update count (bias
/// correction); `decays`: whether decoupled weight decay p ← p·(1 − lr·wd) applies to this range.
public func adamwUpdate(range: Range<Int>, parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                        firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>,
                        gradientScale: Float, learningRate: Double, beta1: Double, beta2: Double, epsilon: Double,
                        weightDecay: Double, decays: Bool, step: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .optimizer) }
    let b1 = Float(beta1), b2 = Float(beta2)
    let oneMinusB1 = 1 - b1, oneMinusB2 = 1 - b2
    let biasCorrection1 = 1 - Foundation.pow(beta1, Double(step))
    let biasCorrection2 = 1 - Foundation.pow(beta2, Double(step))
    let stepSize = Float(learningRate / biasCorrection1)
    let invBC2Sqrt = Float(1 / biasCorrection2.squareRoot())
    let eps = Float(epsilon)
    let decay = decays ? Float(1 - learningRate * weightDecay) : 1
    // Four lanes at a time through one concrete SIMD expression (the tail too, zero-padded), so
    // every element gets the same operations. (The compiler does not vectorise the scalar loop
    // itself: it cannot rule out that the four buffers overlap.)
    typealias Lanes = SIMD4<Float>
    @inline(__always) func adamw(_ p: Lanes, _ g: Lanes, _ m: Lanes, _ v: Lanes) -> (p: Lanes, m: Lanes, v: Lanes) {
        let grad = g * gradientScale
        let mi = m + oneMinusB1 * (grad - m)  // torch's exp_avg.lerp_(grad, 1 - beta1)
        let vi = b2 * v + oneMinusB2 * grad * grad
        return (p * decay - stepSize * mi / (laneSquareRoot(vi) * invBC2Sqrt + eps), mi, vi)
    }
    var i = range.lowerBound
    while i + Lanes.scalarCount <= range.upperBound {
        @inline(__always) func load(_ x: UnsafePointer<Float>) -> Lanes { UnsafeRawPointer(x + i).loadUnaligned(as: Lanes.self) }
        let r = adamw(load(p), load(g), load(m), load(v))
        UnsafeMutableRawPointer(p + i).storeBytes(of: r.p, as: Lanes.self)
        UnsafeMutableRawPointer(m + i).storeBytes(of: r.m, as: Lanes.self)
        UnsafeMutableRawPointer(v + i).storeBytes(of: r.v, as: Lanes.self)
        i += Lanes.scalarCount
    }
    while i < range.upperBound {
        let r = adamw(Lanes(p[i], 0, 0, 0), Lanes(g[i], 0, 0, 0), Lanes(m[i], 0, 0, 0), Lanes(v[i], 0, 0, 0))
        p[i] = r.p[0]; m[i] = r.m[0]; v[i] = r.v[0]
        i += 1
    }
}

/// torch.optim.SGD's update of elements [range] (momentum μ, dampening 0, coupled weight decay
/// g ← g + wd·p; the first step initialises the momentum buffer with the gradient itself).
public func sgdUpdate(range: Range<Int>, parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                      momentumBuffer m: UnsafeMutablePointer<Float>, gradientScale: Float, learningRate: Double,
                      momentum: Double, weightDecay: Double, decays: Bool, step: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .optimizer) }
    let lr = Float(learningRate), mu = Float(momentum)
    let wd = decays ? Float(weightDecay) : 0
    let first = step == 1
    for i in range {
        let grad = g[i] * gradientScale + wd * p[i]
        m[i] = first ? grad : mu * m[i] + grad
        p[i] -= lr * (mu > 0 ? m[i] : grad)
    }
}

/// √x lane by lane, correctly rounded. SIMD4's own squareRoot() goes through libm's sqrtf one lane
/// at a time (2.5x slower for AdamW over MiniLM); on x86 this is the single sqrtps instruction.
@inline(__always)
func laneSquareRoot(_ x: SIMD4<Float>) -> SIMD4<Float> {
    #if arch(x86_64)
    return _mm_sqrt_ps(x)  // __m128 is SIMD4<Float> in Swift
    #else
    return x.squareRoot()
    #endif
}
