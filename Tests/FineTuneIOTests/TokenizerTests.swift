import FineTuneKernels
import FineTuneModels
@testable import FineTuneIO
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

/// The byte path for ASCII text must give what the general (Unicode scalar) path gives.
final class ASCIIPathTests: XCTestCase {
    func testASCIIPathEqualsTheGeneralPathOnRandomText() throws {
        let vocabulary = try WordPieceTokenizer.load(folder: "\(fixturesDirectory)/tokenizer").tokens
        let mpnet = try WordPieceTokenizer.load(folder: "\(fixturesDirectory)/mpnet-tokenizer") as! WordPieceTokenizer
        let tokenizers = [try WordPieceTokenizer(tokens: vocabulary, lowercase: true), try WordPieceTokenizer(tokens: vocabulary, lowercase: false), mpnet]
        // Words of the vocabulary and pieces of them, punctuation, spaces, control bytes, long words.
        let words = vocabulary.filter { !$0.hasPrefix("[") && $0.allSatisfy(\.isASCII) }
        var rng = SplitMix64(seed: 7)
        var fastCount = 0
        for trial in 0..<800 {
            var text = ""
            for _ in 0..<Int(rng.next() % 12) {
                switch rng.next() % 10 {
                case 0: text += String(UnicodeScalar(UInt8(rng.next() % 128)))
                case 1: text += " \t\n\r".map(String.init).randomElement(using: &rng)!
                case 2: text += String(repeating: "x", count: 95 + Int(rng.next() % 10))
                case 3: text += words.randomElement(using: &rng)!.uppercased()
                case 4: text += "!\"#$%&'()*+,-./:;=?@\\^_`{|}~".map(String.init).randomElement(using: &rng)!
                default: text += words.randomElement(using: &rng)! + (rng.next() % 3 == 0 ? "" : " ")
                }
            }
            for tokenizer in tokenizers {
                let general = tokenizer.tokenizeGeneral(text)
                XCTAssertEqual(tokenizer.tokenize(text), general, "trial \(trial): \(String(reflecting: text))")
                var bytes = Array(text.utf8)
                if bytes.withUnsafeMutableBufferPointer({ tokenizer.tokenizeASCII(UnsafeBufferPointer($0)) }) != nil { fastCount += 1 }
            }
        }
        // Most texts took the byte path (those with an added token's first byte or non-ASCII did not).
        XCTAssertGreaterThan(fastCount, 1300)
    }
}
