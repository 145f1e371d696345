@testable import FineTuneKernels
import XCTest

final class RandomTests: XCTestCase {
    func testEpochPermutationIsAPermutationKeyedBySeedAndEpoch() {
        let p = epochPermutation(count: 803, seed: 5, epoch: 2)
        XCTAssertEqual(p.sorted(), Array(0..<803))
        XCTAssertEqual(p, epochPermutation(count: 803, seed: 5, epoch: 2))
        XCTAssertNotEqual(p, epochPermutation(count: 803, seed: 5, epoch: 3))
        XCTAssertNotEqual(p, epochPermutation(count: 803, seed: 6, epoch: 2))
    }

    func testFeistelPermutationIsABijectionKeyedByItsKey() {
        for count in [1, 2, 3, 1000, 4097] {
            let p = FeistelPermutation(count: count, key: 9)
            XCTAssertEqual((0..<count).map(p.image).sorted(), Array(0..<count), "count \(count)")
        }
        let a = FeistelPermutation(count: 1000, key: 9), b = FeistelPermutation(count: 1000, key: 10)
        XCTAssertNotEqual((0..<1000).map(a.image), (0..<1000).map(b.image))
        // Shuffled, not near the identity: few fixed points.
        XCTAssertLessThan((0..<1000).filter { a.image($0) == $0 }.count, 10)
    }

    func testEpochOrderIsFisherYatesUpToTheLimitAndLazyAbove() {
        let small = EpochOrder(count: 803, seed: 5, epoch: 2)
        XCTAssertEqual(Array(small[0..<803]), epochPermutation(count: 803, seed: 5, epoch: 2))
        let count = EpochOrder.materializedLimit + 12_345
        let large = EpochOrder(count: count, seed: 5, epoch: 2)
        var seen = [Bool](repeating: false, count: count)
        for i in 0..<count { let j = large[i]; XCTAssertFalse(seen[j]); seen[j] = true }
        XCTAssertEqual(Array(large[100..<110]), (100..<110).map { large[$0] })
        XCTAssertNotEqual(Array(large[0..<20]), Array(EpochOrder(count: count, seed: 5, epoch: 3)[0..<20]))
    }
}
