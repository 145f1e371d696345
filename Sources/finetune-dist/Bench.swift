import FineTuneJSON
import ArgumentParser
import FineTuneKernels
import FineTuneDistributed
import FineTuneTrainer
import Foundation

/// What `bench`'s command line sets.
struct BenchInvocation {
    var configuration = BenchmarkConfiguration()
    var json = false

    static let command = OptionCommand<BenchInvocation>(
        name: "bench",
        abstract: "Time training steps of a BERT encoder on random tokens, part by part, under mpirun like train.",
        discussion: """
        Prints the median step time (the slowest rank's), examples/s and tokens/s over all ranks, the \
        achieved GFLOP/s by 3·T·(2·L·(4C² + 2CF) + 4·L·T·C) per example, the single-thread sgemm rate \
        (1024³, median of 5 after a warm-up) of the same OpenBLAS, their ratio per thread, the peak \
        resident memory per rank, and the step split into forward, backward, exposed communication \
        and optimizer, then by kind of kernel (linear layers, attention, GELU, LayerNorm, dropout, \
        embeddings, elementwise, head, optimizer) with the FLOP rate of the matrix products. It names \
        the OpenBLAS kernel set in use and why; when that is not the fastest set the CPU supports (an \
        OPENBLAS_CORETYPE that pins a weaker one), it also measures the fastest set's sgemm rate in a \
        child process and warns. The options of train it shares (freezing, --grad-accum, LoRA, the \
        gradient exchange) mean what they mean there; the FLOP figures still count the whole model. \
        With --json the last line is one JSON object.
        """,
        specs: BenchmarkConfiguration.specs.map { $0.lifted(\BenchInvocation.configuration) }
            + [.flag("json", \.json, group: OptionGroups.general, math: .no, help: "End with one JSON object on the last line.")],
        defaults: BenchInvocation())

    static func parse(_ arguments: [String]) throws -> BenchInvocation {
        var invocation = BenchInvocation()
        _ = try command.parse(arguments, into: &invocation)
        try invocation.configuration.checkCombinations()
        return invocation
    }

