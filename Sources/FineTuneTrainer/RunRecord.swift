import FineTuneJSON
import FineTuneDistributed
import FineTuneKernels
import FineTuneModels
import Foundation

/// One rank's placement, as recorded in run.json and printed at start.
public struct RankRecord: Codable, Sendable {
    public var rank: Int
    public var host: String
    public var cpus: String
    public var openblasThreads: Int
    public var ranksSharingCPUs: Int
    public var threadsFrom: String
    public var pid: Int
    /// The OpenBLAS kernel set this rank runs, and why (BLASSetup).
    public var blasCore: String
    public var blasReason: String
    /// Single-thread sgemm rate (1024³) measured by the first rank of each host; nil on the others.
    public var sgemmGFLOPS: Double?
    enum CodingKeys: String, CodingKey {
        case rank, host, cpus, openblasThreads = "openblas_threads", ranksSharingCPUs = "ranks_sharing_cpus"
        case threadsFrom = "threads_from", pid, blasCore = "blas_core", blasReason = "blas_reason", sgemmGFLOPS = "sgemm_gflops"
    }

    /// Every rank's record (collective). The first rank of each host measures the sgemm rate of its kernels.
    public static func gather(budget: ThreadBudget, comm: Communicator) throws -> [RankRecord] {
        let blas = BLASSetup.selection
        let rate = comm.nodeRanks.index == 0 ? OpenBLAS.singleThreadSgemmGFLOPS() : nil
        let mine = RankRecord(rank: comm.rank, host: comm.hostName, cpus: ThreadBudget.describe(budget.cpus), openblasThreads: budget.threads,
                              ranksSharingCPUs: budget.sharingRanks, threadsFrom: budget.source, pid: Int(ProcessInfo.processInfo.processIdentifier),
                              blasCore: blas.core, blasReason: blas.reason, sgemmGFLOPS: rate)
        let all = try comm.allgather(string: String(decoding: try JSONEncoder().encode(mine), as: UTF8.self))
        return try all.map { try decodeJSON(RankRecord.self, from: Data($0.utf8)) }
    }
}

/// run.json: where and how the run ran (provenance), written by rank 0.
public struct RunRecord: Codable, Sendable {
    public var finetuneDistVersion = Provenance.version
    public var finetuneDistCommit: String
    public var swift: String
    public var mpiLibrary: String
    public var openblasConfig: String
    public var openblasCore: String
    /// Rank 0's kernel-set decision (every rank's core is in `ranks`).
    public var blas: BLASSelection
    public var worldSize: Int
    public var hosts: [String]
    public var ranks: [RankRecord]
    public var started: String
    public var trainExamples: Int
    public var validExamples: Int
    public var parameters: Int
    /// Parameters that train at the start (frozen ones and LoRA's base excluded), and what decides it.
    public var trainableParameters: Int? = nil
    public var frozen: String? = nil
    public var lora: LoRASettings? = nil
    enum CodingKeys: String, CodingKey {
        case finetuneDistVersion = "finetune_dist_version", finetuneDistCommit = "finetune_dist_commit", swift, mpiLibrary = "mpi_library", openblasConfig = "openblas_config"
        case openblasCore = "openblas_core", blas, worldSize = "world_size", hosts, ranks, started, trainExamples = "train_examples"
        case validExamples = "valid_examples", parameters, trainableParameters = "trainable_parameters", frozen, lora
    }
}

/// Where this binary came from.
public enum Provenance {
    /// finetune-dist's release version (`finetune-dist --version` adds the commit).
    public static let version = "0.6.0"
    /// finetune-dist's git commit, read from the source tree this binary was built from
    /// ("unknown" when that tree is not there); "+dirty" when it had uncommitted changes.
    public static func gitCommit() -> String {
        let sourceDirectory = (#filePath as NSString).deletingLastPathComponent
        func git(_ args: [String]) -> String? {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["git", "-C", sourceDirectory] + args
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return nil }
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return p.terminationStatus == 0 ? String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : nil
        }
        guard let commit = git(["rev-parse", "HEAD"]) else { return "unknown" }
        let dirty = (git(["status", "--porcelain", "--untracked-files=no"]) ?? "").isEmpty ? "" : "+dirty"
        return commit + dirty
    }

    public static var swiftVersion: String {
        #if swift(>=6.4)
        return ">=6.4"
        #elseif swift(>=6.3)
        return "6.3"
        #elseif swift(>=6.2)
        return "6.2"
        #elseif swift(>=6.1)
        return "6.1"
        #elseif swift(>=6.0)
        return "6.0"
        #else
        return "<6.0"
        #endif
    }
}

extension RankRecord {
    /// "OpenBLAS kernels Zen: OpenBLAS's choice, ... | sgemm 81.2 GFLOP/s per thread on vm"
    public static func blasLines(_ ranks: [RankRecord]) -> [String] {
        var lines: [String] = []
        let reasons = Dictionary(grouping: ranks, by: \.blasReason)
        for (reason, group) in reasons.sorted(by: { $0.value[0].rank < $1.value[0].rank }) {
            let who = reasons.count == 1 ? "" : " (ranks \(group.map { String($0.rank) }.joined(separator: ",")))"
            lines.append("OpenBLAS kernels\(who): \(reason)")
        }
        for r in ranks { if let rate = r.sgemmGFLOPS { lines.append(String(format: "sgemm %.1f GFLOP/s per thread on %@ (1024^3, one thread)", rate, r.host)) } }
        return lines
    }
}
