import FineTuneDistributed
import FineTuneKernels
import Foundation

/// Ranks as threads of one process: each thread gets an `InProcessCommunicator`, and collectives
/// meet at barriers over shared memory. For fast tests of everything above the communicator (the
/// gradient exchange, sharding, the trainer's decisions) on several ranks without mpirun.
/// Non-blocking operations complete when started, so every rank must start them in the same order
/// (as MPI requires anyway).
public final class InProcessGroup: @unchecked Sendable {
    public let size: Int
    /// Seconds a rank waits at a barrier before the collective fails (a test that would hang fails instead).
    public var timeout: Double = 60
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var posted: [UnsafeRawPointer?]

    public init(size: Int) {
        precondition(size > 0)
        self.size = size
        posted = Array(repeating: nil, count: size)
    }

    /// Runs `body` on `size` threads, one per rank, and returns their results in rank order; the
    /// lowest rank's error is rethrown.
    public static func run<R>(size: Int, timeout: Double = 60, _ body: @escaping (InProcessCommunicator) throws -> R) throws -> [R] {
        let group = InProcessGroup(size: size)
        group.timeout = timeout
        let slots = ResultSlots<R>(count: size)
        let done = DispatchGroup()
        for rank in 0..<size {
            done.enter()
            let thread = Thread {
                let result = Result { try body(InProcessCommunicator(group: group, rank: rank)) }
                slots.results[rank] = result
                done.leave()
            }
            thread.stackSize = 16 << 20
            thread.start()
        }
        done.wait()
        return try slots.results.map { try $0!.get() }
    }

    /// One result per rank thread: each thread writes only its own slot, and the slots are read
    /// after every thread has finished.
    private final class ResultSlots<R>: @unchecked Sendable {
        let results: UnsafeMutableBufferPointer<Result<R, Error>?>
        init(count: Int) {
            results = .allocate(capacity: count)
            results.initialize(repeating: nil)
        }
        deinit { results.deinitialize(); results.deallocate() }
    }

    private func barrier(_ what: String) throws {
        condition.lock()
        defer { condition.unlock() }
        let mine = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
            return
        }
        let deadline = Date().addingTimeInterval(timeout)
        while generation == mine {
            if !condition.wait(until: deadline) {
                throw FineTuneError("in-process \(what): not every rank arrived within \(Int(timeout)) s")
            }
        }
    }

    /// Every rank posts a pointer; once all have, `read` runs on each rank with every rank's pointer;
    /// nobody leaves before everyone has read.
    func exchange(rank: Int, post: UnsafeRawPointer?, what: String, _ read: ([UnsafeRawPointer?]) -> Void) throws {
        condition.lock()
        posted[rank] = post
        condition.unlock()
        try barrier(what)
        condition.lock()
        let all = posted
        condition.unlock()
        read(all)
        try barrier(what)
    }
}

public final class InProcessCommunicator: Communicator {
    let group: InProcessGroup
    public let rank: Int
    public var size: Int { group.size }
    public var timeout: Double = 300
    public var context: String = ""

    init(group: InProcessGroup, rank: Int) { self.group = group; self.rank = rank }

    private func sum<T: AdditiveArithmetic>(_ buffer: UnsafeMutableBufferPointer<T>, what: String) throws {
        guard buffer.count > 0 else { return try group.exchange(rank: rank, post: nil, what: what) { _ in } }
        var total = [T](repeating: .zero, count: buffer.count)
        try group.exchange(rank: rank, post: UnsafeRawPointer(buffer.baseAddress), what: what) { all in
            // Rank order, the same on every rank: every rank gets bitwise the same sums.
            for p in all {
                let values = p!.assumingMemoryBound(to: T.self)
                for i in 0..<buffer.count { total[i] += values[i] }
            }
        }
        _ = total.withUnsafeBufferPointer { buffer.update(from: $0) }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try sum(buffer, what: "allreduce") }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws { try sum(buffer, what: "allreduce") }

