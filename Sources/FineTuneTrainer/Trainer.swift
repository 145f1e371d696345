import FineTuneJSON
import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

/// Data-parallel training over a Communicator. Every rank holds a full replica and computes its
/// slice of each global batch; gradients are summed across ranks and every replica takes the same
/// update. Rank 0 evaluates (with the other ranks' help), decides early stopping and writes every
/// file; its decisions reach the other ranks through collectives that all of them call.
public final class Trainer {
    /// The run as asked for. Set-up resolves what it leaves open (the model's default learning rate,
    /// the checkpoint's model folder) into `settings`, which the run uses from then on.
    public let configuration: TrainingConfiguration
    private var settings: TrainingConfiguration
    let comm: Communicator
    let report: (TrainingEvent) -> Void
    /// Rank 0's TensorBoard event file (nil with --no-tensorboard, and on other ranks).
    private var tensorBoard: TensorBoardWriter? = nil
    /// Called around each step and checkpoint (fault-injection tests); nil: nothing.
    public var hooks: TrainingHooks? = nil
    /// Rank 0's lock on the output folder, held for the run's life.
    private var folderLock: RunFolderLock? = nil
    /// Token cache entries this run built (rank 0), removed again if set-up fails.
    private var builtCacheEntries: [String] = []

    /// `report` sees every event on rank 0 (the CLI prints `consoleLine`); metrics.jsonl gets the records.
    public init(configuration: TrainingConfiguration, communicator: Communicator, report: @escaping (TrainingEvent) -> Void) {
        self.configuration = configuration
        self.settings = configuration
        self.comm = communicator
        self.report = report
    }

    /// Everything a run holds once it is set up.
    final class Session {
        let bundle: ModelBundle
        let data: DataLoading.Loaded
        /// One optimizer step's work; rebuilt when gradual unfreezing widens the trainable parameters.
        var trainingStep: TrainingStep
        /// The position in the run (`state.step`: optimizer steps done) and what a checkpoint records.
        var state: TrainerState
        let plan: RunPlan
        var schedule: LearningRateSchedule { plan.schedule }
        var stepsPerEpoch: Int { plan.stepsPerEpoch }
        var totalSteps: Int { plan.totalSteps }
        let metrics: MetricsLog?
        let checkpoints: CheckpointManager
        let earlyStopping: EarlyStopping
        var permutation: EpochOrder
        var lastSavedStep: Int
        /// When the last checkpoint was written (or the run started): --save-every-minutes counts from it.
        var lastSaveTime = Date()
        /// A step without any masked token was said once.
        var saidNoMaskedStep = false, saidNoMaskedEvaluation = false
        var meter = ThroughputMeter()
        let exampleLog: FileHandle?
        /// --train-eval-examples: the fixed training subset evaluated beside validation.
        let trainEvalSubset: [Int]?
        /// Rank 0: the evaluations so far, for the end-of-run hint.
        var history: [FitHistory.Point] = []
        var lastTrainLoss: Double? = nil
        /// The step of the last evaluation (a run that ends between evaluations evaluates once more).
        var lastEvaluatedStep: Int? = nil
        var model: FineTunableModel { bundle.model }

        init(bundle: ModelBundle, data: DataLoading.Loaded, trainingStep: TrainingStep, state: TrainerState, plan: RunPlan, logs: Logs,
             checkpoints: CheckpointManager, earlyStopping: EarlyStopping, trainEvalSubset: [Int]?) {
            self.bundle = bundle; self.data = data; self.trainingStep = trainingStep; self.state = state; self.plan = plan
            self.metrics = logs.metrics; self.exampleLog = logs.examples; self.checkpoints = checkpoints; self.earlyStopping = earlyStopping
            self.trainEvalSubset = trainEvalSubset
            lastSavedStep = state.step > 0 ? state.step : -1
            permutation = EpochOrder(count: data.train.count, seed: state.seed, epoch: state.epoch)
        }
    }

    /// Throughput since the last training line: this rank's work and compute time, the global
    /// examples and the loss of the steps whose loss was finite.
    struct ThroughputMeter {
        var localWork = 0, localSeconds = 0.0
        var examples = 0, finiteExamples = 0, lossSum = 0.0
        var since = Date()
        /// Bytes this rank put into collectives in the last step.
        var bytesExchanged = 0
        /// The gradient norms (before clipping) of the steps since the last line, when clipping.
        var gradientNorms: [Double] = []
    }

    /// Rank 0: to metrics.jsonl (events with a record) and to the caller.
    func emit(_ event: TrainingEvent, to metrics: MetricsLog?) throws {
        guard comm.isRoot else { return }
        if let record = event.record { try metrics?.append(record) }
        if let tensorBoard, let (step, scalars) = event.tensorBoardScalars { try tensorBoard.scalars(scalars, step: step) }
        report(event)
    }

    @discardableResult
    public func run() throws -> RunOutcome {
        // A run that fails before writing anything leaves no empty output folder behind.
        let outputExisted = FileManager.default.fileExists(atPath: configuration.outputPath)
        let session: Session
        do { session = try setUp() } catch {
            folderLock?.release()
            folderLock = nil
            // Nor token cache entries it built in --output (a --cache-dir elsewhere keeps them).
            let ownCache = "\(configuration.outputPath)/token-cache"
            if comm.isRoot && configuration.cacheDir == nil {
                for entry in builtCacheEntries { try? FileManager.default.removeItem(atPath: entry) }
                if (try? FileManager.default.contentsOfDirectory(atPath: ownCache))?.isEmpty == true { try? FileManager.default.removeItem(atPath: ownCache) }
                if !builtCacheEntries.isEmpty {
                    report(.note("removed the token cache entries this failed run built in --output (a --cache-dir, or `finetune-dist tokenize`, keeps them across runs)"))
                }
            }
            if comm.isRoot && !outputExisted, (try? FileManager.default.contentsOfDirectory(atPath: configuration.outputPath))?.isEmpty == true {
                try? FileManager.default.removeItem(atPath: configuration.outputPath)
            }
            throw error
        }
        defer { folderLock?.release(); folderLock = nil }
        let outcome = try trainLoop(session)
        if outcome == .preempted || outcome == .stoppedAfterSteps { return outcome }
        try finish(session, outcome: outcome)
        return outcome
    }

