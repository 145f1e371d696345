import FineTuneIO
import FineTuneJSON
import FineTuneKernels
import Foundation
import XCTest

/// all-mpnet-base-v2's tokenizer.json (WordPiece with RobertaProcessing, <mask> with lstrip, <unk>
/// matched after normalisation) against Hugging Face `tokenizers` on 1,097 texts: the held-out
/// Debian descriptions, hostile ones and MPNet's special tokens written in the text, alone, as
/// pairs and truncated (Tests/fixture-scripts/make_mpnet_tokenizer_fixture.py).
final class MPNetTokenizerTests: XCTestCase {
    var folder: String { "\(fixturesDirectory)/mpnet-tokenizer" }

    func tokenizer() throws -> TextTokenizer {
        try WordPieceTokenizer.load(files: ["tokenizer.json": Data(contentsOf: URL(fileURLWithPath: "\(folder)/tokenizer.json"))], source: folder)
    }

    func testIdsEqualHuggingFaceTokenizers() throws {
        let tokenizer = try tokenizer()
        XCTAssertTrue(tokenizer is WordPieceTokenizer)
        let reference = try decodeJSON(ByteLevelBPETests.Reference.self, from: Data(contentsOf: URL(fileURLWithPath: "\(folder)/reference.json")))
        XCTAssertGreaterThanOrEqual(reference.texts, 1000)
        var mismatches: [String] = []
        for c in reference.cases {
            let ids = tokenizer.encode(c.text, pair: c.textPair, maxLength: c.maxLength).ids.map(Int.init)
            if ids != c.inputIDs {
                mismatches.append("\(c.text.debugDescription.prefix(60)) pair \(c.textPair?.prefix(20) ?? "-") max \(c.maxLength.map(String.init) ?? "-"): " +
                                  "\(ids.prefix(12)) vs \(c.inputIDs.prefix(12))")
            }
        }
        XCTAssertEqual(mismatches.count, 0, "\(mismatches.count) of \(reference.cases.count) differ:\n" + mismatches.prefix(15).joined(separator: "\n"))
        XCTAssertGreaterThan(reference.cases.count, 1500)
    }

    func testFramingAndSpecialTokens() throws {
        let tokenizer = try tokenizer()
        XCTAssertEqual(tokenizer.clsID, 0, "<s>")
        XCTAssertEqual(tokenizer.sepID, 2, "</s>")
        XCTAssertEqual(tokenizer.maskToken, "<mask>")
        XCTAssertEqual(tokenizer.maskID, 30526)
        let pair = tokenizer.encode("a", pair: "b", maxLength: nil)
        XCTAssertEqual(Array(pair.ids.prefix(3)), [0, tokenizer.id(of: "a")!, 2])
        XCTAssertEqual(Array(pair.ids[3...]), [2, tokenizer.id(of: "b")!, 2], "</s></s> between the texts")
        XCTAssertEqual(pair.typeIDs, [0, 0, 0, 0, 0, 0], "MPNet takes no token types")
    }

    /// A component the reader does not implement is an error naming it, not a silently different split.
    func testUnsupportedComponentsAreNamed() throws {
        let json = try String(contentsOfFile: "\(folder)/tokenizer.json", encoding: .utf8)
        for (from, to, says) in [("\"BertPreTokenizer\"", "\"Whitespace\"", "the pre-tokenizer Whitespace is not supported"),
                                 ("\"RobertaProcessing\"", "\"ByteLevel\"", "the post-processor ByteLevel is not supported"),
                                 ("\"BertNormalizer\"", "\"NFKC\"", "the normalizer NFKC is not supported"),
                                 ("\"model\":{\"type\":\"WordPiece\"", "\"model\":{\"type\":\"Unigram\"", "the tokenizer model Unigram is not supported")] {
            let changed = json.replacingOccurrences(of: from, with: to)
            XCTAssertNotEqual(changed, json, "the fixture has \(from)")
            XCTAssertThrowsError(try WordPieceTokenizer.load(files: ["tokenizer.json": Data(changed.utf8)], source: "m")) { error in
                XCTAssertTrue("\(error)".contains("m/tokenizer.json: \(says)"), "\(error)")
            }
        }
    }
}
