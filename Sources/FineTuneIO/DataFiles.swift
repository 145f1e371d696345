import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// A data set the trainer can draw batches from.
public protocol ExampleSet {
    var path: String { get }
    var count: Int { get }
    /// SHA-256 over the examples as loaded (inputs and targets).
    var fingerprint: String { get }
    /// The inputs and targets of the examples at `indices` (global example indices), in that order.
    func batch(_ indices: ArraySlice<Int>) -> Batch
    /// The relative compute cost of example i (tokens for text), for balancing ranks; nil when all cost the same.
    func cost(of i: Int) -> Int?
    /// Sequences per example in a batch: 1, or an embedding pair's texts (anchor, positive, negatives).
    var textsPerExample: Int { get }
}

extension ExampleSet {
    public var textsPerExample: Int { 1 }
}

/// Reads a data file's bytes; a missing or unreadable file is an error naming it.
func readDataFile(_ path: String) throws -> Data {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw FineTuneError("\(path): is a folder, not a data file")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw FineTuneError("\(path): cannot read the file (missing or unreadable)")
    }
    return data
}

/// Splits a file into its lines (1-based numbers, without the line break; a UTF-8 byte-order mark
/// at the start is dropped); a line that is not UTF-8 is an error naming it.
func textLines(_ data: Data, path: String) throws -> [(number: Int, text: String)] {
    var lines: [(Int, String)] = []
    var start = data.startIndex
    if data.starts(with: [0xEF, 0xBB, 0xBF]) { start += 3 }
    var number = 0
    while start <= data.endIndex {
        number += 1
        let end = data[start...].firstIndex(of: UInt8(ascii: "\n")) ?? data.endIndex
        guard let line = String(data: data[start..<end], encoding: .utf8) else {
            throw FineTuneError("\(path):\(number): not UTF-8 text")
        }
        lines.append((number, line))
        start = end + 1
    }
    return lines
}

/// JSON Lines: one JSON object per line; blank lines are skipped.
public enum JSONLines {
    /// Calls `body` with the 1-based line number and object of every non-blank line; a line that
    /// is not a JSON object is an error naming the file and line.
    public static func forEachObject(in data: Data, path: String, _ body: (Int, [String: JSONValue]) throws -> Void) throws {
        var first = true
        for (number, raw) in try textLines(data, path: path) {
            guard let object = try object(of: raw, number: number, path: path, first: first) else { continue }
            first = false
            try body(number, object)
        }
    }

    /// The object of one line, nil for a blank line; `first`: no object came before (for the hint).
    public static func object(of raw: String, number: Int, path: String, first: Bool) throws -> [String: JSONValue]? {
        let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if line.isEmpty { return nil }
        let value: JSONValue
        do { value = try StrictJSON.parse(line) } catch {
            // The format comes from the name: a first line that is no JSON at all is likely another format.
            let hint = first && !line.hasPrefix("{") && !line.hasPrefix("[")
                ? " (a file not named .csv is read as JSON Lines, one object per line; CSV needs a .csv name)" : ""
            throw FineTuneError("\(path):\(number): not valid JSON: \(error)\(hint)")
        }
        guard case .object(let object) = value else {
            throw FineTuneError("\(path):\(number): \(value.kindDescription), not a JSON object (each line holds one object)")
        }
        return object
    }
}

/// RFC 4180 CSV: comma separated, double-quoted fields may hold commas, quotes ("") and newlines.
public enum CSV {
    public struct Record { public var fields: [String]; public var line: Int }

    public static func parse(_ data: Data, path: String) throws -> [Record] {
        // Validated line by line first, so a bad byte is reported with its line.
        let text = try textLines(data, path: path).map(\.text).joined(separator: "\n")
        do { return try records(of: text, path: path) } catch let error as FineTuneError {
            // The format comes from the name: JSON Lines in a .csv file fails on its first quote.
            guard text.drop(while: { $0.isWhitespace }).first == "{" else { throw error }
            throw FineTuneError("\(error) (a .csv file is read as CSV; this one holds JSON Lines: name it .jsonl)")
        }
    }

