/// How a global batch is split over ranks.
public enum Sharding {
    /// The slice of a global batch of `count` examples that `rank` of `size` computes: contiguous,
    /// sizes differing by at most one. A rank may get none (a short last batch): it still takes
    /// part in every collective with zero gradients.
    public static func slice(count: Int, rank: Int, size: Int) -> Range<Int> {
        (rank * count / size)..<((rank + 1) * count / size)
    }
}
