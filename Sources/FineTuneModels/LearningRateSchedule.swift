import FineTuneKernels
import Foundation

public enum ScheduleKind: String, Sendable, CaseIterable, Codable { case constant, linear, cosine, polynomial }

/// Learning rate per step, as transformers' get_{constant,linear,cosine,polynomial_decay}_schedule_with_warmup:
/// a linear warm-up from 0 over `warmupSteps`, then constant, linear decay to 0, half-cosine to 0, or
/// polynomial decay (1 − progress)^power from the peak to `end` at `totalSteps`. `step` is the 0-based
/// index of the update about to be taken.
public struct LearningRateSchedule: Equatable, Sendable {
    public var kind: ScheduleKind
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    /// Polynomial decay: the final rate and the power (transformers' defaults 1e-7 and 1).
    public var end: Double
    public var power: Double
    public init(kind: ScheduleKind, peak: Double, warmupSteps: Int, totalSteps: Int, end: Double = 1e-7, power: Double = 1) {
        self.kind = kind; self.peak = peak; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
        self.end = end; self.power = power
    }
    public func rate(atStep step: Int) -> Double {
        if step < warmupSteps { return peak * Double(step) / Double(max(1, warmupSteps)) }
        let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
        switch kind {
        case .constant: return peak
        case .linear: return peak * max(0, Double(totalSteps - step) / Double(max(1, totalSteps - warmupSteps)))
        case .cosine: return peak * max(0, 0.5 * (1 + Foundation.cos(Double.pi * progress)))
        case .polynomial:
            if step > totalSteps { return end }
            return (peak - end) * Foundation.pow(1 - progress, power) + end
        }
    }
}
