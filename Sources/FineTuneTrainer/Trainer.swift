import FineTuneCore
import FineTuneDistributed
import Foundation

/// How a run ended.
public enum RunOutcome: String, Sendable {
    case completed, earlyStopped = "early_stopped", stoppedAfterSteps = "stopped_after_steps", preempted
}

/// The control slots after the gradients (see FineTunableModel): summed by the gradient allreduce.
enum Control {
    static let lossSum = 0, count = 1, preemptedRanks = 2, nonFiniteShards = 3
}

/// Whether every value is finite: NaN and ±Inf are the floats whose exponent bits are all ones.
/// An integer max over the exponent fields vectorises (a float sum would be one long dependency chain).
func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
    let bits = UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)
    var largest: UInt32 = 0
    for i in 0..<count { largest = max(largest, bits[i] & 0x7F80_0000) }
    return largest != 0x7F80_0000
}

/// What the trainer reports as it goes; the CLI prints it (rank 0 only).
public enum Progress {
    case started(String)
    case step(String)
    case evaluation(String)
    case note(String)
}

/// Data-parallel training over a Communicator. Every rank holds a full replica and computes its
/// slice of each global batch; gradients are summed across ranks and every replica takes the same
/// update. Rank 0 evaluates (with the other ranks' help), decides early stopping and writes every
/// file; its decisions reach the other ranks through collectives that all of them call.
public final class Trainer {
    public var configuration: TrainingConfiguration
    let comm: Communicator
    let report: (Progress) -> Void

    public init(configuration: TrainingConfiguration, communicator: Communicator, report: @escaping (Progress) -> Void) {
        self.configuration = configuration
        self.comm = communicator
        self.report = report
    }

    var checkpoints: CheckpointFolder { CheckpointFolder(path: "\(configuration.outputPath)/checkpoints") }

    /// Rank 0: the checkpoint to resume from (nil for a fresh run), after checking the output folder.
    private func findResumeCheckpoint() throws -> Checkpoint? {
        let c = configuration
        checkpoints.removeUnfinished()
        let existing = checkpoints.steps()
        if !c.resume {
            guard existing.isEmpty else {
                throw FineTuneError("\(c.outputPath): already holds checkpoints (newest: step \(existing[0])); pass --resume to continue that run, or choose another --output")
            }
            return nil
        }
        guard let (step, checkpoint) = checkpoints.newestValid(warn: { self.report(.note($0)) }) else {
            if c.resumeIfPossible && existing.isEmpty {
                report(.note("--resume auto: no checkpoint in \(checkpoints.path) yet, starting fresh"))
                return nil
            }
            throw FineTuneError("\(checkpoints.path): --resume given but no complete checkpoint found")
        }
        report(.note("resuming from \(checkpoints.path)/\(CheckpointFolder.name(step: step))"))
        return checkpoint
    }

