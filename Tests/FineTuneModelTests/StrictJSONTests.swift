import FineTuneJSON
import FineTuneModels
import Foundation
import XCTest

final class StrictJSONTests: XCTestCase {
    func testReadsWhatFoundationReads() throws {
        let text = #"{"a": [1, -2, 3.5, 1e3, -0.25e-2, true, false, null], "b": {"c": "x\"y\\z\u00e9\ud83d\ude00\n"}, "d": [], "e": {}}"#
        XCTAssertEqual(try StrictJSON.parse(text), try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))
        XCTAssertEqual(try StrictJSON.parse("  9223372036854775807 "), .integer(Int64.max))
        XCTAssertEqual(try StrictJSON.parse("9223372036854775808"), .double(9223372036854775808))
    }

    func testNonFiniteNumbersAreReadSoCallersCanNameThem() throws {
        guard case .array(let values) = try StrictJSON.parse("[NaN, Infinity, -Infinity, 1e999]") else { return XCTFail() }
        XCTAssertTrue(values[0].number!.isNaN)
        XCTAssertEqual(values.dropFirst().map(\.kindDescription), ["Infinity", "-Infinity", "Infinity"])
    }

    func testErrorsNameWhatAndWhere() {
        func message(_ text: String) -> String {
            do { _ = try StrictJSON.parse(text); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertEqual(message(#"{"label": "x", "label": "y"}"#), #"column 16: duplicate key "label" (the object names it twice)"#)
        XCTAssertEqual(message(#"{"text": "abc"#), "column 10: the string that starts here is never closed")
        XCTAssertEqual(message(#"{"a": 1} x"#), "column 10: unexpected text after the JSON value")
        XCTAssertEqual(message(#"{"a": 01}"#), "column 7: a number with a leading zero")
        XCTAssertEqual(message(#"{"a" 1}"#), #"column 6: expected ':' after the key "a""#)
        XCTAssertEqual(message("[1, 2"), "column 6: the text ends inside a list (a ']' is missing)")
        XCTAssertEqual(message(#"["\x"]"#), #"column 3: unknown escape \x in a string"#)
        XCTAssertEqual(message(#"["\ud800"]"#).contains("unpaired UTF-16 surrogate"), true)
        XCTAssertEqual(message(""), "column 1: the text ends where a value should be")
        XCTAssertEqual(message(String(repeating: "[", count: 10_000)), "column 257: nested deeper than 256 levels")
        XCTAssertTrue(message("[\"a\u{01}\"]").contains("control character"))
    }
}
