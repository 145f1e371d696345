import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation
import XCTest

/// Token ids against Hugging Face's BertTokenizerFast on 1,080 cases, special tokens in the text among them (Tests/fixture-scripts/make_tokenizer_fixture.py).
final class TokenizerTests: XCTestCase {
    func testMatchesBertTokenizerFastOnTheFixture() throws {
        let dir = "\(fixturesDirectory)/tokenizer"
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/tokenizer_reference.json"))) as! [String: Any]
        let cases = fixture["cases"] as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(cases.count, 300)
        let vocabulary = try WordPieceTokenizer.load(folder: dir).tokens
        let uncased = try WordPieceTokenizer(tokens: vocabulary, lowercase: true)
        let cased = try WordPieceTokenizer(tokens: vocabulary, lowercase: false)
        var failures = 0
        for c in cases {
            let tokenizer = (c["lowercase"] as! Bool) ? uncased : cased
            let got = tokenizer.encode(c["text"] as! String, pair: c["text_pair"] as? String, maxLength: c["max_length"] as? Int)
            let ids = (c["input_ids"] as! [NSNumber]).map { $0.int32Value }
            let types = (c["token_type_ids"] as! [NSNumber]).map { $0.int32Value }
            if got.ids != ids || got.typeIDs != types {
                failures += 1
                if failures <= 10 {
                    XCTFail("lowercase \(c["lowercase"]!) max_length \(String(describing: c["max_length"])) text \(String(reflecting: c["text"]!)) pair \(String(describing: c["text_pair"])):\n got \(got.ids.map { tokenizer.tokens[Int($0)] })\nwant \(ids.map { tokenizer.tokens[Int($0)] })")
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) of \(cases.count) cases differ")
    }
}

final class TokenizerFilesTests: XCTestCase {
    /// Without vocab.txt the vocabulary comes from tokenizer.json, and its normaliser decides the casing.
    func testVocabularyAndCasingFromTokenizerJSON() throws {
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "Hello", "##s", "!"]
        let vocab = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($0.element, $0.offset) })
        for lowercase in [true, false] {
            let json: [String: Any] = ["model": ["type": "WordPiece", "vocab": vocab], "normalizer": ["type": "BertNormalizer", "lowercase": lowercase]]
            let tokenizer = try XCTUnwrap(WordPieceTokenizer.load(files: ["tokenizer.json": try JSONSerialization.data(withJSONObject: json)], source: "t")
                                          as? WordPieceTokenizer)
            XCTAssertEqual(tokenizer.lowercase, lowercase)
            XCTAssertEqual(tokenizer.encode("Hellos!").ids, lowercase ? [2, 4, 6, 7, 3] : [2, 5, 6, 7, 3])
        }
        XCTAssertThrowsError(try WordPieceTokenizer.load(files: [:], source: "empty-folder")) {
            XCTAssertTrue(String(describing: $0).contains("empty-folder: no vocab.txt or tokenizer.json"))
        }
        XCTAssertThrowsError(try WordPieceTokenizer(tokens: ["a", "b"], lowercase: true, source: "v.txt")) {
            XCTAssertTrue(String(describing: $0).contains("v.txt: no [CLS] token"))
        }
    }
}
