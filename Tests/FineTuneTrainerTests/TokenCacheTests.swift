import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import FineTuneTestSupport
@testable import FineTuneTrainer
import Foundation
import XCTest

/// The token cache against the in-memory readers: the same examples (tokens, types, targets,
/// costs) however many ranks built it; a changed file, a damaged entry or an abandoned build is
/// never read as data.
final class TokenCacheTests: XCTestCase {
    var dir = ""
    var model: ModelDescription!
    var bert: EncoderDescription { if case .bert(let b) = model.kind { return b }; fatalError() }

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "token-cache-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path
        model = try ModelFolder.describe(FolderSource("\(root)/Fixtures/tiny-bert/base"), pooling: nil)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// A corpus with what the readers must agree on: blank and whitespace lines, long lines (windows),
    /// upper case, punctuation, accents and CJK (the general path), [MASK] written in the text.
    func writeCorpus(_ name: String, lines: Int = 400) -> String {
        let words = ["the", "Model", "data,", "train!", "fast", "slów", "cpu", "MPI", "rank", "中文", "sum", "[MASK]", "grad's", "a-b"]
        var rng = SplitMix64(seed: 3)
        var text = "\u{FEFF}"
        for i in 0..<lines {
            if i % 17 == 5 { text += "   \t\n"; continue }
            if i % 23 == 7 { text += "\n"; continue }
            text += (0..<(1 + Int(rng.next() % 60))).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ") + "\n"
        }
        let path = "\(dir)/\(name)"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func writeLabelled(_ name: String, labels: [String] = ["pos", "neg"], numbers: Bool = false, lines: Int = 300) -> String {
        var rng = SplitMix64(seed: 5)
        let words = ["the", "model", "Data", "fast", "slow", "über", "cpu"]
        let text = (0..<lines).map { i -> String in
            var object: [String: Any] = ["text": (0..<(1 + Int(rng.next() % 30))).map { _ in words[Int(rng.next() % 7)] }.joined(separator: " ")]
            object["label"] = numbers ? Double(rng.next() % 4) : labels[Int(rng.next() % UInt64(labels.count))]
            if i % 3 == 0 { object["text_pair"] = "the cpu and the mpi rank" }
            return String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        }
        let path = "\(dir)/\(name)"
        FileManager.default.createFile(atPath: path, contents: Data((text.joined(separator: "\n") + "\n").utf8))
        return path
    }

    /// Loads through the cache on `ranks` in-process ranks; rank 0's result and notes.
    func loadCached(_ ranks: Int, train: String, valid: String? = nil, taskChoice: TaskChoice?, cache: String? = nil) throws -> (DataLoading.Loaded, [String]) {
        let notes = NotesBox()
        let results = try InProcessGroup.run(size: ranks) { comm in
            try DataLoading.load(train: train, valid: valid, test: nil, for: self.model, maxLength: 16, taskChoice: taskChoice,
                                 tokenCache: TokenCacheSettings(folder: cache ?? "\(self.dir)/cache", comm: comm, note: { notes.append($0) }))
        }
        return (results[0], notes.lines)
    }

    func assertSameExamples(_ a: ExampleSet, _ b: ExampleSet, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        guard a.count == b.count else { return }
        for start in stride(from: 0, to: a.count, by: 37) {
            let indices = Array((start..<min(start + 37, a.count)).reversed())[...]
            let x = a.batch(indices), y = b.batch(indices)
            XCTAssertEqual(x.tokenIDs, y.tokenIDs, file: file, line: line)
            XCTAssertEqual(x.tokenTypeIDs, y.tokenTypeIDs, file: file, line: line)
            XCTAssertEqual(x.sequenceStarts, y.sequenceStarts, file: file, line: line)
            XCTAssertEqual(x.classTargets, y.classTargets, file: file, line: line)
            XCTAssertEqual(x.regressionTargets, y.regressionTargets, file: file, line: line)
        }
        XCTAssertEqual((0..<a.count).map { a.cost(of: $0) }, (0..<b.count).map { b.cost(of: $0) }, file: file, line: line)
    }

    func testCorpusWindowsEqualTheInMemoryCorpusOnOneTwoAndThreeRanks() throws {
        let path = writeCorpus("domain.txt")
        let memory = try DataLoading.load(train: path, valid: nil, test: nil, for: model, maxLength: 16, taskChoice: .mlm)
        XCTAssertTrue(memory.train is TextDataset)
        for ranks in [1, 2, 3] {
            let (cached, notes) = try loadCached(ranks, train: path, taskChoice: .mlm, cache: "\(dir)/cache\(ranks)")
            XCTAssertTrue(cached.train is CachedTextDataset)
            XCTAssertEqual((cached.train as! CachedTextDataset).meta.parts.count, ranks)
            XCTAssertTrue(notes.contains { $0.contains("tokenized") }, "\(notes)")
            assertSameExamples(cached.train, memory.train)
        }
        // A second load reads the entry without tokenizing.
        let (_, notes) = try loadCached(2, train: path, taskChoice: .mlm, cache: "\(dir)/cache2")
        XCTAssertTrue(notes.contains { $0.contains("read from") } && !notes.contains { $0.contains("tokenized") }, "\(notes)")
    }

    func testLabelledExamplesEqualTheInMemoryReaderForNamesNumbersAndPairs() throws {
        let named = writeLabelled("named.jsonl"), valid = writeLabelled("valid.jsonl", lines: 50)
        let numbered = writeLabelled("numbered.jsonl", numbers: true)
        for (path, choice) in [(named, nil), (numbered, nil), (numbered, TaskChoice.classification)] as [(String, TaskChoice?)] {
            let memory = try DataLoading.load(train: path, valid: path == named ? valid : nil, test: nil, for: model, maxLength: 16, taskChoice: choice)
            for ranks in [1, 2] {
                let (cached, _) = try loadCached(ranks, train: path, valid: path == named ? valid : nil, taskChoice: choice, cache: "\(dir)/c\(ranks)")
                XCTAssertEqual(cached.task, memory.task)
                assertSameExamples(cached.train, memory.train)
                if let v = memory.valid { assertSameExamples(cached.valid!, v) }
            }
        }
        // A label the training data does not have: the same error, naming the line.
        let odd = writeLabelled("odd.jsonl", labels: ["pos", "neg", "odd"], lines: 40)
        XCTAssertThrowsError(try loadCached(2, train: named, valid: odd, taskChoice: nil)) { error in
            XCTAssertTrue("\(error)".contains("odd.jsonl:") && "\(error)".contains("unknown label \"odd\""), "\(error)")
        }
    }

    func testAnErrorNamesItsLineWhicheverRankReadsIt() throws {
        var lines = (0..<200).map { "{\"text\": \"line \($0)\", \"label\": \"a\"}" }
        lines[170] = "{\"text\": \"broken\", \"label\": }"
        let path = "\(dir)/bad.jsonl"
        FileManager.default.createFile(atPath: path, contents: Data(lines.joined(separator: "\n").utf8))
        // The rank whose slice holds the line says so (the others, that a peer failed).
        let errors = try InProcessGroup.run(size: 3) { comm -> String in
            do {
                _ = try DataLoading.load(train: path, valid: nil, test: nil, for: self.model, maxLength: 16, taskChoice: nil,
                                         tokenCache: TokenCacheSettings(folder: "\(self.dir)/cache", comm: comm, note: { _ in }))
                return ""
            } catch { return "\(error)" }
        }
        XCTAssertTrue(errors[2].contains("bad.jsonl:171: not valid JSON"), "\(errors)")
        XCTAssertTrue(errors[0].contains("rank 2 failed during tokenizing"), "\(errors)")
        // Nothing half-built is left as an entry.
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/cache")) ?? []
        XCTAssertFalse(entries.contains { $0.hasPrefix("bad.jsonl.") }, "\(entries)")
    }

    func testAChangedFileGetsANewEntryAndADamagedOneIsRebuiltNotRead() throws {
        let path = writeCorpus("domain.txt")
        let (first, _) = try loadCached(2, train: path, taskChoice: .mlm)
        let entry = entries().first!
        // The file changes (a line appended): another key, another entry, the new text.
        try Data("one more line of text\n".utf8).append(to: path)
        let (second, _) = try loadCached(2, train: path, taskChoice: .mlm)
        XCTAssertEqual(second.train.count, first.train.count + 1)
        XCTAssertEqual(entries().count, 2)
        XCTAssertNotEqual(second.train.fingerprint, first.train.fingerprint)
        let current = entries().first { $0 != entry }!
        // The reference from memory (the damage below truncates files `second` has mapped).
        let memory = try DataLoading.load(train: path, valid: nil, test: nil, for: model, maxLength: 16, taskChoice: .mlm).train
        assertSameExamples(second.train, memory)
        // Damage: a truncated index, a missing meta.json (a build killed before sealing), a shortened token file.
        let damages: [(String, (String) throws -> Void)] = [
            ("offsets", { try FileHandle(forWritingTo: URL(fileURLWithPath: "\($0)/part-1.offsets")).truncate(atOffset: 16) }),
            ("meta", { try FileManager.default.removeItem(atPath: "\($0)/meta.json") }),
            ("tokens", { try FileHandle(forWritingTo: URL(fileURLWithPath: "\($0)/part-0.tokens")).truncate(atOffset: 10) }),
        ]
        for (what, damage) in damages {
            try damage("\(dir)/cache/\(current)")
            let (again, notes) = try loadCached(2, train: path, taskChoice: .mlm)
            XCTAssertTrue(notes.contains { $0.contains("rebuilding") }, "\(what): \(notes)")
            assertSameExamples(again.train, memory)
        }
        // An abandoned build folder is not an entry and is not read.
        try FileManager.default.createDirectory(atPath: "\(dir)/cache/\(current).building-1-2", withIntermediateDirectories: true)
        try FileManager.default.removeItem(atPath: "\(dir)/cache/\(current)")
        let (rebuilt, notes) = try loadCached(1, train: path, taskChoice: .mlm)
        XCTAssertTrue(notes.contains { $0.contains("tokenized") }, "\(notes)")
        assertSameExamples(rebuilt.train, memory)
    }

    func entries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/cache")) ?? []).filter { !$0.contains(".building-") }.sorted()
    }
}

final class NotesBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ s: String) { lock.lock(); stored.append(s); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
}

extension Data {
    func append(to path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: self)
        try handle.close()
    }
}
