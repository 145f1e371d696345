import ArgumentParser
@testable import finetune_dist
import FineTuneDistributed
import FineTuneJSON
import FineTuneModels
@testable import FineTuneTrainer
import Foundation
import XCTest

/// The command line, parsed in-process: the option declarations (`OptionSpec`), the mapping onto
/// the configuration, and the refusals.
final class CommandLineParsingTests: XCTestCase {
    let required = ["--model", "m", "--train", "t.jsonl", "--output", "o"]

    func trainMessage(_ arguments: [String]) -> String? {
        do { _ = try TrainInvocation.parse(arguments); return nil } catch { return "\(error)" }
    }

    func message(_ arguments: [String], _ command: ParsableCommand.Type) -> String? {
        do { _ = try command.parseAsRoot(arguments); return nil } catch { return command.message(for: error) }
    }

    func testOptionsMapOntoTheConfiguration() throws {
        let c = try TrainInvocation.parse(required + ["--valid", "v.jsonl", "--batch-size", "16", "--lr", "5e-5", "--lr-schedule", "cosine",
                                                      "--warmup-ratio", "0.1", "--weight-decay", "0.01", "--patience", "2", "--monitor", "val_accuracy",
                                                      "--no-overlap", "--bucket-mb", "4", "--shard-optimizer", "--resume", "--on-nonfinite", "skip",
                                                      "--pooling", "cls", "--max-length=64", "--freeze", "embeddings", "--lora-rank", "4",
                                                      "--lora-targets", "all", "--lr", "1e-4"]).configuration
        XCTAssertEqual(c.batchSize, 16); XCTAssertEqual(c.learningRate, 1e-4, "the last of a repeated option wins"); XCTAssertEqual(c.schedule, .cosine)
        XCTAssertEqual(c.warmupRatio, 0.1); XCTAssertEqual(c.optimizer.weightDecay, 0.01); XCTAssertEqual(c.patience, 2)
        XCTAssertEqual(c.monitor, .valAccuracy); XCTAssertFalse(c.exchange.overlap); XCTAssertEqual(c.exchange.bucketBytes, 4_000_000)
        XCTAssertTrue(c.exchange.shardOptimizer); XCTAssertEqual(c.resume, .on); XCTAssertEqual(c.onNonFinite, .skip)
        XCTAssertEqual(c.pooling, .cls); XCTAssertEqual(c.maxLength, 64); XCTAssertEqual(c.validPath, "v.jsonl")
        XCTAssertTrue(c.freeze.embeddings); XCTAssertEqual(c.lora, LoRASettings(rank: 4, alpha: 8, dropout: 0, targets: LoRATarget.allCases))
        XCTAssertEqual(try TrainInvocation.parse(required + ["--resume", "auto"]).configuration.resume, .auto)
        XCTAssertEqual(try TrainInvocation.parse(["--resume", "--train", "t", "--output", "o"]).configuration.resume, .on,
                       "--resume takes `auto` only when it follows; --model is not needed to continue")
    }