    @discardableResult
    public func run() throws -> RunOutcome {
        let c = configuration
        let root = comm.isRoot

        // 1. Rank 0 reads the starting point (checkpoint, or the model folder's config and
        //    tokenizer); every rank gets those bytes and describes the same model from them.
        var folderDescription: ModelDescription? = nil
        let startBytes: [UInt8] = try comm.agree("reading the starting point") {
            guard root else { return [] }
            try FileManager.default.createDirectory(atPath: c.outputPath, withIntermediateDirectories: true)
            if let checkpoint = try findResumeCheckpoint() { return checkpoint.archive() }
            let description = try ModelFolder.describe(FolderSource(c.modelPath), pooling: c.pooling)
            folderDescription = description
            return Checkpoint(files: description.resolvedFiles()).archive()
        }
        let start = try Checkpoint(archive: comm.broadcast(bytes: startBytes, root: 0))
        // Only a checkpoint carries trainer_state.json (--resume auto may have found none).
        let resumed: Checkpoint? = start.files["trainer_state.json"] != nil ? start : nil
        let description = try comm.agree("reading the model configuration") {
            try ModelFolder.describe(MemorySource(start.files, name: resumed == nil ? c.modelPath : "checkpoint"), pooling: c.pooling)
        }

        // 2. Every rank loads the data (inputs are read where they are); a model without a head
        //    takes its task and labels from the training data.
        let data = try comm.agree("loading data") { () -> (train: ExampleSet, valid: ExampleSet?, test: ExampleSet?, task: TaskKind, maxLength: Int?) in
            let loaded = try DataLoading.load(train: c.trainPath, valid: c.validPath, test: c.testPath, for: description,
                                              maxLength: c.maxLength)
            if loaded.task == .regression && c.monitor == .valAccuracy {
                throw FineTuneError("--monitor val_accuracy needs a classifier; this is a regression model (use val_loss, the MSE)")
            }
            return loaded
        }
        let (train, valid) = (data.train, data.valid)
        let model = description.build(task: data.task)
        if let bert = model as? BertClassifier, let maxLength = data.maxLength { bert.maxLength = maxLength }
        let optimizer = Optimizer(settings: c.optimizer, layout: model.layout,
                                  shard: c.shardOptimizer ? Sharding.slice(count: model.layout.count, rank: comm.rank, size: comm.size) : nil)

        // 3. Starting state: checkpoint (on every rank, from the broadcast bytes) or the folder's
        //    weights, read by rank 0 and broadcast.
        var state = TrainerState()
        try comm.agree("restoring state") {
            if let resumed {
                state = try resumed.state()
                try description.loadWeights(into: model, seed: 0)
                try resumed.restore(optimizer: optimizer)
                try checkResumable(state, train: train)
            } else {
                state.seed = c.seed
                state.mathematicalOptions = c.mathematicalOptions
                state.trainExamples = train.count
                state.trainFingerprint = train.fingerprint
                if root { try folderDescription!.loadWeights(into: model, seed: c.seed) }
            }
        }
        if resumed == nil { try comm.broadcast(model.parameters, root: 0) }

        // 4. Threads, provenance, resolved configuration.
        let budget = try ThreadBudget.apply(comm)
        let stepsPerEpoch = (train.count + c.batchSize - 1) / c.batchSize
        let totalSteps = min(c.epochs * stepsPerEpoch, c.maxSteps ?? Int.max)
        let warmup = c.warmupSteps ?? Int((c.warmupRatio * Double(totalSteps)).rounded(.up))
        let schedule = LearningRateSchedule(kind: c.schedule, peak: c.learningRate, warmupSteps: warmup, totalSteps: totalSteps)
        try recordRun(budget: budget, totalSteps: totalSteps, warmup: warmup, train: train, valid: valid, model: model)
        let metrics: MetricsLog? = try comm.agree("opening metrics.jsonl") {
            root ? try MetricsLog(path: "\(c.outputPath)/metrics.jsonl", keepThroughStep: resumed == nil ? nil : state.step) : nil
        }
        let exampleLog = try c.exampleLogFolder.map { folder -> FileHandle in
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let path = "\(folder)/rank-\(comm.rank).txt"
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            let h = FileHandle(forWritingAtPath: path)!
            h.seekToEndOfFile()
            return h
        }

        if root {
            report(.started("training \(model.layout.count) parameters on \(comm.size) rank(s): \(train.count) examples, " +
                            "global batch \(c.batchSize), \(stepsPerEpoch) steps/epoch, \(totalSteps) steps" +
                            (resumed != nil ? ", resuming after step \(state.step)" : "")))
        }

        // 5. The loop.
        var outcome = RunOutcome.completed
        var permutation = epochPermutation(count: train.count, seed: state.seed, epoch: state.epoch)
        let controlBase = model.layout.count
        var lastSavedStep = resumed == nil ? -1 : state.step
        var lastLogTime = Date()
        // This rank's tokens (examples for tabular data) and compute time since the last log line.
        var localTokens = 0, localComputeSeconds = 0.0
        var examplesSinceLog = 0
        var lossSinceLog = 0.0

        comm.timeout = c.collectiveTimeout
        Preemption.install()
        let reducer = GradientReducer(comm: comm, buffer: model.gradients, parameterCount: model.layout.count,
                                      overlap: c.overlapCommunication, bucketBytes: Int(c.bucketMegabytes * 1_000_000),
                                      shardOptimizer: c.shardOptimizer,
                                      sparse: model.sparseGradientTensors.compactMap { model.layout.spec($0) })
        while state.step < totalSteps && !state.earlyStopped {
            comm.context = "step \(state.step + 1)"
            let globalCount = min(c.batchSize, train.count - state.positionInEpoch)
            let globalStart = state.positionInEpoch
            let global = permutation[globalStart..<(globalStart + globalCount)]
            let costs = global.compactMap { train.cost(of: $0) }
            let local = costs.count == globalCount ? Sharding.balancedSlice(costs: costs, rank: comm.rank, size: comm.size)
                                                    : Sharding.slice(count: globalCount, rank: comm.rank, size: comm.size)
            let indices = permutation[(globalStart + local.lowerBound)..<(globalStart + local.upperBound)]
            let batch = train.batch(indices)
            if let exampleLog {
                exampleLog.write(Data(indices.map { "\(state.epoch) \(state.step + 1) \($0)\n" }.joined().utf8))
            }

            model.gradients.zero()
            // Decisions every rank must share travel in the control slots of the gradient allreduce.
            c.debug.signalIfAsked(rank: comm.rank, step: state.step + 1)
            model.gradients[controlBase + Control.count] = Float(batch.count)
            model.gradients[controlBase + Control.preemptedRanks] = Preemption.requested ? 1 : 0
            reducer.beginStep()
            let computeStart = Date()
            var readyError: Error? = nil
            let stats = model.trainStep(batch, dropoutSeed: state.seed, step: state.step) { offset in
                if readyError == nil { do { try reducer.ready(from: offset) } catch { readyError = error } }
            }
            if let readyError { throw readyError }
            localComputeSeconds += Date().timeIntervalSince(computeStart)
            localTokens += batch.tokenIDs.isEmpty ? batch.count : batch.tokenIDs.count
            c.debug.stallIfAsked(rank: comm.rank, step: state.step + 1)
            let summedFinite = try reducer.finish(nonFiniteSlot: Control.nonFiniteShards)
            let stepLoss = Double(model.gradients[controlBase + Control.lossSum]) / Double(globalCount)
            let preempted = model.gradients[controlBase + Control.preemptedRanks] > 0
            // A NaN or Inf on any rank makes the sum non-finite on every rank alike.
            let nonFinite = !stepLoss.isFinite || !summedFinite
            let lr = schedule.rate(atStep: state.step)
            if nonFinite {
                // Rare path, taken by every rank together: which ranks had the non-finite values.
                let localProblem = !stats.lossSum.isFinite || !reducer.locallyFinite
                var first = [Int64(localProblem ? comm.rank : Int.max)], count = [Int64(localProblem ? 1 : 0)]
                try comm.allreduce(&first, op: .min)
                try comm.allreduce(&count, op: .sum)
                let what = count[0] == 0
                    ? "step \(state.step + 1): the summed gradients overflowed (every rank's own values were finite)"
                    : "step \(state.step + 1): non-finite loss or gradients on rank \(first[0])" + (count[0] > 1 ? " and \(count[0] - 1) other rank(s)" : "")
                if c.onNonFinite == .stop {
                    throw collectiveError("\(what); stopping (checkpoints only ever hold finite weights: resume from the last one). A lower --lr, or --on-nonfinite skip, may help")
                }
                if root {
                    report(.note("\(what): update skipped (--on-nonfinite skip)"))
                    metrics?.append(["type": "skipped", "step": state.step + 1, "reason": "non-finite", "rank": Int(first[0])])
                }
            } else {
                // The allreduced gradient is a sum over the global batch: the optimizer averages it.
                optimizer.step(parameters: model.parameters, gradientsOfShard: reducer.gradientsOfShard,
                               gradientScale: 1 / Float(globalCount), learningRate: lr)
                try reducer.afterUpdate(model.parameters)
            }
            c.debug.perturbIfAsked(model.parameters, rank: comm.rank, step: state.step + 1)

            state.step += 1
            state.positionInEpoch += globalCount
            let epochEnded = state.positionInEpoch >= train.count
            let epochOfStep = state.epoch
            if epochEnded {
                state.epoch += 1
                state.positionInEpoch = 0
                permutation = epochPermutation(count: train.count, seed: state.seed, epoch: state.epoch)
            }

            examplesSinceLog += globalCount
            if stepLoss.isFinite { lossSinceLog += stepLoss * Double(globalCount) }
            let epochFloat = Double(epochOfStep) + (epochEnded ? 1 : Double(state.positionInEpoch) / Double(train.count))
            if state.step % c.logEvery == 0 || state.step == totalSteps {
                // Every rank's throughput, so a straggler shows (a collective all ranks take at log steps).
                let perRank = try comm.allgather(string: String(format: "%.1f", Double(localTokens) / max(localComputeSeconds, 1e-9)))
                localTokens = 0; localComputeSeconds = 0
                if root {
                    let now = Date()
                    let rate = Double(examplesSinceLog) / max(now.timeIntervalSince(lastLogTime), 1e-9)
                    let meanLoss = lossSinceLog / Double(max(examplesSinceLog, 1))
                    metrics?.append(["type": "train", "step": state.step, "epoch": epochFloat, "loss": meanLoss,
                                     "lr": lr, "examples_per_s": rate, "tokens_per_s_by_rank": perRank.map { Double($0) ?? 0 }])
                    report(.step(String(format: "step %d/%d | epoch %.2f | loss %.4f | lr %.3e | %.0f examples/s",
                                        state.step, totalSteps, epochFloat, meanLoss, lr, rate)))
                    lastLogTime = now; examplesSinceLog = 0; lossSinceLog = 0
                }
            }

            // Evaluation and early stopping.
            if let valid, epochEnded || (c.evalEvery > 0 && state.step % c.evalEvery == 0) {
                let result = try Evaluation.run(model: model, data: valid, batchSize: c.evalBatchSize, comm: comm)
                try decideAfterEvaluation(result, state: &state, model: model, epoch: epochFloat, metrics: metrics)
            }

            if c.checkReplicasEvery > 0 && state.step % c.checkReplicasEvery == 0 {
                try checkReplicas(model.parameters, step: state.step)
            }

            let stopNow = c.stopAfterSteps == state.step || preempted
            if (c.saveEvery > 0 && state.step % c.saveEvery == 0) || stopNow {
                try saveCheckpoint(model: model, optimizer: optimizer, state: state)
                lastSavedStep = state.step
            }
            if stopNow && state.step < totalSteps && !state.earlyStopped {
                if preempted {
                    if root { report(.note("preempted (SIGTERM or SIGUSR1): checkpoint of step \(state.step) written; continue with --resume")) }
                    return .preempted
                }
                if root { report(.note("stopped after step \(state.step) as asked (--stop-after-steps); continue with --resume")) }
                return .stoppedAfterSteps
            }
        }
        if state.earlyStopped { outcome = .earlyStopped }

        // 6. The end: a last checkpoint, the final model, a summary.
        if lastSavedStep != state.step {
            try saveCheckpoint(model: model, optimizer: optimizer, state: state)
        }
        try comm.withTimeout(c.ioTimeout) { try comm.agree("writing the final model") {
            guard root else { return }
            try saveModel(model, to: "\(c.outputPath)/final")
            metrics?.append(["type": "end", "step": state.step, "outcome": outcome.rawValue,
                             "best_step": state.bestStep as Any? ?? NSNull(), "best_metric": state.bestMetric as Any? ?? NSNull()])
        } }
        if let test = data.test { try evaluateTest(test, model: model, state: state, metrics: metrics) }
        if root {
            var summary = "finished: \(outcome.rawValue) at step \(state.step)"
            if let best = state.bestStep { summary += String(format: ", best %@ %.4f at step %d (in best/)", c.monitor.rawValue, state.bestMetric ?? .nan, best) }
            report(.note(summary))
        }
        return outcome
    }

