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
/// Sparse regions (embedding tables, whose gradient is zero outside the rows of the batch's tokens)
/// are not bucketed: once backward is done, the ranks agree on the rows any of them touched and sum
/// just those, packed (for MiniLM that skips more than half of the buffer: 11.7M of 22.7M floats).
/// The rows no rank touched are zero everywhere, which is their sum.
///
/// With optimizer-state sharding (ZeRO stage 1) each bucket is reduce-scattered instead (the same
/// buckets, overlapped the same way): each rank receives the summed gradients of its 1/N of the
/// parameters only, updates those, and the parameters are then all-gathered (`afterUpdate`).
/// Sparse regions are summed as above and each rank keeps its part. The control slots get their
/// own small allreduce at the end, which also carries each rank's verdict on its block's finiteness.
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
    /// A [rows, width] tensor of the buffer summed row-sparsely.
    struct SparseRegion {
        let offset: Int, rows: Int, width: Int
        var range: Range<Int> { offset..<(offset + rows * width) }
    }
    let sparseRegions: [SparseRegion]
    private var packed = FlatBuffer<Float>(count: 0)
    private var started = 0
    private var pending: [PendingReduction] = []
    /// Whether every bucket this rank contributed was finite before the sum.
    private(set) var locallyFinite = true

    /// `sparse`: tensors summed row-sparsely (see above).
    init(comm: Communicator, buffer: FlatBuffer<Float>, parameterCount: Int, overlap: Bool, bucketBytes: Int, shardOptimizer: Bool,
         sparse: [TensorSpec] = []) {
        self.comm = comm
        self.buffer = buffer
        self.parameterCount = parameterCount
        self.overlap = overlap
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
        sparseRegions = comm.size == 1 ? [] : sparse.filter { $0.shape.count == 2 }
            .map { SparseRegion(offset: $0.offset, rows: $0.shape[0], width: $0.shape[1]) }
            .sorted { $0.offset > $1.offset }
        // The dense stretches between sparse regions, each cut into buckets from its end.
        let size = max(1, bucketBytes / MemoryLayout<Float>.stride)
        var ranges: [Range<Int>] = []
        // Sharded, the control slots after the parameters are not reduce-scattered (see finish).
        var end = shardOptimizer ? parameterCount : buffer.count
        for lower in sparseRegions.map({ $0.range }) + [0..<0] {
            var stretch = lower.upperBound..<end
            if !self.overlap && !stretch.isEmpty { ranges.append(stretch) }
            while self.overlap && !stretch.isEmpty {
                ranges.append(max(stretch.lowerBound, stretch.upperBound - size)..<stretch.upperBound)
                stretch = stretch.lowerBound..<ranges.last!.lowerBound
            }
            end = lower.lowerBound
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
        // Which rank's own gradients were non-finite (to name it); with one rank the sum is its own.
        if comm.size > 1 && !allFinite(buffer.base + range.lowerBound, count: range.count) { locallyFinite = false }
        let bucket = UnsafeMutableBufferPointer(start: buffer.base + range.lowerBound, count: range.count)
        if let shardGradients {
            // Rank r receives the part of the bucket inside its shard (possibly nothing).
            let parts = (0..<comm.size).map { Sharding.slice(count: parameterCount, rank: $0, size: comm.size).clamped(to: range) }
            let mine = parts[comm.rank]
            pending.append(try comm.startReduceScatterSum(bucket, counts: parts.map(\.count),
                                                          into: shardGradients.base + (mine.isEmpty ? 0 : mine.lowerBound - shard.lowerBound)))
        } else {
            pending.append(try comm.startAllreduceSum(bucket))
        }
    }

    /// Completes the exchange. Returns whether the summed gradients are finite, the same answer on
    /// every rank (a NaN or Inf anywhere makes a sum non-finite; sharded, the ranks' verdicts on
    /// their blocks travel in the control allreduce).
    func finish(nonFiniteSlot: Int) throws -> Bool {
        while started < buckets.count { try startNext() }
        // The dense buckets progress inside MPI while the sparse regions are summed.
        var finite = true
        for region in sparseRegions { finite = try sumTouchedRows(region) && finite }
        for p in pending { try comm.wait(p) }
        pending = []
        if let shardGradients {
            for region in sparseRegions {
                let mine = region.range.clamped(to: shard)
                (shardGradients.base + (mine.lowerBound - shard.lowerBound)).update(from: buffer.base + mine.lowerBound, count: mine.count)
            }
            buffer[parameterCount + nonFiniteSlot] = finite && allFinite(shardGradients.base, count: shardGradients.count) ? 0 : 1
            try comm.allreduceSum(UnsafeMutableBufferPointer(start: buffer.base + parameterCount, count: buffer.count - parameterCount))
            if comm.size == 1 { locallyFinite = buffer[parameterCount + nonFiniteSlot] == 0 }
            return buffer[parameterCount + nonFiniteSlot] == 0
        }
        // The sums, not the local parts: every rank sees the same values, so gives the same answer.
        for bucket in buckets where finite {
            let parameters = bucket.clamped(to: 0..<parameterCount)
            finite = allFinite(buffer.base + parameters.lowerBound, count: parameters.count)
        }
        if comm.size == 1 { locallyFinite = finite }
        return finite
    }

    /// Sums the rows of `region` that are non-zero on some rank (NaN counts as non-zero), packed;
    /// returns whether the summed rows are finite.
    private func sumTouchedRows(_ region: SparseRegion) throws -> Bool {
        let base = buffer.base + region.offset, width = region.width
        var touched = [Int64](repeating: 0, count: region.rows)
        // A row is touched when some element has a bit set besides the sign (-0 counts as zero).
        let bits = UnsafeRawPointer(base).assumingMemoryBound(to: UInt32.self)
        for row in 0..<region.rows {
            var any: UInt32 = 0
            for c in 0..<width { any |= bits[row * width + c] & 0x7FFF_FFFF }
            touched[row] = any == 0 ? 0 : 1
        }
        try comm.allreduce(&touched, op: .max)
        let rows = touched.indices.filter { touched[$0] != 0 }
        if packed.count < rows.count * width { packed = FlatBuffer(count: rows.count * width) }
        for (k, row) in rows.enumerated() { (packed.base + k * width).update(from: base + row * width, count: width) }
        if !allFinite(packed.base, count: rows.count * width) { locallyFinite = false }
        try comm.allreduceSum(UnsafeMutableBufferPointer(start: packed.base, count: rows.count * width))
        for (k, row) in rows.enumerated() { (base + row * width).update(from: packed.base + k * width, count: width) }
        return allFinite(packed.base, count: rows.count * width)
    }

    /// The summed gradients of this rank's optimizer shard (`[0]` belongs to parameter `shard.lowerBound`).
    var gradientsOfShard: UnsafeMutablePointer<Float> { shardGradients?.base ?? buffer.base }

    /// Sharded: after each rank updated its block, every rank gets all the parameters.
    func afterUpdate(_ parameters: FlatBuffer<Float>) throws {
        guard let shardCounts else { return }
        try comm.allgatherInPlace(UnsafeMutableBufferPointer(start: parameters.base, count: parameterCount), counts: shardCounts)
    }
}
