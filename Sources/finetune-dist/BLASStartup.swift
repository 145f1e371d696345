import FineTuneJSON
import FineTuneKernels
import Foundation

/// The process side of BLASSetup: reads what an earlier start handed over, restarts this program
/// (execv: same process id, arguments and environment, so under mpirun too, before MPI_Init) with
/// OPENBLAS_CORETYPE set when BLASSetup says a better or a correct kernel set is to be had, and
/// records the decision.
enum BLASStartup {
    /// Carries the decision across the restart (JSON of BLASSetup.Handoff). A test may set
    /// `{"initial": "Prescott"}` together with OPENBLAS_CORETYPE=Prescott to play an OpenBLAS that
    /// picked Prescott by itself.
    static let handoffVariable = "FINETUNE_DIST_BLAS_SETUP"
    /// Test-only: the kernel set named here is treated as computing a wrong sgemm.
    static let testWrongVariable = "FINETUNE_DIST_TEST_BLAS_WRONG"

    /// First thing in `main`: returns when the process runs the right set (BLASSetup.selection says
    /// which and why), or replaces the process with itself under a better OPENBLAS_CORETYPE.
    static func prepare() {
        let environment = ProcessInfo.processInfo.environment
        let cpu = CPUFeatures.current(), loaded = OpenBLAS.coreName
        var handoff = environment[handoffVariable].flatMap { try? decodeJSON(BLASSetup.Handoff.self, from: Data($0.utf8)) }
            ?? BLASSetup.Handoff(initial: loaded, user: environment["OPENBLAS_CORETYPE"].map { !$0.isEmpty } == true ? true : nil)
        if let better = BLASSetup.betterCore(handoff: handoff, loaded: loaded, cpu: cpu) {
            handoff.requested = better
            restart(coretype: better, handoff: handoff)
        }
        let treatedAsWrong = environment[testWrongVariable].map { $0.lowercased() == loaded.lowercased() } ?? false
        let agrees = !treatedAsWrong && BLASSetup.sgemmAgreesWithLoop()
        if !agrees {
            handoff.rejected = (handoff.rejected ?? []) + [loaded]
            if let fallback = BLASSetup.fallbackCore(handoff: handoff, loaded: loaded) {
                printError("finetune-dist: warning: OpenBLAS's \(loaded) kernels computed a wrong sgemm on this CPU (\(cpu.summary)); falling back to \(fallback)")
                handoff.requested = fallback
                restart(coretype: fallback, handoff: handoff)
            }
        }
        BLASSetup.record(BLASSetup.describe(loaded: loaded, handoff: handoff, cpu: cpu, agrees: agrees))
        if !agrees {
            printError("finetune-dist: warning: OpenBLAS's \(loaded) kernels computed a wrong sgemm on this CPU and no other kernel set is left to try; results may be wrong")
        }
    }

    /// execv of this program with OPENBLAS_CORETYPE set; returns only if that fails (with a warning)
    /// or after 3 restarts.
    private static func restart(coretype: String, handoff: BLASSetup.Handoff) {
        var h = handoff
        h.execs = (h.execs ?? 0) + 1
        guard h.execs! <= 3, let json = try? JSONEncoder().encode(h) else { return }
        setenv("OPENBLAS_CORETYPE", coretype, 1)
        setenv(handoffVariable, String(decoding: json, as: UTF8.self), 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        printError("finetune-dist: warning: could not restart with OPENBLAS_CORETYPE=\(coretype) (\(String(cString: strerror(errno)))); continuing with \(OpenBLAS.coreName)")
    }
}