    func testInvalidValuesAreRejectedNamingTheOption() {
        let cases: [([String], String)] = [
            (["--batch-size", "0"], "--batch-size must be positive"),
            (["--epochs", "0"], "--epochs must be positive"),
            (["--lr=-1"], "--lr must be a positive number"),
            (["--lr", "-1"], "--lr must be a positive number"),
            (["--warmup-ratio", "1"], "--warmup-ratio must be in [0, 1)"),
            (["--patience", "2"], "--patience needs --valid"),
            (["--bucket-mb", "0"], "--bucket-mb must be a positive number"),
            (["--eval-batch-size", "0"], "--eval-batch-size must be positive"),
            (["--keep-checkpoints", "0"], "--keep-checkpoints must be positive"),
            (["--monitor", "val_f1"], "'val_f1' is invalid for '--monitor"),
            (["--lr", "abc"], "'abc' is invalid for '--lr"),
            (["--learning-rate", "1"], "Unknown option '--learning-rate'"),
            (["--lr-shedule", "linear"], "did you mean '--lr-schedule'?"),
            (["--lr"], "Missing value for '--lr <lr>'"),
            (["--overwrite=yes"], "--overwrite is a switch"),
            (["stray"], "Unexpected argument 'stray'"),
            (["--no-overwrite"], "Unknown option '--no-overwrite'"),
            (["--mlm-probability", "0.2"], "--mlm-probability and --whole-word-mask need --task mlm"),
        ]
        for (extra, expected) in cases {
            let m = trainMessage(required + extra) ?? "accepted"
            XCTAssertTrue(m.contains(expected), "\(extra): \(m)")
        }
        XCTAssertTrue((trainMessage(["--model", "m", "--train", "t"]) ?? "accepted").contains("Missing expected argument '--output <output>'"))
        let bench = { (arguments: [String]) -> String in
            do { _ = try BenchInvocation.parse(arguments); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertTrue(bench(["--bucket-mb", "0"]).contains("--bucket-mb must be a positive number"), "bench shares train's exchange options and their checks")
        XCTAssertTrue(bench(["--grad-accum", "0"]).contains("--grad-accum must be positive"))
        XCTAssertTrue(bench(["--per-rank-batch", "4", "--grad-accum", "8"]).contains("--grad-accum must be in 1...--per-rank-batch"))
        XCTAssertTrue(bench(["--shape", "huge"]).contains("--shape huge is not known"))
        XCTAssertTrue((message(["eval", "--model", "m", "--data", "d", "--batch-size", "0"], FinetuneDist.self) ?? "accepted").contains("--batch-size must be positive"))
        XCTAssertTrue((message(["predict", "--model", "m", "--input", "i", "--output", "o", "--batch-size=-1"], FinetuneDist.self) ?? "accepted").contains("--batch-size must be positive"))
    }

    /// Every declaration is complete, and the places that list options all list the same ones:
    /// --help, training_config.json's keys, the config file's keys.
    func testEveryOptionIsDeclaredCompletely() throws {
        let specs = TrainingConfiguration.specs
        XCTAssertEqual(Set(specs.map(\.name)).count, specs.count, "an option declared twice")
        let help = TrainInvocation.command.help(columns: 100)
        for spec in specs {
            XCTAssertGreaterThan(spec.help.count, 10, "--\(spec.name) has no help")
            XCTAssertEqual(spec.key, spec.name.replacingOccurrences(of: "-", with: "_"))
            XCTAssertFalse(spec.group.isEmpty, "--\(spec.name) has no --help group")
            XCTAssertTrue(help.contains("  --\(spec.name)"), "--\(spec.name) is missing from --help")
        }
        XCTAssertFalse(help.contains("--debug-"), "the fault-injection switches stay out of --help")
        // Shell completion offers every option too (ArgumentParser writes the script from the same list).
        let bash = FinetuneDist.completionScript(for: .bash)
        for spec in specs { XCTAssertTrue(bash.contains("--\(spec.name)"), "--\(spec.name) is missing from the bash completion") }
        XCTAssertTrue(bash.contains("--no-tensorboard") && bash.contains("--per-rank-batch"))
        // training_config.json: one key per option, no other.
        let record = try JSONSerialization.jsonObject(with: JSONEncoder().encode(TrainingConfiguration.defaults)) as! [String: Any]
        XCTAssertEqual(Set(record.keys), Set(specs.map(\.key)))
        // The options that always change the mathematics are in the resume check from the start.
        let always = specs.filter { if case .always = $0.mathematics { return true } else { return false } }.map(\.name)
        XCTAssertEqual(Set(TrainingConfiguration.defaults.mathematicalOptions.keys), Set(always + ["adam-beta1", "adam-beta2", "adam-epsilon"]))
        XCTAssertEqual(Set(always), ["batch-size", "lr", "lr-schedule", "optimizer", "weight-decay", "seed"])
    }

    /// A run's training_config.json, given back as --config, is the same configuration: every
    /// option's record is something its own parser reads.
    func testTheRecordOfARunReadsBackAsTheSameOptions() throws {
        let arguments = required + ["--valid", "v.jsonl", "--batch-size", "16", "--lr", "5e-5", "--lr-schedule", "polynomial", "--lr-power", "2",
                                    "--no-overlap", "--bucket-mb", "4", "--freeze", "embeddings", "--freeze-layers", "2", "--lora-rank", "4",
                                    "--lora-targets", "query,key", "--class-weights", "1,2", "--task", "mlm", "--whole-word-mask",
                                    "--mlm-probability", "0.2", "--monitor", "val_accuracy", "--resume", "auto", "--accept-changed", "lr,seed",
                                    "--no-save-each-epoch", "--progress", "lines", "--max-steps", "100", "--dropout", "0.2"]
        let first = try TrainInvocation.parse(arguments).configuration
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("record-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let record = TrainingConfigurationRecord(options: first, resolved: .init(stepsPerEpoch: 1, totalSteps: 1, warmupSteps: 0, learningRate: 1,
                                                                                 trainableParameters: 1, parameters: 1), commandLine: [])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(record).write(to: URL(fileURLWithPath: "\(folder)/training_config.json"))
        let second = try TrainInvocation.parse(["--config", "\(folder)/training_config.json"]).configuration
        var expected = first
        expected.configFile = "\(folder)/training_config.json"
        XCTAssertEqual(String(decoding: try encoder.encode(second), as: UTF8.self), String(decoding: try encoder.encode(expected), as: UTF8.self))
        XCTAssertEqual(second.mathematicalOptions, first.mathematicalOptions)
    }

    /// An option is one declaration: a new one, written once as a spec, is on the command line,
    /// in config files, in --help with its default, range-checked by name, recorded and in the
    /// resume check, with nothing else written for it.
    func testANewOptionIsOneDeclaration() throws {
        struct Extended {
            var base = TrainingConfiguration.defaults
            var attentionTemperature = 1.0
        }
        let newOption = OptionSpec<Extended>.value("attention-temperature", \.attentionTemperature, group: OptionGroups.regularization,
                                                   math: .whenSet, check: Checks.positive(), help: "Divide the attention scores by T.")
        let command = OptionCommand<Extended>(name: "train", abstract: "a", discussion: "",
                                              specs: TrainingConfiguration.specs.map { $0.lifted(\Extended.base) } + [newOption], defaults: Extended())
        var root = Extended()
        _ = try command.parse(required + ["--attention-temperature", "2.5"], into: &root)
        XCTAssertEqual(root.attentionTemperature, 2.5)
        XCTAssertEqual(command.specs.mathematicalOptions(of: root, defaults: Extended())["attention-temperature"], "2.5")
        XCTAssertNil(command.specs.mathematicalOptions(of: Extended(), defaults: Extended())["attention-temperature"])
        XCTAssertTrue(command.help(columns: 100).contains("--attention-temperature <attention-temperature>"))
        XCTAssertTrue(command.help(columns: 100).contains("Divide the attention scores by T. (default: 1.0)"))
        var refused = Extended()
        XCTAssertThrowsError(try command.parse(required + ["--attention-temperature", "0"], into: &refused)) {
            XCTAssertEqual("\($0)", "--attention-temperature must be positive")
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("new-option-\(UUID().uuidString).yaml").path
        try "batch_size: 8\nattention_temperature: 0.5\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        var fromFile = Extended()
        _ = try command.parse(required + ["--config", file], into: &fromFile)
        XCTAssertEqual(fromFile.attentionTemperature, 0.5); XCTAssertEqual(fromFile.base.batchSize, 8)
        try "attention_temperature: -1\n".write(toFile: file, atomically: true, encoding: .utf8)
        var badFile = Extended()
        XCTAssertThrowsError(try command.parse(required + ["--config", file], into: &badFile)) {
            XCTAssertEqual("\($0)", "\(file):1: attention_temperature: --attention-temperature must be positive")
        }
        let record = try JSONSerialization.jsonObject(with: JSONEncoder().encode(OptionRecord(specs: command.specs, root: root))) as! [String: Any]
        XCTAssertEqual(record["attention_temperature"] as? Double, 2.5)
    }
}
