import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation
import XCTest

final class CommandLineTests: IntegrationTestCase {
    func testHelpExplainsEveryTrainOption() throws {
        let r = try Harness.finetune(["train", "--help"])
        XCTAssertEqual(r.status, 0)
        for option in ["--model", "--train", "--valid", "--output", "--epochs", "--max-steps", "--batch-size", "--lr",
                       "--lr-schedule", "--warmup-steps", "--warmup-ratio", "--optimizer", "--weight-decay", "--momentum",
                       "--seed", "--eval-every", "--patience", "--min-delta", "--monitor", "--save-every", "--resume",
                       "--stop-after-steps", "--log-every", "--test", "--max-length", "--pooling", "--keep-checkpoints",
                       "--collective-timeout", "--io-timeout", "--on-nonfinite", "--check-replicas-every", "--no-overlap",
                       "--bucket-mb", "--shard-optimizer", "resume auto"] {
            XCTAssertTrue(r.stdout.contains(option), "train --help mentions \(option)")
        }
        XCTAssertFalse(r.stdout.contains("debug-example-log"), "test-only switches stay hidden")
        let top = try Harness.finetune(["--help"])
        for sub in ["init", "train", "eval", "predict", "bench", "selftest"] { XCTAssertTrue(top.stdout.contains(sub)) }
        let bench = try Harness.finetune(["bench", "--help"])
        for option in ["--model", "--shape", "--per-rank-batch", "--seq-len", "--steps", "--json", "--shard-optimizer"] {
            XCTAssertTrue(bench.stdout.contains(option), "bench --help mentions \(option)")
        }
    }

