import FineTuneKernels
import FineTuneModels
import FineTuneIO

import Foundation
import XCTest

final class DataTests: FolderTestCase {
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
        assertError("{\"features\": [1, 2], \"label\": \"dog\"}\n{\"features\": [1, 2], \"label\": \"dog\"\n", contains: [":2:", "not valid JSON"])
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

    func testSHA256KnownVectorsWholeAndInPieces() {
        XCTAssertEqual(Digest.sha256(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(Digest.sha256(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        XCTAssertEqual(Digest.sha256(long), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let million = Data(repeating: 0x61, count: 1_000_000)
        XCTAssertEqual(Digest.sha256(million), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // The same digests fed in uneven pieces (block boundaries fall inside and between updates).
        for (data, expected) in [(long, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
                                 (million, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")] {
            var h = Digest(), start = 0, size = 1
            while start < data.count {
                let end = min(data.count, start + size)
                h.update(data: data.subdata(in: start..<end))
                start = end; size = size * 3 + 1
            }
            XCTAssertEqual(h.hex(), expected)
        }
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

    /// A bare name (`--output run1`) is a folder in the working directory; Foundation's own
    /// deletingLastPathComponent traps on it.
    func testBareNamesAreWrittenInTheWorkingDirectory() throws {
        XCTAssertEqual(AtomicFiles.parentFolder(of: "run1"), ".")
        XCTAssertEqual(AtomicFiles.parentFolder(of: "run1/"), ".")
        XCTAssertEqual(AtomicFiles.parentFolder(of: "runs/a"), "runs")
        XCTAssertEqual(AtomicFiles.parentFolder(of: "/a"), "/")
        XCTAssertEqual(AtomicFiles.parentFolder(of: "/a/b//"), "/a")
        let cwd = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(dir)
        defer { FileManager.default.changeCurrentDirectoryPath(cwd) }
        try AtomicFiles.writeFolder("bare") { try AtomicFiles.writeAndSync(Data("x".utf8), to: "\($0)/f") }
        try AtomicFiles.write(Data("y".utf8), to: "file")
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/bare/f"), Data("x".utf8))
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/file"), Data("y".utf8))
    }
}
