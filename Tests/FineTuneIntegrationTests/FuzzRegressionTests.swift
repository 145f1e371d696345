import Foundation
import XCTest

/// The inputs under Tests/Fixtures/fuzz/<target>/ (hostile cases written by hand, and every crash
/// launch/fuzz.sh ever found, after its fix) go through the same readers as the fuzzer's, in the
/// replayer that a plain build makes of Sources/finetune-fuzz: none may crash.
final class FuzzRegressionTests: XCTestCase {
    func testEveryKeptInputIsReadWithoutACrash() throws {
        let root = "\(repositoryRoot)/Tests/Fixtures/fuzz"
        let replayer = (Harness.binary as NSString).deletingLastPathComponent + "/finetune-fuzz"
        let targets = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        XCTAssertEqual(Set(targets), ["json", "jsonl", "csv", "safetensors", "gguf", "config", "tokenizer"])
        for target in targets {
            let files = try FileManager.default.contentsOfDirectory(atPath: "\(root)/\(target)").sorted().map { "\(root)/\(target)/\($0)" }
            XCTAssertFalse(files.isEmpty, target)
            let r = try Harness.run(replayer, [target] + files, timeout: 60)
            XCTAssertEqual(r.status, 0, "\(target): \(r.output)")
            XCTAssertTrue(r.stdout.contains("\(files.count) input(s) read without a crash"), r.output)
        }
    }
}
