/// How work and state are split over ranks: the one place that computes shard ranges.
public enum Sharding {
    /// The slice of `count` items that `rank` of `size` takes: contiguous, sizes differing by at
    /// most one. A rank may get none (a short last batch): it still takes part in every collective.
    public static func slice(count: Int, rank: Int, size: Int) -> Range<Int> {
        (rank * count / size)..<((rank + 1) * count / size)
    }

    /// A contiguous slice made of whole batches of `batchSize` (the last may be short): each rank's
    /// batches are exactly the batches one process would form, so per-example results (which
    /// BLAS may round differently in differently composed batches) do not depend on the rank count.
    public static func batchAlignedSlice(count: Int, batchSize: Int, rank: Int, size: Int) -> Range<Int> {
        let batches = slice(count: (count + batchSize - 1) / batchSize, rank: rank, size: size)
        return min(batches.lowerBound * batchSize, count)..<min(batches.upperBound * batchSize, count)
    }

    /// The slice of a global batch that `rank` computes when examples cost differently (text:
    /// tokens): contiguous slices of about equal total cost, so one long text does not make a
    /// straggler. `costs` are the batch's examples in order; every rank computes the same split.
    public static func balancedSlice(costs: [Int], rank: Int, size: Int) -> Range<Int> {
        let total = costs.reduce(0, +)
        guard total > 0 else { return slice(count: costs.count, rank: rank, size: size) }
        // Boundary k: the first example whose running cost reaches k/size of the total.
        func boundary(_ k: Int) -> Int {
            if k == 0 { return 0 }
            if k == size { return costs.count }
            let target = Double(total) * Double(k) / Double(size)
            var running = 0
            for (i, c) in costs.enumerated() {
                // Put example i on the side where the split lands closer to the target.
                if Double(running) + Double(c) / 2 >= target { return i }
                running += c
            }
            return costs.count
        }
        return boundary(rank)..<max(boundary(rank), boundary(rank + 1))
    }
}

/// A flat parameter buffer split into one contiguous block per rank (optimizer-state sharding,
/// ZeRO stage 1): block r is what rank r updates and keeps optimizer state for.
public struct ParameterShards: Equatable, Sendable {
    public let ranges: [Range<Int>]
    public init(count: Int, ranks: Int) { self.init(range: 0..<count, ranks: ranks) }
    /// Blocks of `range` only (the trainable parameters, when a prefix is frozen).
    public init(range: Range<Int>, ranks: Int) {
        ranges = (0..<ranks).map { r in
            let block = Sharding.slice(count: range.count, rank: r, size: ranks)
            return (range.lowerBound + block.lowerBound)..<(range.lowerBound + block.upperBound)
        }
    }
    /// The range the blocks cover.
    public var whole: Range<Int> { ranges.first!.lowerBound..<ranges.last!.upperBound }
    public var counts: [Int] { ranges.map(\.count) }
    public subscript(rank: Int) -> Range<Int> { ranges[rank] }
    /// Each rank's part of `range` (possibly empty), in rank order: a bucket's reduce-scatter counts.
    public func parts(of range: Range<Int>) -> [Range<Int>] { ranges.map { $0.clamped(to: range) } }
}
