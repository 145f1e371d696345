import FineTuneIO
import FineTuneTrainer
import Foundation
import XCTest

/// launch/slurm.sbatch through a real Slurm (`launch/slurm-local.sh up`: one node, this machine):
/// a job that completes, one preempted with `scancel --signal=USR1`, one that reaches its time
/// limit with `--signal=USR1@N`, one whose task is killed; each requeued job resumes and ends with
/// the uninterrupted job's weights bit for bit, and `sacct` shows the restarts. Skipped where no
/// Slurm answers (CI brings one up and sets FINETUNE_DIST_REQUIRE_SLURM=1, which turns the skip
/// into a failure).
final class SlurmTests: IntegrationTestCase {
    var model = ""

    override func setUpWithError() throws {
        try super.setUpWithError()
        let ping = try? Harness.run("/usr/bin/env", ["scontrol", "ping"], timeout: 20)
        guard let ping, ping.status == 0, ping.stdout.contains("UP") else {
            let why = "no Slurm controller answers here (launch/slurm-local.sh up starts one): \(ping?.output ?? "scontrol not found")"
            if ProcessInfo.processInfo.environment["FINETUNE_DIST_REQUIRE_SLURM"] == "1" { XCTFail(why); return }
            throw XCTSkip(why)
        }
        Harness.writeData("\(dir)/train.jsonl", count: 240, seed: 41)
        Harness.writeData("\(dir)/valid.jsonl", count: 60, seed: 42)
        model = try makeModel()
    }

    /// 240 examples, batch 24: 10 steps per epoch, 3 epochs; a checkpoint every 3 steps.
    func trainArguments(_ output: String) -> [String] {
        ["--model", model, "--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl", "--output", "\(dir)/\(output)",
         "--epochs", "3", "--batch-size", "24", "--lr", "3e-3", "--save-every", "3"]
    }

    /// Submits launch/slurm.sbatch on 2 tasks with these train options; returns the job id.
    func submit(_ trainOptions: [String], sbatchOptions: [String] = [], stepDelay: Double = 0, launch: String = "auto",
                name: String) throws -> String {
        let delay = stepDelay > 0 ? ["--debug-step-delay", String(stepDelay)] : []
        let r = try Harness.run("/usr/bin/env", ["sbatch", "--parsable", "--job-name", name, "--nodes", "1", "--ntasks", "2",
                                                 "--chdir", dir, "--output", "\(dir)/\(name)-%j.out",
                                                 "--export", "ALL,FINETUNE_DIST_BIN=\(Harness.binary),FINETUNE_DIST_LAUNCH=\(launch)"] + sbatchOptions +
                                                ["\(repositoryRoot)/launch/slurm.sbatch"] + trainOptions + delay, timeout: 30)
        XCTAssertEqual(r.status, 0, r.output)
        let id = r.stdout.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        XCTAssertFalse(id.isEmpty, "sbatch printed a job id: \(r.output)")
        addTeardownBlock { _ = try? Harness.run("/usr/bin/env", ["scancel", id], timeout: 20) }
        return id
    }