    // MARK: Set-up

    /// The starting point every rank agrees on: a checkpoint to resume, or a model folder.
    struct Start {
        /// What rank 0 read and broadcast: a checkpoint's files, or the folder's config and tokenizer.
        let received: Checkpoint
        /// The checkpoint resumed (nil for a fresh run) and its state.
        let resumed: Checkpoint?
        let resumedState: TrainerState?
        /// The model, described from `files` on every rank.
        let description: ModelDescription
        /// Rank 0, a fresh run: the model folder itself (its weights are read from there).
        let folder: ModelDescription?
    }

    /// The run's length and learning rates.
    struct RunPlan {
        let stepsPerEpoch: Int, totalSteps: Int, warmupSteps: Int
        let schedule: LearningRateSchedule
    }

    /// Rank 0's records (metrics.jsonl) and the test-only example log of every rank.
    struct Logs {
        let metrics: MetricsLog?
        let examples: FileHandle?
    }

    private func setUp() throws -> Session {
        let checkpoints = CheckpointManager(outputPath: settings.outputPath, comm: comm, ioTimeout: settings.ioTimeout,
                                            keep: settings.keepCheckpoints, pauseBetweenFiles: hooks?.pauseBetweenCheckpointFiles ?? 0)
        let start = try readStart(checkpoints: checkpoints)
        // `--resume` without --model: the run's own model, as the checkpoint recorded it.
        if settings.modelPath.isEmpty, let started = start.resumedState?.modelPath { settings.modelPath = started }
        let data = try loadData(start)
        try checkFit(start.description)
        let bundle = try buildModel(start, data: data)
        let model = bundle.model
        // Gradual unfreezing: what trains depends on the epoch the run starts in.
        let controls = try comm.agree("applying the fine-tuning controls") {
            try applyControls(to: model, data: data, epoch: start.resumedState?.epoch ?? 0)
        }
        // The default learning rate depends on the model: from here on it is the one in use.
        settings.learningRate = controls.learningRate
        let trainingStep = makeStep(model, learningRateScales: controls.rateScales)
        let state = try restoreState(start, bundle: bundle, data: data, optimizer: trainingStep.optimizer)
        let plan = try makePlan(data: data, learningRate: controls.learningRate)
        let budget = try ThreadBudget.apply(comm)
        let record = TrainingConfigurationRecord.Resolved(
            stepsPerEpoch: plan.stepsPerEpoch, totalSteps: plan.totalSteps, warmupSteps: plan.warmupSteps, learningRate: controls.learningRate,
            trainableParameters: model.trainableRange.count, parameters: model.layout.count, dropout: controls.dropouts.0,
            attentionDropout: controls.dropouts.1, classifierDropout: controls.dropouts.2, classWeights: model.objective.classWeights)
        try recordRun(budget: budget, resolved: record, data: data, model: model)
        let logs = try openLogs(resumedAfter: start.resumed == nil ? nil : state.step)
        let c = settings
        let trainable = model.trainableRange.count == model.layout.count ? "\(model.layout.count) parameters"
            : "\(model.trainableRange.count) of \(model.layout.count) parameters (" +
              (model.lora.map { "LoRA r \($0.rank) on \($0.targets.map(\.rawValue).joined(separator: ",")), the base frozen" }
                ?? bundle.decoderModel?.decoderLoRA.map { "LoRA r \($0.rank) on \($0.targets.map(\.rawValue).joined(separator: ",")), the base frozen" }
                ?? "frozen: \(c.freeze.description)") + ")"
        try emit(.started("training \(trainable) on \(comm.size) rank(s): \(data.train.count) examples, " +
                          "global batch \(c.batchSize)\(c.gradAccum > 1 ? " in \(c.gradAccum) micro-batches per rank" : ""), " +
                          "\(plan.stepsPerEpoch) steps/epoch, \(plan.totalSteps) steps, lr \(controls.learningRate)" +
                          (start.resumed != nil ? ", resuming after step \(state.step)" : "")), to: logs.metrics)
        comm.timeout = c.collectiveTimeout
        Preemption.install(announce: comm.isRoot)
        return Session(bundle: bundle, data: data, trainingStep: trainingStep, state: state, plan: plan, logs: logs, checkpoints: checkpoints,
                       earlyStopping: EarlyStopping(monitor: c.monitor, patience: c.patience, minDelta: c.minDelta),
                       trainEvalSubset: c.trainEvalExamples > 0
                           ? Array(EpochOrder(count: data.train.count, seed: combineKey(c.seed, 0x7EA1), epoch: 0)[0..<min(c.trainEvalExamples, data.train.count)]).sorted()
                           : nil)
    }

