import ArgumentParser
import FineTuneDistributed
import FineTuneKernels
import FineTuneModels
import FineTuneTrainer
import Foundation

/// What `train`'s command line sets: the run's configuration and the test-only switches.
struct TrainInvocation {
    var configuration = TrainingConfiguration.defaults
    /// Hidden options: fault injection for the tests (DebugSwitches).
    var perturb: String? = nil, stall: String? = nil, signalAt: String? = nil
    var slowCheckpoint: Double = 0, stepDelay: Double = 0

    static let command = OptionCommand<TrainInvocation>(
        name: "train",
        abstract: "Fine-tune a model folder on a data set, data-parallel over the MPI ranks it is started on.",
        discussion: """
        Start it under mpirun (or launch/local.sh, launch/cluster.sh); without mpirun it runs as one rank. \
        The output folder receives metrics.jsonl, run.json (provenance), training_config.json (every \
        option), checkpoints/, best/ (the best evaluation's model) and final/. A run stopped for any \
        reason continues with --resume, from its newest complete checkpoint, on any number of ranks.
        """,
        specs: TrainingConfiguration.specs.map { $0.lifted(\TrainInvocation.configuration) } + debugSpecs,
        defaults: TrainInvocation())

    private static var debugSpecs: [OptionSpec<TrainInvocation>] {
        func hidden(_ name: String, _ assign: @escaping (inout TrainInvocation, String) throws -> Void) -> OptionSpec<TrainInvocation> {
            OptionSpec(name: name, group: "debug", help: "", isHidden: true, mathematics: .no, assign: assign,
                       recorded: { _ in Optional<String>.none }, text: { _ in nil })
        }
        func seconds(_ text: String, _ name: String) throws -> Double {
            guard let value = Double(text), value >= 0 else { throw OptionValueError("--\(name): seconds, not '\(text)'") }
            return value
        }
        return [
            hidden("debug-example-log") { $0.configuration.exampleLogFolder = $1 },
            hidden("debug-perturb") { $0.perturb = $1 },
            hidden("debug-stall") { $0.stall = $1 },
            hidden("debug-signal-at") { $0.signalAt = $1 },
            hidden("debug-slow-checkpoint") { $0.slowCheckpoint = try seconds($1, "debug-slow-checkpoint") },
            hidden("debug-step-delay") { $0.stepDelay = try seconds($1, "debug-step-delay") },
        ]
    }

    /// The command line (without `train`) read, checked and combined.
    static func parse(_ arguments: [String]) throws -> TrainInvocation {
        var invocation = TrainInvocation()
        let given = try command.parse(arguments, into: &invocation)
        try invocation.configuration.checkCombinations(given: given)
        invocation.configuration.commandLine = CommandLine.arguments
        return invocation
    }

    func switches() throws -> DebugSwitches {
        let d = DebugSwitches()
        if let perturb {
            let n = try DebugSwitches.numbers(perturb, count: 2, option: "--debug-perturb")
            d.perturb = (Int(n[0]), Int(n[1]))
        }
        if let stall {
            let n = try DebugSwitches.numbers(stall, count: 3, option: "--debug-stall")
            d.stall = (Int(n[0]), Int(n[1]), n[2])
        }
        d.slowCheckpointSeconds = slowCheckpoint
        d.stepDelaySeconds = stepDelay
        if let signalAt {
            let n = try DebugSwitches.numbers(signalAt, count: 2, option: "--debug-signal-at")
            d.signalAt = (Int(n[0]), Int(n[1]))
        }
        return d
    }

    func run() throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator() } catch { exitOnError(error, comm: nil) }
        let configuration = self.configuration
        let display = comm.isRoot ? ProgressDisplay(mode: configuration.progressDisplay, monitor: configuration.monitor) : nil
        let trainer = Trainer(configuration: configuration, communicator: comm) { event in
            display?.handle(event)
        }
        defer { display?.finish() }
        do {
            defer { display?.finish() }
            trainer.hooks = try switches()
            if try trainer.run() == .preempted {
                comm.finalize()
                throw ExitCode(Preemption.exitStatus)
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            exitOnError(error, comm: comm)
        }
        comm.finalize()
    }
}

/// `train` in the root command's list of subcommands (its abstract); the command line itself is
/// read by `TrainInvocation.command` (FinetuneDist.main sends `train ...` there).
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: TrainInvocation.command.abstract)
    /// Only for `--generate-completion-script`: the option names as words to complete.
    @Argument(completion: .list(TrainInvocation.command.completionWords)) var options: [String] = []
}
