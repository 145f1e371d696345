@testable import FineTuneDistributed
import FineTuneKernels
import FineTuneTestSupport
import XCTest

/// The gradient exchange on ranks run as threads (InProcessGroup): buckets, the sparse rows of
/// embedding tables, sharding and the control values, against sums computed directly. Values are
/// small integers, so every sum is exact whatever its order.
final class GradientExchangeTests: XCTestCase {
    func testBucketsTileTheDenseStretchesFromTheEnd() {
        let skipped = [60..<80, 10..<20]
        let buckets = GradientExchange.buckets(range: 0..<100, skipping: skipped, size: 15, overlap: true)
        XCTAssertEqual(buckets.map(\.lowerBound), buckets.map(\.lowerBound).sorted(by: >), "last layers first")
        XCTAssertTrue(buckets.allSatisfy { $0.count <= 15 && !$0.isEmpty })
        let covered = buckets.flatMap { Array($0) }.sorted()
        XCTAssertEqual(covered, Array(0..<10) + Array(20..<60) + Array(80..<100), "every dense element once, no sparse one")
        XCTAssertEqual(GradientExchange.buckets(range: 0..<100, skipping: skipped, size: 15, overlap: false), [80..<100, 20..<60, 0..<10],
                       "without overlap: one bucket per dense stretch")
        XCTAssertEqual(GradientExchange.buckets(range: 0..<7, skipping: [], size: 1, overlap: true).count, 7)
    }

    /// A 2-row x 3 dense tensor, a [6, 4] sparse table, then 13 dense values: 43 floats.
    let sparse = TensorSpec(name: "table", shape: [6, 4], offset: 6, decays: true)
    let count = 6 + 24 + 13

    /// Rank r's gradients: dense values 1 + r + i % 5; of the table, rows r and r + 2 (so row 0-3 are
    /// touched by some rank, rows 4-5 by none).
    func localGradients(rank: Int) -> [Float] {
        var g = [Float](repeating: 0, count: count)
        for i in 0..<count where !sparse.range.contains(i) { g[i] = Float(1 + rank + i % 5) }
        for row in [rank, rank + 2] { for c in 0..<4 { g[sparse.offset + row * 4 + c] = Float(10 * rank + c + 1) } }
        return g
    }

    func expectedSum(ranks: Int) -> [Float] {
        (0..<ranks).map(localGradients).reduce([Float](repeating: 0, count: count)) { zip($0, $1).map(+) }
    }

    func exchange(ranks: Int, settings: GradientExchange.Settings, poison: (rank: Int, index: Int, value: Float)? = nil)
        throws -> [(result: GradientExchange.Result, summed: [Float], shard: Range<Int>, locallyFinite: Bool, floats: Int)] {
        try InProcessGroup.run(size: ranks) { comm in
            let gradients = FlatBuffer<Float>(count: self.count)
            let exchange = GradientExchange(comm: comm, gradients: gradients, sparse: [self.sparse],
                                            touchedRows: { _ in [comm.rank, comm.rank + 2] }, settings: settings)
            for (i, v) in self.localGradients(rank: comm.rank).enumerated() { gradients[i] = v }
            if let poison, poison.rank == comm.rank { gradients[poison.index] = poison.value }
            exchange.beginStep(examples: comm.rank + 1, preempted: comm.rank == 1, checkpoint: comm.rank == 0)
            try exchange.forwardDone(lossSum: Double(comm.rank) + 0.5)
            // Backward reports finished tensors from the end of the buffer.
            for offset in [30, 6, 0] { try exchange.ready(from: offset) }
            let result = try exchange.finish()
            let shard = exchange.shard
            let summed = (0..<shard.count).map { exchange.gradientsOfShard[$0] }
            return (result, summed, shard, exchange.locallyFinite, exchange.floatsExchanged)
        }
    }

