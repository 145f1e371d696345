import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation
import XCTest

/// Real multi-rank runs under mpirun.
final class MultiRankTests: IntegrationTestCase {
    /// Exact integer sums through MPI's allreduce in tiny chunks, and through the ring (1001 elements
    /// on 3 ranks: chunks of 333, 334, 334; 5 elements on 3 ranks: chunks of 1, 2, 2).
    func testSelftestAllreduceWithSmallChunksAndTheRing() throws {
        for ranks in [2, 3] {
            let r = try Harness.mpirun(ranks, ["selftest", "--chunk-elements", "7", "--elements", "1001", "--allreduce", "mpi"])
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.stdout.contains("ok: allreduce (Float, mpi; Double) and broadcast of 1001 elements in chunks of 7 agree on \(ranks) rank(s)"), r.output)
            for elements in [1001, 5] {
                let ring = try Harness.mpirun(ranks, ["selftest", "--elements", String(elements), "--allreduce", "ring"])
                XCTAssertEqual(ring.status, 0, ring.output)
                XCTAssertTrue(ring.stdout.contains("ok: allreduce (Float, ring; Double) and broadcast of \(elements) elements"), ring.output)
            }
        }
    }

    /// commbench times both sums at each size on every rank count, and the fitted scaling model
    /// predicts from the committed fit (launch/scaling.sh --model-only).
    func testCommbenchMeasuresBothSumsAndTheModelPredicts() throws {
        let r = try Harness.mpirun(3, ["commbench", "--sizes", "1024,40000", "--repeats", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.output)
        let last = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let o = try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]
        XCTAssertEqual(o?["ranks"] as? Int, 3)
        let points = (o?["points"] as? [[String: Any]]) ?? []
        XCTAssertEqual(Set(points.map { "\($0["algorithm"] ?? "")/\($0["floats"] ?? "")" }), ["ring/1024", "mpi/1024", "ring/40000", "mpi/40000"])
        XCTAssertTrue(points.allSatisfy { ($0["seconds"] as? Double ?? 0) > 0 }, last)
        let model = try Harness.run("/usr/bin/env", ["python3", "\(repositoryRoot)/launch/scaling_model.py", "predict", "\(repositoryRoot)/Docs/scaling-model.json",
                                                     "\(dir)/model.svg"], timeout: 60)
        XCTAssertEqual(model.status, 0, model.output)
        XCTAssertTrue(model.stdout.range(of: #"minilm +16-core nodes 10gbit +overlap \(default\) +8: +\d+/s +\d+%"#, options: .regularExpression) != nil, model.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/model.svg"))
    }

    /// 803 examples, global batch 32 (25 full batches and one of 3): 1, 2 and 3 ranks give the same
    /// weights, and every example is used exactly once per epoch. SGD with momentum: AdamW divides
    /// each gradient by its own running magnitude, which turns float-rounding differences on
    /// near-zero gradients into visible ones (measured: ~1e-5 relative on weights of 3e-4 here);
    /// with SGD the difference left is the rounding of the gradient sum itself (~5e-7 here).
    func testOneTwoAndThreeRanksGiveTheSameWeights() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 803, seed: 1)
        Harness.writeData("\(dir)/valid.jsonl", count: 100, seed: 2)
        let model = try makeModel(dropout: 0.2)
        var finals: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2, 3] {
            let out = "\(dir)/run\(ranks)"
            let r = try Harness.mpirun(ranks, ["train", "--model", model, "--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl",
                                               "--output", out, "--epochs", "2", "--batch-size", "32", "--lr", "5e-3", "--optimizer", "sgd", "--momentum", "0.9",
                                               "--log-every", "10", "--debug-example-log", "\(out)/examples"])
            XCTAssertEqual(r.status, 0, r.output)
            finals[ranks] = try Harness.weights("\(out)/final")

            // Every example exactly once per epoch, over all ranks' logs.
            var seen: [Int: [Int: Int]] = [:]  // epoch -> example -> times
            var stepsSeen = Set<Int>()
            for rank in 0..<ranks {
                let text = String(decoding: FileManager.default.contents(atPath: "\(out)/examples/rank-\(rank).txt") ?? Data(), as: UTF8.self)
                for line in text.split(separator: "\n") {
                    let f = line.split(separator: " ").compactMap { Int($0) }
                    seen[f[0], default: [:]][f[2], default: 0] += 1
                    stepsSeen.insert(f[1])
                }
            }
            XCTAssertEqual(stepsSeen.count, 52, "26 steps per epoch, 2 epochs")
            for epoch in [0, 1] {
                let counts = seen[epoch] ?? [:]
                XCTAssertEqual(counts.keys.sorted(), Array(0..<803), "epoch \(epoch) on \(ranks) ranks covers every example")
                XCTAssertTrue(counts.values.allSatisfy { $0 == 1 }, "epoch \(epoch) on \(ranks) ranks uses no example twice")
            }
        }
        assertClose(finals[1]!, finals[2]!, relative: 1e-5)
        assertClose(finals[1]!, finals[3]!, relative: 1e-5)
        XCTAssertNotEqual(finals[1]!, try Harness.weights(model), "training changed the weights")
    }

    /// Stopped with --stop-after-steps, its --model folder deleted, resumed: the metrics continue at
    /// k+1 and the final weights are bitwise those of an uninterrupted run.
    func testStopAndResumeIsBitwiseIdentical() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 300, seed: 3)
        Harness.writeData("\(dir)/valid.jsonl", count: 60, seed: 4)
        let model = try makeModel()
        let common = ["--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl", "--epochs", "4", "--batch-size", "24",
                      "--lr", "5e-3", "--lr-schedule", "linear", "--warmup-ratio", "0.1", "--weight-decay", "0.01",
                      "--eval-every", "7", "--save-every", "5"]
        let straight = try Harness.mpirun(2, ["train", "--model", model, "--output", "\(dir)/straight"] + common)
        XCTAssertEqual(straight.status, 0, straight.output)

        let copy = "\(dir)/model-copy"
        try FileManager.default.copyItem(atPath: model, toPath: copy)
        let first = try Harness.mpirun(2, ["train", "--model", copy, "--output", "\(dir)/resumed", "--stop-after-steps", "13"] + common)
        XCTAssertEqual(first.status, 0, first.output)
        XCTAssertTrue(first.stdout.contains("stopped after step 13"), first.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/resumed/final"), "an interrupted run has no final/")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/resumed/checkpoints/step-00000013/manifest.json"))
        try FileManager.default.removeItem(atPath: copy)

        let second = try Harness.mpirun(2, ["train", "--model", copy, "--output", "\(dir)/resumed", "--resume"] + common)
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(second.stdout.contains("resuming after step 13"), second.output)

        let steps = Harness.metrics("\(dir)/resumed").filter { $0["type"] as? String == "train" }.map { $0["step"] as! Int }
        XCTAssertEqual(steps, Array(1...steps.count), "one train line per step, the resumed run continuing at 14")
        XCTAssertEqual(try Harness.weights("\(dir)/resumed/final"), try Harness.weights("\(dir)/straight/final"), "bitwise equal weights")
        XCTAssertEqual(try Harness.weights("\(dir)/resumed/best"), try Harness.weights("\(dir)/straight/best"))
    }

    func testResumeWithChangedMathematicsIsRefused() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 100, seed: 5)
        let model = try makeModel()
        let base = ["train", "--model", model, "--train", "\(dir)/train.jsonl", "--output", "\(dir)/run", "--epochs", "2", "--batch-size", "10"]
        XCTAssertEqual(try Harness.mpirun(2, base + ["--stop-after-steps", "3"]).status, 0)
        let changed = try Harness.mpirun(2, base + ["--resume", "--lr", "0.5", "--seed", "3"])
        XCTAssertNotEqual(changed.status, 0)
        XCTAssertTrue(changed.stderr.contains("--lr was 0.001, now 0.5"), changed.output)
        XCTAssertTrue(changed.stderr.contains("--seed was 0, now 3"), changed.output)
        let fresh = try Harness.mpirun(2, base)
        XCTAssertNotEqual(fresh.status, 0, "a fresh run must not overwrite a run's checkpoints")
        XCTAssertTrue(fresh.stderr.contains("already holds a run (checkpoints (newest: step 3)"), fresh.output)
        // The refused attempts left the checkpoint alone: resuming properly still works.
        let ok = try Harness.mpirun(2, base + ["--resume"])
        XCTAssertEqual(ok.status, 0, ok.output)
    }

    /// The validation figures of a 3-rank run equal a single-process evaluation of the same weights.
    func testValidationEqualsSingleProcessEvaluation() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 200, seed: 6)
        Harness.writeData("\(dir)/valid.jsonl", count: 157, seed: 7)
        let model = try makeModel()
        let out = "\(dir)/run"
        let r = try Harness.mpirun(3, ["train", "--model", model, "--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl",
                                       "--output", out, "--epochs", "2", "--batch-size", "16", "--eval-batch-size", "10"])
        XCTAssertEqual(r.status, 0, r.output)
        let lastEval = Harness.metrics(out).last { $0["type"] as? String == "eval" }!
        XCTAssertEqual(lastEval["step"] as? Int, 26)
        let e = try Harness.finetune(["eval", "--model", "\(out)/final", "--data", "\(dir)/valid.jsonl", "--json"])
        XCTAssertEqual(e.status, 0, e.output)
        let single = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
        let distributedLoss = lastEval["val_loss"] as! Double, singleLoss = single["eval_loss"] as! Double
        XCTAssertEqual(distributedLoss, singleLoss, accuracy: 1e-6 * max(1, singleLoss))
        XCTAssertEqual(lastEval["val_accuracy"] as! Double, single["eval_accuracy"] as! Double)
        XCTAssertEqual(lastEval["val_examples"] as? Int, 157)
    }

    /// On labels that are pure noise the validation loss only gets worse after a while: the run
    /// stops early on every rank, with best/ from the best evaluation and final/ from the last step.
    func testEarlyStoppingEndsEveryRankWithBestAndFinal() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 200, seed: 8, noiseOnly: true)
        Harness.writeData("\(dir)/valid.jsonl", count: 200, seed: 9, noiseOnly: true)
        let model = try makeModel(dropout: 0, hidden: "64,64")
        let out = "\(dir)/run"
        let r = try Harness.mpirun(3, ["train", "--model", model, "--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl",
                                       "--output", out, "--epochs", "200", "--batch-size", "20", "--lr", "1e-2", "--patience", "3"])
        XCTAssertEqual(r.status, 0, r.output)
        let m = Harness.metrics(out)
        let end = m.last!
        XCTAssertEqual(end["outcome"] as? String, "early_stopped", r.output)
        let evals = m.filter { $0["type"] as? String == "eval" }
        XCTAssertLessThan(evals.count, 200, "stopped before the last epoch")
        let bestStep = end["best_step"] as! Int
        XCTAssertEqual(evals.suffix(3).filter { $0["improved"] as? Bool == true }.count, 0, "the last 3 evaluations did not improve")
        XCTAssertEqual(evals.first { $0["improved"] as? Bool == true && $0["step"] as? Int == bestStep }?["step"] as? Int, bestStep)
        let best = try Harness.finetune(["eval", "--model", "\(out)/best", "--data", "\(dir)/valid.jsonl", "--json"])
        let bestLoss = (try JSONSerialization.jsonObject(with: Data(best.stdout.utf8)) as! [String: Any])["eval_loss"] as! Double
        XCTAssertEqual(bestLoss, end["best_metric"] as! Double, accuracy: 1e-6, "best/ holds the weights of the best evaluation")
        XCTAssertNotEqual(try Harness.weights("\(out)/best"), try Harness.weights("\(out)/final"))
    }

    /// A malformed line: a clear error naming file and line, a non-zero exit, and no rank left waiting.
    func testBadInputEndsEveryRankWithAClearError() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 50, seed: 10)
        var text = String(decoding: FileManager.default.contents(atPath: "\(dir)/train.jsonl")!, as: UTF8.self)
        var lines = text.split(separator: "\n").map(String.init)
        lines[4] = "{\"features\": [1, 2, 3], \"label\": \"red\"}"
        text = lines.joined(separator: "\n")
        FileManager.default.createFile(atPath: "\(dir)/bad.jsonl", contents: Data(text.utf8))
        let model = try makeModel()
        let r = try Harness.mpirun(3, ["train", "--model", model, "--train", "\(dir)/bad.jsonl", "--output", "\(dir)/run"], timeout: 60)
        XCTAssertFalse(r.timedOut, "no rank may hang")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("\(dir)/bad.jsonl:5: 3 features, the model takes 6"), r.output)

        let missing = try Harness.mpirun(2, ["train", "--model", "\(dir)/nope", "--train", "\(dir)/train.jsonl", "--output", "\(dir)/run2"], timeout: 60)
        XCTAssertFalse(missing.timedOut)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("\(dir)/nope: model folder does not exist"), missing.output)
    }
}