    /// Rank 0 guards the output folder and reads the starting point (checkpoint, or the model
    /// folder's config and tokenizer); every rank gets those bytes and describes the same model.
    private func readStart(checkpoints: CheckpointManager) throws -> Start {
        let c = settings
        var folder: ModelDescription? = nil
        let startBytes: [UInt8] = try comm.agree("reading the starting point") {
            guard comm.isRoot else { return [] }
            try RunFolder.checkPlacement(output: c.outputPath, model: c.modelPath, overwrite: c.overwrite)
            try AtomicFiles.createFolder(c.outputPath, option: "--output")
            // One run at a time in a folder; a fresh run does not replace an earlier one unasked.
            self.folderLock = try RunFolderLock(folder: c.outputPath)
            if c.resume == .off {
                try RunFolder.prepareFresh(c.outputPath, overwrite: c.overwrite, newestCheckpoint: checkpoints.newestStep,
                                           note: { self.report(.note($0)) })
            }
            if let checkpoint = try checkpoints.findResume(c.resume, outputPath: c.outputPath, note: { self.report(.note($0)) }) {
                return checkpoint.archive()
            }
            let description = try ModelFolder.describe(FolderSource(c.modelPath), pooling: c.pooling)
            folder = description
            return Checkpoint(files: try description.resolvedFiles()).archive()
        }
        let files = try Checkpoint(archive: comm.broadcast(bytes: startBytes, root: 0))
        // Only a checkpoint carries trainer_state.json (--resume auto may have found none).
        let resumed: Checkpoint? = files.files["trainer_state.json"] != nil ? files : nil
        let resumedState = try comm.agree("reading the checkpoint's state") { try resumed?.state() }
        let name = resumed == nil ? c.modelPath : "checkpoint"
        let description = try comm.agree("reading the model configuration") {
            try ModelFolder.describe(MemorySource(files.files, name: name), pooling: c.pooling)
        }
        return Start(received: files, resumed: resumed, resumedState: resumedState, description: description, folder: folder)
    }

    /// Every rank loads the data (inputs are read where they are); a model without a head takes its
    /// task and labels from the training data.
    private func loadData(_ start: Start) throws -> DataLoading.Loaded {
        let c = settings
        let data = try comm.agree("loading data") { () -> DataLoading.Loaded in
            let tokenCache = c.tokenCache ? TokenCacheSettings(folder: c.cacheDir ?? "\(c.outputPath)/token-cache", comm: comm,
                                                               note: { self.report(.note($0)) }, built: { self.builtCacheEntries.append($0) }) : nil
            let loaded = try DataLoading.load(train: c.trainPath, valid: c.validPath, test: c.testPath, for: start.description, maxLength: c.maxLength,
                                            pooling: c.pooling, taskChoice: c.taskChoice, tokenCache: tokenCache)
            let available = MonitoredMetric.available(for: loaded.task)
            if !available.contains(c.monitor) {
                let kind = loaded.task == .regression ? "regression model" : loaded.task == .maskedLanguageModel ? "masked-language model"
                    : loaded.task == .causalLanguageModel ? "causal language model"
                    : loaded.task == .embedding ? "sentence-embedding model" : "classifier"
                throw FineTuneError("--monitor \(c.monitor.rawValue) is not a metric of a \(kind) (use \(available.map(\.rawValue).joined(separator: ", ")))")
            }
            if loaded.task.labels == nil && (c.labelSmoothing > 0 || c.classWeights != nil) {
                throw FineTuneError("--label-smoothing and --class-weights need a classifier; this is a \(loaded.task == .regression ? "regression" : loaded.task == .causalLanguageModel ? "causal language" : "masked-language") model")
            }
            return loaded
        }
        if comm.isRoot {
            if case .bert(let bert) = start.description.kind, start.resumed == nil { bert.notices.forEach { report(.note($0)) } }
            data.notices.forEach { report(.note($0)) }
        }
        return data
    }

    /// Options that do not fit the model or the rank count (every rank finds the same).
    private func checkFit(_ description: ModelDescription) throws {
        let c = settings
        if c.lora != nil, case .mlp = description.kind {
            throw collectiveError("LoRA adapts the linear layers of a BERT encoder; this model is an MLP (train it whole, or freeze with --freeze-layers)")
        }
        if let size = c.miniBatchSize, size > (c.batchSize + comm.size - 1) / comm.size {
            throw collectiveError("--mini-batch-size \(size) is above each rank's share of the global batch (--batch-size \(c.batchSize) over " +
                                  "\(comm.size) rank(s): at most \((c.batchSize + comm.size - 1) / comm.size) examples); give at most that, or a larger --batch-size")
        }
        if c.gradAccum > 1 && c.gradAccum > c.batchSize / comm.size {
            let share = c.batchSize / comm.size
            throw collectiveError("--grad-accum \(c.gradAccum) would split each rank's share of the global batch (--batch-size \(c.batchSize) over " +
                                  "\(comm.size) rank(s): \(share) example(s)) into \(c.gradAccum) micro-batches; give at most \(max(1, share)), or a larger --batch-size")
        }
        if c.lora != nil, case .decoder = description.kind {
            do { _ = try c.decoderLoRA() } catch { throw collectiveError("\(error) (this model is a decoder)") }
        }
        if c.lora != nil, case .bert = description.kind, let text = c.loraTargetsText {
            do { _ = try LoRATarget.parse(text) } catch { throw collectiveError("\(error) (this model is an encoder)") }
        }
        if let lora = c.lora, case .bert(let bert) = description.kind {
            let h = bert.config.hiddenSize, i = bert.config.intermediateSize
            for target in lora.targets {
                let (inputs, outputs) = target == .intermediate ? (h, i) : target == .output ? (i, h) : (h, h)
                if lora.rank * (inputs + outputs) >= inputs * outputs {
                    throw collectiveError("--lora-rank \(lora.rank): the adapter of \(target.rawValue) (\(lora.rank) x (\(inputs) + \(outputs)) parameters) " +
                                          "is not smaller than the \(inputs) x \(outputs) weight it adapts; LoRA pays with a rank far below the " +
                                          "layer's width \(min(inputs, outputs)) (PEFT's default is 8), or train the model whole without --lora-rank")
                }
            }
        }
    }