    /// bench on 2 ranks (tiny shape): the JSON line has its fields, with values that hang together
    /// (no timing ratios: a loaded machine would make those flaky; bench itself reports them);
    /// sharding halves the optimizer state per rank.
    func testBenchReportsAConsistentStepOnTwoRanks() throws {
        func bench(_ extra: [String]) throws -> [String: Any] {
            let r = try Harness.mpirun(2, ["bench", "--shape", "tiny", "--per-rank-batch", "4", "--seq-len", "16", "--steps", "3",
                                           "--warmup", "1", "--json"] + extra, timeout: 120)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.stdout.contains("kernels (s per step, rank 0): linear"), r.output)
            let last = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
            return try JSONSerialization.jsonObject(with: Data(last.utf8)) as! [String: Any]
        }
        let plain = try bench([]), sharded = try bench(["--shard-optimizer"])
        for key in ["examples_per_s", "step_s", "gflops", "sgemm_gflops", "forward_s", "backward_s", "comm_exposed_s", "optimizer_s",
                    "peak_rss_bytes", "kernel_s", "linear_gflops"] {
            XCTAssertNotNil(plain[key], key)
        }
        let step = plain["step_s"] as! Double, forward = plain["forward_s"] as! Double, backward = plain["backward_s"] as! Double
        XCTAssertGreaterThan(forward, 0); XCTAssertGreaterThan(backward, 0)
        XCTAssertEqual(plain["examples_per_s"] as! Double, 8 / step, accuracy: 1e-6 * 8 / step, "2 ranks x 4 sequences per step")
        let kernels = plain["kernel_s"] as! [String: Double]
        XCTAssertEqual(Set(kernels.keys), Set(KernelKind.allCases.map(\.name)))
        for kind in ["linear", "attention", "gelu", "layernorm", "optimizer"] { XCTAssertGreaterThan(kernels[kind] ?? 0, 0, kind) }
        XCTAssertGreaterThan(plain["sgemm_gflops"] as! Double, 1)
        XCTAssertEqual(Double(sharded["optimizer_state_bytes"] as! Int), Double(plain["optimizer_state_bytes"] as! Int) / 2,
                       accuracy: Double(plain["optimizer_state_bytes"] as! Int) * 0.01)
    }

    func testInvalidOptionsAreRejectedBeforeAnythingRuns() throws {
        let r = try Harness.finetune(["train", "--model", "m", "--train", "t", "--output", "o", "--patience", "2"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--patience needs --valid"), r.output)
        let b = try Harness.finetune(["train", "--model", "m", "--train", "t", "--output", "o", "--batch-size", "0"])
        XCTAssertNotEqual(b.status, 0)
        XCTAssertTrue(b.stderr.contains("--batch-size must be positive"), b.output)
    }

    func testPredictWritesOneObjectPerLineInOrder() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 120, seed: 11)
        let model = try makeModel()
        FileManager.default.createFile(atPath: "\(dir)/in.jsonl", contents: Data("""
        {"features": [0, 0, 0, 0, 0, 0]}
        {"features": [1, 2, 3, -1, -2, -3], "label": "red"}
        {"features": [3, 3, 3, 0, 0, 0]}
        """.utf8))
        let r = try Harness.finetune(["predict", "--model", model, "--input", "\(dir)/in.jsonl", "--output", "\(dir)/out.jsonl"])
        XCTAssertEqual(r.status, 0, r.output)
        let lines = String(decoding: FileManager.default.contents(atPath: "\(dir)/out.jsonl")!, as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        for line in lines {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let p = o["probabilities"] as! [String: Double]
            XCTAssertEqual(Set(p.keys), ["red", "green", "blue"])
            XCTAssertEqual(p.values.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(o["label"] as? String, p.max { $0.value < $1.value }!.key)
        }
        // Regression models write {"value": x}.
        let reg = "\(dir)/reg"
        XCTAssertEqual(try Harness.finetune(["init", "--input-size", "6", "--hidden", "4", "--regression", "--output", reg]).status, 0)
        XCTAssertEqual(try Harness.finetune(["predict", "--model", reg, "--input", "\(dir)/in.jsonl", "--output", "\(dir)/reg.jsonl"]).status, 0)
        let first = String(decoding: FileManager.default.contents(atPath: "\(dir)/reg.jsonl")!, as: UTF8.self).split(separator: "\n")[0]
        XCTAssertNotNil((try JSONSerialization.jsonObject(with: Data(first.utf8)) as! [String: Any])["value"] as? Double)
    }

    func testRunFolderRecordsConfigurationAndProvenance() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 64, seed: 12)
        let model = try makeModel()
        let out = "\(dir)/run"
        let r = try Harness.mpirun(2, ["train", "--model", model, "--train", "\(dir)/train.jsonl", "--output", out, "--epochs", "1", "--batch-size", "16"])
        XCTAssertEqual(r.status, 0, r.output)
        let run = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(out)/run.json")!) as! [String: Any]
        XCTAssertEqual(run["world_size"] as? Int, 2)
        XCTAssertTrue((run["mpi_library"] as? String ?? "").contains("Open MPI"))
        XCTAssertFalse((run["openblas_core"] as? String ?? "").isEmpty)
        let blas = try XCTUnwrap(run["blas"] as? [String: Any])
        XCTAssertEqual(blas["core"] as? String, run["openblas_core"] as? String)
        XCTAssertNotNil(blas["best_core"] as? String); XCTAssertNotNil(blas["reason"] as? String)
        XCTAssertEqual((run["ranks"] as? [[String: Any]])?.compactMap { $0["sgemm_gflops"] as? Double }.count, 1, "one host, one measurement")
        XCTAssertTrue(r.stdout.contains("OpenBLAS kernels: "), r.output)
        XCTAssertEqual((run["ranks"] as? [[String: Any]])?.count, 2)
        XCTAssertNotNil(run["finetune_dist_commit"])
        let config = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(out)/training_config.json")!) as! [String: Any]
        let options = config["options"] as! [String: Any]
        XCTAssertEqual(options["batch_size"] as? Int, 16)
        XCTAssertEqual((config["resolved"] as? [String: Any])?["total_steps"] as? Int, 4)
        // Every option `train --help` shows has its key (absent ones as null), and nothing else.
        let help = try Harness.finetune(["train", "--help"]).stdout
        let optionName = try Regex("--([a-z0-9]+(?:-[a-z0-9]+)*)")
        let shown = Set(help.matches(of: optionName).map { String(help[$0.range].dropFirst(2)) })
            .subtracting(["help", "version"]).map { ($0.hasPrefix("no-") ? String($0.dropFirst(3)) : $0).replacingOccurrences(of: "-", with: "_") }
        XCTAssertEqual(Set(options.keys), Set(shown), "training_config.json options vs train --help")
        let train = Harness.metrics(out).filter { $0["type"] as? String == "train" }
        XCTAssertEqual(train.count, 4)
        for key in ["step", "epoch", "loss", "lr", "examples_per_s"] { XCTAssertNotNil(train[0][key], key) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(out)/final/model.safetensors"))
    }
}

