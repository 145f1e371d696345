import Foundation

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

    public init(settings: OptimizerSettings, layout: ParameterLayout) {
        self.settings = settings
        self.layout = layout
        firstMoment = FlatBuffer(count: layout.count)
        secondMoment = FlatBuffer(count: settings.kind == .adamw ? layout.count : 0)
    }

    /// One update of `parameters` from `gradients` (already averaged over the global batch).
    public func step(parameters: FlatBuffer<Float>, gradients: FlatBuffer<Float>, learningRate: Double) {
        stepCount += 1
        let p = parameters.base, g = gradients.base, m = firstMoment.base
        switch settings.kind {
        case .adamw:
            let v = secondMoment.base
            let b1 = Float(settings.beta1), b2 = Float(settings.beta2)
            let biasCorrection1 = 1 - Foundation.pow(settings.beta1, Double(stepCount))
            let biasCorrection2 = 1 - Foundation.pow(settings.beta2, Double(stepCount))
            let stepSize = Float(learningRate / biasCorrection1)
            let bc2Sqrt = Float(biasCorrection2.squareRoot())
            let eps = Float(settings.epsilon)
            for spec in layout.tensors {
                let decay = spec.decays ? Float(1 - learningRate * settings.weightDecay) : 1
                for i in spec.offset..<(spec.offset + spec.count) {
                    p[i] *= decay
                    m[i] += (1 - b1) * (g[i] - m[i])  // torch's exp_avg.lerp_(grad, 1 - beta1)
                    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                    let denominator = v[i].squareRoot() / bc2Sqrt + eps
                    p[i] -= stepSize * m[i] / denominator
                }
            }
        case .sgd:
            let lr = Float(learningRate), mu = Float(settings.momentum)
            for spec in layout.tensors {
                let wd = spec.decays ? Float(settings.weightDecay) : 0
                for i in spec.offset..<(spec.offset + spec.count) {
                    let grad = g[i] + wd * p[i]
                    // torch: the first step initialises the buffer with the gradient itself.
                    m[i] = stepCount == 1 ? grad : mu * m[i] + grad
                    p[i] -= lr * (mu > 0 ? m[i] : grad)
                }
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
