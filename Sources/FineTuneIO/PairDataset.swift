import FineTuneKernels
import FineTuneModels
import Foundation

/// Texts for contrastive sentence-embedding training and retrieval evaluation, as
/// sentence-transformers names their columns: `anchor`, `positive`, and optionally hard
/// negatives in `negative` or `negative_1` ... `negative_k` (every row the same columns). JSON
/// Lines or CSV. Each distinct text is tokenised once (cut to `maxLength` tokens, framing
/// included); an example is its row of `columns` texts.
public struct PairDataset: ExampleSet {
    public let path: String
    /// Texts per example: the anchor, the positive, then the hard negatives.
    public let columns: Int
    /// The distinct texts, tokenised: text t is tokenIDs[starts[t]..<starts[t + 1]].
    private var tokenIDs: [Int32] = []
    private var starts: [Int] = [0]
    /// The text of example i's column c: texts[i * columns + c].
    private var texts: [Int32] = []
    public private(set) var lines: [Int] = []
    public var count: Int { lines.count }
    public var negatives: Int { columns - 2 }
    public var textsPerExample: Int { columns }

    /// The column names read, in order; `negative` alone or numbered from 1.
    static func negativeColumns(_ names: [String], path: String, place: String) throws -> [String] {
        if names.contains("negative") {
            if names.contains(where: { $0.hasPrefix("negative_") }) {
                throw FineTuneError("\(place): both \"negative\" and numbered \"negative_k\" columns; use one form")
            }
            return ["negative"]
        }
        let numbered = names.filter { $0.hasPrefix("negative_") }
        for k in 1...max(numbered.count, 1) where numbered.count > 0 && !numbered.contains("negative_\(k)") {
            throw FineTuneError("\(place): hard-negative columns \(numbered.sorted().joined(separator: ", ")) are not negative_1 ... negative_\(numbered.count)")
        }
        return (0..<numbered.count).map { "negative_\($0 + 1)" }
    }

