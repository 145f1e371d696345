import FineTuneIO
import FineTuneModels
import Foundation
import XCTest

/// Sentence-embedding data (`PairDataset`): the columns sentence-transformers names, batches in
/// column order keyed by each text's index, and the retrieval task of a file.
final class PairDatasetTests: FolderTestCase {
    func tokenizer() throws -> TextTokenizer {
        let folder = "\(fixturesDirectory)/tiny-bert/base"
        return try WordPieceTokenizer.load(files: ["vocab.txt": Data(contentsOf: URL(fileURLWithPath: "\(folder)/vocab.txt"))], source: folder)
    }

    func testCSVWithNumberedNegativesBatchesColumnByColumn() throws {
        let path = write("p.csv", "negative_2,anchor,positive,negative_1\nw3,the cpu,the fast cpu,w1\nw4,a rank,the mpi rank,w2\n")
        let d = try PairDataset(path: path, tokenizer: tokenizer(), maxLength: 8)
        XCTAssertEqual(d.count, 2)
        XCTAssertEqual(d.columns, 4)
        let b = d.batch([1, 0])
        // anchors, positives, negative_1, negative_2; each text's key is example · columns + column.
        XCTAssertEqual(b.exampleIndices, [4, 0, 5, 1, 6, 2, 7, 3])
        XCTAssertEqual(b.count, 8)
        let t = try tokenizer()
        func tokens(_ i: Int) -> [Int32] { Array(b.tokenIDs[b.sequenceStarts[i]..<b.sequenceStarts[i + 1]]) }
        XCTAssertEqual(tokens(0), t.encode("a rank", pair: nil, maxLength: 8).ids)
        XCTAssertEqual(tokens(3), t.encode("the fast cpu", pair: nil, maxLength: 8).ids)
        XCTAssertEqual(tokens(7), t.encode("w3", pair: nil, maxLength: 8).ids)
        XCTAssertEqual(d.cost(of: 0), (0..<4).reduce(0) { $0 + tokens(2 * $1 + 1).count })
    }

    /// Repeated anchors are one query with the union of their positives; every distinct positive
    /// and negative is one corpus document, in order of first appearance.
    func testRetrievalTaskMergesRepeatedTexts() throws {
        let path = write("r.jsonl", """
        {"anchor": "the cpu", "positive": "fast cpu", "negative": "slow mpi"}
        {"anchor": "a rank", "positive": "slow mpi", "negative": "fast cpu"}
        {"anchor": "the cpu", "positive": "grad sum", "negative": "slow mpi"}
        """)
        let r = try PairDataset(path: path, tokenizer: tokenizer(), maxLength: 8).retrieval()
        XCTAssertEqual(r.queries.count, 2)
        XCTAssertEqual(r.corpus.count, 3)
        XCTAssertEqual(r.relevant, [[0, 2], [1]])
        XCTAssertEqual(r.corpusIDs, ["000000000", "000000001", "000000002"])
    }

    func testColumnErrorsNameThePlace() throws {
        let t = try tokenizer()
        for (text, message) in [
            ("anchor,positive,negative_1,negative_3\na,b,c,d\n", "p.csv:1: hard-negative columns negative_1, negative_3 are not negative_1 ... negative_2"),
            ("anchor,negative\na,b\n", "p.csv:1: the header has no \"positive\" column"),
            ("anchor,positive,negative,negative_1\na,b,c,d\n", "p.csv:1: both \"negative\" and numbered \"negative_k\" columns"),
        ] {
            let path = write("p.csv", text)
            XCTAssertThrowsError(try PairDataset(path: path, tokenizer: t, maxLength: 8)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error)")
            }
        }
        let path = write("p.jsonl", "{\"anchor\": \"a\", \"positive\": 3}\n")
        XCTAssertThrowsError(try PairDataset(path: path, tokenizer: t, maxLength: 8)) { error in
            XCTAssertTrue("\(error)".contains("p.jsonl:1: \"positive\" is not a string"), "\(error)")
        }
    }
}