    /// The model (weights not yet read) for the data's task, with the LoRA settings asked for or
    /// those a PEFT adapter / a LoRA run's checkpoint comes with.
    private func buildModel(_ start: Start, data: DataLoading.Loaded) throws -> ModelBundle {
        let c = settings
        let given = try start.received.files["adapter_config.json"].map { try PeftAdapter.parseConfig($0, path: "\(c.modelPath)/adapter_config.json") }
        if let wanted = c.lora, let given = given?.lora, wanted != given {
            throw collectiveError("\(start.resumed == nil ? c.modelPath : "the checkpoint") is a LoRA adapter with r \(given.rank), alpha \(given.alpha), " +
                                  "targets \(given.targets.map(\.rawValue).joined(separator: ",")); the --lora-* options ask for another: drop them to continue it")
        }
        if case .decoder(let d) = start.description.kind, let recorded = d.lora, let wanted = try c.decoderLoRA(), wanted != recorded {
            throw collectiveError("the checkpoint is of a LoRA run with r \(recorded.rank), alpha \(recorded.alpha), targets " +
                                  "\(recorded.targets.map(\.rawValue).joined(separator: ",")); the --lora-* options ask for another: drop them to continue it")
        }
        var decoderLoRA: DecoderLoRA? = nil
        if case .decoder = start.description.kind { decoderLoRA = try c.decoderLoRA() }
        let bundle = start.description.build(task: data.task, lora: c.lora ?? given?.lora, decoderLoRA: decoderLoRA)
        bundle.baseModelPath = given?.basePath ?? c.modelPath
        if let maxLength = data.maxLength { bundle.maxLength = maxLength }
        if data.task == .maskedLanguageModel {
            try comm.agree("reading the vocabulary for masking") { try bundle.enableMasking(probability: c.mlmProbability, wholeWord: c.wholeWordMask) }
        }
        return bundle
    }

    /// The starting weights and state: the checkpoint's (on every rank, from the broadcast bytes),
    /// or the folder's weights, read by rank 0 and broadcast.
    private func restoreState(_ start: Start, bundle: ModelBundle, data: DataLoading.Loaded, optimizer: Optimizer) throws -> TrainerState {
        let c = settings
        var state = start.resumedState ?? TrainerState()
        try comm.agree("restoring state") {
            if let resumed = start.resumed {
                try start.description.loadWeights(into: bundle, seed: 0)
                try checkResumable(state, train: data.train)
                state.mathematicalOptions = c.mathematicalOptions  // changes the user accepted stay accepted
                let freezeChanged = !Set(c.acceptChanged).isDisjoint(with: ["freeze", "freeze-layers", "train-only", "unfreeze-every"])
                try resumed.restore(optimizer: optimizer, unfrozenSinceCheckpoint: freezeChanged)
            } else {
                state.seed = c.seed
                state.mathematicalOptions = c.mathematicalOptions
                state.trainExamples = data.train.count
                state.trainFingerprint = data.train.fingerprint
                state.modelPath = Self.absolutePath(c.modelPath)
                if comm.isRoot { try start.folder!.loadWeights(into: bundle, seed: c.seed) }
            }
        }
        if start.resumed == nil { try comm.broadcast(bundle.model.parameters, root: 0) }
        return state
    }

    /// Steps per epoch, the run's length, warm-up and the learning-rate schedule.
    private func makePlan(data: DataLoading.Loaded, learningRate: Double) throws -> RunPlan {
        let c = settings
        let stepsPerEpoch = (data.train.count + c.batchSize - 1) / c.batchSize
        let totalSteps = min(c.epochs * stepsPerEpoch, c.maxSteps ?? Int.max)
        let warmup = c.warmupSteps ?? Int((c.warmupRatio * Double(totalSteps)).rounded(.up))
        if let steps = c.warmupSteps, steps >= totalSteps {
            throw collectiveError("--warmup-steps \(steps) is not shorter than the run (\(totalSteps) steps): the learning rate would never reach --lr")
        }
        if c.schedule == .polynomial && c.lrEnd >= learningRate {
            throw collectiveError("--lr-end \(c.lrEnd) is not below the peak learning rate \(learningRate): the polynomial schedule decays from --lr to --lr-end")
        }
        return RunPlan(stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps, warmupSteps: warmup,
                       schedule: LearningRateSchedule(kind: c.schedule, peak: learningRate, warmupSteps: warmup, totalSteps: totalSteps,
                                                      end: c.lrEnd, power: c.lrPower))
    }

    /// metrics.jsonl and the TensorBoard event file (rank 0; a resumed run drops what came after its
    /// checkpoint), and the test-only example log.
    private func openLogs(resumedAfter step: Int?) throws -> Logs {
        let c = settings
        let metrics: MetricsLog? = try comm.agree("opening metrics.jsonl") {
            comm.isRoot ? try MetricsLog(path: "\(c.outputPath)/metrics.jsonl", keepThroughStep: step) : nil
        }
        tensorBoard = try comm.agree("opening the TensorBoard event file") {
            comm.isRoot && c.tensorBoard ? try TensorBoardWriter(folder: "\(c.outputPath)/tensorboard", resumingAtStep: step.map { $0 + 1 }) : nil
        }
        let examples = try c.exampleLogFolder.map { folder -> FileHandle in
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let path = "\(folder)/rank-\(comm.rank).txt"
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            guard let h = FileHandle(forWritingAtPath: path) else { throw FineTuneError("\(path): cannot open for writing") }
            h.seekToEndOfFile()
            return h
        }
        return Logs(metrics: metrics, examples: examples)
    }

    /// What `applyControls` resolved.
    struct ResolvedControls {
        var learningRate: Double
        var rateScales: [Double]
        var dropouts: (Double?, Double?, Double?)
    }