    /// The test set, evaluated once with the best model (rank 0 reads best/ and broadcasts it), or
    /// with the final weights when there was no evaluation.
    private func evaluateTest(_ test: ExampleSet, model: FineTunableModel, state: TrainerState, metrics: MetricsLog?) throws {
        let c = configuration
        let useBest = state.bestStep != nil
        try comm.agree("loading best/ for the test set") {
            guard comm.isRoot && useBest else { return }
            try ModelFolder.describe(FolderSource("\(c.outputPath)/best")).loadWeights(into: model, seed: 0)
        }
        if useBest { try comm.broadcast(model.parameters, root: 0) }
        let result = try Evaluation.run(model: model, data: test, batchSize: c.evalBatchSize, comm: comm)
        guard comm.isRoot else { return }
        var line: [String: Any] = ["type": "test", "step": state.step, "model": useBest ? "best" : "final",
                                   "model_step": state.bestStep ?? state.step]
        line.merge(result.fields(prefix: "test")) { a, _ in a }
        metrics?.append(line)
        var text = String(format: "test (%@ model, step %d): test_loss %.4f", useBest ? "best" : "final", state.bestStep ?? state.step, result.loss)
        if let a = result.accuracy { text += String(format: " | test_accuracy %.4f", a) }
        report(.evaluation(text))
    }

