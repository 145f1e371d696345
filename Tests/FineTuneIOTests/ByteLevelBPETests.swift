import FineTuneIO
import FineTuneJSON
import FineTuneKernels
import Foundation
import XCTest

/// Byte-level BPE from a tokenizer.json against Hugging Face `tokenizers` on 1,084 texts (the
/// held-out Debian descriptions and hostile ones), alone, as pairs and truncated, with and without
/// add_prefix_space
/// (Tests/fixture-scripts/make_bpe_fixture.py made the tokenizer and the reference ids).
final class ByteLevelBPETests: XCTestCase {
    var folder: String { "\(fixturesDirectory)/bpe" }

    func testIdsEqualHuggingFaceTokenizers() throws {
        try assertIdsEqualReference(tokenizer: "tokenizer.json", reference: "bpe_reference.json")
    }

    /// The same vocabulary and merges with ByteLevel's add_prefix_space: a space before every
    /// stretch of text (the first word, and the text after `<mask>`).
    func testPrefixSpaceIdsEqualHuggingFaceTokenizers() throws {
        try assertIdsEqualReference(tokenizer: "tokenizer_prefix_space.json", reference: "bpe_prefix_space_reference.json")
        let plain = try ByteLevelBPETokenizer(json: Data(contentsOf: URL(fileURLWithPath: "\(folder)/tokenizer.json")), source: "t")
        let spaced = try ByteLevelBPETokenizer(json: Data(contentsOf: URL(fileURLWithPath: "\(folder)/tokenizer_prefix_space.json")), source: "t")
        XCTAssertEqual(spaced.tokenize("package"), plain.tokenize(" package"))
        XCTAssertNotEqual(spaced.tokenize("package"), plain.tokenize("package"))
    }

    func assertIdsEqualReference(tokenizer file: String, reference referenceFile: String) throws {
        let tokenizer = try ByteLevelBPETokenizer(json: Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(file)")),
                                                  source: "\(folder)/\(file)")
        let reference = try decodeJSON(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(referenceFile)")))
        XCTAssertGreaterThanOrEqual(reference.texts, 1000)
        var mismatches: [String] = []
        for c in reference.cases {
            let ids = tokenizer.encode(c.text, pair: c.textPair, maxLength: c.maxLength).ids.map(Int.init)
            if ids != c.inputIDs { mismatches.append("\(c.text.debugDescription.prefix(60)) pair \(c.textPair?.prefix(20) ?? "-") max \(c.maxLength.map(String.init) ?? "-"): \(ids.prefix(12)) vs \(c.inputIDs.prefix(12))") }
        }
        XCTAssertEqual(mismatches.count, 0, "\(mismatches.count) of \(reference.cases.count) differ:\n" + mismatches.prefix(15).joined(separator: "\n"))
        XCTAssertGreaterThan(reference.cases.count, 1500)
    }

    func testPiecesFollowTheGPT2Pattern() {
        func pieces(_ s: String) -> [String] {
            ByteLevelBPETokenizer.preTokenize(Array(s.unicodeScalars)).map { String(String.UnicodeScalarView($0)) }
        }
        XCTAssertEqual(pieces("Hello  world's 42x!!"), ["Hello", " ", " world", "'s", " 42", "x", "!!"])
        XCTAssertEqual(pieces("a\n\n b"), ["a", "\n\n", " b"])
        XCTAssertEqual(pieces("end   "), ["end", "   "])
    }

    func testUnsupportedComponentsAreNamed() throws {
        var json = try String(contentsOfFile: "\(folder)/tokenizer.json", encoding: .utf8)
        json = json.replacingOccurrences(of: "\"RobertaProcessing\"", with: "\"BertProcessing\"")
        XCTAssertThrowsError(try ByteLevelBPETokenizer(json: Data(json.utf8), source: "t.json")) { error in
            XCTAssertTrue("\(error)".contains("t.json: the post-processor BertProcessing is not supported"), "\(error)")
        }
    }

    struct Reference: Decodable {
        var texts: Int
        var cases: [Case]
    }
    struct Case: Decodable {
        var text: String
        var textPair: String?
        var maxLength: Int?
        var inputIDs: [Int]
        enum CodingKeys: String, CodingKey { case text, textPair = "text_pair", maxLength = "max_length", inputIDs = "input_ids" }
    }
}
