import FineTuneCore
import FineTuneDistributed
import Foundation

/// Sums the gradient buffer over all ranks in buckets of about `bucketBytes`, from the end of the
/// buffer (last layers, whose gradients backward finishes first) to the start. With overlap on,
/// a bucket's non-blocking allreduce starts as soon as backward reports its gradients final, and
/// MPI is given a chance to progress each time backward reports; the time left after backward is
/// the exposed communication. With overlap off, one allreduce runs after backward.
/// The control slots at the end of the buffer travel in the first bucket.
final class GradientReducer {
    let comm: Communicator
    let buffer: FlatBuffer<Float>
    let overlap: Bool
    /// Bucket ranges in the order they start: descending offsets.
    let buckets: [Range<Int>]
    private var started = 0
    private var pending: [PendingReduction] = []
    /// Whether every bucket this rank contributed was finite before the sum.
    private(set) var locallyFinite = true

    init(comm: Communicator, buffer: FlatBuffer<Float>, overlap: Bool, bucketBytes: Int) {
        self.comm = comm
        self.buffer = buffer
        self.overlap = overlap
        let size = max(1, bucketBytes / MemoryLayout<Float>.stride)
        var ranges: [Range<Int>] = []
        var end = buffer.count
        if overlap {
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

    /// Starts what is left and waits for every bucket.
    func finish() throws {
        while started < buckets.count { try startNext() }
        for p in pending { try comm.wait(p) }
        pending = []
    }
}
