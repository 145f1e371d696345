import ArgumentParser
@testable import finetune_dist
import FineTuneDistributed
import FineTuneModels
import FineTuneTrainer
import XCTest

/// The command line, parsed in-process: validation errors and the mapping onto TrainingConfiguration.
final class CommandLineParsingTests: XCTestCase {
    let required = ["--model", "m", "--train", "t.jsonl", "--output", "o"]

    func message(_ arguments: [String], _ command: ParsableCommand.Type) -> String? {
        do { _ = try command.parseAsRoot(arguments); return nil } catch { return command.message(for: error) }
    }

    func testOptionsMapOntoTheConfiguration() throws {
        let train = try Train.parse(required + ["--valid", "v.jsonl", "--batch-size", "16", "--lr", "5e-5", "--lr-schedule", "cosine",
                                                "--warmup-ratio", "0.1", "--weight-decay", "0.01", "--patience", "2", "--monitor", "val_accuracy",
                                                "--no-overlap", "--bucket-mb", "4", "--shard-optimizer", "--resume", "--on-nonfinite", "skip",
                                                "--pooling", "cls", "--max-length", "64"])
        let c = train.trainingConfiguration
        XCTAssertEqual(c.batchSize, 16); XCTAssertEqual(c.learningRate, 5e-5); XCTAssertEqual(c.schedule, .cosine)
        XCTAssertEqual(c.warmupRatio, 0.1); XCTAssertEqual(c.optimizer.weightDecay, 0.01); XCTAssertEqual(c.patience, 2)
        XCTAssertEqual(c.monitor, .valAccuracy); XCTAssertFalse(c.exchange.overlap); XCTAssertEqual(c.exchange.bucketBytes, 4_000_000)
        XCTAssertTrue(c.exchange.shardOptimizer); XCTAssertEqual(c.resume, .on); XCTAssertEqual(c.onNonFinite, .skip)
        XCTAssertEqual(c.pooling, .cls); XCTAssertEqual(c.maxLength, 64); XCTAssertEqual(c.validPath, "v.jsonl")
        // `--resume auto` is rewritten to the hidden flag before parsing (FinetuneDist.main).
        XCTAssertEqual(try Train.parse(required + ["--resume-auto"]).trainingConfiguration.resume, .auto)
    }

    func testInvalidValuesAreRejectedNamingTheOption() {
        let cases: [([String], String)] = [
            (["--batch-size", "0"], "--batch-size must be positive"),
            (["--epochs", "0"], "--epochs must be positive"),
            (["--lr=-1"], "--lr must be a positive number"),
            (["--warmup-ratio", "1"], "--warmup-ratio must be in [0, 1)"),
            (["--patience", "2"], "--patience needs --valid"),
            (["--bucket-mb", "0"], "--bucket-mb must be a positive number"),
            (["--eval-batch-size", "0"], "--eval-batch-size must be positive"),
            (["--keep-checkpoints", "0"], "--keep-checkpoints must be positive"),
            (["--monitor", "val_f1"], "val_f1"),
        ]
        for (extra, expected) in cases {
            let m = message(["train"] + required + extra, FinetuneDist.self) ?? "accepted"
            XCTAssertTrue(m.contains(expected), "\(extra): \(m)")
        }
        XCTAssertTrue((message(["bench", "--bucket-mb", "0"], FinetuneDist.self) ?? "accepted").contains("--bucket-mb must be a positive number"),
                      "bench shares train's exchange options and their checks")
        XCTAssertTrue((message(["eval", "--model", "m", "--data", "d", "--batch-size", "0"], FinetuneDist.self) ?? "accepted").contains("--batch-size must be positive"))
        XCTAssertTrue((message(["predict", "--model", "m", "--input", "i", "--output", "o", "--batch-size=-1"], FinetuneDist.self) ?? "accepted").contains("--batch-size must be positive"))
    }
}