    /// `scontrol show job`'s fields (JobState, Restarts, ExitCode, ...).
    func job(_ id: String) -> [String: String] {
        guard let r = try? Harness.run("/usr/bin/env", ["scontrol", "show", "job", id, "--oneliner"], timeout: 20), r.status == 0 else { return [:] }
        var fields: [String: String] = [:]
        for token in r.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard let eq = token.firstIndex(of: "=") else { continue }
            fields[String(token[..<eq])] = String(token[token.index(after: eq)...])
        }
        return fields
    }

    func waitForState(_ id: String, _ states: Set<String>, timeout: Double) -> [String: String] {
        var last: [String: String] = [:]
        _ = Harness.waitUntil(timeout: timeout) {
            last = job(id)
            return states.contains(last["JobState"] ?? "")
        }
        return last
    }

    /// The job's output file (all of its restarts: the script opens it in append mode).
    func output(_ name: String, _ id: String) -> String {
        String(decoding: FileManager.default.contents(atPath: "\(dir)/\(name)-\(id).out") ?? Data(), as: UTF8.self)
    }

    /// Each run of the job as sacct records it (requeued runs are the duplicates of one job id).
    func accountingRecords(_ id: String) -> [(state: String, exitCode: String)] {
        var rows: [(String, String)] = []
        // slurmdbd receives the records shortly after the fact.
        Harness.waitUntil(timeout: 20) {
            guard let r = try? Harness.run("/usr/bin/env", ["sacct", "-D", "-X", "-n", "-P", "-j", id, "-o", "State,ExitCode"], timeout: 20) else { return false }
            rows = r.stdout.split(separator: "\n").map { line in
                let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                return (f.first ?? "", f.count > 1 ? f[1] : "")
            }
            return rows.last?.0 == "COMPLETED"
        }
        return rows
    }

    /// Waits until the run has logged `step` (it is then running with a checkpoint on disk).
    func waitForStep(_ output: String, _ step: Int, timeout: Double) -> Bool {
        Harness.waitUntil(timeout: timeout) { Harness.metrics("\(dir)/\(output)").contains { ($0["step"] as? Int ?? 0) >= step } }
    }

    /// An uninterrupted job: the reference each interrupted one must equal.
    func uninterruptedWeights() throws -> [String: [Float]] {
        let id = try submit(trainArguments("straight"), name: "straight")
        let done = waitForState(id, ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"], timeout: 180)
        XCTAssertEqual(done["JobState"], "COMPLETED", output("straight", id))
        XCTAssertEqual(done["ExitCode"], "0:0")
        return try Harness.weights("\(dir)/straight/final")
    }

    func testTwoTaskJobCompletesAndWritesTheRunFolder() throws {
        let id = try submit(trainArguments("run"), name: "run")
        let done = waitForState(id, ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"], timeout: 180)
        let log = output("run", id)
        XCTAssertEqual(done["JobState"], "COMPLETED", log)
        XCTAssertEqual(done["Restarts"], "0")
        XCTAssertTrue(log.contains("srun --mpi=pmix"), "Debian's Slurm has PMIx: the script starts the ranks with it: \(log)")
        XCTAssertTrue(log.contains("no checkpoint in"), "--resume auto added, fresh start: \(log)")
        for file in ["final/model.safetensors", "best/model.safetensors", "metrics.jsonl", "run.json", "training_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/run/\(file)"), file)
        }
        let run = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/run/run.json"))) as? [String: Any]
        XCTAssertEqual((run?["ranks"] as? [Any])?.count, 2, "two ranks, one per Slurm task")
        XCTAssertEqual(accountingRecords(id).map(\.state), ["COMPLETED"])
    }

    /// `scancel --full --signal=USR1` (a preemption by hand, as Docs/cluster.md says), with the
    /// ranks started by `srun --mpi=pmix` and by `mpirun` inside the allocation: checkpoint, exit 75,
    /// requeue, resume, the uninterrupted weights.
    func testPreemptedJobIsRequeuedAndResumesBitwise() throws {
        let reference = try uninterruptedWeights()
        for launch in ["pmix", "mpirun"] {
            let name = "preempted-\(launch)"
            let id = try submit(trainArguments(name), stepDelay: 0.4, launch: launch, name: name)
            XCTAssertTrue(waitForStep(name, 7, timeout: 90), "the job is training: \(output(name, id))")
            let signal = try Harness.run("/usr/bin/env", ["scancel", "--full", "--signal=USR1", id], timeout: 20)
            XCTAssertEqual(signal.status, 0, signal.output)
            let done = waitForState(id, ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"], timeout: 240)
            let log = output(name, id)
            XCTAssertEqual(done["JobState"], "COMPLETED", log)
            XCTAssertEqual(done["Restarts"], "1", log)
            XCTAssertTrue(log.contains(launch == "pmix" ? "srun --mpi=pmix" : "mpirun --bind-to core"), log)
            XCTAssertTrue(log.contains("requeueing job \(id)"), log)
            XCTAssertTrue(log.range(of: #"resuming after step \d+"#, options: .regularExpression) != nil, log)
            XCTAssertEqual(try Harness.weights("\(dir)/\(name)/final"), reference, "\(launch): bitwise the uninterrupted job's weights")
            // The requeued run's record says REQUEUED with exit code 0:0: `scontrol requeue` ends the
            // batch script before it exits with the ranks' 75 (the job output has the 75).
            XCTAssertEqual(accountingRecords(id).map(\.state), ["REQUEUED", "COMPLETED"], "sacct -D shows the restart")
        }
    }

    /// A plain `scancel` is a cancellation, not a preemption: the ranks still checkpoint (SIGTERM),
    /// but the job is not requeued.
    func testCancelledJobIsNotRequeued() throws {
        let id = try submit(trainArguments("cancelled"), stepDelay: 0.4, name: "cancelled")
        XCTAssertTrue(waitForStep("cancelled", 4, timeout: 90), output("cancelled", id))
        XCTAssertEqual(try Harness.run("/usr/bin/env", ["scancel", id], timeout: 20).status, 0)
        let done = waitForState(id, ["CANCELLED", "COMPLETED", "FAILED"], timeout: 60)
        XCTAssertEqual(done["JobState"], "CANCELLED", output("cancelled", id))
        sleep(3)
        XCTAssertEqual(job(id)["Restarts"], "0", output("cancelled", id))
        XCTAssertEqual(job(id)["JobState"], "CANCELLED")
    }

    /// `--time=1 --signal=B:USR1@20` (as the script's own line): Slurm signals the batch script, which
    /// relays it to the ranks, 10-40 s into the job (its time checks
    /// run every 30 s); the job checkpoints, is requeued, and (given more time) finishes bitwise.
    func testTimeLimitSignalCheckpointsAndRequeues() throws {
        let reference = try uninterruptedWeights()
        let id = try submit(trainArguments("timelimit"), sbatchOptions: ["--time", "1", "--signal", "B:USR1@20"], stepDelay: 2.5,
                            name: "timelimit")
        let requeued = Harness.waitUntil(timeout: 120) { (job(id)["Restarts"] ?? "0") != "0" }
        XCTAssertTrue(requeued, "requeued before the time limit: \(output("timelimit", id))")
        // The operator gives the requeued job the time it needs (else it would be signalled again and
        // again, a minute at a time, which is also correct but slow). A requeued job waits
        // cred_expire (10 s on the test cluster, 120 s by default) before it may start again.
        let update = try Harness.run("/usr/bin/env", ["scontrol", "update", "JobId=\(id)", "TimeLimit=10"], timeout: 20)
        XCTAssertEqual(update.status, 0, update.output)
        let done = waitForState(id, ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"], timeout: 300)
        let log = output("timelimit", id)
        XCTAssertEqual(done["JobState"], "COMPLETED", log)
        XCTAssertTrue(log.contains("stopped by SIGUSR1"), log)
        XCTAssertTrue(log.range(of: #"resuming after step \d+"#, options: .regularExpression) != nil, log)
        XCTAssertEqual(try Harness.weights("\(dir)/timelimit/final"), reference)
        XCTAssertEqual(accountingRecords(id).map(\.state), ["REQUEUED", "COMPLETED"])
    }

    /// `kill -9` of one task: the job ends with a non-zero status within seconds (no hang), and the
    /// job requeued by hand resumes from the last checkpoint and finishes bitwise.
    func testKilledTaskEndsTheJobAndTheRequeuedJobResumes() throws {
        let reference = try uninterruptedWeights()
        let id = try submit(trainArguments("killed"), stepDelay: 0.4, name: "killed")
        XCTAssertTrue(waitForStep("killed", 7, timeout: 90), output("killed", id))
        guard let pids = Harness.rankPIDs("\(dir)/killed") else { return XCTFail("no run.json") }
        let killedAt = Date()
        kill(pids[1], SIGKILL)
        let failed = waitForState(id, ["FAILED", "COMPLETED", "CANCELLED"], timeout: 60)
        XCTAssertEqual(failed["JobState"], "FAILED", output("killed", id))
        XCTAssertNotEqual(failed["ExitCode"], "0:0")
        XCTAssertLessThan(Date().timeIntervalSince(killedAt), 30, "the job ended within seconds of the kill")
        let requeue = try Harness.run("/usr/bin/env", ["scontrol", "requeue", id], timeout: 20)
        XCTAssertEqual(requeue.status, 0, requeue.output)
        let done = waitForState(id, ["COMPLETED", "FAILED", "CANCELLED"], timeout: 240)
        let log = output("killed", id)
        XCTAssertEqual(done["JobState"], "COMPLETED", log)
        XCTAssertTrue(log.range(of: #"resuming after step (6|9)"#, options: .regularExpression) != nil, "resumes from the last checkpoint: \(log)")
        XCTAssertEqual(try Harness.weights("\(dir)/killed/final"), reference)
        // sacct -D: the failed run, now marked REQUEUED with the batch script's non-zero exit, then
        // the completed one.
        let records = accountingRecords(id)
        XCTAssertEqual(records.map(\.state), ["REQUEUED", "COMPLETED"])
        XCTAssertNotEqual(records.first?.exitCode, "0:0", "the failed run keeps its exit code")
    }
}
