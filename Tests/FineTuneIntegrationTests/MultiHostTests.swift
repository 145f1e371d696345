import FineTuneKernels
import FineTuneModels
import FineTuneIO
import FineTuneTrainer
import Foundation
import XCTest

/// Real multi-host runs: two simulated hosts (network namespaces on a private bridge,
/// launch/netns-cluster.sh), started through launch/cluster.sh as a user would, with Open MPI's
/// daemons started by launch/netns-rsh. Needs root (CI runs as root).
final class MultiHostTests: IntegrationTestCase {
    var hostfile: String { "\(repositoryRoot)/hostfiles/netns-cluster" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        let up = try Harness.run("\(repositoryRoot)/launch/netns-cluster.sh", ["up", "2"], timeout: 30)
        guard up.status == 0 else {
            throw Harness.missingCapability("cannot create network namespaces here (needs root and iproute2): \(up.output)")
        }
    }

    override func tearDown() {
        _ = try? Harness.run("\(repositoryRoot)/launch/netns-cluster.sh", ["down", "2"], timeout: 30)
        super.tearDown()
    }

    /// launch/cluster.sh inside host 1, as a user on a login node would run it.
    func cluster(_ arguments: [String], extraEnvironment: String = "") throws -> Harness.Background {
        let quoted = arguments.map { "'\($0)'" }.joined(separator: " ")
        let command = "hostname fdh-1; cd '\(repositoryRoot)'; FINETUNE_DIST_BIN='\(Harness.binary)' " +
            "FINETUNE_DIST_RSH_AGENT='\(repositoryRoot)/launch/netns-rsh' FINETUNE_DIST_IFACE=10.77.0.0/24 \(extraEnvironment) " +
            "launch/cluster.sh '\(hostfile)' \(quoted)"
        return try Harness.Background(["ip", "netns", "exec", "fdh-1", "unshare", "--uts", "sh", "-c", command])
    }

    func testTwoHostsTimesTwoRanksEqualFourRanksOnOneHost() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 300, seed: 31)
        let model = try makeModel()
        let common = ["train", "--model", model, "--train", "\(dir)/train.jsonl", "--epochs", "2", "--batch-size", "24", "--lr", "3e-3"]
        let local = try Harness.mpirun(4, common + ["--output", "\(dir)/local"])
        XCTAssertEqual(local.status, 0, local.output)
        let r = try cluster(common + ["--output", "\(dir)/cluster"]).finish(timeout: 180, killPattern: dir)
        XCTAssertEqual(r.status, 0, r.output)
        let run = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/cluster/run.json")!) as! [String: Any]
        XCTAssertEqual(run["hosts"] as? [String], ["fdh-1", "fdh-2"], "the ranks ran on two hosts")
        assertClose(try Harness.weights("\(dir)/cluster/final"), try Harness.weights("\(dir)/local/final"), relative: 1e-6)
    }

    /// Host 2's link goes down mid-run: the job ends within the collective timeout plus a few
    /// seconds, and the last complete checkpoint is intact. With the launch scripts' keepalive,
    /// Open MPI notices the lost host after about 16 s; the ranks' own deadline (10 s here) names
    /// the step.
    func testCutNetworkEndsTheJob() throws {
        Harness.writeData("\(dir)/train.jsonl", count: 300, seed: 32)
        let model = try makeModel()
        let run = try cluster(["train", "--model", model, "--train", "\(dir)/train.jsonl", "--epochs", "3", "--batch-size", "24",
                               "--output", "\(dir)/cut", "--save-every", "2", "--collective-timeout", "10", "--debug-stall", "0:9:4"])
        let reached = Harness.waitUntil(timeout: 90) { Harness.metrics("\(dir)/cut").contains { $0["step"] as? Int == 8 } }
        XCTAssertTrue(reached, "the run reached step 8")
        let cut = try Harness.run("/usr/bin/env", ["ip", "-n", "fdsw", "link", "set", "fds-2", "down"], timeout: 10)
        XCTAssertEqual(cut.status, 0, cut.output)
        let cutAt = Date()
        let r = run.finish(timeout: 120, killPattern: dir)
        XCTAssertFalse(r.timedOut, "no hang")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(Date().timeIntervalSince(cutAt), 10 + 4 + 15, "collective timeout + the stall + a few seconds")
        XCTAssertTrue(r.output.range(of: #"step \d+: [a-z]+ of [^\n]+ did not complete within 10 s"#, options: .regularExpression) != nil, r.output)
        let steps = CheckpointFolderView(path: "\(dir)/cut/checkpoints").steps
        XCTAssertGreaterThanOrEqual(steps.first ?? 0, 8)
        for step in steps { XCTAssertNoThrow(try Checkpoint.read(from: "\(dir)/cut/checkpoints/\(CheckpointFolder(step))")) }
    }
}
