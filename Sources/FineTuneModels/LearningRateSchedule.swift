import FineTuneKernels
import Foundation

public enum ScheduleKind: String, Sendable, CaseIterable, Codable { case constant, linear, cosine }

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
