import FineTuneDistributed
import FineTuneKernels
import XCTest

final class ShardingTests: XCTestCase {
    func testShardingCoversEveryExampleOnceEvenForShortBatches() {
        for size in 1...5 {
            for count in [0, 1, 2, 3, 7, 32] {
                let slices = (0..<size).map { Sharding.slice(count: count, rank: $0, size: size) }
                XCTAssertEqual(slices.flatMap { Array($0) }, Array(0..<count), "count \(count) on \(size) ranks")
                XCTAssertLessThanOrEqual(slices.map(\.count).max()! - slices.map(\.count).min()!, 1)
            }
        }
    }

    func testParameterShardsTileTheBufferAndSplitBuckets() {
        for ranks in 1...5 {
            let shards = ParameterShards(count: 1_003, ranks: ranks)
            XCTAssertEqual(shards.ranges.flatMap { Array($0) }, Array(0..<1_003))
            XCTAssertEqual(shards.counts.reduce(0, +), 1_003)
            // A bucket's parts: each rank gets the overlap with its block, in rank order, covering the bucket.
            let bucket = 100..<700
            let parts = shards.parts(of: bucket)
            XCTAssertEqual(parts.map(\.count).reduce(0, +), bucket.count)
            XCTAssertEqual(parts.filter { !$0.isEmpty }.flatMap { Array($0) }, Array(bucket))
        }
        XCTAssertEqual(ParameterShards(count: 3, ranks: 5).counts, [0, 1, 0, 1, 1], "more ranks than parameters: some blocks empty")
    }
}

final class BalancedShardingTests: XCTestCase {
    func testSlicesCoverTheBatchWithAboutEqualTokens() {
        var rng = SplitMix64(seed: 4)
        for size in 1...5 {
            for _ in 0..<20 {
                let costs = (0..<Int(rng.next() % 40)).map { _ in 3 + Int(rng.next() % 60) }
                let slices = (0..<size).map { Sharding.balancedSlice(costs: costs, rank: $0, size: size) }
                XCTAssertEqual(slices.flatMap { Array($0) }, Array(costs.indices), "contiguous, complete, in order")
                let loads = slices.map { $0.map { costs[$0] }.reduce(0, +) }
                let ideal = Double(costs.reduce(0, +)) / Double(size)
                // Each slice is within one example of the ideal share.
                for load in loads { XCTAssertLessThanOrEqual(abs(Double(load) - ideal), Double(costs.max() ?? 0)) }
            }
        }
        // One long text among short ones: it gets a rank of its own.
        let costs = [10, 10, 10, 64, 10, 10]
        XCTAssertEqual((0..<2).map { Sharding.balancedSlice(costs: costs, rank: $0, size: 2) }, [0..<3, 3..<6])
        XCTAssertEqual((0..<3).map { Sharding.balancedSlice(costs: costs, rank: $0, size: 3) }.map(\.count).reduce(0, +), 6)
    }
}