    private static func records(of text: String, path: String) throws -> [Record] {
        var records: [Record] = []
        var field = ""
        var fields: [String] = []
        var inQuotes = false
        var line = 1
        var recordLine = 1
        var justClosedQuote = false
        var iterator = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        func endRecord() {
            fields.append(field)
            records.append(Record(fields: fields, line: recordLine))
            fields = []; field = ""
        }
        while let c = pending ?? iterator.next() {
            pending = nil
            if inQuotes {
                if c == "\"" {
                    if let next = iterator.next() {
                        if next == "\"" { field.unicodeScalars.append("\"") } else { inQuotes = false; justClosedQuote = true; pending = next }
                    } else { inQuotes = false }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"":
                guard field.isEmpty && !justClosedQuote else {
                    throw FineTuneError("\(path):\(line): a quote inside an unquoted field")
                }
                inQuotes = true
            case ",":
                fields.append(field); field = ""; justClosedQuote = false
            case "\r":
                continue
            case "\n":
                endRecord(); justClosedQuote = false
                line += 1; recordLine = line
            default:
                if justClosedQuote { throw FineTuneError("\(path):\(line): text after a closing quote") }
                field.unicodeScalars.append(c)
            }
        }
        if inQuotes { throw FineTuneError("\(path):\(recordLine): unterminated quoted field") }
        if !field.isEmpty || !fields.isEmpty { endRecord() }
        return records
    }
}

/// A tabular data set held in memory: features [N, I] and one target per example.
/// Every rank loads the whole file (it is small next to the model); each rank then computes only
/// its slice of each global batch.
public struct TabularDataset: ExampleSet {
    public let path: String
    public let featureWidth: Int
    public private(set) var features: [Float] = []
    /// Class ids for a classifier.
    public private(set) var classTargets: [Int32] = []
    /// Values for a regression model.
    public private(set) var regressionTargets: [Float] = []
    /// Source line of each example (1-based), for error messages.
    public private(set) var lines: [Int] = []
    public var count: Int { lines.count }

    /// A label as read: a name, a number, or absent.
    enum RawLabel { case name(String), number(Double), missing }

    /// Loads JSON Lines (`.jsonl`, `.json`) or CSV (`.csv`) by extension.
    /// - `task`: decides how labels are read: class names or ids for a classifier, numbers for regression.
    /// - `requireLabels`: false for `predict` input: labels are then not read (nor need to exist).
    public init(path: String, featureWidth: Int, task: TaskKind, requireLabels: Bool = true) throws {
        self.path = path
        self.featureWidth = featureWidth
        let data = try readDataFile(path)
        let labelIndex: [String: Int32] = Dictionary(uniqueKeysWithValues: (task.labels ?? []).enumerated().map { ($0.element, Int32($0.offset)) })
        if path.lowercased().hasSuffix(".csv") {
            try loadCSV(data, task: task, labelIndex: labelIndex, requireLabels: requireLabels)
        } else {
            try loadJSONLines(data, task: task, labelIndex: labelIndex, requireLabels: requireLabels)
        }
        if count == 0 { throw FineTuneError("\(path): no examples") }
    }

    private mutating func append(features row: [Float], label: RawLabel, line: Int, task: TaskKind,
                                 labelIndex: [String: Int32], requireLabels: Bool, column: String) throws {
        func fail(_ why: String) -> FineTuneError { FineTuneError("\(path):\(line): \(why)") }
        guard row.count == featureWidth else {
            throw fail("\(row.count) features, the model takes \(featureWidth)")
        }
        if let bad = row.firstIndex(where: { !$0.isFinite }) { throw fail("feature \(bad) is not a finite number") }
        if requireLabels {
            switch (task, label) {
            case (.classification(let labels), .name(let name)):
                guard let known = labelIndex[name] else {
                    throw fail("unknown label \"\(name)\" in \(column); the model's labels are \(labels.joined(separator: ", "))")
                }
                classTargets.append(known)
            case (.classification(let labels), .number(let value)):
                guard value == value.rounded(), value >= 0, Int(value) < labels.count else {
                    throw fail("label \(value) in \(column) is not a class id in 0..<\(labels.count) nor a label name")
                }
                classTargets.append(Int32(value))
            case (.classification, .missing):
                throw fail("missing or invalid \(column) (a label name or class id)")
            case (.regression, .number(let value)) where value.isFinite:
                regressionTargets.append(Float(value))
            case (.regression, _):
                throw fail("\(column) must be a finite number for a regression model")
            case (.maskedLanguageModel, _), (.embedding, _), (.causalLanguageModel, _):
                throw fail("language modelling and sentence embeddings need text, not feature vectors")
            }
        }
        features.append(contentsOf: row)
        lines.append(line)
    }

