import FineTuneCore
import FineTuneDistributed
import Foundation

/// Sums the gradient buffer over all ranks in buckets of about `bucketBytes`, from the end of the
/// buffer (last layers, whose gradients backward finishes first) to the start. With overlap on,
/// a bucket's non-blocking allreduce starts as soon as backward reports its gradients final, and
/// MPI is given a chance to progress each time backward reports; the time left after backward is
/// the exposed communication. With overlap off, one allreduce runs after backward.
/// The control slots at the end of the buffer travel in the first bucket.
///
/// With optimizer-state sharding (ZeRO stage 1) the exchange is a reduce-scatter instead: each rank
/// receives the summed gradients of its 1/N of the parameters only, updates those, and the
/// parameters are then all-gathered (`afterUpdate`). The control slots get their own small allreduce.
final class GradientReducer {
    let comm: Communicator
    let buffer: FlatBuffer<Float>
    let overlap: Bool
    /// The parameters (the start of the buffer) without the control slots.
    let parameterCount: Int
    /// Sharded: every rank's block sizes, and this rank's summed block.
    let shardCounts: [Int]?
    let shardGradients: FlatBuffer<Float>?
    let shard: Range<Int>
    /// Bucket ranges in the order they start: descending offsets.
    let buckets: [Range<Int>]
    private var started = 0
    private var pending: [PendingReduction] = []
    /// Whether every bucket this rank contributed was finite before the sum.
    private(set) var locallyFinite = true

    init(comm: Communicator, buffer: FlatBuffer<Float>, parameterCount: Int, overlap: Bool, bucketBytes: Int, shardOptimizer: Bool) {
        self.comm = comm
        self.buffer = buffer
        self.parameterCount = parameterCount
        self.overlap = overlap && !shardOptimizer
        if shardOptimizer {
            let counts = (0..<comm.size).map { Sharding.slice(count: parameterCount, rank: $0, size: comm.size).count }
            shardCounts = counts
            shard = Sharding.slice(count: parameterCount, rank: comm.rank, size: comm.size)
            shardGradients = FlatBuffer(count: shard.count)
        } else {
            shardCounts = nil
            shard = 0..<parameterCount
            shardGradients = nil
        }
        let size = max(1, bucketBytes / MemoryLayout<Float>.stride)
        var ranges: [Range<Int>] = []
        var end = buffer.count
        if self.overlap {
            while end > 0 { ranges.append(max(0, end - size)..<end); end -= size }
        } else {
            ranges = [0..<buffer.count]
        }
        buckets = ranges
    }

    func beginStep() {
        started = 0
        pending = []
        locallyFinite = true
    }

    /// Gradients from `offset` to the end are final: start every bucket that lies within them.
    func ready(from offset: Int) throws {
        guard overlap else { return }
        while started < buckets.count && buckets[started].lowerBound >= offset { try startNext() }
        for p in pending { _ = try comm.test(p) }
    }

    private func startNext() throws {
        let range = buckets[started]
        started += 1
        if !allFinite(buffer.base + range.lowerBound, count: range.count) { locallyFinite = false }
        pending.append(try comm.startAllreduceSum(UnsafeMutableBufferPointer(start: buffer.base + range.lowerBound, count: range.count)))
    }

    /// Completes the exchange. Returns whether the summed gradients are finite, the same answer on
    /// every rank (a NaN or Inf anywhere makes a sum non-finite; sharded, the ranks' verdicts on
    /// their blocks travel in the control allreduce).
    func finish(nonFiniteSlot: Int) throws -> Bool {
        if let shardCounts, let shardGradients {
            locallyFinite = allFinite(buffer.base, count: parameterCount)
            try comm.reduceScatterSum(UnsafeMutableBufferPointer(start: buffer.base, count: parameterCount), counts: shardCounts,
                                      into: shardGradients.base)
            buffer[parameterCount + nonFiniteSlot] = allFinite(shardGradients.base, count: shardGradients.count) ? 0 : 1
            try comm.allreduceSum(UnsafeMutableBufferPointer(start: buffer.base + parameterCount, count: buffer.count - parameterCount))
            return buffer[parameterCount + nonFiniteSlot] == 0
        }
        while started < buckets.count { try startNext() }
        for p in pending { try comm.wait(p) }
        pending = []
        return allFinite(buffer.base, count: parameterCount)
    }

    /// The summed gradients of this rank's optimizer shard (`[0]` belongs to parameter `shard.lowerBound`).
    var gradientsOfShard: UnsafeMutablePointer<Float> { shardGradients?.base ?? buffer.base }

    /// Sharded: after each rank updated its block, every rank gets all the parameters.
    func afterUpdate(_ parameters: FlatBuffer<Float>) throws {
        guard let shardCounts else { return }
        try comm.allgatherInPlace(UnsafeMutableBufferPointer(start: parameters.base, count: parameterCount), counts: shardCounts)
    }
}
