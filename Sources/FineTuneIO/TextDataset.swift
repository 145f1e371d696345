import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// One line of a text data file, before tokenisation.
public struct TextRecord: Sendable {
    public var text: String
    public var pair: String?
    /// A label name (String), a number (Double), or nil when absent.
    public var label: LabelValue?
    public var line: Int
    public init(text: String, pair: String? = nil, label: LabelValue? = nil, line: Int) {
        self.text = text; self.pair = pair; self.label = label; self.line = line
    }
}

public enum LabelValue: Sendable, Equatable {
    case name(String)
    case number(Double)
}

/// Text examples, tokenised at load time (truncated to `maxLength` tokens with [CLS]/[SEP]).
/// Batches are packed: no padding at all, each example keeps its own length.
public struct TextDataset: ExampleSet {
    public let path: String
    public private(set) var tokenIDs: [Int32] = []
    public private(set) var tokenTypeIDs: [Int32] = []
    /// Example i's tokens are [starts[i], starts[i + 1]).
    public private(set) var starts: [Int] = [0]
    public private(set) var classTargets: [Int32] = []
    public private(set) var regressionTargets: [Float] = []
    public private(set) var lines: [Int] = []
    public var count: Int { lines.count }

    /// An empty set, filled by a constructor of this file.
    private init(path: String) { self.path = path }

    /// Reads JSON Lines (`{"text": .., "text_pair": .., "label": ..}`) or CSV (columns text,
    /// text_pair, label) without tokenising.
    public static func readRecords(path: String) throws -> [TextRecord] {
        let data = try readDataFile(path)
        var records: [TextRecord] = []
        if path.lowercased().hasSuffix(".csv") {
            let rows = try CSV.parse(data, path: path)
            guard let header = rows.first else { throw FineTuneError("\(path): empty CSV file (a header row is needed)") }
            guard let textColumn = header.fields.firstIndex(of: "text") else {
                throw FineTuneError("\(path):\(header.line): the header has no \"text\" column")
            }
            let pairColumn = header.fields.firstIndex(of: "text_pair"), labelColumn = header.fields.firstIndex(of: "label")
            for row in rows.dropFirst() {
                if row.fields.count == 1 && row.fields[0].isEmpty { continue }
                guard row.fields.count == header.fields.count else {
                    throw FineTuneError("\(path):\(row.line): \(row.fields.count) fields, the header has \(header.fields.count)")
                }
                var label: LabelValue? = nil
                if let lc = labelColumn {
                    let raw = row.fields[lc].trimmingCharacters(in: .whitespaces)
                    if !raw.isEmpty { label = Double(raw).map(LabelValue.number) ?? .name(raw) }
                }
                // An empty second text is no second text, as transformers' tokenizer(text, "") reads it.
                let pair = pairColumn.map { row.fields[$0] }.flatMap { $0.isEmpty ? nil : $0 }
                records.append(TextRecord(text: row.fields[textColumn], pair: pair, label: label, line: row.line))
            }
        } else {
            try JSONLines.forEachObject(in: data, path: path) { lineNumber, object in
                records.append(try record(object, path: path, line: lineNumber))
            }
        }
        if records.isEmpty { throw FineTuneError("\(path): no examples") }
        return records
    }

    /// The record of one JSON Lines object: `text`, optional `text_pair` and `label`.
    public static func record(_ object: [String: JSONValue], path: String, line lineNumber: Int) throws -> TextRecord {
        func fail(_ why: String) -> FineTuneError { FineTuneError("\(path):\(lineNumber): \(why)") }
        guard case .string(let text)? = object["text"] else {
            throw fail(object["text"] == nil || object["text"] == .null ? "missing \"text\" (a string)" : "\"text\" is not a string")
        }
        var pair: String? = nil
        switch object["text_pair"] {
        case nil, .null?: break
        case .string(let s)?: pair = s.isEmpty ? nil : s  // as transformers' tokenizer(text, "")
        default: throw fail("\"text_pair\" is not a string")
        }
        var label: LabelValue? = nil
        switch object["label"] {
        case nil, .null?: break
        case .string(let s)?: label = .name(s)
        case .integer(let i)?: label = .number(Double(i))
        case .double(let d)?: label = .number(d)
        case .bool(let b)?:
            throw fail("\"label\" is \(b), a boolean: write class labels as names (\"yes\"/\"no\") or numbers for regression")
        default: throw fail("\"label\" must be a string or a number")
        }
        return TextRecord(text: text, pair: pair, label: label, line: lineNumber)
    }