/// Progress on the console: a bar redrawn in place when mpirun's output is a terminal (a
/// pseudo-terminal made by `script`), lines with the ETA and the last validation metric in a log,
/// nothing per step with `none`.
final class ProgressTests: IntegrationTestCase {
    func testAutoDrawsABarOnATerminalAndLinesInALog() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 96, seed: 3)
        Harness.writeData("\(dir)/valid.jsonl", count: 32, seed: 4)
        let model = try makeModel()
        func train(_ output: String, _ extra: [String]) -> [String] {
            ["train", "--model", model, "--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl", "--output", "\(dir)/\(output)",
             "--epochs", "2", "--batch-size", "16", "--log-every", "2"] + extra
        }
        // A log (the harness's stdout is a file): auto means lines.
        let log = try Harness.mpirun(2, train("log", []))
        XCTAssertEqual(log.status, 0, log.output)
        XCTAssertFalse(log.stdout.contains("\r"), "no redrawing in a log")
        let stepLines = log.stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }
        XCTAssertEqual(stepLines.count, 6, log.stdout)
        XCTAssertTrue(stepLines.allSatisfy { $0.contains("| ETA ") }, log.stdout)
        XCTAssertTrue(stepLines.last!.contains("val_loss "), "the last validation metric: \(log.stdout)")
        XCTAssertTrue(log.stdout.contains("finished: completed"))
        let events = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/log/tensorboard")
        XCTAssertEqual(events.count, 1, "one TensorBoard event file per run: \(events)")
        XCTAssertTrue(events[0].hasPrefix("events.out.tfevents."))

        let quiet = try Harness.mpirun(2, train("quiet", ["--progress", "none", "--no-tensorboard"]))
        XCTAssertEqual(quiet.status, 0, quiet.output)
        XCTAssertFalse(quiet.stdout.contains("step 2/12"), quiet.stdout)
        XCTAssertTrue(quiet.stdout.contains("eval at step 6") && quiet.stdout.contains("finished: completed"), quiet.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/quiet/tensorboard"), "--no-tensorboard")

        // mpirun under a pseudo-terminal: rank 0 sees mpirun's terminal and draws the bar.
        let command = (["mpirun", "-n", "2", "--bind-to", "none", Harness.binary] + train("bar", ["--debug-step-delay", "0.02"]))
            .map { "'\($0)'" }.joined(separator: " ")
        let tty = try Harness.run("/usr/bin/script", ["-qec", command, "/dev/null"], timeout: 180)
        XCTAssertEqual(tty.status, 0, tty.output)
        XCTAssertTrue(tty.stdout.contains("\r\u{1B}[2K"), "redrawn in place: \(tty.stdout.debugDescription)")
        XCTAssertTrue(tty.stdout.contains("step 12/12"), tty.stdout)
        XCTAssertTrue(tty.stdout.contains("ETA "), tty.stdout)
        let bars = tty.stdout.components(separatedBy: "\r\u{1B}[2K").filter { $0.hasPrefix("epoch ") }
        XCTAssertTrue(bars.contains { $0.contains("| val_loss ") }, "the bar shows the last validation metric: \(bars)")
        XCTAssertTrue(tty.stdout.contains("finished: completed"))
    }
}

/// eval and predict under mpirun: every rank a slice, rank 0 the whole answer, equal to one process.
final class DistributedEvalPredictTests: IntegrationTestCase {
    func testEvalAndPredictOnThreeRanksEqualOneProcess() throws {
        Harness.writeData("\(dir)/data.jsonl", count: 101, seed: 21)
        let model = try makeModel()
        let one = try Harness.finetune(["eval", "--model", model, "--data", "\(dir)/data.jsonl", "--json", "--batch-size", "7"])
        let three = try Harness.mpirun(3, ["eval", "--model", model, "--data", "\(dir)/data.jsonl", "--json", "--batch-size", "7"])
        XCTAssertEqual(one.status, 0, one.output); XCTAssertEqual(three.status, 0, three.output)
        let a = try JSONSerialization.jsonObject(with: Data(one.stdout.utf8)) as! [String: Any]
        let lines = three.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }
        XCTAssertEqual(lines.count, 1, "rank 0 alone prints: \(three.stdout)")
        let b = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(a["eval_examples"] as? Int, 101); XCTAssertEqual(b["eval_examples"] as? Int, 101)
        XCTAssertEqual(a["confusion_matrix"] as? [[Int]], b["confusion_matrix"] as? [[Int]])
        XCTAssertEqual(a["eval_accuracy"] as? Double, b["eval_accuracy"] as? Double)
        XCTAssertEqual(a["eval_loss"] as! Double, b["eval_loss"] as! Double, accuracy: 1e-12)