/// The OpenBLAS kernel set chosen at start-up, under plain mpirun (no launch script).
final class BLASKernelTests: IntegrationTestCase {
    func selftest(_ ranks: Int, environment: [String: String]) throws -> Harness.Result {
        var env = Harness.mpiEnvironment
        env.merge(environment) { _, new in new }
        let exports = environment.keys.sorted().flatMap { ["-x", $0] }
        return try Harness.run("/usr/bin/env", ["mpirun", "-n", String(ranks), "--bind-to", "none"] + exports + [Harness.binary, "selftest", "--elements", "64"],
                               timeout: 120, environment: env)
    }

    func testAWeakerChoiceOfOpenBLASIsReplacedOnEveryRank() throws {
        let cpu = CPUFeatures.current()
        guard cpu.avx2 && cpu.fma else { throw Harness.missingCapability("this CPU has no AVX2 + FMA: Prescott is as good as it gets (\(cpu.summary))") }
        let best = BLASCorePolicy.best(for: cpu).core
        // Play an OpenBLAS that picked its generic Prescott kernels by itself, as it does on CPUs it does not know.
        let r = try selftest(2, environment: ["OPENBLAS_CORETYPE": "Prescott", "FINETUNE_DIST_BLAS_SETUP": #"{"initial": "Prescott"}"#])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("rank 0/2 on") && r.stdout.contains("kernels \(best)"), r.output)
        XCTAssertFalse(r.stdout.contains("kernels Prescott"), "every rank switched: \(r.output)")
        XCTAssertTrue(r.stdout.contains("OpenBLAS kernels: \(best): OpenBLAS chose Prescott for this CPU"), r.output)
        XCTAssertTrue(r.stdout.contains("sgemm "), "the host's sgemm rate is reported")
    }

    func testTheUsersOwnChoiceIsRespectedWithAWarning() throws {
        let r = try selftest(1, environment: ["OPENBLAS_CORETYPE": "Prescott"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("kernels Prescott") && r.stdout.contains("set by OPENBLAS_CORETYPE"), r.output)
        if CPUFeatures.current().avx2 { XCTAssertTrue(r.stdout.contains("WARNING: OPENBLAS_CORETYPE=Prescott runs slower kernels"), r.output) }
    }

    func testKernelsThatComputeWrongAreDroppedSayingSo() throws {
        let loaded = try selftest(1, environment: [:]).stdout
        let core = try XCTUnwrap(loaded.split(separator: "\n").first { $0.contains("kernels ") }?.split(separator: " ").last.map(String.init))
        guard core.lowercased() != "prescott" else { throw XCTSkip("OpenBLAS runs Prescott here already") }
        let r = try selftest(1, environment: ["FINETUNE_DIST_TEST_BLAS_WRONG": core])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stderr.contains("OpenBLAS's \(core) kernels computed a wrong sgemm on this CPU"), r.output)
        XCTAssertTrue(r.stdout.contains("kernels Prescott"), "fell back: \(r.output)")
    }
}