    /// An error every rank raises at the same point (its cause was seen by all through a
    /// collective): rank 0 reports it, every rank leaves normally.
    private func collectiveError(_ message: String) -> Error {
        comm.isRoot ? AgreedFailure(underlying: FineTuneError(message)) : PeerFailure(phase: message, rank: 0)
    }

    /// Every rank's parameters must be bitwise identical: compares a checksum across ranks.
    private func checkReplicas(_ parameters: FlatBuffer<Float>, step: Int) throws {
        let sum = parameterChecksum(parameters)
        var range = [sum, -sum]
        try comm.allreduce(&range, op: .max)
        guard range[0] != -range[1] else { return }
        let all = try comm.allgather(string: String(sum))
        let differing = all.enumerated().filter { $0.element != all[0] }.map { "rank \($0.offset)" }
        throw collectiveError("step \(step): the model replicas differ (parameter checksums: \(all.joined(separator: ", ")); \(differing.joined(separator: ", ")) differ from rank 0). " +
                              "A rank computed something else (hardware or library fault); stopping. Resume from the last checkpoint.")
    }

    /// A resumed run must do the same mathematics as the one that wrote the checkpoint.
    private func checkResumable(_ state: TrainerState, train: ExampleSet) throws {
        let now = configuration.mathematicalOptions
        let keys = Set(now.keys).union(state.mathematicalOptions.keys).sorted()
        let changed = keys.filter { now[$0] != state.mathematicalOptions[$0] }
        if !changed.isEmpty {
            let details = changed.map { "--\($0) was \(state.mathematicalOptions[$0] ?? "unset"), now \(now[$0] ?? "unset")" }
            throw FineTuneError("cannot resume: options that change the mathematics differ from the checkpoint's: \(details.joined(separator: "; "))")
        }
        if state.trainExamples != train.count || state.trainFingerprint != train.fingerprint {
            throw FineTuneError("cannot resume: \(configuration.trainPath) is not the training data of the checkpoint (\(state.trainExamples) examples then, \(train.count) now, or their content changed)")
        }
    }