    /// The task a fresh head learns from these records: classification over the sorted label names
    /// when the labels are strings, regression when they are all numbers, unless `choice` says
    /// otherwise (numbers as class names for a classifier).
    public static func inferTask(_ records: [TextRecord], path: String, choice: TaskChoice? = nil) throws -> TaskKind {
        try inferTask(labels: records.lazy.map { (line: $0.line, label: $0.label) }, path: path, choice: choice)
    }

    /// `inferTask` over (line, label) pairs (a token cache's labels).
    public static func inferTask<Labels: Sequence>(labels: Labels, path: String, choice: TaskChoice? = nil) throws -> TaskKind
        where Labels.Element == (line: Int, label: LabelValue?) {
        var names = Set<String>()
        var numbers = Set<Double>()
        for r in labels {
            switch r.label {
            case .name(let n)?:
                if choice == .regression {
                    throw FineTuneError("\(path):\(r.line): label \"\(n)\" is a name; --task regression needs numbers")
                }
                names.insert(n)
            case .number(let v)?: numbers.insert(v)
            case nil: throw FineTuneError("\(path):\(r.line): missing \"label\"")
            }
            if !names.isEmpty && !numbers.isEmpty {
                throw FineTuneError("\(path):\(r.line): labels mix names and numbers (names make a classifier, numbers a regression model)")
            }
        }
        if !numbers.isEmpty && choice != .classification { return .regression }
        if choice == .classification {
            for v in numbers { names.insert(try classNameOfNumber(v, path: path)) }
        }
        guard names.count >= 2 else { throw FineTuneError("\(path): a classifier needs at least two distinct labels, found \(names.sorted())") }
        return .classification(labels: sortedLabelNames(names))
    }

    /// A whole-number label as a class name ("3"); other numbers cannot name a class.
    public static func classNameOfNumber(_ value: Double, path: String, line: Int? = nil) throws -> String {
        guard value == value.rounded(), abs(value) < 1e15 else {
            throw FineTuneError("\(path)\(line.map { ":\($0)" } ?? ""): label \(value) is not a whole number; a classifier needs class names or whole numbers")
        }
        return String(Int64(value))
    }

    /// Label names in order: numerically when every name is a whole number ("2" before "10"), else by text.
    public static func sortedLabelNames(_ names: Set<String>) -> [String] {
        let numeric = names.compactMap { Int64($0) }
        if numeric.count == names.count { return numeric.sorted().map(String.init) }
        return names.sorted()
    }

    /// Numbers as class names, for a classifier chosen over numeric labels (`--task classification`).
    public static func numbersAsNames(_ records: [TextRecord], path: String) throws -> [TextRecord] {
        try records.map { r in
            guard case .number(let v)? = r.label else { return r }
            var named = r
            named.label = .name(try classNameOfNumber(v, path: path, line: r.line))
            return named
        }
    }

    /// A notice for labels that are whole numbers with few distinct values, read as a regression
    /// target: often class ids meant for a classifier.
    public static func regressionNotice(_ records: [TextRecord], path: String) -> String? {
        regressionNotice(labels: records.lazy.map { (line: $0.line, label: $0.label) }, path: path)
    }