    func testSumsEqualTheDirectSumOnEveryRank() throws {
        for ranks in [1, 2, 3] {
            for overlap in [true, false] {
                for shard in [false, true] {
                    var settings = GradientExchange.Settings()
                    settings.overlap = overlap; settings.shardOptimizer = shard; settings.bucketBytes = 7 * 4
                    let expected = expectedSum(ranks: ranks)
                    let what = "\(ranks) ranks, overlap \(overlap), sharded \(shard)"
                    let outcomes = try exchange(ranks: ranks, settings: settings)
                    for (rank, o) in outcomes.enumerated() {
                        XCTAssertEqual(o.summed, Array(expected[o.shard]), "\(what): rank \(rank)'s summed gradients")
                        XCTAssertEqual(o.shard, shard ? ParameterShards(count: count, ranks: ranks)[rank] : 0..<count, what)
                        XCTAssertEqual(o.result.examples, ranks * (ranks + 1) / 2, what)
                        XCTAssertEqual(o.result.lossSum, Double(ranks * (ranks - 1) / 2) + 0.5 * Double(ranks), what)
                        XCTAssertEqual(o.result.preempted, ranks > 1, "\(what): rank 1 asked to stop, everyone knows")
                        XCTAssertTrue(o.result.checkpointRequested, "\(what): rank 0 asked for a checkpoint, everyone knows")
                        XCTAssertTrue(o.result.finite && o.locallyFinite, what)
                    }
                    // The 19 dense values, the 5 controls, one 64-bit word of row bits (6 rows) and only the
                    // rows some rank touched (0-3, or 0-4 with 3 ranks); one rank sends no rows at all.
                    let touchedRows = ranks == 1 ? 0 : (ranks == 2 ? 4 : 5)
                    XCTAssertEqual(outcomes[0].floats, 19 + 5 + (ranks == 1 ? 0 : 2 + 4 * touchedRows), "\(what): floats sent")
                }
            }
        }
    }

    func testANonFiniteValueIsSeenByEveryRankAndNamedByItsOwn() throws {
        for shard in [false, true] {
            for index in [2, 8, 40] {  // dense, sparse table, last bucket
                var settings = GradientExchange.Settings()
                settings.shardOptimizer = shard; settings.bucketBytes = 7 * 4
                let outcomes = try exchange(ranks: 3, settings: settings, poison: (1, index, .nan))
                XCTAssertEqual(outcomes.map(\.result.finite), [false, false, false], "sharded \(shard), index \(index)")
                XCTAssertEqual(outcomes.map(\.locallyFinite), [true, false, true], "only rank 1's own values were NaN")
            }
        }
        // Finite values whose sum overflows: every rank sees it, none is to blame.
        let outcomes = try InProcessGroup.run(size: 2) { comm -> (Bool, Bool) in
            let g = FlatBuffer<Float>(count: 8)
            for i in 0..<8 { g[i] = 3e38 }
            let exchange = GradientExchange(comm: comm, gradients: g, settings: GradientExchange.Settings())
            exchange.beginStep(examples: 1, preempted: false)
            try exchange.forwardDone(lossSum: 1)
            let r = try exchange.finish()
            return (r.finite, exchange.locallyFinite)
        }
        XCTAssertTrue(outcomes.allSatisfy { !$0.0 && $0.1 })
    }

    func testShardedParametersAreGatheredAfterTheUpdate() throws {
        var settings = GradientExchange.Settings()
        settings.shardOptimizer = true
        let gathered = try InProcessGroup.run(size: 3) { comm -> [Float] in
            let g = FlatBuffer<Float>(count: 10), p = FlatBuffer<Float>(count: 10)
            let exchange = GradientExchange(comm: comm, gradients: g, settings: settings)
            for i in exchange.shard { p[i] = Float(100 * comm.rank + i) }  // each rank "updates" its block only
            try exchange.afterUpdate(p)
            return p.array
        }
        let shards = ParameterShards(count: 10, ranks: 3)
        let expected = (0..<10).map { i in Float(100 * (0..<3).first { shards[$0].contains(i) }! + i) }
        XCTAssertEqual(gathered, [expected, expected, expected])
    }
}