    /// The fine-tuning controls applied to a freshly built model: dropout, the training objective,
    /// which parameters train; returns the learning rate and per-tensor rate factors.
    private func applyControls(to model: FineTunableModel, data: DataLoading.Loaded, epoch: Int) throws -> ResolvedControls {
        let c = settings
        var rates = model.dropout
        if model.task == .causalLanguageModel && (c.hiddenDropout != nil || c.attentionDropout != nil || c.classifierDropout != nil) {
            throw FineTuneError("--dropout, --attention-dropout and --classifier-dropout apply to encoders and MLPs; a Llama-architecture decoder has no dropout (LoRA's is --lora-dropout)")
        }
        if (c.attentionDropout != nil && rates.attention == nil) || (c.classifierDropout != nil && rates.classifier == nil) {
            throw FineTuneError("--attention-dropout and --classifier-dropout apply to BERT models; an MLP has --dropout only")
        }
        if let p = c.hiddenDropout { rates.hidden = p }
        if let p = c.attentionDropout { rates.attention = p }
        if let p = c.classifierDropout { rates.classifier = p }
        model.dropout = rates
        let dropouts = (Optional(rates.hidden), rates.attention, rates.classifier)
        model.objective.labelSmoothing = c.labelSmoothing
        if let weights = c.classWeights, let labels = model.task.labels {
            model.objective.classWeights = try weights.resolve(counts: labelCounts(data.train, classes: labels.count), labels: labels)
        }
        model.trainableFrom = try c.freeze.trainableFrom(model.parameterGroups, epoch: epoch)
        // Layer-wise decay: the head at the full rate, each group below it `decay` times the one above.
        var scales = [Double](repeating: 1, count: model.layout.tensors.count)
        if let decay = c.layerLRDecay {
            let groups = model.parameterGroups
            for (i, spec) in model.layout.tensors.enumerated() {
                let g = groups.firstIndex { $0.range.contains(spec.offset) }!
                scales[i] = Foundation.pow(decay, Double(groups.count - 1 - g))
            }
        }
        return ResolvedControls(learningRate: c.learningRate ?? model.defaultLearningRate, rateScales: scales, dropouts: dropouts)
    }

