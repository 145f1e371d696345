import Foundation
import XCTest

/// Tests/Fixtures: small files made once by Tests/fixture-scripts (with torch), committed.
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path

/// A test case with a fresh temporary folder per test, removed after it.
class FolderTestCase: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(type(of: self))-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes `text` to `name` in the folder; its path.
    func write(_ name: String, _ text: String) -> String { write(name, Data(text.utf8)) }
    func write(_ name: String, _ data: Data) -> String {
        let path = "\(dir)/\(name)"
        FileManager.default.createFile(atPath: path, contents: data)
        return path
    }
}
