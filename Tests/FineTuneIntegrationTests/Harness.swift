import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation
import XCTest

/// Runs the built finetune-dist binary, directly or under a real `mpirun`.
enum Harness {
    /// The folder of the test bundle holds the products it depends on.
    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // The xctest binary sits in .build/<triple>/debug/<name>.xctest on Linux.
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir.appendingPathComponent("finetune-dist").path
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
        var timedOut: Bool
        var output: String { stdout + stderr }
    }

    static var mpiEnvironment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        env["HWLOC_COMPONENTS"] = "-gl"
        env["OPENBLAS_NUM_THREADS"] = "1"
        return env
    }

    /// Runs a command; kills it (and fails the result) after `timeout` seconds.
    static func run(_ executable: String, _ arguments: [String], timeout: Double = 180,
                    environment: [String: String]? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = environment ?? mpiEnvironment
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("out-\(UUID())").path
        FileManager.default.createFile(atPath: dir + ".out", contents: nil)
        FileManager.default.createFile(atPath: dir + ".err", contents: nil)
        defer { try? FileManager.default.removeItem(atPath: dir + ".out"); try? FileManager.default.removeItem(atPath: dir + ".err") }
        p.standardOutput = FileHandle(forWritingAtPath: dir + ".out")
        p.standardError = FileHandle(forWritingAtPath: dir + ".err")
        let start = Date()
        try p.run()
        var timedOut = false
        while p.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                kill(-p.processIdentifier, SIGKILL)
                p.terminate()
                break
            }
            usleep(20_000)
        }
        p.waitUntilExit()
        let out = String(decoding: FileManager.default.contents(atPath: dir + ".out") ?? Data(), as: UTF8.self)
        let err = String(decoding: FileManager.default.contents(atPath: dir + ".err") ?? Data(), as: UTF8.self)
        return Result(status: p.terminationStatus, stdout: out, stderr: err, seconds: Date().timeIntervalSince(start), timedOut: timedOut)
    }

    /// A run started in the background, for tests that act on it while it runs.
    final class Background {
        let process = Process()
        let outPath: String, errPath: String
        let started = Date()
        init(_ arguments: [String]) throws {
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("bg-\(UUID())").path
            outPath = base + ".out"; errPath = base + ".err"
            FileManager.default.createFile(atPath: outPath, contents: nil)
            FileManager.default.createFile(atPath: errPath, contents: nil)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            process.environment = Harness.mpiEnvironment
            process.standardOutput = FileHandle(forWritingAtPath: outPath)
            process.standardError = FileHandle(forWritingAtPath: errPath)
            try process.run()
        }
        /// Waits for the process; kills it after `timeout` seconds, with every process whose command
        /// line contains `killPattern` (mpirun started under a wrapper is not the direct child).
        func finish(timeout: Double, killPattern: String? = nil) -> Result {
            var timedOut = false
            while process.isRunning {
                if Date().timeIntervalSince(started) > timeout {
                    timedOut = true
                    if let killPattern { _ = try? Harness.run("/usr/bin/env", ["pkill", "-9", "-f", killPattern], timeout: 10) }
                    process.terminate()
                    break
                }
                usleep(20_000)
            }
            process.waitUntilExit()
            let out = String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self)
            let err = String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
            try? FileManager.default.removeItem(atPath: outPath); try? FileManager.default.removeItem(atPath: errPath)
            return Result(status: process.terminationStatus, stdout: out, stderr: err, seconds: Date().timeIntervalSince(started), timedOut: timedOut)
        }
    }

    static func mpirunInBackground(_ ranks: Int, _ arguments: [String]) throws -> Background {
        try Background(["mpirun", "-n", String(ranks), "--bind-to", "none", binary] + arguments)
    }

    /// Polls `condition` every 20 ms for up to `timeout` seconds.
    @discardableResult
    static func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
        let start = Date()
        while Date().timeIntervalSince(start) < timeout {
            if condition() { return true }
            usleep(20_000)
        }
        return false
    }

    /// The pid of each rank, from the run's run.json.
    static func rankPIDs(_ runFolder: String) -> [Int32]? {
        guard let data = FileManager.default.contents(atPath: "\(runFolder)/run.json"),
              let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let ranks = o["ranks"] as? [[String: Any]] else { return nil }
        return ranks.compactMap { ($0["pid"] as? Int).map(Int32.init) }
    }

    /// A test that cannot run here (no namespaces, no model, no tmpfs, no AVX2): a skip on a
    /// developer's machine, a failure where everything must run (.ci/run sets
    /// FINETUNE_DIST_REQUIRE_ALL=1), so CI cannot pass by skipping what it failed to set up.
    static func missingCapability(_ why: String, file: StaticString = #filePath, line: UInt = #line) -> Error {
        if ProcessInfo.processInfo.environment["FINETUNE_DIST_REQUIRE_ALL"] == "1" {
            XCTFail("required here (FINETUNE_DIST_REQUIRE_ALL=1): \(why)", file: file, line: line)
        }
        return XCTSkip(why)
    }

    static func finetune(_ arguments: [String], timeout: Double = 180) throws -> Result {
        try run(binary, arguments, timeout: timeout)
    }

    static func mpirun(_ ranks: Int, _ arguments: [String], timeout: Double = 180) throws -> Result {
        try run("/usr/bin/env", ["mpirun", "-n", String(ranks), "--bind-to", "none", binary] + arguments, timeout: timeout)
    }

    /// A deterministic classification data set: 6 features, 3 classes from a simple rule plus noise.
    static func writeData(_ path: String, count: Int, seed: UInt64, noiseOnly: Bool = false) {
        var rng = SplitMix64(seed: seed)
        var lines: [String] = []
        for _ in 0..<count {
            let x = (0..<6).map { _ in rng.nextNormal() }
            var label = (x[0] + x[1] * x[2] > 0 ? 1 : 0) + (x[3] - x[4] > 0.5 ? 1 : 0)
            if noiseOnly || rng.nextUnit() < 0.1 { label = Int(rng.next() % 3) }
            let names = ["red", "green", "blue"]
            lines.append("{\"features\": [\(x.map { String(format: "%.5f", $0) }.joined(separator: ", "))], \"label\": \"\(names[label])\"}")
        }
        FileManager.default.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    static func weights(_ folder: String) throws -> [String: [Float]] {
        let f = try SafetensorsFile(path: "\(folder)/model.safetensors")
        var out: [String: [Float]] = [:]
        for name in f.names { out[name] = try f.floats(name) }
        return out
    }

    /// `weights` plus the tensors of sentence-transformers module folders ("2_Dense/linear.weight", ...).
    static func weightsWithModules(_ folder: String) throws -> [String: [Float]] {
        var out = try weights(folder)
        for module in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where FileManager.default.fileExists(atPath: "\(folder)/\(module)/model.safetensors") {
            let f = try SafetensorsFile(path: "\(folder)/\(module)/model.safetensors")
            for name in f.names { out["\(module)/\(name)"] = try f.floats(name) }
        }
        return out
    }

    static func metrics(_ runFolder: String) -> [[String: Any]] {
        let text = String(decoding: FileManager.default.contents(atPath: "\(runFolder)/metrics.jsonl") ?? Data(), as: UTF8.self)
        return text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }
}