    /// Updates early stopping from an evaluation; rank 0 decides and writes best/, every rank
    /// follows the broadcast decision.
    private func decideAfterEvaluation(_ result: EvaluationResult, state: inout TrainerState, model: FineTunableModel, epoch: Double,
                                       metrics: MetricsLog?) throws {
        let c = configuration
        let value = result.value(of: c.monitor)
        var decision: [Int64] = [0, 0]  // improved, stop
        if comm.isRoot {
            let improved: Bool
            if let best = state.bestMetric {
                improved = c.monitor.maximize ? value > best + c.minDelta : value < best - c.minDelta
            } else { improved = value.isFinite }
            let without = improved ? 0 : state.evaluationsWithoutImprovement + 1
            decision = [improved ? 1 : 0, (c.patience.map { without >= $0 } ?? false) ? 1 : 0]
        }
        try decision.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        if decision[0] == 1 {
            state.bestMetric = value
            state.bestStep = state.step
            state.evaluationsWithoutImprovement = 0
        } else {
            state.evaluationsWithoutImprovement += 1
        }
        state.earlyStopped = decision[1] == 1
        let improved = decision[0] == 1
        try comm.withTimeout(c.ioTimeout) { try comm.agree("writing best/") {
            guard comm.isRoot else { return }
            if improved { try saveModel(model, to: "\(c.outputPath)/best") }
            var line: [String: Any] = ["type": "eval", "step": state.step, "epoch": epoch, "improved": improved]
            line.merge(result.fields(prefix: "val")) { a, _ in a }
            metrics?.append(line)
            var text = String(format: "eval at step %d | val_loss %.4f", state.step, result.loss)
            if let a = result.accuracy { text += String(format: " | val_accuracy %.4f", a) }
            text += improved ? " | best so far, saved best/" : " | no improvement (\(state.evaluationsWithoutImprovement)/\(c.patience.map(String.init) ?? "-"))"
            if state.earlyStopped { text += " | early stopping" }
            report(.evaluation(text))
        } }
    }

