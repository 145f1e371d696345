import FineTuneKernels
import FineTuneModels
import Foundation

/// Text examples read from a token cache entry by memory map: what `TextDataset` holds in arrays,
/// here in the entry's files, so a rank's memory does not grow with the corpus and ranks on one
/// host share the pages. A batch reads only its examples. Labels are resolved against the task
/// per example (a small table per part), never into an array of the set's size.
public final class CachedTextDataset: ExampleSet, @unchecked Sendable {
    public let path: String
    public let count: Int
    public let meta: TokenCache.Meta
    public let fingerprint: String
    private var parts: [Part]
    /// parts[p] holds examples firstExample[p] ..< firstExample[p + 1].
    private let firstExample: [Int]
    private let task: TaskKind?
    private let tokenWidth: Int
    /// Whole-number labels name classes ("3"), as `--task classification` reads them.
    private let numbersAsNames: Bool
    /// Class ids by label name (classification).
    private let labelIndex: [String: Int32]

    struct Part {
        let tokens: MappedFile, offsets: MappedFile, lines: MappedFile
        let types: MappedFile?, labelKinds: MappedFile?, labelValues: MappedFile?
        let names: [String]
        /// Class of each label name (classification), by the name's index.
        var classOfName: [Int32] = []
    }

    /// Opens a sealed entry (`TokenCache.status` said ready). `task`: what the labels mean (nil:
    /// not read, as for masked-language modelling or the task inference that comes first);
    /// `numbersAsNames`: whole-number labels name classes (`--task classification`).
    public init(entry: String, meta: TokenCache.Meta, path: String, task: TaskKind?, numbersAsNames: Bool = false, requireLabels: Bool = true) throws {
        self.path = path
        self.meta = meta
        tokenWidth = meta.key.tokenWidth
        var parts: [Part] = []
        var first = [0]
        for (r, part) in meta.parts.enumerated() {
            func map(_ suffix: String) throws -> MappedFile { try MappedFile(path: "\(entry)/part-\(r).\(suffix)") }
            let labelled = meta.key.layout == .examples
            parts.append(Part(tokens: try map("tokens"), offsets: try map("offsets"), lines: try map("lines"),
                              types: labelled ? try map("types") : nil, labelKinds: labelled ? try map("label-kinds") : nil,
                              labelValues: labelled ? try map("label-values") : nil, names: part.labelNames))
            first.append(first.last! + part.examples)
        }
        self.firstExample = first
        count = first.last!
        self.task = requireLabels ? task : nil
        self.numbersAsNames = numbersAsNames
        labelIndex = Dictionary(uniqueKeysWithValues: (task?.labels ?? []).enumerated().map { ($0.element, Int32($0.offset)) })
        var fingerprint = Digest()
        fingerprint.update(data: Data("token-cache|\(meta.key.digest)|\(String(describing: self.task))|\(numbersAsNames)".utf8))
        self.fingerprint = "cache:" + fingerprint.hex()
        self.parts = parts
        if let task = self.task, task.labels != nil || task == .regression {
            try resolveLabels(task)
        }
    }

    /// Every example's label against the task, with the errors TextDataset gives (file and line).
    private func resolveLabels(_ task: TaskKind) throws {
        for p in parts.indices {
            let part = parts[p]
            if case .classification(let labels) = task {
                parts[p].classOfName = try part.names.map { name in
                    guard let id = labelIndex[name] else {
                        let example = (0..<meta.parts[p].examples).first { part.labelKinds!.bytes[$0] == 1 && Int(part.labelValues!.load(Double.self, at: $0)) == part.names.firstIndex(of: name)! }!
                        throw FineTuneError("\(path):\(part.lines.load(UInt64.self, at: example)): unknown label \"\(name)\"; the model's labels are \(labels.joined(separator: ", "))")
                    }
                    return id
                }
            }
            for i in 0..<meta.parts[p].examples {
                func fail(_ why: String) -> FineTuneError { FineTuneError("\(path):\(part.lines.load(UInt64.self, at: i)): \(why)") }
                let kind = part.labelKinds!.bytes[i], value = part.labelValues!.load(Double.self, at: i)
                switch (task, kind) {
                case (_, 0): throw fail("missing \"label\"")
                case (.classification(let labels), 2):
                    if numbersAsNames {
                        let name = try TextDataset.classNameOfNumber(value, path: path, line: Int(part.lines.load(UInt64.self, at: i)))
                        guard labelIndex[name] != nil else { throw fail("unknown label \"\(name)\"; the model's labels are \(labels.joined(separator: ", "))") }
                    } else if !(value == value.rounded() && value >= 0 && Int(value) < labels.count) {
                        throw fail("label \(value) is not a class id in 0..<\(labels.count) nor a label name")
                    }
                case (.regression, 1): throw fail("label \"\(part.names[Int(value)])\" is not a number, and this is a regression model")
                case (.regression, 2): if !value.isFinite { throw fail("label is not a finite number") }
                default: break
                }
            }
        }
    }

