import CSystem
import FineTuneKernels
import Foundation

/// How many OpenBLAS threads this rank runs, and why.
public struct ThreadBudget: Sendable {
    /// CPUs in this rank's affinity mask.
    public let cpus: [Int]
    /// Ranks on this host whose affinity masks overlap this rank's (itself included).
    public let sharingRanks: Int
    public let threads: Int
    /// "OPENBLAS_NUM_THREADS" when the user set it, else "affinity".
    public let source: String

    /// This process's affinity mask.
    public static func affinityCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 4096)
        let n = ftd_affinity_cpus(&cpus, Int32(cpus.count))
        return n > 0 ? cpus[0..<Int(n)].map(Int.init) : [0]
    }

    /// Threads = CPUs of this rank's mask / ranks of this host sharing any of them (at least 1),
    /// unless OPENBLAS_NUM_THREADS is set. Applies it to OpenBLAS. Collective over the host's ranks.
    public static func apply(_ comm: Communicator) throws -> ThreadBudget {
        let cpus = affinityCPUs()
        // Each rank's mask as a 4096-bit set, gathered over the host.
        let words = 64
        var mask = [UInt64](repeating: 0, count: words)
        for c in cpus where c < words * 64 { mask[c / 64] |= 1 << UInt64(c % 64) }
        let bytes = mask.withUnsafeBytes { Array($0) }
        let all = try comm.nodeAllgather(bytes)
        var sharing = 0
        all.withUnsafeBytes { raw in
            let other = raw.bindMemory(to: UInt64.self)
            for r in 0..<(other.count / words) {
                if (0..<words).contains(where: { other[r * words + $0] & mask[$0] != 0 }) { sharing += 1 }
            }
        }
        sharing = max(sharing, 1)
        if let env = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"], let n = Int(env), n > 0 {
            // OpenBLAS read the variable itself at load time.
            return ThreadBudget(cpus: cpus, sharingRanks: sharing, threads: n, source: "OPENBLAS_NUM_THREADS")
        }
        let threads = max(1, cpus.count / sharing)
        OpenBLAS.setThreads(threads)
        return ThreadBudget(cpus: cpus, sharingRanks: sharing, threads: threads, source: "affinity")
    }

    /// "0-3,6"
    public static func describe(_ cpus: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < cpus.count {
            var j = i
            while j + 1 < cpus.count && cpus[j + 1] == cpus[j] + 1 { j += 1 }
            parts.append(i == j ? "\(cpus[i])" : "\(cpus[i])-\(cpus[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }
}
