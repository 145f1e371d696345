import FineTuneDistributed
import FineTuneKernels
import Foundation

/// SIGTERM and SIGUSR1 (what Slurm sends before a time limit or a preemption) set a flag; the ranks
/// agree on it at the next step boundary (it travels in the gradient exchange), write a checkpoint
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

public enum NonFinitePolicy: String, Sendable, CaseIterable, Codable { case stop, skip }

/// Which ranks a non-finite step came from: every rank calls `gather` in the same step (after the
/// exchange found the sums non-finite), so every rank gets the same report.
public struct NonFiniteReport: Equatable, Sendable {
    /// The lowest rank whose own values were non-finite, nil when every rank's were finite (the sum overflowed).
    public var firstRank: Int?
    /// How many ranks had non-finite values of their own.
    public var ranks: Int

    public static func gather(localProblem: Bool, comm: Communicator) throws -> NonFiniteReport {
        var first = [Int64(localProblem ? comm.rank : Int.max)], count = [Int64(localProblem ? 1 : 0)]
        try comm.allreduce(&first, op: .min)
        try comm.allreduce(&count, op: .sum)
        return NonFiniteReport(firstRank: count[0] == 0 ? nil : Int(first[0]), ranks: Int(count[0]))
    }

    /// "step 7: non-finite loss or gradients on rank 1 and 2 other rank(s)"
    public func describe(step: Int) -> String {
        guard let firstRank else { return "step \(step): the summed gradients overflowed (every rank's own values were finite)" }
        return "step \(step): non-finite loss or gradients on rank \(firstRank)" + (ranks > 1 ? " and \(ranks - 1) other rank(s)" : "")
    }
}

/// Every rank's parameters must be bitwise identical: compares a checksum across ranks (collective).
/// Returns nil when they agree, else a description of which ranks differ.
func replicaMismatch(_ parameters: FlatBuffer<Float>, comm: Communicator) throws -> String? {
    let sum = bitwiseChecksum(parameters.base, count: parameters.count)
    var range = [sum, -sum]
    try comm.allreduce(&range, op: .max)
    guard range[0] != -range[1] else { return nil }
    let all = try comm.allgather(string: String(sum))
    let differing = all.enumerated().filter { $0.element != all[0] }.map { "rank \($0.offset)" }
    return "parameter checksums: \(all.joined(separator: ", ")); \(differing.joined(separator: ", ")) differ from rank 0"
}

/// Test-only fault injection, from hidden options: every real failure mode needs a test that
/// provokes it on purpose.
public struct DebugSwitches: Sendable {
    /// (rank, step): that rank adds 1e-3 to its first parameter after the step (replica check test).
    public var perturb: (rank: Int, step: Int)? = nil
    /// (rank, step, seconds): that rank sleeps before the step (timeout test).
    public var stall: (rank: Int, step: Int, seconds: Double)? = nil
    /// Rank 0 sleeps this long between the files of each checkpoint (kill-during-save test).
    public var slowCheckpointSeconds: Double = 0
    /// (rank, step): that rank sends itself SIGTERM during the step (preemption test).
    public var signalAt: (rank: Int, step: Int)? = nil
    /// Every rank sleeps this long before each step, so that tests from outside (a scheduler's
    /// signal, a kill) find the run still going.
    public var stepDelaySeconds: Double = 0
    public init() {}

    func signalIfAsked(rank: Int, step: Int) {
        if let s = signalAt, s.rank == rank, s.step == step { kill(getpid(), SIGTERM) }
    }
    func perturbIfAsked(_ parameters: FlatBuffer<Float>, rank: Int, step: Int) {
        if let p = perturb, p.rank == rank, p.step == step { parameters[0] += 1e-3 }
    }
    func stallIfAsked(rank: Int, step: Int) {
        if let s = stall, s.rank == rank, s.step == step { usleep(UInt32(s.seconds * 1_000_000)) }
        if stepDelaySeconds > 0 { usleep(UInt32(stepDelaySeconds * 1_000_000)) }
    }

    /// Parses "a:b" or "a:b:c" numbers.
    public static func numbers(_ text: String, count: Int, option: String) throws -> [Double] {
        let parts = text.split(separator: ":").compactMap { Double($0) }
        guard parts.count == count else { throw FineTuneError("\(option): expected \(count) numbers separated by ':', got \"\(text)\"") }
        return parts
    }
}
