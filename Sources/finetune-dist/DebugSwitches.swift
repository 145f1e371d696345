import FineTuneKernels
import FineTuneTrainer
import Foundation

/// Test-only fault injection, from hidden options: every real failure mode needs a test that
/// provokes it on purpose.
final class DebugSwitches: TrainingHooks {
    /// (rank, step): that rank adds 1e-3 to its first parameter after the step (replica check test).
    var perturb: (rank: Int, step: Int)? = nil
    /// (rank, step, seconds): that rank sleeps before the step (timeout test).
    var stall: (rank: Int, step: Int, seconds: Double)? = nil
    /// Rank 0 sleeps this long between the files of each checkpoint (kill-during-save test).
    var slowCheckpointSeconds: Double = 0
    /// (rank, step): that rank sends itself SIGTERM during the step (preemption test).
    var signalAt: (rank: Int, step: Int)? = nil
    /// Every rank sleeps this long before each step, so that tests from outside (a scheduler's
    /// signal, a kill) find the run still going.
    var stepDelaySeconds: Double = 0
    init() {}

    var pauseBetweenCheckpointFiles: Double { slowCheckpointSeconds }

    func beforeStep(_ step: Int, rank: Int) {
        if let s = signalAt, s.rank == rank, s.step == step { kill(getpid(), SIGTERM) }
        if let s = stall, s.rank == rank, s.step == step { usleep(UInt32(s.seconds * 1_000_000)) }
        if stepDelaySeconds > 0 { usleep(UInt32(stepDelaySeconds * 1_000_000)) }
    }

    func afterStep(_ step: Int, rank: Int, parameters: FlatBuffer<Float>) {
        if let p = perturb, p.rank == rank, p.step == step { parameters[0] += 1e-3 }
    }

    /// Parses "a:b" or "a:b:c" numbers.
    static func numbers(_ text: String, count: Int, option: String) throws -> [Double] {
        let parts = text.split(separator: ":").compactMap { Double($0) }
        guard parts.count == count else { throw FineTuneError("\(option): expected \(count) numbers separated by ':', got \"\(text)\"") }
        return parts
    }
}