    public func startAllreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>, algorithm: AllreduceAlgorithm) throws -> PendingReduction {
        try allreduceSum(buffer)
        return PendingReduction.completed("allreduce")
    }
    public func test(_ pending: PendingReduction) throws -> Bool { try pending.advance() }
    public func wait(_ pending: PendingReduction) throws {}

    public func startReduceScatterSum(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int], into block: UnsafeMutablePointer<Float>,
                                      algorithm: AllreduceAlgorithm) throws -> PendingReduction {
        let start = counts[..<rank].reduce(0, +)
        try group.exchange(rank: rank, post: UnsafeRawPointer(buffer.baseAddress), what: "reduce-scatter") { all in
            for i in 0..<counts[rank] { block[i] = 0 }
            for p in all {
                let values = p!.assumingMemoryBound(to: Float.self) + start
                for i in 0..<counts[rank] { block[i] += values[i] }
            }
        }
        return PendingReduction.completed("reduce-scatter")
    }

    public func allgatherInPlace(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {
        // Each rank writes the others' blocks into its own buffer while they read only its own block.
        try group.exchange(rank: rank, post: UnsafeRawPointer(buffer.baseAddress), what: "allgather") { all in
            var start = 0
            for (r, p) in all.enumerated() {
                if r != rank { (buffer.baseAddress! + start).update(from: p!.assumingMemoryBound(to: Float.self) + start, count: counts[r]) }
                start += counts[r]
            }
        }
    }

    public func gather(_ block: UnsafeBufferPointer<Float>, counts: [Int], into destination: UnsafeMutablePointer<Float>?, root: Int) throws {
        try group.exchange(rank: rank, post: UnsafeRawPointer(block.baseAddress), what: "gather") { all in
            guard rank == root, let destination else { return }
            var start = 0
            for (r, p) in all.enumerated() {
                if counts[r] > 0 { (destination + start).update(from: p!.assumingMemoryBound(to: Float.self), count: counts[r]) }
                start += counts[r]
            }
        }
    }

    public func allreduce(_ values: inout [Int64], op: ReductionOp) throws {
        var result = values
        try values.withUnsafeBufferPointer { mine in
            try group.exchange(rank: rank, post: UnsafeRawPointer(mine.baseAddress), what: "allreduce") { all in
                for (r, p) in all.enumerated() {
                    let other = p!.assumingMemoryBound(to: Int64.self)
                    for i in result.indices {
                        switch op {
                        case .sum: result[i] = r == 0 ? other[i] : result[i] + other[i]
                        case .min: result[i] = Swift.min(result[i], other[i])
                        case .max: result[i] = Swift.max(result[i], other[i])
                        case .bitwiseOr: result[i] |= other[i]
                        }
                    }
                }
            }
        }
        values = result
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try group.exchange(rank: rank, post: UnsafeRawPointer(buffer.baseAddress), what: "broadcast") { all in
            if rank != root, buffer.count > 0 { buffer.baseAddress!.copyMemory(from: all[root]!, byteCount: buffer.count) }
        }
    }

    public func allgather(_ bytes: [UInt8]) throws -> [UInt8] {
        var out = [UInt8]()
        try bytes.withUnsafeBufferPointer { mine in
            try group.exchange(rank: rank, post: UnsafeRawPointer(mine.baseAddress), what: "allgather") { all in
                for p in all { out.append(contentsOf: UnsafeBufferPointer(start: p?.assumingMemoryBound(to: UInt8.self), count: bytes.count)) }
            }
        }
        return out
    }

    public func nodeAllgather(_ bytes: [UInt8]) throws -> [UInt8] { try allgather(bytes) }
    public func barrier() throws { try group.exchange(rank: rank, post: nil, what: "barrier") { _ in } }
    public func abort(message: String, code: Int32) -> Never { fatalError("rank \(rank) aborted the in-process group: \(message)") }
    public var nodeRanks: (count: Int, index: Int) { (size, rank) }
    public var hostName: String { "in-process" }
    public var libraryVersion: String { "in-process threads" }
}