/// A scratch folder per test case, with a data set and an initial model.
class IntegrationTestCase: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("it-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: Harness.binary), "built binary at \(Harness.binary)")
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var tinyBert: String { "\(repositoryRoot)/Tests/Fixtures/tiny-bert" }

    /// Sentences of the tiny vocabulary; the label follows a simple rule, with some noise.
    func writeText(_ path: String, count: Int, seed: UInt64, pairs: Bool = false) {
        let words = ["the", "a", "model", "data", "train", "fast", "slow", "cpu", "mpi", "rank", "sum", "grad"]
        var rng = SplitMix64(seed: seed)
        var lines: [String] = []
        for _ in 0..<count {
            let n = 2 + Int(rng.next() % 14)
            let sentence = (0..<n).map { _ in words[Int(rng.next() % UInt64(words.count))] }
            let fast = sentence.filter { $0 == "fast" }.count, slow = sentence.filter { $0 == "slow" }.count
            var label = fast > slow ? "pos" : fast < slow ? "neg" : "neu"
            if rng.nextUnit() < 0.05 { label = ["neg", "neu", "pos"][Int(rng.next() % 3)] }
            var object: [String: String] = ["text": sentence.joined(separator: " ").capitalized, "label": label]
            if pairs && rng.nextUnit() < 0.5 { object["text_pair"] = "the cpu and the mpi rank" }
            lines.append(String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        }
        FileManager.default.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    func makeModel(_ name: String = "model", dropout: Double = 0.1, hidden: String = "16,12") throws -> String {
        let path = "\(dir)/\(name)"
        let r = try Harness.finetune(["init", "--input-size", "6", "--hidden", hidden, "--labels", "red,green,blue",
                                      "--dropout", String(dropout), "--activation", "gelu", "--seed", "7", "--output", path])
        XCTAssertEqual(r.status, 0, r.output)
        return path
    }

    func assertClose(_ a: [String: [Float]], _ b: [String: [Float]], relative: Float, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), file: file, line: line)
        var worst: Float = 0, worstName = ""
        for (name, x) in a {
            guard let y = b[name], x.count == y.count else { XCTFail("\(name) differs in shape", file: file, line: line); continue }
            for i in x.indices {
                let d = abs(x[i] - y[i]) / max(abs(x[i]), abs(y[i]), 1e-6)
                if d > worst { worst = d; worstName = "\(name)[\(i)]: \(x[i]) vs \(y[i])" }
            }
        }
        XCTAssertLessThanOrEqual(worst, relative, "largest relative difference \(worst) at \(worstName)", file: file, line: line)
    }

    /// Per tensor: max |a − b| ≤ relative · max |b|. For large models whose weights cross zero, where
    /// the elementwise measure above reads float noise on a weight of 1e-7 as a large difference.
    func assertCloseByTensor(_ a: [String: [Float]], _ b: [String: [Float]], relative: Float, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), file: file, line: line)
        var worst: Float = 0, worstName = ""
        for (name, x) in a {
            guard let y = b[name], x.count == y.count else { XCTFail("\(name) differs in shape", file: file, line: line); continue }
            let scale = max(y.map(abs).max() ?? 0, 1e-12)
            let d = zip(x, y).map { abs($0 - $1) }.max()! / scale
            if d > worst { worst = d; worstName = name }
        }
        XCTAssertLessThanOrEqual(worst, relative, "largest difference \(worst) of the tensor's scale, in \(worstName)", file: file, line: line)
    }
}
