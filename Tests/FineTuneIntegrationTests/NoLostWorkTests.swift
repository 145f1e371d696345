import FineTuneIO
import Foundation
import XCTest

/// Stopping a run loses no work, and no run loses another's: Ctrl-C and SIGTERM through the launch
/// scripts and through plain mpirun, a second Ctrl-C, checkpoints by time and at epoch ends, the
/// output folder's lock, --overwrite, --resume without --model. Real mpirun processes throughout.
final class NoLostWorkTests: MLPRunTestCase {
    /// 200 examples, batch 20: 10 steps per epoch, 2 epochs; progress as lines (the tests read them).
    func args(_ output: String) -> [String] { args(output, epochs: 2) + ["--progress", "lines"] }

    /// The steps metrics.jsonl has training lines for.
    func loggedSteps(_ output: String) -> Int {
        Harness.metrics("\(dir)/\(output)").filter { $0["type"] as? String == "train" }.compactMap { $0["step"] as? Int }.max() ?? 0
    }

    /// `launch/local.sh -n 2 ...` in the background, on the test's binary.
    func launchScript(_ arguments: [String]) throws -> Harness.Background {
        try Harness.Background(["FINETUNE_DIST_BIN=\(Harness.binary)", "\(repositoryRoot)/launch/local.sh", "-n", "2"] + arguments)
    }

    /// Sends `signal` once the run has logged `step`.
    func signal(_ run: Harness.Background, _ signal: Int32, afterStep step: Int, output: String) {
        XCTAssertTrue(Harness.waitUntil(timeout: 60) { loggedSteps(output) >= step }, "the run reached step \(step)")
        kill(run.process.processIdentifier, signal)
    }

    /// A terminal's Ctrl-C reaches the launch script (mpirun runs in a session of its own): every rank
    /// checkpoints at the next step boundary, the run exits 75, and --resume ends with the weights of
    /// a run never stopped. SIGTERM to the script (what a scheduler sends) does the same.
    func testCtrlCAndSigtermToTheLaunchScriptCheckpointAndResumeIdentically() throws {
        let straight = try Harness.mpirun(2, args("straight"))
        XCTAssertEqual(straight.status, 0, straight.output)
        for (name, number) in [("SIGINT", SIGINT), ("SIGTERM", SIGTERM)] {
            let output = "stopped-\(name)"
            let run = try launchScript(args(output) + ["--debug-step-delay", "0.2", "--no-save-each-epoch"])
            signal(run, number, afterStep: 3, output: output)
            let r = run.finish(timeout: 90, killPattern: output)
            XCTAssertEqual(r.status, 75, "\(name): \(r.output)")
            XCTAssertTrue(r.stderr.contains(name == "SIGINT" ? "launch: Ctrl-C: every rank writes a checkpoint" : "launch: SIGTERM: every rank"), r.stderr)
            XCTAssertTrue(r.stdout.contains("stopped by SIGUSR1"), r.stdout)
            let steps = checkpointSteps(output)
            XCTAssertEqual(steps.count, 1, "\(name): one checkpoint, where it stopped: \(steps)")
            XCTAssertTrue(steps.allSatisfy { $0 >= 3 && $0 < 20 }, "\(steps)")
            let resumed = try Harness.mpirun(2, args(output) + ["--resume"])
            XCTAssertEqual(resumed.status, 0, resumed.output)
            XCTAssertEqual(try Harness.weights("\(dir)/\(output)/final"), try Harness.weights("\(dir)/straight/final"), name)
        }
    }