        for ranks in [2, 3] {
            let out1 = "\(dir)/p1.jsonl", outN = "\(dir)/p\(ranks).jsonl"
            XCTAssertEqual(try Harness.finetune(["predict", "--model", model, "--input", "\(dir)/data.jsonl", "--output", out1, "--batch-size", "5"]).status, 0)
            let r = try Harness.mpirun(ranks, ["predict", "--model", model, "--input", "\(dir)/data.jsonl", "--output", outN, "--batch-size", "5"])
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertEqual(r.stdout.components(separatedBy: "wrote 101 predictions").count, 2, "one summary line: \(r.stdout)")
            XCTAssertEqual(FileManager.default.contents(atPath: out1), FileManager.default.contents(atPath: outN), "\(ranks) ranks: same file")
        }
        // Text: the tiny BERT classifier, 2 ranks.
        writeText("\(dir)/text.jsonl", count: 37, seed: 5)
        let classifier = "\(tinyBert)/classifier"
        XCTAssertEqual(try Harness.finetune(["predict", "--model", classifier, "--input", "\(dir)/text.jsonl", "--output", "\(dir)/t1.jsonl", "--with-logits"]).status, 0)
        XCTAssertEqual(try Harness.mpirun(2, ["predict", "--model", classifier, "--input", "\(dir)/text.jsonl", "--output", "\(dir)/t2.jsonl", "--with-logits"]).status, 0)
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/t1.jsonl"), FileManager.default.contents(atPath: "\(dir)/t2.jsonl"))
        // A bad input file: every rank ends, with one message.
        let bad = try Harness.mpirun(2, ["eval", "--model", classifier, "--data", "\(dir)/data.jsonl"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("data.jsonl:1: missing \"text\""), bad.output)
    }
}

