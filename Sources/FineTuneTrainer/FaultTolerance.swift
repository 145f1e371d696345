import FineTuneCore
import Foundation

/// SIGTERM and SIGUSR1 (what Slurm sends before a time limit or a preemption) set a flag; the ranks
/// agree on it at the next step boundary (it travels in the gradient allreduce), write a checkpoint
/// and exit with `Preemption.exitStatus`.
public enum Preemption {
    /// The exit status of a preempted run: EX_TEMPFAIL, "try again" (requeue with --resume auto).
    public static let exitStatus: Int32 = 75
    nonisolated(unsafe) static var flag: sig_atomic_t = 0

    public static var requested: Bool { flag != 0 }

    static func install() {
        for signal in [SIGTERM, SIGUSR1] {
            _ = Glibc.signal(signal) { _ in Preemption.flag = 1 }
        }
    }
}

/// A checksum of the parameters' bit patterns (order-dependent), to compare replicas across ranks.
func parameterChecksum(_ parameters: FlatBuffer<Float>) -> Int64 {
    // Four independent lanes so the loop is not one long dependency chain.
    var lanes: (UInt64, UInt64, UInt64, UInt64) = (1, 2, 3, 4)
    let p = UnsafeRawPointer(parameters.base).assumingMemoryBound(to: UInt32.self)
    let n = parameters.count
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

public enum NonFinitePolicy: String, Sendable, CaseIterable { case stop, skip }

/// Test-only fault injection, from hidden options: every real failure mode needs a test that
/// provokes it on purpose.
public struct DebugSwitches: Sendable {
    /// (rank, step): that rank adds 1e-3 to its first parameter after the step (replica check test).
    public var perturb: (rank: Int, step: Int)? = nil
    /// (rank, step, seconds): that rank sleeps before the step's gradient allreduce (timeout test).
    public var stall: (rank: Int, step: Int, seconds: Double)? = nil
    /// Rank 0 sleeps this long between the files of each checkpoint (kill-during-save test).
    public var slowCheckpointSeconds: Double = 0
    /// (rank, step): that rank sends itself SIGTERM during the step (preemption test).
    public var signalAt: (rank: Int, step: Int)? = nil
    public init() {}

    func signalIfAsked(rank: Int, step: Int) {
        if let s = signalAt, s.rank == rank, s.step == step { kill(getpid(), SIGTERM) }
    }

    func perturbIfAsked(_ parameters: FlatBuffer<Float>, rank: Int, step: Int) {
        if let p = perturb, p.rank == rank, p.step == step { parameters[0] += 1e-3 }
    }
    func stallIfAsked(rank: Int, step: Int) {
        if let s = stall, s.rank == rank, s.step == step { usleep(UInt32(s.seconds * 1_000_000)) }
    }

    /// Parses "a:b" or "a:b:c" numbers.
    public static func numbers(_ text: String, count: Int, option: String) throws -> [Double] {
        let parts = text.split(separator: ":").compactMap { Double($0) }
        guard parts.count == count else { throw FineTuneError("\(option): expected \(count) numbers separated by ':', got \"\(text)\"") }
        return parts
    }
}
