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
}
