import FineTuneKernels
import Foundation

public enum ReductionOp: Sendable { case sum, min, max, bitwiseOr }

/// How a large sum over ranks runs.
public enum AllreduceAlgorithm: String, Sendable, CaseIterable, Codable {
    /// The ring for buffers of 32Ki floats and more (bandwidth matters), MPI's own below (latency does).
    case auto
    /// Ring over point-to-point messages (RingAllreduce), at every size.
    case ring
    /// Open MPI's MPI_Iallreduce.
    case mpi

    public static let ringThreshold = 32 * 1024
    func usesRing(count: Int) -> Bool { self == .ring || (self == .auto && count >= AllreduceAlgorithm.ringThreshold) }
}

/// The collectives a data-parallel run needs. Every rank must call the same collectives in the
/// same order (GUIDE §5): a decision taken on one rank travels inside a collective, never through
/// a branch only some ranks take.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place sum over all ranks.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Starts an in-place sum over all ranks without waiting (gradient buckets during backward).
    func startAllreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>, algorithm: AllreduceAlgorithm) throws -> PendingReduction
    /// Whether a started reduction has completed (and lets MPI make progress).
    func test(_ pending: PendingReduction) throws -> Bool
    /// Waits for a started reduction, against the collective timeout.
    func wait(_ pending: PendingReduction) throws
    /// Starts summing `buffer` over all ranks, leaving rank r only its block (`counts[r]` elements,
    /// in rank order) in `block`: the first half of an allreduce, for optimizer-state sharding.
    /// Complete it with `test` / `wait`.
    func startReduceScatterSum(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int], into block: UnsafeMutablePointer<Float>,
                               algorithm: AllreduceAlgorithm) throws -> PendingReduction
    /// Every rank contributes its block of `buffer` (`counts[r]` elements, in rank order, in place)
    /// and receives everyone's: the second half of an allreduce.
    func allgatherInPlace(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws
    /// Rank r sends `block` (`counts[r]` elements); `root` receives every block, in rank order, into
    /// `destination` (Σ counts elements; ignored elsewhere, may be nil there).
    func gather(_ block: UnsafeBufferPointer<Float>, counts: [Int], into destination: UnsafeMutablePointer<Float>?, root: Int) throws
    /// In-place reduction of a few control values (flags, counts, ranks).
    func allreduce(_ values: inout [Int64], op: ReductionOp) throws
    /// Copies `buffer` from `root` to every rank.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Every rank's bytes, concatenated in rank order (each rank sends the same count).
    func allgather(_ bytes: [UInt8]) throws -> [UInt8]
    func barrier() throws
    /// Ends every rank of the job, after printing `message` on this one.
    func abort(message: String, code: Int32) -> Never
    /// Number of ranks on this rank's host, and this rank's index among them.
    var nodeRanks: (count: Int, index: Int) { get }
    /// Host name of this rank.
    var hostName: String { get }
    /// The MPI library's version string.
    var libraryVersion: String { get }
    /// `allgather` among the ranks of this host only (the thread budget compares affinity masks).
    func nodeAllgather(_ bytes: [UInt8]) throws -> [UInt8]
    /// Seconds one collective may take before the job is aborted.
    var timeout: Double { get set }
    /// What the run is doing, named when a collective times out ("step 42").
    var context: String { get set }
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func startAllreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> PendingReduction {
        try startAllreduceSum(buffer, algorithm: .auto)
    }

    /// Runs `body` with another collective timeout: phases where the other ranks wait for rank 0's
    /// file writes get a longer allowance than the training loop's collectives.
    public func withTimeout<R>(_ seconds: Double, _ body: () throws -> R) rethrows -> R {
        let saved = timeout
        timeout = seconds
        defer { timeout = saved }
        return try body()
    }

    /// Broadcasts a byte array of unknown length from `root`.
    public func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8] {
        var length = [Int64(rank == root ? bytes.count : 0)]
        try allreduce(&length, op: .max)
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        try out.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return out
    }

    /// Broadcasts a flat buffer (initial weights, resumed state) from `root`.
    public func broadcast(_ buffer: FlatBuffer<Float>, root: Int) throws {
        try broadcast(UnsafeMutableRawBufferPointer(buffer.buffer), root: root)
    }

    /// Runs `body` on every rank and agrees on the outcome: if it threw anywhere, every rank
    /// throws; the lowest failing rank's error is reported (by that rank), so all ranks leave the
    /// phase together instead of some waiting in the next collective.
    public func agree<R>(_ what: String, _ body: () throws -> R) throws -> R {
        var result: R? = nil
        var failure: Error? = nil
        do { result = try body() } catch { failure = error }
        // A nested agree that failed on another rank is not this rank's failure: the rank that
        // holds the cause is named (and prints it), whichever phase it failed in.
        let peerOnly = Int64.max - 1
        let own: Int64 = failure == nil ? .max : failure is PeerFailure ? peerOnly : Int64(rank)
        var firstFailing = [own]
        try allreduce(&firstFailing, op: .min)
        if firstFailing[0] == Int64.max { return result! }
        if firstFailing[0] == peerOnly, let failure { throw failure }
        if Int64(rank) == firstFailing[0], let failure { throw failure as? AgreedFailure ?? AgreedFailure(underlying: failure) }
        throw PeerFailure(phase: what, rank: Int(firstFailing[0]))
    }
}

/// This rank's error inside `agree`: every other rank knows the phase failed and leaves too, so
/// the process may exit normally (no MPI_Abort needed).
public struct AgreedFailure: Error, CustomStringConvertible {
    public let underlying: Error
    public init(underlying: Error) { self.underlying = underlying }
    public var description: String { String(describing: underlying) }
}

/// Another rank failed in a phase all ranks went through; that rank reports the cause.
public struct PeerFailure: Error, CustomStringConvertible {
    public let phase: String
    public let rank: Int
    public init(phase: String, rank: Int) { self.phase = phase; self.rank = rank }
    public var description: String { "rank \(rank) failed during \(phase) (its error is printed by that rank)" }
}

/// A collective in flight: MPI requests, or a ring of point-to-point messages, moved on by `advance`.
public final class PendingReduction {
    public let started = Date()
    public let what: String
    private let step: () throws -> Bool
    private var done = false

    /// `advance` moves the operation on without blocking and says whether it is complete.
    public init(what: String, advance: @escaping () throws -> Bool) { self.what = what; self.step = advance }

    /// An operation that completed when it started (single process, in-process ranks).
    public static func completed(_ what: String) -> PendingReduction { PendingReduction(what: what) { true } }

    /// Moves the operation on; true once it is complete.
    public func advance() throws -> Bool {
        if !done { done = try step() }
        return done
    }
}


extension Communicator {
    /// Every rank's string, in rank order.
    public func allgather(string: String) throws -> [String] {
        let bytes = Array(string.utf8)
        var longest = [Int64(bytes.count)]
        try allreduce(&longest, op: .max)
        let width = Int(longest[0])
        let all = try allgather(bytes + [UInt8](repeating: 0, count: width - bytes.count))
        return (0..<size).map { r in
            String(decoding: all[(r * width)..<((r + 1) * width)].prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
