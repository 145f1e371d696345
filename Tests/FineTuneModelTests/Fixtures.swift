import Foundation
import XCTest

/// Tests/Fixtures: small files made once by Tests/fixture-scripts (with torch), committed.
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path

/// |ours − reference| ≤ absolute + relative · |reference|, element by element.
func assertClose(_ ours: [Float], _ reference: [Float], absolute: Float, relative: Float, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(ours.count, reference.count, what, file: file, line: line)
    for (i, (a, r)) in zip(ours, reference).enumerated() where !(abs(a - r) <= absolute + relative * abs(r)) {
        XCTFail("\(what)[\(i)]: \(a) vs \(r) (difference \(abs(a - r)), allowed \(absolute + relative * abs(r)))", file: file, line: line)
        return
    }
}