    public init(path: String, tokenizer: TextTokenizer, maxLength: Int) throws {
        self.path = path
        var rows: [(line: Int, texts: [String])] = []
        var columnNames: [String]? = nil
        let data = try readDataFile(path)
        func check(_ text: String?, column: String, line: Int) throws -> String {
            guard let text else { throw FineTuneError("\(path):\(line): missing \"\(column)\" (a string)") }
            guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw FineTuneError("\(path):\(line): \"\(column)\" is empty; every text of a pair needs words")
            }
            return text
        }
        if path.lowercased().hasSuffix(".csv") {
            let records = try CSV.parse(data, path: path)
            guard let header = records.first else { throw FineTuneError("\(path): empty CSV file (a header row is needed)") }
            for required in ["anchor", "positive"] where !header.fields.contains(required) {
                throw FineTuneError("\(path):\(header.line): the header has no \"\(required)\" column (sentence-embedding data: anchor, positive, optional negative or negative_1 ... negative_k)")
            }
            let names = ["anchor", "positive"] + (try Self.negativeColumns(header.fields, path: path, place: "\(path):\(header.line)"))
            columnNames = names
            let index = names.map { header.fields.firstIndex(of: $0)! }
            for record in records.dropFirst() {
                if record.fields.count == 1 && record.fields[0].isEmpty { continue }
                guard record.fields.count == header.fields.count else {
                    throw FineTuneError("\(path):\(record.line): \(record.fields.count) fields, the header has \(header.fields.count)")
                }
                rows.append((record.line, try zip(names, index).map { try check(record.fields[$1], column: $0, line: record.line) }))
            }
        } else {
            try JSONLines.forEachObject(in: data, path: path) { line, object in
                let names = ["anchor", "positive"] + (try Self.negativeColumns(Array(object.keys), path: path, place: "\(path):\(line)"))
                if let first = columnNames, first != names {
                    throw FineTuneError("\(path):\(line): texts \(names.joined(separator: ", ")), but the first line has \(first.joined(separator: ", ")); every line needs the same columns")
                }
                columnNames = names
                rows.append((line, try names.map { name in
                    switch object[name] {
                    case .string(let s)?: return try check(s, column: name, line: line)
                    case nil, .null?: return try check(nil, column: name, line: line)
                    default: throw FineTuneError("\(path):\(line): \"\(name)\" is not a string")
                    }
                }))
            }
        }
        guard let names = columnNames, !rows.isEmpty else { throw FineTuneError("\(path): no examples") }
        columns = names.count
        var known: [String: Int32] = [:]
        for row in rows {
            for text in row.texts {
                if let t = known[text] { texts.append(t); continue }
                let t = Int32(starts.count - 1)
                known[text] = t
                texts.append(t)
                tokenIDs += tokenizer.encode(text, pair: nil, maxLength: maxLength).ids
                starts.append(tokenIDs.count)
            }
            lines.append(row.line)
        }
    }

    public func text(of i: Int, column c: Int) -> Int { Int(texts[i * columns + c]) }
    private func length(ofText t: Int) -> Int { starts[t + 1] - starts[t] }

    public func cost(of i: Int) -> Int? { (0..<columns).reduce(0) { $0 + length(ofText: text(of: i, column: $1)) } }

    public var fingerprint: String {
        var h = Digest()
        h.update(array: tokenIDs); h.update(array: starts); h.update(array: texts)
        return h.hex()
    }

    /// The texts of the examples at `indices`, column by column: the anchors, then the positives,
    /// then each column of negatives, each in `indices`' order. A text's example index (its dropout
    /// key) is i · columns + c, so it is the same whichever rank or mini-batch holds it.
    public func batch(_ indices: ArraySlice<Int>) -> Batch {
        var batch = Batch(exampleIndices: [])
        for c in 0..<columns {
            for i in indices {
                let t = text(of: i, column: c)
                batch.exampleIndices.append(i * columns + c)
                batch.tokenIDs.append(contentsOf: tokenIDs[starts[t]..<starts[t + 1]])
                batch.sequenceStarts.append(batch.tokenIDs.count)
            }
        }
        batch.tokenTypeIDs = [Int32](repeating: 0, count: batch.tokenIDs.count)
        return batch
    }

    /// Distinct texts (by index into the table) as a batch, for embedding them without dropout.
    public func textBatch(_ textIndices: ArraySlice<Int>) -> Batch {
        var batch = Batch(exampleIndices: Array(textIndices))
        for t in textIndices {
            batch.tokenIDs.append(contentsOf: tokenIDs[starts[t]..<starts[t + 1]])
            batch.sequenceStarts.append(batch.tokenIDs.count)
        }
        batch.tokenTypeIDs = [Int32](repeating: 0, count: batch.tokenIDs.count)
        return batch
    }

    /// The data as a retrieval task (sentence-transformers' InformationRetrievalEvaluator): the
    /// distinct anchors are the queries, the distinct positives and negatives the corpus, and a
    /// query's relevant documents the positives of its rows. Texts by index into the table, in
    /// order of first appearance.
    public struct Retrieval: Sendable {
        public var queries: [Int]
        public var corpus: [Int]
        /// relevant[q]: rows of `corpus`.
        public var relevant: [Set<Int>]
        /// The corpus ids whose order breaks score ties: the row numbers, zero-padded.
        public var corpusIDs: [String] { corpus.indices.map { String(format: "%09d", $0) } }
    }

    /// The retrieval task of the examples `subset` (nil: all).
    public func retrieval(of subset: [Int]? = nil) -> Retrieval {
        var queryRow: [Int: Int] = [:], corpusRow: [Int: Int] = [:]
        var r = Retrieval(queries: [], corpus: [], relevant: [])
        for i in subset ?? Array(0..<count) {
            for c in 1..<columns where corpusRow[text(of: i, column: c)] == nil {
                corpusRow[text(of: i, column: c)] = r.corpus.count
                r.corpus.append(text(of: i, column: c))
            }
            let anchor = text(of: i, column: 0)
            if queryRow[anchor] == nil {
                queryRow[anchor] = r.queries.count
                r.queries.append(anchor)
                r.relevant.append([])
            }
            r.relevant[queryRow[anchor]!].insert(corpusRow[text(of: i, column: 1)]!)
        }
        return r
    }
}
