import Foundation

/// Which OpenBLAS kernel set this process runs, how it came to, and whether it computes right.
public struct BLASSelection: Codable, Sendable, Equatable {
    /// The kernel set in use (openblas_get_corename).
    public var core: String
    /// What OpenBLAS picked by itself when the program started (or what OPENBLAS_CORETYPE asked for).
    public var initialCore: String
    /// The fastest set the CPU supports.
    public var bestCore: String
    /// "openblas" (its own choice kept), "finetune-dist" (switched), or "OPENBLAS_CORETYPE" (the user's).
    public var chosenBy: String
    /// One sentence: what was chosen and why.
    public var reason: String
    public var cpu: CPUFeatures
    /// Kernel sets whose sgemm disagreed with a plain loop here, and were not used.
    public var rejected: [String]
    /// Set when the set in use is slower than the best the CPU supports.
    public var warning: String?

    enum CodingKeys: String, CodingKey {
        case core, initialCore = "initial_core", bestCore = "best_core", chosenBy = "chosen_by", reason, cpu, rejected, warning
    }
}

/// Runs OpenBLAS with the best kernel set the CPU supports: the decision, without the process
/// concerns. OpenBLAS picks its kernels when the library loads (before `main`), so when it picked
/// a weaker set than the CPU allows, the program must restart itself with `OPENBLAS_CORETYPE` set
/// (the executable does that: finetune-dist's BLASStartup, before MPI_Init); a user's own
/// `OPENBLAS_CORETYPE` is respected. Every set is first checked with one small sgemm against a
/// plain loop; a set that disagrees (some OpenBLAS builds compute wrong results on CPUs they
/// misdetect) is dropped for OpenBLAS's own choice, or the generic Prescott set, saying so.
public enum BLASSetup {
    /// What one start of the program tells the next, across a restart.
    public struct Handoff: Codable, Sendable {
        /// The set loaded when the program first started, and whether the user asked for it.
        public var initial: String
        public var user: Bool? = nil
        /// The set this program asked for, if it asked.
        public var requested: String? = nil
        public var rejected: [String]? = nil
        /// Restarts so far (at most 3 are made).
        public var execs: Int? = nil
        public init(initial: String, user: Bool? = nil) { self.initial = initial; self.user = user }
    }

    nonisolated(unsafe) private static var chosen: BLASSelection? = nil

    /// What the process runs (the start-up decision when one was recorded, else a description of
    /// the library's own choice, as in a test process).
    public static var selection: BLASSelection {
        if let chosen { return chosen }
        let cpu = CPUFeatures.current(), loaded = OpenBLAS.coreName
        return describe(loaded: loaded, handoff: Handoff(initial: loaded), cpu: cpu, agrees: true)
    }

    /// Records the start-up decision (`selection` returns it from then on).
    public static func record(_ selection: BLASSelection) { chosen = selection }

    /// A stronger set to restart with: OpenBLAS's own choice is weaker than the CPU allows, the user
    /// did not ask for it, and no restart has asked already. Nil: keep the loaded set.
    public static func betterCore(handoff: Handoff, loaded: String, cpu: CPUFeatures) -> String? {
        let rejected = Set((handoff.rejected ?? []).map { $0.lowercased() })
        guard handoff.user != true && handoff.requested == nil,
              case .switchTo(let better) = BLASCorePolicy.decide(openblas: loaded, cpu: cpu), !rejected.contains(better.lowercased()) else { return nil }
        return better
    }

    /// The set to fall back to when the loaded one computed a wrong sgemm (`handoff.rejected`
    /// already names it): OpenBLAS's own first choice, else Prescott; nil when none is left.
    public static func fallbackCore(handoff: Handoff, loaded: String) -> String? {
        let rejected = Set((handoff.rejected ?? []).map { $0.lowercased() })
        return [handoff.initial, "Prescott"].first { !rejected.contains($0.lowercased()) && $0.lowercased() != loaded.lowercased() }
    }

    public static func describe(loaded: String, handoff: Handoff, cpu: CPUFeatures, agrees: Bool) -> BLASSelection {
        let (best, why) = BLASCorePolicy.best(for: cpu)
        let rejected = handoff.rejected ?? []
        var s = BLASSelection(core: loaded, initialCore: handoff.initial, bestCore: best, chosenBy: "openblas", reason: "",
                              cpu: cpu, rejected: rejected, warning: nil)
        let slower = (BLASCorePolicy.level(loaded) ?? 0) < (BLASCorePolicy.level(best) ?? 0)
        if handoff.user == true && handoff.requested == nil {
            s.chosenBy = "OPENBLAS_CORETYPE"
            s.reason = "\(loaded): set by OPENBLAS_CORETYPE"
            if slower { s.warning = "OPENBLAS_CORETYPE=\(handoff.initial) runs slower kernels than this CPU supports (\(best): \(why)); unset it for full speed" }
        } else if let requested = handoff.requested {
            s.chosenBy = "finetune-dist"
            if !rejected.isEmpty {
                s.reason = "\(loaded): \(rejected.joined(separator: ", ")) computed a wrong sgemm on this CPU"
            } else {
                s.reason = "\(loaded): OpenBLAS chose \(handoff.initial) for this CPU (\(cpu.summary)); it supports \(best) (\(why))"
            }
            if loaded.lowercased() != requested.lowercased() { s.reason += "; asked OpenBLAS for \(requested), it loaded \(loaded)" }
            if slower { s.warning = "running OpenBLAS's \(loaded) kernels, slower than the \(best) kernels this CPU supports" }
        } else {
            s.reason = slower ? "\(loaded): OpenBLAS's choice" : "\(loaded): OpenBLAS's choice, the best for this CPU (\(why))"
            if slower { s.warning = "running OpenBLAS's \(loaded) kernels, slower than the \(best) kernels this CPU supports" }
        }
        if !agrees { s.warning = "OpenBLAS's \(loaded) kernels computed a wrong sgemm on this CPU" }
        return s
    }

    /// One small product of each transposition the kernels use, against a Double loop.
    public static func sgemmAgreesWithLoop() -> Bool {
        let m = 23, n = 17, k = 41
        var rng = SplitMix64(seed: 0xB1A5)
        let a = (0..<(m * k)).map { _ in Float(rng.nextUnit() * 2 - 1) }, b = (0..<(k * n)).map { _ in Float(rng.nextUnit() * 2 - 1) }
        for (transA, transB) in [(false, true), (false, false), (true, false)] {
            var c = [Float](repeating: 0, count: m * n)
            let lda = transA ? m : k, ldb = transB ? k : n
            Float.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: &c, ldc: n)
            for i in 0..<m {
                for j in 0..<n {
                    var exact = 0.0, magnitude = 0.0
                    for p in 0..<k {
                        let x = Double(transA ? a[p * m + i] : a[i * k + p]), y = Double(transB ? b[j * k + p] : b[p * n + j])
                        exact += x * y; magnitude += abs(x * y)
                    }
                    if abs(Double(c[i * n + j]) - exact) > 1e-5 * magnitude + 1e-6 { return false }
                }
            }
        }
        return true
    }
}