    /// A second Ctrl-C does not wait for the checkpoint: every rank ends at once, and the half-written
    /// checkpoint is never taken for a complete one.
    func testSecondCtrlCAbortsAtOnce() throws {
        let output = "aborted"
        let run = try launchScript(args(output) + ["--debug-step-delay", "0.2", "--debug-slow-checkpoint", "30", "--no-save-each-epoch"])
        signal(run, SIGINT, afterStep: 3, output: output)
        // The checkpoint has begun (rank 0 writes slowly); interrupt again.
        XCTAssertTrue(Harness.waitUntil(timeout: 30) {
            ((try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/\(output)/checkpoints")) ?? []).contains { $0.hasPrefix(".") }
        }, "a checkpoint is being written")
        let second = Date()
        kill(run.process.processIdentifier, SIGINT)
        let r = run.finish(timeout: 60, killPattern: output)
        XCTAssertLessThan(Date().timeIntervalSince(second), 15, "ended at once, not after the 30 s checkpoint: \(r.output)")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertNotEqual(r.status, 75)
        XCTAssertTrue(r.stderr.contains("Ctrl-C again: aborting every rank now"), r.stderr)
        XCTAssertEqual(checkpointSteps(output), [], "no complete checkpoint was written")
        let resumed = try Harness.mpirun(2, args(output) + ["--resume"])
        XCTAssertNotEqual(resumed.status, 0)
        XCTAssertTrue(resumed.stderr.contains("no complete checkpoint"), resumed.output)
    }

    /// Plain mpirun: SIGUSR1 is forwarded to the ranks (checkpoint, 75); a SIGTERM makes mpirun send
    /// the ranks SIGTERM and SIGKILL them about a second later: whatever checkpoint is found after it
    /// is complete and resumes.
    func testPlainMpirunSignals() throws {
        let usr1 = try Harness.mpirunInBackground(2, args("usr1") + ["--debug-step-delay", "0.2", "--no-save-each-epoch"])
        signal(usr1, SIGUSR1, afterStep: 3, output: "usr1")
        let r1 = usr1.finish(timeout: 90, killPattern: "\(dir)/usr1")
        XCTAssertEqual(r1.status, 75, r1.output)
        XCTAssertEqual(checkpointSteps("usr1").count, 1)

        let term = try Harness.mpirunInBackground(2, args("term") + ["--debug-step-delay", "0.2", "--no-save-each-epoch"])
        signal(term, SIGTERM, afterStep: 3, output: "term")
        let r2 = term.finish(timeout: 90, killPattern: "\(dir)/term")
        XCTAssertNotEqual(r2.status, 0)
        for step in checkpointSteps("term") {
            XCTAssertFalse(try Harness.weights("\(dir)/term/checkpoints/\(CheckpointFolder(step))").isEmpty)
        }
        if !checkpointSteps("term").isEmpty {
            let resumed = try Harness.mpirun(2, args("term") + ["--resume"])
            XCTAssertEqual(resumed.status, 0, resumed.output)
        }
    }

    /// One process (no mpirun) and Ctrl-C: the same checkpoint and status 75.
    func testCtrlCToASingleProcess() throws {
        let run = try Harness.Background([Harness.binary] + args("single") + ["--debug-step-delay", "0.2", "--no-save-each-epoch"])
        signal(run, SIGINT, afterStep: 3, output: "single")
        let r = run.finish(timeout: 60, killPattern: "\(dir)/single")
        XCTAssertEqual(r.status, 75, r.output)
        XCTAssertTrue(r.stdout.contains("stopped by SIGINT (Ctrl-C)"), r.stdout)
        XCTAssertTrue(r.stderr.contains("finetune-dist: stopping: a checkpoint is written"), r.stderr)
        XCTAssertEqual(checkpointSteps("single").count, 1)
    }

    /// Without any checkpoint option a run checkpoints at every epoch end and by time (rank 0's
    /// clock, agreed through the exchange, so every rank saves at the same step).
    func testCheckpointsByDefaultAtEpochEndsAndByTime() throws {
        let plain = try Harness.mpirun(2, args("plain"))
        XCTAssertEqual(plain.status, 0, plain.output)
        XCTAssertEqual(checkpointSteps("plain"), [20, 10], "both epoch ends")
        let timed = try Harness.mpirun(2, args("timed") + ["--no-save-each-epoch", "--save-every-minutes", "0.01", "--debug-step-delay", "0.15"])
        XCTAssertEqual(timed.status, 0, timed.output)
        let steps = checkpointSteps("timed")
        XCTAssertGreaterThanOrEqual(steps.count, 4, "every ~0.6 s of a ~3 s run: \(steps)")
        XCTAssertEqual(steps.first, 20)
        let none = try Harness.mpirun(2, args("none") + ["--no-save-each-epoch", "--save-every-minutes", "0"])
        XCTAssertEqual(none.status, 0, none.output)
        XCTAssertEqual(checkpointSteps("none"), [20], "only the final one")
    }

    /// One run at a time in a folder: a second run is refused naming the first's host and PID; a
    /// killed holder's lock is released by the kernel, so --resume then works.
    func testOutputFolderIsLockedForTheRunsLife() throws {
        let first = try Harness.mpirunInBackground(2, args("locked") + ["--debug-step-delay", "0.3", "--save-every", "1"])
        XCTAssertTrue(Harness.waitUntil(timeout: 60) { loggedSteps("locked") >= 2 })
        let pids = Harness.rankPIDs("\(dir)/locked") ?? []
        let second = try Harness.mpirun(2, args("locked") + ["--resume"], timeout: 60)
        XCTAssertEqual(second.status, 1, second.output)
        XCTAssertTrue(second.stderr.contains("another run is using this folder"), second.stderr)
        XCTAssertTrue(second.stderr.contains("PID \(pids.first ?? -1)"), "names rank 0's PID \(pids): \(second.stderr)")
        XCTAssertEqual(second.stderr.components(separatedBy: "another run is using").count, 2, "said once")
        let fresh = try Harness.finetune(args("locked") + ["--overwrite"], timeout: 60)
        XCTAssertTrue(fresh.stderr.contains("another run is using this folder"), "--overwrite does not take a held folder: \(fresh.output)")
        _ = try Harness.run("/usr/bin/env", ["pkill", "-9", "-f", "\(dir)/locked"], timeout: 10)
        _ = first.finish(timeout: 30)
        let resumed = try Harness.mpirun(2, args("locked") + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/locked/\(RunFolderLockName.name)"), "the lock file goes with the run")
    }

    /// A folder holding a finished run whose checkpoints were deleted is refused; --overwrite
    /// replaces it (the old run's files go, others stay); --resume needs no --model.
    func testOverwriteAndResumeWithoutModel() throws {
        let first = try Harness.finetune(args("reused") + ["--max-steps", "3"])
        XCTAssertEqual(first.status, 0, first.output)
        try FileManager.default.removeItem(atPath: "\(dir)/reused/checkpoints")
        FileManager.default.createFile(atPath: "\(dir)/reused/notes.txt", contents: Data("mine\n".utf8))
        let before = try Harness.weights("\(dir)/reused/final")
        let refused = try Harness.finetune(args("reused"))
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("already holds a run (final, metrics.jsonl"), refused.stderr)
        XCTAssertEqual(try Harness.weights("\(dir)/reused/final"), before, "untouched")
        let replaced = try Harness.finetune(args("reused") + ["--overwrite", "--max-steps", "5"])
        XCTAssertEqual(replaced.status, 0, replaced.output)
        XCTAssertTrue(replaced.stdout.contains("--overwrite: deleted the earlier run's"), replaced.stdout)
        XCTAssertEqual(try String(contentsOfFile: "\(dir)/reused/notes.txt", encoding: .utf8), "mine\n")
        XCTAssertEqual(Harness.metrics("\(dir)/reused").filter { $0["type"] as? String == "train" }.count, 5, "only the new run's lines")

        let stopped = try Harness.finetune(args("nomodel") + ["--stop-after-steps", "4"])
        XCTAssertEqual(stopped.status, 0, stopped.output)
        var withoutModel = args("nomodel")
        withoutModel.removeSubrange(1...2)
        let resumed = try Harness.mpirun(2, withoutModel + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.stdout.contains("resuming after step 4"), resumed.stdout)
    }
}

/// The lock file's name, as the trainer writes it.
enum RunFolderLockName { static let name = ".finetune-dist.lock" }