    /// Every example's (line, raw label), for task inference.
    public var labels: some Sequence<(line: Int, label: LabelValue?)> {
        parts.indices.lazy.flatMap { p in
            let part = self.parts[p]
            return (0..<self.meta.parts[p].examples).lazy.map { i -> (line: Int, label: LabelValue?) in
                let line = Int(part.lines.load(UInt64.self, at: i))
                switch part.labelKinds?.bytes[i] {
                case 1?: return (line, .name(part.names[Int(part.labelValues!.load(Double.self, at: i))]))
                case 2?: return (line, .number(part.labelValues!.load(Double.self, at: i)))
                default: return (line, nil)
                }
            }
        }
    }

    @inline(__always)
    private func locate(_ i: Int) -> (part: Int, index: Int) {
        var lo = 0, hi = parts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if firstExample[mid] <= i { lo = mid } else { hi = mid - 1 }
        }
        return (lo, i - firstExample[lo])
    }

    public func length(of i: Int) -> Int {
        let (p, j) = locate(i)
        return Int(parts[p].offsets.load(UInt64.self, at: j + 1) - parts[p].offsets.load(UInt64.self, at: j))
    }
    public func cost(of i: Int) -> Int? { length(of: i) }

    /// The source line of example i.
    public func line(of i: Int) -> Int {
        let (p, j) = locate(i)
        return Int(parts[p].lines.load(UInt64.self, at: j))
    }

    public func batch(_ indices: ArraySlice<Int>) -> Batch {
        var batch = Batch(exampleIndices: Array(indices))
        for i in indices {
            let (p, j) = locate(i)
            let part = parts[p]
            let start = Int(part.offsets.load(UInt64.self, at: j)), end = Int(part.offsets.load(UInt64.self, at: j + 1))
            // Sizes and ends were checked at opening; an offset damaged inside the file is caught here, before it reads out of bounds.
            if !(start <= end && end <= meta.parts[p].tokens) {
                fatalError("token cache: part-\(p).offsets of the entry for \(path) is damaged at example \(j) (offsets \(start), \(end) of " +
                           "\(meta.parts[p].tokens) tokens); delete the entry's folder and run again to rebuild it")
            }
            if tokenWidth == 2 {
                for k in start..<end { batch.tokenIDs.append(Int32(part.tokens.load(UInt16.self, at: k))) }
            } else {
                for k in start..<end { batch.tokenIDs.append(Int32(bitPattern: part.tokens.load(UInt32.self, at: k))) }
            }
            if let types = part.types {
                for k in start..<end { batch.tokenTypeIDs.append(Int32(types.bytes[k])) }
            } else {
                batch.tokenTypeIDs.append(contentsOf: repeatElement(0, count: end - start))
            }
            batch.sequenceStarts.append(batch.tokenIDs.count)
            guard let task, let kinds = part.labelKinds, let values = part.labelValues else { continue }
            let value = values.load(Double.self, at: j)
            switch task {
            case .classification:
                batch.classTargets.append(kinds.bytes[j] == 1 ? part.classOfName[Int(value)] : classOfNumber(value))
            case .regression:
                batch.regressionTargets.append(Float(value))
            default: break
            }
        }
        return batch
    }

    /// A number label's class: its name's ("3") when numbers name classes, else the number is the id.
    private func classOfNumber(_ value: Double) -> Int32 {
        numbersAsNames ? labelIndex[String(Int64(value))]! : Int32(value)
    }
}