    private mutating func loadJSONLines(_ data: Data, task: TaskKind, labelIndex: [String: Int32], requireLabels: Bool) throws {
        try JSONLines.forEachObject(in: data, path: path) { lineNumber, object in
            guard case .array(let list)? = object["features"] else {
                throw FineTuneError("\(path):\(lineNumber): missing \"features\" (a list of numbers)")
            }
            var row: [Float] = []
            row.reserveCapacity(list.count)
            for (i, v) in list.enumerated() {
                guard let n = v.number else { throw FineTuneError("\(path):\(lineNumber): features[\(i)] is \(v.kindDescription), not a number") }
                guard n.isFinite, Float(n).isFinite else {
                    throw FineTuneError("\(path):\(lineNumber): features[\(i)] is \(n.isFinite ? "\(n)" : JSONValue.double(n).kindDescription), not a finite number"
                                        + (n.isFinite ? " in 32-bit floating point" : ""))
                }
                row.append(Float(n))
            }
            let label: RawLabel
            switch object["label"] {
            case .string(let s)?: label = .name(s)
            case .integer(let i)?: label = .number(Double(i))
            case .double(let d)?: label = .number(d)
            default: label = .missing
            }
            try append(features: row, label: label, line: lineNumber, task: task, labelIndex: labelIndex,
                       requireLabels: requireLabels, column: "\"label\"")
        }
    }

    private mutating func loadCSV(_ data: Data, task: TaskKind, labelIndex: [String: Int32], requireLabels: Bool) throws {
        let records = try CSV.parse(data, path: path)
        guard let header = records.first else { throw FineTuneError("\(path): empty CSV file (a header row is needed)") }
        let labelColumn = header.fields.firstIndex(of: "label")
        if labelColumn == nil && requireLabels {
            throw FineTuneError("\(path):\(header.line): the header has no \"label\" column")
        }
        let featureColumns = header.fields.indices.filter { $0 != labelColumn }
        for record in records.dropFirst() {
            if record.fields.count == 1 && record.fields[0].isEmpty { continue }
            guard record.fields.count == header.fields.count else {
                throw FineTuneError("\(path):\(record.line): \(record.fields.count) fields, the header has \(header.fields.count)")
            }
            var row: [Float] = []
            for c in featureColumns {
                guard let v = Float(record.fields[c].trimmingCharacters(in: .whitespaces)) else {
                    throw FineTuneError("\(path):\(record.line): column \"\(header.fields[c])\" is not a number: \"\(record.fields[c])\"")
                }
                row.append(v)
            }
            var label = RawLabel.missing
            if let lc = labelColumn {
                let raw = record.fields[lc].trimmingCharacters(in: .whitespaces)
                switch task {
                case .classification:
                    // A label name wins; a bare integer that is not a name is a class id.
                    if labelIndex[raw] != nil { label = .name(raw) } else if let id = Int(raw) { label = .number(Double(id)) } else if !raw.isEmpty { label = .name(raw) }
                case .regression:
                    if let v = Double(raw) { label = .number(v) } else if !raw.isEmpty { label = .name(raw) }
                case .maskedLanguageModel, .embedding, .causalLanguageModel:
                    break
                }
            }
            try append(features: row, label: label, line: record.line, task: task, labelIndex: labelIndex,
                       requireLabels: requireLabels, column: "column \"label\"")
        }
    }

    public func cost(of i: Int) -> Int? { nil }

    /// A SHA-256 of the examples as loaded (features and targets), recorded in checkpoints so that a
    /// resume on changed data is refused.
    public var fingerprint: String {
        var h = Digest()
        h.update(array: features); h.update(array: classTargets); h.update(array: regressionTargets)
        return h.hex()
    }

    /// The inputs and targets of the examples at `indices` (global example indices), in that order.
    public func batch(_ indices: ArraySlice<Int>) -> Batch {
        var batch = Batch(exampleIndices: Array(indices), featureWidth: featureWidth)
        batch.features.reserveCapacity(indices.count * featureWidth)
        for i in indices {
            batch.features.append(contentsOf: features[(i * featureWidth)..<((i + 1) * featureWidth)])
            if !classTargets.isEmpty { batch.classTargets.append(classTargets[i]) }
            if !regressionTargets.isEmpty { batch.regressionTargets.append(regressionTargets[i]) }
        }
        return batch
    }
}
