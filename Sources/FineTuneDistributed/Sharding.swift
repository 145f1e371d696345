/// How a global batch is split over ranks.
public enum Sharding {
    /// The slice of a global batch of `count` examples that `rank` of `size` computes: contiguous,
    /// sizes differing by at most one. A rank may get none (a short last batch): it still takes
    /// part in every collective with zero gradients.
    public static func slice(count: Int, rank: Int, size: Int) -> Range<Int> {
        (rank * count / size)..<((rank + 1) * count / size)
    }
}

extension Sharding {
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