/// `train --config FILE`: YAML or JSON options, the command line winning, mistakes named with
/// their line and the nearest option, and a run's training_config.json repeating that run.
final class ConfigFileTests: IntegrationTestCase {
    func testOptionsFromAFileTheCommandLineWinsAndARunRepeats() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 48, seed: 8)
        Harness.writeData("\(dir)/valid.jsonl", count: 16, seed: 9)
        let model = try makeModel()
        try """
        # a run described in YAML
        model: \(model)
        train: \(dir)/train.jsonl
        valid: \(dir)/valid.jsonl
        batch-size: 16
        epochs: 2
        lr: 3e-3
        lr_schedule: cosine
        tensorboard: false
        lora_targets: null
        """.write(toFile: "\(dir)/run.yaml", atomically: true, encoding: .utf8)
        let a = try Harness.finetune(["train", "--config", "\(dir)/run.yaml", "--output", "\(dir)/a", "--epochs", "1"])
        XCTAssertEqual(a.status, 0, a.output)
        let record = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/a/training_config.json")!) as! [String: Any]
        let options = record["options"] as! [String: Any]
        XCTAssertEqual(options["batch_size"] as? Int, 16)
        XCTAssertEqual(options["epochs"] as? Int, 1, "the command line wins over the file")
        XCTAssertEqual(options["lr"] as? Double, 3e-3)
        XCTAssertEqual(options["lr_schedule"] as? String, "cosine")
        XCTAssertEqual(options["tensorboard"] as? Bool, false)
        XCTAssertEqual(options["config"] as? String, "\(dir)/run.yaml")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/a/tensorboard"))

        // The run's own record as --config: the same options, another output folder.
        let b = try Harness.finetune(["train", "--config", "\(dir)/a/training_config.json", "--output", "\(dir)/b"])
        XCTAssertEqual(b.status, 0, b.output)
        let again = (try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/b/training_config.json")!) as! [String: Any])["options"] as! [String: Any]
        for (key, value) in options where !["output", "config"].contains(key) {
            XCTAssertEqual("\(again[key] ?? "absent")", "\(value)", key)
        }
        XCTAssertEqual(try Harness.weights("\(dir)/a/final"), try Harness.weights("\(dir)/b/final"), "a repeated run gives the same weights")

        // A run without validation records no monitor, so its record repeats it too.
        let plain = try Harness.finetune(["train", "--model", try makeModel("plain-model"), "--train", "\(dir)/train.jsonl", "--output", "\(dir)/c",
                                          "--epochs", "1"])
        XCTAssertEqual(plain.status, 0, plain.output)
        let repeated = try Harness.finetune(["train", "--config", "\(dir)/c/training_config.json", "--output", "\(dir)/d"])
        XCTAssertEqual(repeated.status, 0, repeated.output)
        XCTAssertEqual(try Harness.weights("\(dir)/c/final"), try Harness.weights("\(dir)/d/final"))

        // Mistakes: the file, the line, the nearest option; nothing runs.
        func refusal(_ yaml: String) throws -> Harness.Result {
            try yaml.write(toFile: "\(dir)/bad.yaml", atomically: true, encoding: .utf8)
            return try Harness.finetune(["train", "--config", "\(dir)/bad.yaml", "--output", "\(dir)/never"])
        }
        let typo = try refusal("model: \(model)\ntrain: t.jsonl\nbatch_sise: 8\n")
        XCTAssertEqual(typo.status, 64)
        XCTAssertTrue(typo.stderr.contains("bad.yaml:3: unknown key \"batch_sise\"; did you mean \"batch_size\"?"), typo.stderr)
        let trainer = try refusal("learning_rate: 1e-4\n")
        XCTAssertTrue(trainer.stderr.contains("bad.yaml:1: unknown key \"learning_rate\"; the Hugging Face Trainer's learning_rate is \"lr\" here"), trainer.stderr)
        let twice = try refusal("lr: 1e-4\nepochs: 2\nlr: 1e-3\n")
        XCTAssertTrue(twice.stderr.contains("bad.yaml:3: \"lr\" is given twice (first on line 1)"), twice.stderr)
        try "{\"lr\": 1e-4,\n  \"epochs\": 2, \"lr\": 1e-3}\n".write(toFile: "\(dir)/bad.json", atomically: true, encoding: .utf8)
        let twiceJSON = try Harness.finetune(["train", "--config", "\(dir)/bad.json", "--output", "\(dir)/never"])
        XCTAssertTrue(twiceJSON.stderr.contains("bad.json:2: column 16: duplicate key \"lr\""), twiceJSON.stderr)
        let syntax = try refusal("lr: [1e-4\n")
        XCTAssertTrue(syntax.stderr.contains("bad.yaml: not valid YAML or JSON"), syntax.stderr)
        let missing = try Harness.finetune(["train", "--config", "\(dir)/nosuch.yaml", "--output", "\(dir)/never"])
        XCTAssertTrue(missing.stderr.contains("--config \(dir)/nosuch.yaml: cannot read the file"), missing.stderr)
        let badValue = try refusal("model: \(model)\ntrain: \(dir)/train.jsonl\nbatch_size: 0\n")
        XCTAssertTrue(badValue.stderr.contains("--batch-size must be positive"), badValue.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/never"))
    }
}

final class CLIReferenceTests: XCTestCase {
    /// Docs/cli-reference.md is the binary's --help: regenerated into a scratch file and compared.
    func testCLIReferenceIsTheHelpOfTheBinary() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID()).md").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var environment = Harness.mpiEnvironment
        environment["FINETUNE_DIST_BIN"] = Harness.binary
        let r = try Harness.run("\(repositoryRoot)/launch/cli-reference.sh", [scratch], timeout: 120, environment: environment)
        XCTAssertEqual(r.status, 0, r.output)
        let generated = try String(contentsOfFile: scratch, encoding: .utf8)
        let committed = try String(contentsOfFile: "\(repositoryRoot)/Docs/cli-reference.md", encoding: .utf8)
        XCTAssertTrue(generated.contains("## finetune-dist train") && generated.contains("--config <config>"), generated)
        XCTAssertEqual(committed, generated, "Docs/cli-reference.md is out of date: run launch/cli-reference.sh")
    }
}