    public static func regressionNotice<Labels: Sequence>(labels: Labels, path: String) -> String?
        where Labels.Element == (line: Int, label: LabelValue?) {
        var values = Set<Double>()
        for r in labels {
            guard case .number(let v)? = r.label, v == v.rounded() else { return nil }
            values.insert(v)
            if values.count > 20 { return nil }
        }
        return "note: \(path): the labels are numbers (\(values.count) whole values: \(values.sorted().prefix(6).map { String(Int64($0)) }.joined(separator: ", "))" +
            "\(values.count > 6 ? ", ..." : "")), so this trains a regression model (mean squared error); " +
            "pass --task classification to train a classifier over them"
    }

    /// Tokenises `records`. With `requireLabels` false (predict), labels are not read.
    public init(records: [TextRecord], path: String, tokenizer: TextTokenizer, maxLength: Int, task: TaskKind,
                requireLabels: Bool = true) throws {
        self.path = path
        let labelIndex = Dictionary(uniqueKeysWithValues: (task.labels ?? []).enumerated().map { ($0.element, Int32($0.offset)) })
        for r in records {
            func fail(_ why: String) -> FineTuneError { FineTuneError("\(path):\(r.line): \(why)") }
            let (ids, types) = tokenizer.encode(r.text, pair: r.pair, maxLength: maxLength)
            if requireLabels {
                switch (task, r.label) {
                case (.classification(let labels), .name(let n)?):
                    guard let id = labelIndex[n] else {
                        throw fail("unknown label \"\(n)\"; the model's labels are \(labels.joined(separator: ", "))")
                    }
                    classTargets.append(id)
                case (.classification(let labels), .number(let v)?):
                    guard v == v.rounded(), v >= 0, Int(v) < labels.count else {
                        throw fail("label \(v) is not a class id in 0..<\(labels.count) nor a label name")
                    }
                    classTargets.append(Int32(v))
                case (.regression, .number(let v)?):
                    guard v.isFinite else { throw fail("label is not a finite number") }
                    regressionTargets.append(Float(v))
                case (.regression, .name(let n)?):
                    throw fail("label \"\(n)\" is not a number, and this is a regression model")
                case (.maskedLanguageModel, _), (.embedding, _), (.causalLanguageModel, _):
                    break  // the text is the target (sentence embeddings read pairs: PairDataset)
                case (_, nil):
                    throw fail("missing \"label\"")
                }
            }
            tokenIDs.append(contentsOf: ids)
            tokenTypeIDs.append(contentsOf: types)
            starts.append(tokenIDs.count)
            lines.append(r.line)
        }
    }

    public func length(of i: Int) -> Int { starts[i + 1] - starts[i] }
    public func cost(of i: Int) -> Int? { length(of: i) }

    public var fingerprint: String {
        var h = Digest()
        h.update(array: tokenIDs); h.update(array: tokenTypeIDs); h.update(array: starts)
        h.update(array: classTargets); h.update(array: regressionTargets)
        return h.hex()
    }

    public func batch(_ indices: ArraySlice<Int>) -> Batch {
        var batch = Batch(exampleIndices: Array(indices))
        for i in indices {
            batch.tokenIDs.append(contentsOf: tokenIDs[starts[i]..<starts[i + 1]])
            batch.tokenTypeIDs.append(contentsOf: tokenTypeIDs[starts[i]..<starts[i + 1]])
            batch.sequenceStarts.append(batch.tokenIDs.count)
            if !classTargets.isEmpty { batch.classTargets.append(classTargets[i]) }
            if !regressionTargets.isEmpty { batch.regressionTargets.append(regressionTargets[i]) }
        }
        return batch
    }
}

extension TextDataset {
    /// A corpus file is plain text unless named .jsonl, .json or .csv.
    public static func isPlainText(path: String) -> Bool {
        let lower = path.lowercased()
        return !(lower.hasSuffix(".jsonl") || lower.hasSuffix(".json") || lower.hasSuffix(".csv"))
    }

    /// JSON Lines / CSV records (`readRecords`), or plain text: each non-blank line a record's text.
    static func readRecordsOrLines(path: String) throws -> [TextRecord] {
        if !isPlainText(path: path) { return try readRecords(path: path) }
        return try textLines(try readDataFile(path), path: path)
            .filter { !$0.text.trimmingCharacters(in: .whitespaces).isEmpty }
            .map { TextRecord(text: $0.text, line: $0.number) }
    }

