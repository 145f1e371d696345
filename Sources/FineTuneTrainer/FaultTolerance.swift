import FineTuneDistributed
import FineTuneKernels
import Foundation

/// Ctrl-C (SIGINT), SIGTERM and SIGUSR1 ask the run to stop without losing work: the first sets a
/// flag, the ranks agree on it at the next step boundary (it travels in the gradient exchange),
/// write a checkpoint and exit with `Preemption.exitStatus`. A second SIGINT or SIGTERM aborts at
/// once (the default action), for a user who does not want to wait for the checkpoint.
/// mpirun turns a Ctrl-C or SIGTERM of its own into SIGTERM to the ranks and SIGKILLs them a second
/// later; it forwards SIGUSR1 as it is, which is what the launch scripts send it (Docs/cluster.md).
public enum Preemption {
    /// The exit status of a preempted run: EX_TEMPFAIL, "try again" (requeue with --resume auto).
    public static let exitStatus: Int32 = 75
    /// The first stopping signal's number, 0 while none came.
    nonisolated(unsafe) static var flag: sig_atomic_t = 0

    public static var requested: Bool { flag != 0 }

    /// The signal that asked to stop, by name ("SIGINT (Ctrl-C)"), nil while none came.
    public static var signalName: String? {
        switch flag {
        case 0: return nil
        case SIGINT: return "SIGINT (Ctrl-C)"
        case SIGTERM: return "SIGTERM"
        case SIGUSR1: return "SIGUSR1 (a scheduler's preemption, or Ctrl-C/SIGTERM relayed by the launch script)"
        default: return "signal \(flag)"
        }
    }

    /// The line the first signal prints (from the handler, so it is written with write(2)).
    nonisolated(unsafe) private static var announcement: [UInt8] = []

    /// `announce`: this process prints a line when the first signal comes (rank 0 only, so one line).
    static func install(announce: Bool) {
        announcement = announce ? Array(("finetune-dist: stopping: a checkpoint is written at the end of the current step, " +
                                         "then the run exits with status \(exitStatus) (continue it with --resume); " +
                                         "interrupt again to abort at once\n").utf8) : []
        for signal in [SIGINT, SIGTERM, SIGUSR1] {
            _ = Glibc.signal(signal) { received in
                if Preemption.flag != 0 && received != SIGUSR1 {
                    // The second interruption: the default action (the process ends by this signal).
                    Glibc.signal(received, SIG_DFL)
                    raise(received)
                    return
                }
                if Preemption.flag == 0 {
                    Preemption.flag = received
                    Preemption.announcement.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
                }
            }
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

/// What the trainer calls around each step and checkpoint, for fault-injection tests (the CLI's
/// hidden --debug-* options provoke every failure mode on purpose) and tools that watch a run.
/// The loop itself knows no faults.
public protocol TrainingHooks: AnyObject {
    /// Before step `step` (1-based) computes, on every rank.
    func beforeStep(_ step: Int, rank: Int)
    /// After step `step` updated `parameters`, on every rank.
    func afterStep(_ step: Int, rank: Int, parameters: FlatBuffer<Float>)
    /// Seconds rank 0 waits between the files of a checkpoint (0: none).
    var pauseBetweenCheckpointFiles: Double { get }
}
