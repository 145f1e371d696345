import FineTuneDistributed
import FineTuneKernels
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
    enum CodingKeys: String, CodingKey {
        case rank, host, cpus, openblasThreads = "openblas_threads", ranksSharingCPUs = "ranks_sharing_cpus"
        case threadsFrom = "threads_from", pid
    }

    /// Every rank's record (collective).
    static func gather(budget: ThreadBudget, comm: Communicator) throws -> [RankRecord] {
        let mine = RankRecord(rank: comm.rank, host: comm.hostName, cpus: ThreadBudget.describe(budget.cpus), openblasThreads: budget.threads,
                              ranksSharingCPUs: budget.sharingRanks, threadsFrom: budget.source, pid: Int(ProcessInfo.processInfo.processIdentifier))
        let all = try comm.allgather(string: String(decoding: try JSONEncoder().encode(mine), as: UTF8.self))
        return try all.map { try JSONDecoder().decode(RankRecord.self, from: Data($0.utf8)) }
    }
}

/// run.json: where and how the run ran (provenance), written by rank 0.
public struct RunRecord: Codable, Sendable {
    public var finetuneDistCommit: String
    public var swift: String
    public var mpiLibrary: String
    public var openblasConfig: String
    public var openblasCore: String
    public var worldSize: Int
    public var hosts: [String]
    public var ranks: [RankRecord]
    public var started: String
    public var trainExamples: Int
    public var validExamples: Int
    public var parameters: Int
    enum CodingKeys: String, CodingKey {
        case finetuneDistCommit = "finetune_dist_commit", swift, mpiLibrary = "mpi_library", openblasConfig = "openblas_config"
        case openblasCore = "openblas_core", worldSize = "world_size", hosts, ranks, started, trainExamples = "train_examples"
        case validExamples = "valid_examples", parameters
    }
}

/// Where this binary came from.
public enum Provenance {
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