    func run() throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator() } catch { exitOnError(error, comm: nil) }
        let c = configuration
        do {
            var r = try Benchmark.run(c, comm: comm)
            let blas = BLASSetup.selection
            r.blasCore = blas.core
            r.bestBLASCore = blas.bestCore
            if comm.isRoot && blas.core.lowercased() != blas.bestCore.lowercased() { r.bestSgemmGFLOPS = BlasRate.measure(core: blas.bestCore) }
            if comm.isRoot {
                print("OpenBLAS kernels: \(blas.reason)")
                if let best = r.bestSgemmGFLOPS {
                    print(String(format: "WARNING: these %@ kernels reach %.1f GFLOP/s; this CPU's best set, %@, reaches %.1f GFLOP/s (%.1fx): %@",
                                 blas.core, r.sgemmGFLOPS, blas.bestCore, best, best / r.sgemmGFLOPS, blas.warning ?? ""))
                }
                let perRank = c.embedding ? "\(c.perRankBatch) (anchor, positive) pairs of 2 x \(c.sequenceLength) tokens per rank" +
                                            (c.miniBatchSize.map { " in mini-batches of \($0) (GradCache)" } ?? "")
                                          : "\(c.perRankBatch) x \(c.sequenceLength) tokens per rank" + (c.gradAccum > 1 ? " in \(c.gradAccum) micro-batches" : "")
                print(String(format: "bench: %@, %d rank(s) x %d thread(s), %@, %d steps", c.modelPath ?? c.shape, r.ranks, r.threadsPerRank, perRank, c.steps))
                if r.trainableParameters < r.parameters {
                    print("training \(r.trainableParameters) of \(r.parameters) parameters (" +
                          (c.lora.map { "LoRA r \($0.rank) on \(c.loraTargetsText ?? $0.targets.map(\.rawValue).joined(separator: ","))" } ?? "frozen: \(c.freeze.description)") + ")")
                }
                print(String(format: "step %.4f s | %.1f examples/s | %.0f tokens/s | %.1f GFLOP/s", r.stepSeconds, r.examplesPerSecond, r.tokensPerSecond, r.gflops))
                print(String(format: "sgemm (1 thread, 1024^3): %.1f GFLOP/s | achieved / (ranks x threads x sgemm) = %.1f%%", r.sgemmGFLOPS, 100 * r.fractionOfSgemm))
                print(String(format: "split: forward %.4f s | backward %.4f s | exposed communication %.4f s | optimizer %.4f s | other %.4f s",
                             r.forwardSeconds, r.backwardSeconds, r.commExposedSeconds, r.optimizerSeconds, r.otherSeconds))
                print(String(format: "exchanged per step and rank: %.2f MB", Double(r.floatsExchangedPerStep * 4) / 1e6))
                print(String(format: "exposed communication: embedding rows %.4f s | waiting for buckets %.4f s | finite check %.4f s",
                             r.sparseRowsSeconds, r.bucketWaitSeconds, r.finiteCheckSeconds))
                let kernels = KernelKind.allCases.map { String(format: "%@ %.4f", $0.name, r.kernelSeconds[$0]) }
                print("kernels (s per step, rank 0): " + kernels.joined(separator: " | "))
                print(String(format: "matrix products: linear layers %.1f GFLOP/s (%.1f%% of sgemm), attention %.1f GFLOP/s",
                             r.linearGFLOPS, 100 * r.linearGFLOPS / Double(r.threadsPerRank) / r.sgemmGFLOPS, r.attentionGFLOPS))
                print(String(format: "peak resident memory per rank: %.1f MiB = %.2fx the %.1f MiB of weights, gradients, optimizer state (%.1f MiB) and activations (%.1f MiB)",
                             Double(r.peakRSSBytes) / 1048576, Double(r.peakRSSBytes) / Double(max(r.theoreticalBytes, 1)),
                             Double(r.theoreticalBytes) / 1048576, Double(r.optimizerStateBytes) / 1048576, Double(r.activationBytes) / 1048576))
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    print(String(decoding: try encoder.encode(r), as: UTF8.self))
                }
            }
        } catch { exitOnError(error, comm: comm) }
        comm.finalize()
    }
}

/// `bench` in the root command's list (its abstract); `BenchInvocation.command` reads its command line.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: BenchInvocation.command.abstract)
    /// Only for `--generate-completion-script`: the option names as words to complete.
    @Argument(completion: .list(BenchInvocation.command.completionWords)) var options: [String] = []
}

/// `finetune-dist blas-rate` (hidden): the single-thread sgemm rate of the kernel set this process
/// runs, as one JSON line. `bench` runs it as a child under another OPENBLAS_CORETYPE, because
/// OpenBLAS picks its kernels once, when the library loads.
struct BlasRate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "blas-rate", shouldDisplay: false)

    struct Line: Codable { var core: String; var sgemmGFLOPS: Double }

    func run() throws {
        let line = Line(core: OpenBLAS.coreName, sgemmGFLOPS: OpenBLAS.singleThreadSgemmGFLOPS())
        print(String(decoding: try JSONEncoder().encode(line), as: UTF8.self))
    }

    /// The rate of kernel set `core`, measured by a child process; nil if it could not be measured.
    static func measure(core: String) -> Double? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        p.arguments = ["blas-rate"]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = core
        environment["FINETUNE_DIST_BLAS_SETUP"] = #"{"initial": "\#(core)", "requested": "\#(core)"}"#
        for key in environment.keys where key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") { environment[key] = nil }
        p.environment = environment
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard let last = String(decoding: out, as: UTF8.self).split(separator: "\n").last,
              let line = try? decodeJSON(Line.self, from: Data(last.utf8)), line.core.lowercased() == core.lowercased() else { return nil }
        return line.sgemmGFLOPS
    }
}
