import FineTuneKernels
import Foundation
import XCTest

/// The token cache through the command line under mpirun: a run through the cache ends with the
/// weights of a run that reads the text into memory (classification with pairs, and masked-language
/// modelling), on 1 and 2 ranks and across a resume; `tokenize` builds what `train` and `eval` reuse.
final class TokenCacheTrainingTests: IntegrationTestCase {
    func testCachedRunsEqualInMemoryRunsBitwiseAndReuseWhatTokenizeBuilt() throws {
        writeText("\(dir)/train.jsonl", count: 120, seed: 1, pairs: true)
        writeText("\(dir)/valid.jsonl", count: 30, seed: 2, pairs: true)
        func classify(_ ranks: Int, _ output: String, _ extra: [String] = []) throws -> Harness.Result {
            try Harness.mpirun(ranks, ["train", "--model", "\(tinyBert)/classifier", "--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl",
                                       "--output", "\(dir)/\(output)", "--epochs", "2", "--batch-size", "16", "--lr", "3e-4", "--max-length", "12",
                                       "--save-every", "4"] + extra)
        }
        for ranks in [1, 2] {
            let memory = try classify(ranks, "memory\(ranks)", ["--no-token-cache"])
            XCTAssertEqual(memory.status, 0, memory.output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/memory\(ranks)/token-cache"))
            let cached = try classify(ranks, "cached\(ranks)")
            XCTAssertEqual(cached.status, 0, cached.output)
            XCTAssertTrue(cached.output.contains("token cache: tokenized"), cached.output)
            XCTAssertEqual(try Harness.weights("\(dir)/cached\(ranks)/final"), try Harness.weights("\(dir)/memory\(ranks)/final"), "\(ranks) rank(s)")
        }
        // Stopped and resumed through the cache (read back, not rebuilt): bitwise the uninterrupted run.
        let stopped = try classify(2, "resumed", ["--stop-after-steps", "5"])
        XCTAssertEqual(stopped.status, 0, stopped.output)
        let resumed = try classify(2, "resumed", ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("read from") && !resumed.output.contains("tokenized"), resumed.output)
        XCTAssertEqual(try Harness.weights("\(dir)/resumed/final"), try Harness.weights("\(dir)/memory2/final"))
        // The checkpoint read the data through the cache: resuming without it is refused, saying why.
        let mixed = try classify(2, "resumed", ["--resume", "--no-token-cache", "--epochs", "3"])
        XCTAssertNotEqual(mixed.status, 0)
        XCTAssertTrue(mixed.output.contains("through the token cache"), mixed.output)

        // Masked-language modelling: `tokenize` on 2 ranks ahead of the job, train reads its entry.
        let words = ["Rank", "sum", "grad", "cpu", "über"]
        var corpus: [String] = []
        for i in 0..<150 {
            let count: Int = 3 + i % 40
            corpus.append((0..<count).map { (k: Int) -> String in words[(k * 7 + i) % 5] }.joined(separator: " "))
        }
        FileManager.default.createFile(atPath: "\(dir)/domain.txt", contents: Data((corpus.joined(separator: "\n") + "\n").utf8))
        let built = try Harness.mpirun(2, ["tokenize", "--model", "\(tinyBert)/base", "--data", "\(dir)/domain.txt", "--task", "mlm",
                                           "--max-length", "24", "--cache-dir", "\(dir)/shared-cache"])
        XCTAssertEqual(built.status, 0, built.output)
        XCTAssertTrue(built.stdout.contains("domain.txt:"), built.output)
        func adapt(_ output: String, _ extra: [String]) throws -> Harness.Result {
            try Harness.mpirun(2, ["train", "--task", "mlm", "--model", "\(tinyBert)/base", "--train", "\(dir)/domain.txt", "--output", "\(dir)/\(output)",
                                   "--max-steps", "12", "--batch-size", "16", "--lr", "1e-3", "--max-length", "24"] + extra)
        }
        let cachedMLM = try adapt("mlm-cached", ["--cache-dir", "\(dir)/shared-cache"])
        XCTAssertEqual(cachedMLM.status, 0, cachedMLM.output)
        XCTAssertTrue(cachedMLM.output.contains("read from \(dir)/shared-cache"), cachedMLM.output)
        let memoryMLM = try adapt("mlm-memory", ["--no-token-cache"])
        XCTAssertEqual(memoryMLM.status, 0, memoryMLM.output)
        XCTAssertEqual(try Harness.weights("\(dir)/mlm-cached/final"), try Harness.weights("\(dir)/mlm-memory/final"))
        // eval through the same cache gives the figures of eval from memory.
        func evaluate(_ extra: [String]) throws -> [String: Any] {
            let r = try Harness.mpirun(2, ["eval", "--model", "\(dir)/mlm-cached/final", "--data", "\(dir)/domain.txt", "--json", "--progress", "none"] + extra)
            XCTAssertEqual(r.status, 0, r.output)
            return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        }
        let fromCache = try evaluate(["--cache-dir", "\(dir)/shared-cache"]), fromMemory = try evaluate([])
        XCTAssertEqual(fromCache["eval_loss"] as? Double, fromMemory["eval_loss"] as? Double)
        XCTAssertEqual(fromCache["eval_examples"] as? Int, fromMemory["eval_examples"] as? Int)
    }
}
