import FineTuneIO
import FineTuneModels
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

/// Every parameter's gradient against the golden file's "grad." + `gradientName(parameter)`, within
/// the golden tests' tolerance (1.5e-5 of the tensor's largest value plus 4e-4 relative). The
/// attention key bias's gradient is exactly zero in theory (a softmax row does not change when
/// shifted): both sides must be rounding noise, below 1e-9. Returns how many tensors were compared.
@discardableResult
func assertGradientsMatch(_ model: BertModel, golden: SafetensorsFile, gradientName: (String) -> String,
                          file: StaticString = #filePath, line: UInt = #line) throws -> Int {
    let keyBias = model.config.family.layerModules.key + ".bias"
    var compared = 0
    for spec in model.layout.tensors {
        let name = "grad." + gradientName(spec.name)
        guard golden.entries[name] != nil else { XCTFail("no reference gradient \(name)", file: file, line: line); continue }
        let ours = model.gradients.values(of: spec), reference = try golden.floats(name)
        if spec.name.hasSuffix(keyBias) {
            XCTAssertLessThan((ours + reference).map(abs).max()!, 1e-9, "\(name): an exact zero, so only rounding noise on both sides", file: file, line: line)
        } else {
            assertClose(ours, reference, absolute: 1.5e-5 * (reference.map(abs).max() ?? 0), relative: 4e-4, name, file: file, line: line)
        }
        compared += 1
    }
    XCTAssertEqual(compared, model.layout.tensors.count, file: file, line: line)
    return compared
}