    /// Rank 0 writes the checkpoint (atomically) and applies --keep-checkpoints; the other ranks
    /// wait with the I/O allowance instead of the collective timeout.
    private func saveCheckpoint(model: FineTunableModel, optimizer: Optimizer, state: TrainerState) throws {
        let c = configuration
        let moments = try wholeMoments(optimizer)
        try comm.withTimeout(c.ioTimeout) {
            try comm.agree("saving the checkpoint of step \(state.step)") {
                guard comm.isRoot else { return }
                guard allFinite(model.parameters.base, count: model.parameters.count) else {
                    throw FineTuneError("step \(state.step): the weights are not finite; not writing a checkpoint (the previous one is kept)")
                }
                let folder = "\(checkpoints.path)/\(CheckpointFolder.name(step: state.step))"
                try FileManager.default.createDirectory(atPath: checkpoints.path, withIntermediateDirectories: true)
                try Checkpoint.make(model: model, optimizer: optimizer, moments: moments, state: state).write(to: folder, pauseBetweenFiles: c.debug.slowCheckpointSeconds)
                if let keep = c.keepCheckpoints { checkpoints.prune(keep: keep, alsoKeep: state.bestStep) }
            }
        }
    }

    /// The whole optimizer moments for a checkpoint: this rank's own, or (sharded) every rank's
    /// blocks gathered (every rank calls it: it is collective when sharded).
    private func wholeMoments(_ optimizer: Optimizer) throws -> (first: [Float], second: [Float]) {
        func whole(_ part: FlatBuffer<Float>) throws -> [Float] {
            guard part.count > 0 else { return [] }
            // Unsharded, only rank 0 (which writes) needs a copy.
            guard optimizer.shard.count != optimizer.layout.count else { return comm.isRoot ? part.array : [] }
            var all = [Float](repeating: 0, count: optimizer.layout.count)
            all.withUnsafeMutableBufferPointer { $0.baseAddress!.advanced(by: optimizer.shard.lowerBound).update(from: part.base, count: part.count) }
            let counts = (0..<comm.size).map { Sharding.slice(count: optimizer.layout.count, rank: $0, size: comm.size).count }
            try all.withUnsafeMutableBufferPointer { try comm.allgatherInPlace($0, counts: counts) }
            return all
        }
        return (try whole(optimizer.firstMoment), try whole(optimizer.secondMoment))
    }

    /// Rank 0 writes training_config.json and run.json; every rank contributes its host and binding.
    private func recordRun(budget: ThreadBudget, totalSteps: Int, warmup: Int, train: ExampleSet,
                           valid: ExampleSet?, model: FineTunableModel) throws {
        let c = configuration
        let mine = "\(comm.hostName)|\(ThreadBudget.describe(budget.cpus))|\(budget.threads)|\(budget.sharingRanks)|\(budget.source)|\(ProcessInfo.processInfo.processIdentifier)"
        let everyone = try comm.allgather(string: mine)
        try comm.agree("writing run records") {
            guard comm.isRoot else { return }
            let ranks: [[String: Any]] = everyone.enumerated().map { r, line in
                let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                return ["rank": r, "host": f[0], "cpus": f[1], "openblas_threads": Int(f[2]) ?? 0,
                        "ranks_sharing_cpus": Int(f[3]) ?? 0, "threads_from": f[4], "pid": Int(f[5]) ?? 0]
            }
            for entry in ranks {
                report(.note("rank \(entry["rank"]!) on \(entry["host"]!): cpus \(entry["cpus"]!), OpenBLAS threads \(entry["openblas_threads"]!) (from \(entry["threads_from"]!))"))
            }
            let run: [String: Any] = [
                "finetune_dist_commit": Provenance.gitCommit(),
                "swift": Provenance.swiftVersion,
                "mpi_library": comm.libraryVersion,
                "openblas_config": OpenBLAS.config,
                "openblas_core": OpenBLAS.coreName,
                "world_size": comm.size,
                "hosts": Array(Set(ranks.map { $0["host"] as! String })).sorted(),
                "ranks": ranks,
                "started": ISO8601DateFormatter().string(from: Date()),
                "train_examples": train.count,
                "valid_examples": valid?.count ?? 0,
                "parameters": model.layout.count,
            ]
            let runData = try JSONSerialization.data(withJSONObject: run, options: [.prettyPrinted, .sortedKeys])
            try AtomicFiles.write(runData, to: "\(c.outputPath)/run.json")
            let configData = try JSONSerialization.data(withJSONObject: c.jsonObject(totalSteps: totalSteps, warmup: warmup),
                                                        options: [.prettyPrinted, .sortedKeys])
            try AtomicFiles.write(configData, to: "\(c.outputPath)/training_config.json")
        }
    }
}
