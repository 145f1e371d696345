import FineTuneCore
import FineTuneDistributed
import Foundation
import XCTest

final class DataTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("data-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) -> String {
        let path = "\(dir)/\(name)"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    let classes = TaskKind.classification(labels: ["cat", "dog", "eel"])

    func testJSONLinesWithNamesAndIds() throws {
        let path = write("a.jsonl", """
        {"features": [1, 2.5], "label": "dog"}

        {"features": [-1, 0], "label": 2}
        {"label": "cat", "features": [0.5, 0.25]}
        """)
        let d = try TabularDataset(path: path, featureWidth: 2, task: classes)
        XCTAssertEqual(d.count, 3)
        XCTAssertEqual(d.classTargets, [1, 2, 0])
        XCTAssertEqual(d.features, [1, 2.5, -1, 0, 0.5, 0.25])
        XCTAssertEqual(d.lines, [1, 3, 4])
        let b = d.batch([2, 0])
        XCTAssertEqual(b.features, [0.5, 0.25, 1, 2.5])
        XCTAssertEqual(b.classTargets, [0, 1])
        XCTAssertEqual(b.exampleIndices, [2, 0])
    }

    func testCSVWithQuotesAndRegression() throws {
        let path = write("r.csv", "x1,label,\"x,2\"\n1.5,3.25,2\n\"-1\",-0.5,\"4\"\r\n")
        let d = try TabularDataset(path: path, featureWidth: 2, task: .regression)
        XCTAssertEqual(d.features, [1.5, 2, -1, 4])
        XCTAssertEqual(d.regressionTargets, [3.25, -0.5])
        let c = try TabularDataset(path: write("c.csv", "a,b,label\n1,2,eel\n3,4,0\n"), featureWidth: 2, task: classes)
        XCTAssertEqual(c.classTargets, [2, 0])
    }

    func assertError(_ text: String, name: String = "bad.jsonl", width: Int = 2, task: TaskKind? = nil, contains phrases: [String],
                     file: StaticString = #filePath, line: UInt = #line) {
        let path = write(name, text)
        XCTAssertThrowsError(try TabularDataset(path: path, featureWidth: width, task: task ?? classes), file: file, line: line) { error in
            let m = String(describing: error)
            for p in [path] + phrases { XCTAssertTrue(m.contains(p), "\"\(m)\" should contain \"\(p)\"", file: file, line: line) }
        }
    }

    func testErrorsNameFileAndLine() {
        assertError("{\"features\": [1, 2], \"label\": \"dog\"}\n{\"features\": [1, 2], \"label\": \"dog\"\n", contains: [":2:", "not a JSON object"])
        assertError("{\"features\": [1], \"label\": \"dog\"}\n", contains: [":1:", "1 features, the model takes 2"])
        assertError("{\"features\": [1, 2], \"label\": \"owl\"}\n", contains: [":1:", "unknown label \"owl\"", "cat, dog, eel"])
        assertError("{\"features\": [1, 2], \"label\": 7}\n", contains: [":1:", "0..<3"])
        assertError("{\"features\": [1, \"x\"], \"label\": 1}\n", contains: [":1:", "features[1]"])
        assertError("{\"features\": [1, 2]}\n", contains: [":1:", "label"])
        assertError("{\"features\": [1, 2], \"label\": \"a\"}\n", task: .regression, contains: [":1:", "finite number"])
        assertError("a,b,label\n1,2,cat\n1,zz,cat\n", name: "bad.csv", contains: [":3:", "column \"b\"", "zz"])
        assertError("a,b,label\n1,2\n", name: "bad2.csv", contains: [":2:", "2 fields"])
        assertError("a,b\n1,2\n", name: "nolabel.csv", contains: [":1:", "no \"label\" column"])
        assertError("a,b,label\n1,nan,cat\n", name: "nan.csv", contains: [":2:", "not a finite number"])
        assertError("", contains: ["no examples"])
        XCTAssertThrowsError(try TabularDataset(path: "\(dir)/missing.jsonl", featureWidth: 2, task: classes)) {
            XCTAssertTrue(String(describing: $0).contains("missing.jsonl"))
        }
    }

    func testEpochPermutationIsAPermutationKeyedBySeedAndEpoch() {
        let p = epochPermutation(count: 803, seed: 5, epoch: 2)
        XCTAssertEqual(p.sorted(), Array(0..<803))
        XCTAssertEqual(p, epochPermutation(count: 803, seed: 5, epoch: 2))
        XCTAssertNotEqual(p, epochPermutation(count: 803, seed: 5, epoch: 3))
        XCTAssertNotEqual(p, epochPermutation(count: 803, seed: 6, epoch: 2))
    }

    func testShardingCoversEveryExampleOnceEvenForShortBatches() {
        for size in 1...5 {
            for count in [0, 1, 2, 3, 7, 32] {
                let slices = (0..<size).map { Sharding.slice(count: count, rank: $0, size: size) }
                XCTAssertEqual(slices.flatMap { Array($0) }, Array(0..<count), "count \(count) on \(size) ranks")
                XCTAssertLessThanOrEqual(slices.map(\.count).max()! - slices.map(\.count).min()!, 1)
            }
        }
    }

    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hex(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex(Data(repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testAtomicFolderReplacesWholeOrNothing() throws {
        let target = "\(dir)/best"
        try AtomicFiles.writeFolder(target) { try AtomicFiles.writeAndSync(Data("one".utf8), to: "\($0)/f") }
        XCTAssertThrowsError(try AtomicFiles.writeFolder(target) { d in
            try AtomicFiles.writeAndSync(Data("two".utf8), to: "\(d)/f")
            throw FineTuneError("disk full")
        })
        XCTAssertEqual(FileManager.default.contents(atPath: "\(target)/f"), Data("one".utf8), "a failed write leaves the old folder")
        try AtomicFiles.writeFolder(target) { try AtomicFiles.writeAndSync(Data("three".utf8), to: "\($0)/f") }
        XCTAssertEqual(FileManager.default.contents(atPath: "\(target)/f"), Data("three".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["best"], "no temporary folders left behind")
    }
}

final class BalancedShardingTests: XCTestCase {
    func testSlicesCoverTheBatchWithAboutEqualTokens() {
        var rng = SplitMix64(seed: 4)
        for size in 1...5 {
            for _ in 0..<20 {
                let costs = (0..<Int(rng.next() % 40)).map { _ in 3 + Int(rng.next() % 60) }
                let slices = (0..<size).map { Sharding.balancedSlice(costs: costs, rank: $0, size: size) }
                XCTAssertEqual(slices.flatMap { Array($0) }, Array(costs.indices), "contiguous, complete, in order")
                let loads = slices.map { $0.map { costs[$0] }.reduce(0, +) }
                let ideal = Double(costs.reduce(0, +)) / Double(size)
                // Each slice is within one example of the ideal share.
                for load in loads { XCTAssertLessThanOrEqual(abs(Double(load) - ideal), Double(costs.max() ?? 0)) }
            }
        }
        // One long text among short ones: it gets a rank of its own.
        let costs = [10, 10, 10, 64, 10, 10]
        XCTAssertEqual((0..<2).map { Sharding.balancedSlice(costs: costs, rank: $0, size: 2) }, [0..<3, 3..<6])
        XCTAssertEqual((0..<3).map { Sharding.balancedSlice(costs: costs, rank: $0, size: 3) }.map(\.count).reduce(0, +), 6)
    }
}
