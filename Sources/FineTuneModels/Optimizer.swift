import FineTuneKernels
import Foundation

public enum OptimizerKind: String, Sendable, CaseIterable, Codable { case adamw, sgd }

/// Hyper-parameters of the optimizer. AdamW follows torch.optim.AdamW exactly (bias correction,
/// decoupled weight decay p ← p − lr·wd·p before the Adam update); SGD follows torch.optim.SGD
/// with momentum (buf ← μ·buf + g, dampening 0, p ← p − lr·buf) and coupled weight decay (g ← g + wd·p).
public struct OptimizerSettings: Equatable, Sendable, Codable {
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
    /// AdamW: first moment; SGD: momentum buffer. Element i belongs to parameter shard.lowerBound + i.
    public let firstMoment: FlatBuffer<Float>
    /// AdamW: second moment; SGD: unused (size 0).
    public let secondMoment: FlatBuffer<Float>
    /// Updates taken so far (AdamW's t).
    public var stepCount = 0

    /// The parameters that train (the rest are frozen and have no state): all, or a suffix.
    public let trainable: Range<Int>
    /// The part of `trainable` this optimizer updates and keeps moments for: all of it, or this
    /// rank's 1/N with optimizer-state sharding (ZeRO stage 1).
    public let shard: Range<Int>
    /// Per tensor of `layout`: a factor on the learning rate (layer-wise decay; 1 by default).
    public var rateScales: [Double]
    /// Per tensor: `stepCount` when it began to train (gradual unfreezing). AdamW's bias correction
    /// counts a tensor's own updates, as torch does (its state is created at its first gradient).
    public var startSteps: [Int]

    public init(settings: OptimizerSettings, layout: ParameterLayout, trainable: Range<Int>? = nil, shard: Range<Int>? = nil) {
        self.settings = settings
        self.layout = layout
        self.trainable = trainable ?? 0..<layout.count
        self.shard = shard ?? self.trainable
        precondition(self.shard.isEmpty || (self.shard.lowerBound >= self.trainable.lowerBound && self.shard.upperBound <= self.trainable.upperBound))
        firstMoment = FlatBuffer(count: self.shard.count)
        secondMoment = FlatBuffer(count: settings.kind == .adamw ? self.shard.count : 0)
        rateScales = Array(repeating: 1, count: layout.tensors.count)
        startSteps = Array(repeating: 0, count: layout.tensors.count)
    }

    /// The tensors that train (inside `trainable`), with their index in `layout`.
    public var trainableTensors: [(index: Int, spec: TensorSpec)] {
        layout.tensors.enumerated().filter { $0.element.offset >= trainable.lowerBound }.map { ($0.offset, $0.element) }
    }

    /// Takes over the moments of `other` (a smaller trainable suffix of the same layout: gradual
    /// unfreezing): where both hold state it is copied, the newly trainable tensors start at zero
    /// and count their updates from now. `otherWhole`: `other`'s moments over its whole trainable range.
    public func continueFrom(_ other: Optimizer, otherWhole: [[Float]]) {
        stepCount = other.stepCount
        rateScales = other.rateScales
        for (i, spec) in layout.tensors.enumerated() where spec.offset >= trainable.lowerBound {
            startSteps[i] = spec.offset >= other.trainable.lowerBound ? other.startSteps[i] : stepCount
        }
        for (mine, theirs) in zip(moments, otherWhole) {
            let common = shard.clamped(to: other.trainable)
            guard !common.isEmpty else { continue }
            theirs.withUnsafeBufferPointer {
                (mine.base + (common.lowerBound - shard.lowerBound)).update(from: $0.baseAddress! + (common.lowerBound - other.trainable.lowerBound),
                                                                            count: common.count)
            }
        }
    }

    /// The moments kept per parameter: "exp_avg" and "exp_avg_sq" for AdamW, "momentum_buffer" for SGD (torch's names).
    public var momentNames: [String] { settings.kind == .adamw ? ["exp_avg", "exp_avg_sq"] : ["momentum_buffer"] }
    public var moments: [FlatBuffer<Float>] { settings.kind == .adamw ? [firstMoment, secondMoment] : [firstMoment] }

    /// One update of `parameters` from `gradients · gradientScale` (the trainer passes the summed
    /// gradient and 1 / global batch size, so no separate pass over the buffer averages it).
    public func step(parameters: FlatBuffer<Float>, gradients: FlatBuffer<Float>, gradientScale: Float = 1, learningRate: Double) {
        step(parameters: parameters, gradientsOfShard: gradients.base + shard.lowerBound, gradientScale: gradientScale, learningRate: learningRate)
    }

    /// The same, with the gradients of just this optimizer's shard (`gradientsOfShard[0]` is the
    /// gradient of parameter `shard.lowerBound`).
    public func step(parameters: FlatBuffer<Float>, gradientsOfShard: UnsafeMutablePointer<Float>, gradientScale: Float = 1, learningRate: Double) {
        stepCount += 1
        // Every buffer indexed by flat-buffer position.
        let g = gradientsOfShard - shard.lowerBound
        let m = firstMoment.base - shard.lowerBound, v = secondMoment.base - shard.lowerBound
        let s = settings
        for (i, spec) in layout.tensors.enumerated() {
            let range = spec.range.clamped(to: shard)
            guard !range.isEmpty else { continue }
            let rate = learningRate * rateScales[i], step = stepCount - startSteps[i]
            switch s.kind {
            case .adamw:
                adamwUpdate(range: range, parameters: parameters.base, gradients: g, firstMoment: m, secondMoment: v,
                            gradientScale: gradientScale, learningRate: rate, beta1: s.beta1, beta2: s.beta2,
                            epsilon: s.epsilon, weightDecay: s.weightDecay, decays: spec.decays, step: step)
            case .sgd:
                sgdUpdate(range: range, parameters: parameters.base, gradients: g, momentumBuffer: m, gradientScale: gradientScale,
                          learningRate: rate, momentum: s.momentum, weightDecay: s.weightDecay, decays: spec.decays, step: step)
            }
        }
    }
}