    public static func labelsNotReadNotice(path: String) -> String {
        "note: \(path): the labels are not read: masked-language modelling learns from the text alone"
    }

    /// A corpus for masked-language modelling: plain text (`.txt`, or any file that is not JSON
    /// Lines or CSV: one document or paragraph per line, blank lines skipped), or JSON Lines / CSV
    /// with a `text` field. A text longer than `maxLength` tokens is split into windows of
    /// `maxLength - 2` tokens, each with [CLS] and [SEP], rather than cut off: every token is seen.
    /// Labels, if the file has them, are not read; the notice says so once.
    public static func corpus(path: String, tokenizer: TextTokenizer, maxLength: Int) throws -> (TextDataset, notices: [String]) {
        var notices: [String] = []
        let records = try readRecordsOrLines(path: path)
        if records.contains(where: { $0.label != nil }) {
            notices.append(labelsNotReadNotice(path: path))
        }
        let texts = records.map { record in (line: record.line, text: record.pair.map { record.text + " " + $0 } ?? record.text) }
        var set = TextDataset(path: path)
        let budget = maxLength - 2
        guard budget > 0 else { throw FineTuneError("--max-length \(maxLength) leaves no room for text between [CLS] and [SEP] (at least 3)") }
        for (line, text) in texts {
            let ids = tokenizer.tokenize(text)
            guard !ids.isEmpty else {
                throw FineTuneError("\(path):\(line): no tokens after tokenisation (the line holds only spaces or control characters)")
            }
            for start in stride(from: 0, to: ids.count, by: budget) {
                let window = [tokenizer.clsID] + ids[start..<min(start + budget, ids.count)] + [tokenizer.sepID]
                set.tokenIDs += window
                set.tokenTypeIDs += [Int32](repeating: 0, count: window.count)
                set.starts.append(set.tokenIDs.count)
                set.lines.append(line)
            }
        }
        if set.count == 0 { throw FineTuneError("\(path): no text (an empty corpus)") }
        return (set, notices)
    }
}

extension TextDataset {
    /// Inputs of fill-mask prediction: JSON Lines / CSV with `text` (and `text_pair`), or plain text
    /// (one input per line, blank lines skipped), each with at least one mask token ([MASK] for
    /// BERT, <mask> for MPNet and RoBERTa) written in it, cut to `maxLength` tokens as a
    /// classifier's inputs are. An input without one, or whose every mask (or any) falls beyond
    /// `maxLength`, is an error naming its line.
    public static func fillMaskInputs(path: String, tokenizer: TextTokenizer, maxLength: Int) throws -> TextDataset {
        guard let maskToken = tokenizer.maskToken, let mask = tokenizer.id(of: maskToken) else {
            throw FineTuneError("the vocabulary has no mask token, which fill-mask prediction needs")
        }
        let records = try readRecordsOrLines(path: path)
        if records.isEmpty { throw FineTuneError("\(path): no inputs") }
        let set = try TextDataset(records: records, path: path, tokenizer: tokenizer, maxLength: maxLength,
                                  task: .maskedLanguageModel, requireLabels: false)
        for (i, record) in records.enumerated() {
            let written = (tokenizer.tokenize(record.text) + (record.pair.map(tokenizer.tokenize) ?? [])).filter { $0 == mask }.count
            let kept = set.tokenIDs[set.starts[i]..<set.starts[i + 1]].filter { $0 == mask }.count
            if written == 0 {
                throw FineTuneError("\(path):\(record.line): no \(maskToken) in the text; fill-mask predicts the tokens written as \(maskToken)")
            }
            if kept < written {
                throw FineTuneError("\(path):\(record.line): \(written - kept) of its \(written) \(maskToken) tokens fall beyond --max-length \(maxLength) tokens; shorten the text or raise --max-length")
            }
        }
        return set
    }
}
