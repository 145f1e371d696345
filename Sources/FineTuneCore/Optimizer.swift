import Foundation
#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

public enum OptimizerKind: String, Sendable, CaseIterable { case adamw, sgd }

/// Hyper-parameters of the optimizer. AdamW follows torch.optim.AdamW exactly (bias correction,
/// decoupled weight decay p ← p − lr·wd·p before the Adam update); SGD follows torch.optim.SGD
/// with momentum (buf ← μ·buf + g, dampening 0, p ← p − lr·buf) and coupled weight decay (g ← g + wd·p).
public struct OptimizerSettings: Equatable, Sendable {
    public var kind: OptimizerKind = .adamw
    public var weightDecay: Double = 0
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var epsilon: Double = 1e-8
    public var momentum: Double = 0.9
    public init() {}
}

/// Optimizer state over a flat parameter buffer: AdamW's first and second moments (or SGD's momentum
/// buffer) share the parameters' layout, so one loop per tensor range covers the whole model.
public final class Optimizer {
    public let settings: OptimizerSettings
    public let layout: ParameterLayout
    /// AdamW: first moment; SGD: momentum buffer.
    public let firstMoment: FlatBuffer<Float>
    /// AdamW: second moment; SGD: unused (size 0).
    public let secondMoment: FlatBuffer<Float>
    /// Updates taken so far (AdamW's t).
    public var stepCount = 0

    /// The part of the flat buffers this optimizer updates and keeps moments for: all of it, or
    /// this rank's 1/N with optimizer-state sharding (ZeRO stage 1).
    public let shard: Range<Int>

    public init(settings: OptimizerSettings, layout: ParameterLayout, shard: Range<Int>? = nil) {
        self.settings = settings
        self.layout = layout
        self.shard = shard ?? 0..<layout.count
        firstMoment = FlatBuffer(count: self.shard.count)
        secondMoment = FlatBuffer(count: settings.kind == .adamw ? self.shard.count : 0)
    }

    /// One update of `parameters` from `gradients · gradientScale` (the trainer passes the summed
    /// gradient and 1 / global batch size, so no separate pass over the buffer averages it).
    public func step(parameters: FlatBuffer<Float>, gradients: FlatBuffer<Float>, gradientScale: Float = 1, learningRate: Double) {
        step(parameters: parameters, gradientsOfShard: gradients.base + shard.lowerBound, gradientScale: gradientScale, learningRate: learningRate)
    }

    /// The same, with the gradients of just this optimizer's shard (`gradientsOfShard[0]` is the
    /// gradient of parameter `shard.lowerBound`).
    public func step(parameters: FlatBuffer<Float>, gradientsOfShard: UnsafeMutablePointer<Float>, gradientScale: Float = 1, learningRate: Double) {
        stepCount += 1
        let g = gradientsOfShard - shard.lowerBound
        for spec in layout.tensors {
            let lower = max(spec.offset, shard.lowerBound), upper = min(spec.offset + spec.count, shard.upperBound)
            guard lower < upper else { continue }
            update(range: lower..<upper, decays: spec.decays, parameters: parameters.base, gradients: g,
                   gradientScale: gradientScale, learningRate: learningRate)
        }
    }

    /// The update of one contiguous range of the flat buffers: a single streaming pass, written so
    /// the compiler vectorises it (the optimizer is memory-bound: 4 floats read, 3 written per parameter).
    @inline(__always)
    func update(range: Range<Int>, decays: Bool, parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafeMutablePointer<Float>,
                gradientScale: Float, learningRate: Double) {
        // Moments are stored for the shard only: index them by flat-buffer position.
        let m = firstMoment.base - shard.lowerBound
        switch settings.kind {
        case .adamw:
            let v = secondMoment.base - shard.lowerBound
            let b1 = Float(settings.beta1), b2 = Float(settings.beta2)
            let oneMinusB1 = 1 - b1, oneMinusB2 = 1 - b2
            let biasCorrection1 = 1 - Foundation.pow(settings.beta1, Double(stepCount))
            let biasCorrection2 = 1 - Foundation.pow(settings.beta2, Double(stepCount))
            let stepSize = Float(learningRate / biasCorrection1)
            let invBC2Sqrt = Float(1 / biasCorrection2.squareRoot())
            let eps = Float(settings.epsilon)
            let decay = decays ? Float(1 - learningRate * settings.weightDecay) : 1
            // Four lanes at a time through one concrete SIMD expression (the tail too, zero-padded), so
            // every element gets the same operations. (The compiler does not vectorise the scalar
            // loop itself: it cannot rule out that the four buffers overlap.)
            typealias Lanes = SIMD4<Float>
            @inline(__always) func adamw(_ p: Lanes, _ g: Lanes, _ m: Lanes, _ v: Lanes) -> (p: Lanes, m: Lanes, v: Lanes) {
                let grad = g * gradientScale
                let mi = m + oneMinusB1 * (grad - m)  // torch's exp_avg.lerp_(grad, 1 - beta1)
                let vi = b2 * v + oneMinusB2 * grad * grad
                return (p * decay - stepSize * mi / (laneSquareRoot(vi) * invBC2Sqrt + eps), mi, vi)
            }
            var i = range.lowerBound
            while i + Lanes.scalarCount <= range.upperBound {
                func load(_ x: UnsafeMutablePointer<Float>) -> Lanes { UnsafeRawPointer(x + i).loadUnaligned(as: Lanes.self) }
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
        case .sgd:
            let lr = Float(learningRate), mu = Float(settings.momentum)
            let wd = decays ? Float(settings.weightDecay) : 0
            let first = stepCount == 1
            for i in range {
                let grad = g[i] * gradientScale + wd * p[i]
                // torch: the first step initialises the buffer with the gradient itself.
                m[i] = first ? grad : mu * m[i] + grad
                p[i] -= lr * (mu > 0 ? m[i] : grad)
            }
        }
    }
}

public enum ScheduleKind: String, Sendable, CaseIterable { case constant, linear, cosine }

/// Learning rate per step, as transformers' get_{constant,linear,cosine}_schedule_with_warmup:
/// a linear warm-up from 0 over `warmupSteps`, then constant, linear decay to 0 or half-cosine to 0
/// at `totalSteps`. `step` is the 0-based index of the update about to be taken.
public struct LearningRateSchedule: Equatable, Sendable {
    public var kind: ScheduleKind
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    public init(kind: ScheduleKind, peak: Double, warmupSteps: Int, totalSteps: Int) {
        self.kind = kind; self.peak = peak; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
    }
    public func rate(atStep step: Int) -> Double {
        if step < warmupSteps { return peak * Double(step) / Double(max(1, warmupSteps)) }
        let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
        switch kind {
        case .constant: return peak
        case .linear: return peak * max(0, Double(totalSteps - step) / Double(max(1, totalSteps - warmupSteps)))
        case .cosine: return peak * max(0, 0.5 * (1 + Foundation.cos(Double.pi * progress)))
        }
    }
}

/// √x lane by lane, correctly rounded. SIMD4's own squareRoot() goes through libm's sqrtf one lane
/// at a time (2.5x slower for AdamW over MiniLM); on x86 this is the single sqrtps instruction.
@inline(__always)
func laneSquareRoot(_ x: SIMD4<Float>) -> SIMD4<Float> {
    #if arch(x86_64)
    return unsafeBitCast(_mm_sqrt_ps(unsafeBitCast(x, to: __m128.self)), to: SIMD4<Float>.self)
    #else
    return x.squareRoot()
    #endif
}
