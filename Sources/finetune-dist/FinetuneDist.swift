import ArgumentParser
import FineTuneKernels
import FineTuneDistributed
import FineTuneTrainer
import Foundation

@main
struct FinetuneDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune-dist",
        abstract: "Data-parallel fine-tuning of pre-trained models on CPU clusters, over MPI and OpenBLAS.",
        discussion: """
        Every MPI rank holds a full model replica and computes its slice of each \
        global batch; the gradients are summed across ranks every step. Rank 0 \
        evaluates, decides early stopping and writes checkpoints and models.
        Models are Hugging Face folders (BERT, MiniLM, MPNet, RoBERTa and DistilBERT \
        encoders, sentence-transformers folders on them, or MLPs made by \
        `init`). Start training under mpirun, e.g.:

          mpirun -n 8 finetune-dist train --model models/all-MiniLM-L6-v2
              --train data/train.jsonl --valid data/valid.jsonl
              --output runs/exp1 --epochs 3 --batch-size 32 --lr 5e-5

        launch/local.sh and launch/cluster.sh wrap mpirun with the settings it \
        needs; launch/finetune-debian.sh is a complete example. See Docs/usage.md.
        `finetune-dist --version` prints the version and commit; \
        `finetune-dist --generate-completion-script bash|zsh|fish` a shell completion script.
        """,
        subcommands: [Init.self, Train.self, Eval.self, Predict.self, Tokenize.self, Inspect.self, Report.self, Bench.self, CommBench.self, SelfTest.self, BlasRate.self]
    )

    static func main() {
        // Before anything else (MPI_Init included): OpenBLAS with the best kernel set for this CPU.
        BLASStartup.prepare()
        var arguments = Array(CommandLine.arguments.dropFirst())
        // Answered here, not through CommandConfiguration(version:), so that only --version asks git for the commit.
        if arguments == ["--version"] {
            if launchRank.map({ $0 != 0 }) ?? false { return }
            print("finetune-dist \(Provenance.version) (commit \(Provenance.gitCommit()))")
            return
        }
        // Every rank parses the same command line, so every rank finds the same mistake: the first
        // rank says it, the others exit with the same status silently (one message, not one per rank).
        let quiet = launchRank.map { $0 != 0 } ?? false
        if arguments.count == 2, arguments[0] == "help", ["train", "bench"].contains(arguments[1]) { arguments = [arguments[1], "--help"] }
        if arguments.first == "train" {
            run(TrainInvocation.command, Array(arguments.dropFirst()), quiet: quiet, parse: TrainInvocation.parse) { try $0.run() }
        }
        if arguments.first == "bench" {
            run(BenchInvocation.command, Array(arguments.dropFirst()), quiet: quiet, parse: BenchInvocation.parse) { try $0.run() }
        }
        arguments = joiningNegativeNumbers(arguments)
        let command: ParsableCommand
        do { command = try parseAsRoot(arguments) } catch {
            if quiet { Glibc.exit(exitCode(for: error).rawValue) }
            exit(withError: error)
        }
        // `--help` on its own parses to ArgumentParser's help command, which prints when run.
        let ours = (configuration.subcommands + [FinetuneDist.self]).map(ObjectIdentifier.init)
        if quiet && !ours.contains(ObjectIdentifier(type(of: command))) { Glibc.exit(0) }
        do {
            var command = command
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    /// `train ...` and `bench ...`: their options are read off their declarations
    /// (`OptionSpec`s), not by ArgumentParser; messages and exit statuses as ArgumentParser's.
    static func run<Root>(_ command: OptionCommand<Root>, _ arguments: [String], quiet: Bool,
                          parse: ([String]) throws -> Root, run: (Root) throws -> Void) -> Never {
        if arguments.contains("--help") || arguments.contains("-h") {
            if !quiet { print(command.help()) }
            Glibc.exit(0)
        }
        let invocation: Root
        do { invocation = try parse(arguments) } catch {
            if !quiet {
                printError("Error: \(error)\nUsage: \(command.usage)\n  See 'finetune-dist \(command.name) --help' for more information.")
            }
            Glibc.exit(ExitCode.validationFailure.rawValue)
        }
        do { try run(invocation) } catch {
            exit(withError: error)
        }
        Glibc.exit(0)
    }

    /// `--lr -1` as `--lr=-1`: ArgumentParser takes a word starting with "-" for an option of its
    /// own ("Missing value for '--lr'"); joined, the option's range check says what is wrong.
    static func joiningNegativeNumbers(_ arguments: [String]) -> [String] {
        var out: [String] = []
        for argument in arguments {
            if argument.hasPrefix("-"), Double(argument) != nil, let option = out.last,
               option.hasPrefix("--"), option.count > 2, !option.contains("=") {
                out[out.count - 1] = option + "=" + argument
            } else {
                out.append(argument)
            }
        }
        return out
    }

    /// This process's rank as the launcher (mpirun, srun) set it, before MPI is initialised.
    static var launchRank: Int? {
        let environment = ProcessInfo.processInfo.environment
        // Open MPI's own first: inside an sbatch script SLURM_PROCID is 0 for every rank mpirun starts.
        for name in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"] {
            if let value = environment[name], let rank = Int(value) { return rank }
        }
        return nil
    }
}

/// Prints an error and exits non-zero. Multi-rank: an error agreed on by every rank (thrown inside
/// a phase all ranks went through) ends each rank normally; any other error aborts the whole job
/// so that no rank is left waiting in a collective.
func exitOnError(_ error: Error, comm: Communicator?) -> Never {
    switch error {
    case let agreed as AgreedFailure:
        printError("finetune-dist: error: \(agreed)")
        (comm as? MPICommunicator)?.finalize()
        exit(1)
    case is PeerFailure:
        (comm as? MPICommunicator)?.finalize()
        exit(1)
    default:
        let message = "finetune-dist: error: \(error)"
        if let comm, comm.size > 1 { comm.abort(message: "rank \(comm.rank): " + message, code: 1) }
        printError(message)
        (comm as? MPICommunicator)?.finalize()
        exit(1)
    }
}