    /// Examples of each class in the training data.
    private func labelCounts(_ train: ExampleSet, classes: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: classes)
        var start = 0
        while start < train.count {
            let end = min(train.count, start + 4096)
            for t in train.batch(Array(start..<end)[...]).classTargets { counts[Int(t)] += 1 }
            start = end
        }
        return counts
    }

    /// A training step over the model's trainable parameters.
    private func makeStep(_ model: FineTunableModel, learningRateScales: [Double]) -> TrainingStep {
        let step = TrainingStep(model: model, optimizer: settings.optimizer, comm: comm, exchange: settings.exchange,
                                maxGradientNorm: settings.maxGradNorm)
        step.optimizer.rateScales = learningRateScales
        return step
    }

    /// Gradual unfreezing at an epoch boundary: when more groups train from `epoch` on, a new step
    /// over them takes over the optimizer state (the new tensors start with none).
    private func unfreezeIfDue(_ s: Session) throws {
        guard settings.freeze.unfreezeEvery != nil else { return }
        let from = try settings.freeze.trainableFrom(s.model.parameterGroups, epoch: s.state.epoch)
        guard from != s.model.trainableFrom else { return }
        let old = s.trainingStep
        let whole = try old.optimizer.moments.map { part -> [Float] in
            guard let shards = old.exchange.shards else { return part.array }
            var whole = [Float](repeating: 0, count: old.optimizer.trainable.count)
            let mine = shards[comm.rank]
            try whole.withUnsafeMutableBufferPointer { buffer in
                (buffer.baseAddress! + (mine.lowerBound - old.optimizer.trainable.lowerBound)).update(from: part.base, count: part.count)
                try comm.allgatherInPlace(buffer, counts: shards.counts)
            }
            return whole
        }
        s.model.trainableFrom = from
        s.trainingStep = makeStep(s.model, learningRateScales: old.optimizer.rateScales)
        s.trainingStep.optimizer.continueFrom(old.optimizer, otherWhole: whole)
        try emit(.note("epoch \(s.state.epoch): unfreezing; \(s.model.trainableRange.count) of \(s.model.layout.count) parameters train now"),
                 to: s.metrics)
    }

    /// A path as recorded in checkpoints: absolute, symbolic links resolved.
    static func absolutePath(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }

    /// A resumed run must start from the same model and do the same mathematics as the one that
    /// wrote the checkpoint.
    private func checkResumable(_ state: TrainerState, train: ExampleSet) throws {
        if let started = state.modelPath, !settings.modelPath.isEmpty, started != Self.absolutePath(settings.modelPath),
           !settings.acceptChanged.contains("model") {
            throw FineTuneError("cannot resume: this run started from --model \(started), not \(settings.modelPath); a resumed run " +
                                "continues its checkpoint and never reads --model, so pass the run's own --model, start a new run " +
                                "(another --output), or say --accept-changed model if the folder only moved")
        }
        let now = settings.mathematicalOptions
        let keys = Set(now.keys).union(state.mathematicalOptions.keys).sorted()
        let changed = keys.filter { now[$0] != state.mathematicalOptions[$0] && !settings.acceptChanged.contains($0) }
        if !changed.isEmpty {
            let details = changed.map { "--\($0) was \(state.mathematicalOptions[$0] ?? "unset"), now \(now[$0] ?? "unset")" }
            throw FineTuneError("cannot resume: options that change the mathematics differ from the checkpoint's: \(details.joined(separator: "; ")) " +
                                "(to continue anyway, say so: --accept-changed \(changed.joined(separator: ",")))")
        }
        let then = state.trainFingerprint
        if !then.isEmpty, then.hasPrefix("cache:") != train.fingerprint.hasPrefix("cache:") {
            let cached = then.hasPrefix("cache:")
            throw FineTuneError("cannot resume: the checkpoint's run read \(settings.trainPath) \(cached ? "through" : "without") the token cache; " +
                                "resume it the same way (\(cached ? "without --no-token-cache" : "--no-token-cache"))")
        }
        if state.trainExamples != train.count || state.trainFingerprint != train.fingerprint {
            throw FineTuneError("cannot resume: \(settings.trainPath) is not the training data of the checkpoint (\(state.trainExamples) examples then, \(train.count) now, or their content changed)")
        }
    }

    /// Rank 0 writes training_config.json and run.json; every rank contributes its host and binding.
    private func recordRun(budget: ThreadBudget, resolved: TrainingConfigurationRecord.Resolved, data: DataLoading.Loaded,
                           model: FineTunableModel) throws {
        let c = settings
        let ranks = try RankRecord.gather(budget: budget, comm: comm)
        try comm.agree("writing run records") {
            guard comm.isRoot else { return }
            for r in ranks {
                report(.note("rank \(r.rank) on \(r.host): cpus \(r.cpus), OpenBLAS threads \(r.openblasThreads) (from \(r.threadsFrom))"))
            }
            RankRecord.blasLines(ranks).forEach { report(.note($0)) }
            if let warning = BLASSetup.selection.warning { report(.note("warning: \(warning)")) }
            let run = RunRecord(finetuneDistCommit: Provenance.gitCommit(), swift: Provenance.swiftVersion, mpiLibrary: comm.libraryVersion,
                                openblasConfig: OpenBLAS.config, openblasCore: OpenBLAS.coreName, blas: BLASSetup.selection, worldSize: comm.size,
                                hosts: Array(Set(ranks.map(\.host))).sorted(), ranks: ranks,
                                started: ISO8601DateFormatter().string(from: Date()), trainExamples: data.train.count,
                                validExamples: data.valid?.count ?? 0, parameters: model.layout.count,
                                trainableParameters: model.trainableRange.count, frozen: c.freeze.description, lora: model.lora)
            try AtomicFiles.write(try prettyJSON(run), to: "\(c.outputPath)/run.json")
            let record = TrainingConfigurationRecord(options: c, resolved: resolved, commandLine: c.commandLine)
            try AtomicFiles.write(try prettyJSON(record), to: "\(c.outputPath)/training_config.json")
        }
    }

    // MARK: The loop

    private func trainLoop(_ s: Session) throws -> RunOutcome {
        let c = settings
        let train = s.data.train
        while s.state.step < s.totalSteps && !s.state.earlyStopped {
            let stepNumber = s.state.step + 1
            comm.context = "step \(stepNumber)"
            // The next global batch of the epoch's order, and this rank's slice of it.
            let globalStart = s.state.positionInEpoch
            let globalCount = min(c.batchSize, train.count - globalStart)
            let global = s.permutation[globalStart..<(globalStart + globalCount)]
            let costs = global.compactMap { train.cost(of: $0) }
            let slice = { (rank: Int) in costs.count == globalCount ? Sharding.balancedSlice(costs: costs, rank: rank, size: self.comm.size)
                                                                    : Sharding.slice(count: globalCount, rank: rank, size: self.comm.size) }
            let local = slice(comm.rank)
            let indices = s.permutation[(globalStart + local.lowerBound)..<(globalStart + local.upperBound)]
            let contrastive = s.model.task == .embedding
            let microBatches = contrastive ? miniBatches(indices, of: train) : self.microBatches(indices, of: train)
            s.exampleLog?.write(Data(indices.map { "\(s.state.epoch) \(stepNumber) \($0)\n" }.joined().utf8))

            hooks?.beforeStep(stepNumber, rank: comm.rank)
            let lr = s.schedule.rate(atStep: s.state.step)
            // Rank 0's clock decides a checkpoint by time; the exchange tells every rank.
            let checkpointDue = comm.isRoot && c.saveEveryMinutes > 0 && Date().timeIntervalSince(s.lastSaveTime) >= c.saveEveryMinutes * 60
            let outcome = contrastive
                ? try s.trainingStep.run(contrastive: .init(miniBatches: microBatches, examplesByRank: (0..<comm.size).map { slice($0).count },
                                                            columns: train.textsPerExample),
                                         loss: ContrastiveLoss(scale: Float(c.contrastiveScale), symmetric: c.symmetric), dropoutSeed: s.state.seed,
                                         step: s.state.step, learningRate: lr, preempted: Preemption.requested, checkpoint: checkpointDue)
                : try s.trainingStep.run(microBatches: microBatches, dropoutSeed: s.state.seed, step: s.state.step, learningRate: lr,
                                         preempted: Preemption.requested, checkpoint: checkpointDue)
            if !outcome.updated {
                if outcome.exchanged.examples == 0 && outcome.exchanged.finite {
                    // Masked-language modelling with so little text that no token of the global batch was
                    // masked: no loss to average, nothing to learn; the step counts, the weights stay.
                    if !s.saidNoMaskedStep {
                        try emit(.note("step \(stepNumber): no token of the global batch was masked, so the step has no loss and the weights " +
                                       "stay as they were (said once; longer texts, a larger --max-length or --batch-size make this rare)"), to: s.metrics)
                        s.saidNoMaskedStep = true
                    }
                } else {
                    try nonFiniteStep(s, outcome: outcome, step: stepNumber)
                }
            }
            hooks?.afterStep(stepNumber, rank: comm.rank, parameters: s.model.parameters)

            // Advance the global data cursor.
            s.state.step += 1
            s.state.positionInEpoch += globalCount
            let epochEnded = s.state.positionInEpoch >= train.count
            let epochOfStep = s.state.epoch
            if epochEnded {
                s.state.epoch += 1
                s.state.positionInEpoch = 0
                s.permutation = EpochOrder(count: train.count, seed: s.state.seed, epoch: s.state.epoch)
                try unfreezeIfDue(s)
            }
            let epoch = Double(epochOfStep) + (epochEnded ? 1 : Double(s.state.positionInEpoch) / Double(train.count))

            s.meter.localWork += microBatches.reduce(0) { $0 + $1.workUnits }
            s.meter.bytesExchanged = s.trainingStep.exchange.floatsExchanged * MemoryLayout<Float>.stride
            if let norm = outcome.gradientNorm { s.meter.gradientNorms.append(norm) }
            s.meter.localSeconds += outcome.timings.forward + outcome.timings.backward
            s.meter.examples += globalCount
            if outcome.updated { s.meter.finiteExamples += globalCount; s.meter.lossSum += outcome.loss * Double(globalCount) }
            try emit(.stepFinished(step: s.state.step, totalSteps: s.totalSteps, epoch: epoch,
                                   loss: outcome.updated ? outcome.loss : nil), to: nil)
            if s.state.step % c.logEvery == 0 || s.state.step == s.totalSteps { try logProgress(s, epoch: epoch, lr: lr) }

            if s.data.valid != nil && (epochEnded || (c.evalEvery > 0 && s.state.step % c.evalEvery == 0)) {
                try evaluate(s, epoch: epoch)
            }
            if c.checkReplicasEvery > 0 && s.state.step % c.checkReplicasEvery == 0, let mismatch = try replicaMismatch(s.model.parameters, comm: comm) {
                throw collectiveError("step \(s.state.step): the model replicas differ (\(mismatch)). " +
                                      "A rank computed something else (hardware or library fault); stopping. Resume from the last checkpoint.")
            }

            let stopNow = c.stopAfterSteps == s.state.step || outcome.exchanged.preempted
            // By steps, by time (rank 0's request, known to all), at epoch ends, and before stopping.
            if (c.saveEvery > 0 && s.state.step % c.saveEvery == 0) || outcome.exchanged.checkpointRequested
                || (c.saveEachEpoch && epochEnded) || stopNow {
                try s.checkpoints.save(model: s.bundle, optimizer: s.trainingStep.optimizer, shards: s.trainingStep.exchange.shards, state: s.state)
                s.lastSavedStep = s.state.step
                s.lastSaveTime = Date()
            }
            if stopNow && s.state.step < s.totalSteps && !s.state.earlyStopped {
                if outcome.exchanged.preempted {
                    try emit(.note("stopped by \(Preemption.signalName ?? "a signal to another rank"): checkpoint of step \(s.state.step) written; continue with --resume"), to: s.metrics)
                    return .preempted
                }
                try emit(.note("stopped after step \(s.state.step) as asked (--stop-after-steps); continue with --resume"), to: s.metrics)
                return .stoppedAfterSteps
            }
        }
        return s.state.earlyStopped ? .earlyStopped : .completed
    }

    /// A step whose loss or summed gradients were not finite (the same verdict on every rank): find
    /// which ranks, then stop or skip as the policy says.
    private func nonFiniteStep(_ s: Session, outcome: TrainingStep.Outcome, step: Int) throws {
        let localProblem = !outcome.local.lossSum.isFinite || !s.trainingStep.exchange.locallyFinite
        let report = try NonFiniteReport.gather(localProblem: localProblem, comm: comm)
        if settings.onNonFinite == .stop {
            throw collectiveError("\(report.describe(step: step)); stopping (checkpoints only ever hold finite weights: resume from the last one). " +
                                  "A lower --lr, or --on-nonfinite skip, may help")
        }
        try emit(.skipped(SkippedStep(step: step, report: report)), to: s.metrics)
    }

    /// Every rank's throughput (a collective at log steps), and rank 0's training line.
    private func logProgress(_ s: Session, epoch: Double, lr: Double) throws {
        let m = s.meter
        let perRank = try comm.allgather(string: String(format: "%.1f", Double(m.localWork) / max(m.localSeconds, 1e-9)))
        let now = Date()
        let loss = m.finiteExamples > 0 ? m.lossSum / Double(m.finiteExamples) : nil
        if loss != nil { s.lastTrainLoss = loss }
        try emit(.train(TrainLog(step: s.state.step, totalSteps: s.totalSteps, epoch: epoch, loss: loss, lr: lr,
                                 examplesPerSecond: Double(m.examples) / max(now.timeIntervalSince(m.since), 1e-9),
                                 tokensPerSecondByRank: perRank.map { Double($0) ?? 0 }, bytesExchangedPerStep: m.bytesExchanged,
                                 gradientNorm: m.gradientNorms.isEmpty ? nil : m.gradientNorms.reduce(0, +) / Double(m.gradientNorms.count))),
                 to: s.metrics)
        s.meter = ThroughputMeter(since: now)
    }

    /// Validation and early stopping: rank 0 decides and writes best/, every rank follows the
    /// broadcast decision.
    private func evaluate(_ s: Session, epoch: Double) throws {
        let c = settings
        let result = try Evaluation.run(model: s.model, data: s.data.valid!, batchSize: c.evalBatchSize, comm: comm,
                                        progress: comm.isRoot ? { self.report(.evaluating(done: $0, total: $1)) } : nil)
        let trainResult = try s.trainEvalSubset.map {
            try Evaluation.run(model: s.model, data: s.data.train, batchSize: c.evalBatchSize, comm: comm, subset: $0)
        }
        if result.maskedLM && result.examples == 0 {
            // No masked token in the validation windows: no loss, accuracy or perplexity to report or compare.
            s.lastEvaluatedStep = s.state.step
            if !s.saidNoMaskedEvaluation {
                try emit(.note("validation at step \(s.state.step): no token of \(c.validPath ?? "the validation data") was masked, so there is no " +
                               "loss, accuracy or perplexity to report, and no best/ (said once; use longer texts or a larger --max-length)"), to: s.metrics)
                s.saidNoMaskedEvaluation = true
            }
            return
        }
        let value = result.value(of: c.monitor)
        s.history.append(FitHistory.Point(step: s.state.step, validation: result, training: trainResult, trainingLoss: s.lastTrainLoss))
        s.lastEvaluatedStep = s.state.step
        var decision: [Int64] = [0, 0]  // improved, stop
        if comm.isRoot {
            let d = s.earlyStopping.decide(value, best: s.state.bestMetric, evaluationsWithoutImprovement: s.state.evaluationsWithoutImprovement)
            decision = [d.improved ? 1 : 0, d.stop ? 1 : 0]
        }
        try decision.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        let agreed = EarlyStopping.Decision(improved: decision[0] == 1, stop: decision[1] == 1)
        s.earlyStopping.apply(agreed, value: value, to: &s.state)
        try comm.withTimeout(c.ioTimeout) { try comm.agree("writing best/") {
            guard comm.isRoot else { return }
            if agreed.improved { try ModelFiles.save(s.bundle, to: "\(c.outputPath)/best") }
            try emit(.evaluation(EvaluationRecord(step: s.state.step, epoch: epoch, result: result, trainResult: trainResult, improved: agreed.improved,
                                                  evaluationsWithoutImprovement: s.state.evaluationsWithoutImprovement,
                                                  patience: c.patience, earlyStopping: s.state.earlyStopped)), to: s.metrics)
        } }
    }

    /// This rank's slice of the global batch split in `gradAccum` parts of about
    /// equal cost (tokens), so the gradient sum and the weights do not depend on the split.
    private func microBatches(_ indices: ArraySlice<Int>, of train: ExampleSet) -> [Batch] {
        let k = settings.gradAccum
        guard k > 1 else { return [train.batch(indices)] }
        let costs = indices.compactMap { train.cost(of: $0) }
        return (0..<k).map { part in
            let slice = costs.count == indices.count ? Sharding.balancedSlice(costs: costs, rank: part, size: k)
                                                     : Sharding.slice(count: indices.count, rank: part, size: k)
            return train.batch(indices[(indices.startIndex + slice.lowerBound)..<(indices.startIndex + slice.upperBound)])
        }
    }

    /// Sentence embeddings: this rank's share of the global batch in mini-batches of
    /// --mini-batch-size examples (GradCache), or whole; none when the share is empty.
    private func miniBatches(_ indices: ArraySlice<Int>, of train: ExampleSet) -> [Batch] {
        let size = settings.miniBatchSize ?? max(indices.count, 1)
        return stride(from: indices.startIndex, to: indices.endIndex, by: size).map { start in
            train.batch(indices[start..<min(start + size, indices.endIndex)])
        }
    }

    /// Why the run ended, in words, for metrics.jsonl and the console.
    private func stopReason(_ s: Session, outcome: RunOutcome) -> String {
        let c = settings
        switch outcome {
        case .earlyStopped:
            let best = s.state.bestMetric.map { String(format: "%.4f", $0) } ?? "n/a"
            return "early stopping: \(c.monitor.rawValue) did not improve by more than \(c.minDelta) in \(c.patience ?? 0) evaluations " +
                   "(best \(best) at step \(s.state.bestStep ?? 0))"
        case .completed:
            if let maxSteps = c.maxSteps, s.state.step >= maxSteps, maxSteps < c.epochs * s.stepsPerEpoch { return "reached --max-steps \(maxSteps)" }
            return "completed \(c.epochs) epoch\(c.epochs == 1 ? "" : "s")"
        case .preempted: return "preempted"
        case .stoppedAfterSteps: return "stopped after step \(s.state.step) (--stop-after-steps)"
        }
    }

    // MARK: The end

    /// A last checkpoint, the final model, the test set, a summary.
    private func finish(_ s: Session, outcome: RunOutcome) throws {
        let c = settings
        // A run that ends between evaluations (--max-steps mid-epoch) is evaluated at its last step,
        // so best/ and the best metric always exist when there is validation data.
        if s.data.valid != nil && s.lastEvaluatedStep != s.state.step && !s.state.earlyStopped {
            try evaluate(s, epoch: Double(s.state.epoch) + Double(s.state.positionInEpoch) / Double(s.data.train.count))
        }
        if s.lastSavedStep != s.state.step {
            try s.checkpoints.save(model: s.bundle, optimizer: s.trainingStep.optimizer, shards: s.trainingStep.exchange.shards, state: s.state)
        }
        var end = EndRecord(step: s.state.step, outcome: outcome, bestStep: s.state.bestStep, bestMetric: s.state.bestMetric, monitor: c.monitor)
        end.reason = stopReason(s, outcome: outcome)
        end.hint = FitHistory(points: s.history, monitor: c.monitor).hint
        try comm.withTimeout(c.ioTimeout) { try comm.agree("writing the final model") {
            guard comm.isRoot else { return }
            try ModelFiles.save(s.bundle, to: "\(c.outputPath)/final")
            if let record = TrainingEvent.end(end).record { try s.metrics?.append(record) }
        } }
        if let test = s.data.test { try evaluateTest(test, s) }
        if comm.isRoot {
            report(.end(end))
            // The picture of the run; a failure to draw it loses nothing else.
            do { try RunReport.write(runFolder: c.outputPath) } catch { report(.note("warning: report.html not written: \(error)")) }
        }
    }

    /// The test set, evaluated once with the best model (rank 0 reads best/ and broadcasts it), or
    /// with the final weights when there was no evaluation.
    private func evaluateTest(_ test: ExampleSet, _ s: Session) throws {
        let c = settings
        let useBest = s.state.bestStep != nil
        try comm.agree("loading best/ for the test set") {
            guard comm.isRoot && useBest else { return }
            try ModelFolder.describe(FolderSource("\(c.outputPath)/best")).loadWeights(into: s.bundle, seed: 0)
        }
        if useBest { try comm.broadcast(s.model.parameters, root: 0) }
        let result = try Evaluation.run(model: s.model, data: test, batchSize: c.evalBatchSize, comm: comm)
        try emit(.test(TestRecord(step: s.state.step, model: useBest ? "best" : "final", modelStep: s.state.bestStep ?? s.state.step,
                                  result: result)), to: s.metrics)
    }

    /// An error every rank raises at the same point (its cause was seen by all through a
    /// collective): rank 0 reports it, every rank leaves normally.
    private func collectiveError(_ message: String) -> Error {
        comm.isRoot ? AgreedFailure(underlying: FineTuneError(message)) : PeerFailure(phase: message, rank: 0)
    }
}
