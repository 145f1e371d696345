import FineTuneDistributed
import FineTuneKernels
import FineTuneModels
import Foundation

/// Whether a run continues the one in its output folder.
public enum ResumeMode: Sendable, Equatable, Codable {
    /// A fresh run; an output folder with checkpoints is refused.
    case off
    /// Continue from the newest complete checkpoint; there must be one.
    case on
    /// Continue when there is a checkpoint, else start fresh (a requeued batch job can always pass it).
    case auto

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = b ? .on : .off; return }
        guard try c.decode(String.self) == "auto" else {
            throw FineTuneError("\"resume\" must be true, false or \"auto\"")
        }
        self = .auto
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .off: try c.encode(false)
        case .on: try c.encode(true)
        case .auto: try c.encode("auto")
        }
    }
}

/// Everything a training run needs, resolved from the command line (the CLI maps options onto
/// this; the library never sees argument parsing). Encoded, it is the `options` of
/// training_config.json: one key per `train` option, named as the option (`--batch-size` is
/// `batch_size`).
public struct TrainingConfiguration: Sendable {
    public var modelPath: String
    public var trainPath: String
    public var validPath: String?
    /// Evaluated once at the end, with the best model (or the final one without validation).
    public var testPath: String? = nil
    public var outputPath: String
    /// Text models: pooling for a model without a head (nil: the folder's own, else mean).
    public var pooling: Pooling? = nil
    /// Text models: tokens per example, [CLS] and [SEP] included (nil: the model's, at most 128).
    public var maxLength: Int? = nil
    /// A model without a head: what the new head learns (nil: classification for label names,
    /// regression for numbers).
    public var taskChoice: TaskChoice? = nil
    /// How the console shows progress (the CLI's concern; recorded with the other options).
    public var progressDisplay = "auto"
    /// Rank 0 writes TensorBoard event files under the run folder's tensorboard/.
    public var tensorBoard = true
    /// The --config file the options came from, if any.
    public var configFile: String? = nil
    /// Masked-language modelling (`--task mlm`): the share of tokens chosen, and whether whole words are.
    public var mlmProbability = 0.15
    public var wholeWordMask = false

    public var epochs: Int = 3
    /// Ends the run at this many optimizer steps if reached before `epochs`.
    public var maxSteps: Int? = nil
    /// Examples per optimizer step over all ranks.
    public var batchSize: Int = 32
    /// Peak learning rate (nil: the model's default, `defaultLearningRate`).
    public var learningRate: Double? = nil
    public var schedule: ScheduleKind = .constant
    /// Polynomial schedule: final rate and power.
    public var lrEnd: Double = 1e-7, lrPower: Double = 1
    /// Layer-wise learning-rate decay: each group below the head gets this factor times the rate of the one above.
    public var layerLRDecay: Double? = nil
    /// Micro-batches per rank per optimizer step (gradient accumulation); the global batch is unchanged.
    public var gradAccum: Int = 1
    /// Clip the averaged gradient to this global L2 norm.
    public var maxGradNorm: Double? = nil
    /// Which parameters train.
    public var freeze = FreezeSettings()
    /// LoRA adapters on the encoder (the base frozen); nil: none.
    public var lora: LoRASettings? = nil
    /// Dropout probabilities (nil: the model's config.json).
    public var hiddenDropout: Double? = nil, attentionDropout: Double? = nil, classifierDropout: Double? = nil
    public var labelSmoothing: Double = 0
    public var classWeights: ClassWeights? = nil
    /// Options whose change a resumed run accepts (the user said so).
    public var acceptChanged: [String] = []
    /// Evaluate this many training examples (a fixed subset) beside each validation pass (0: none).
    public var trainEvalExamples: Int = 0
    public var warmupSteps: Int? = nil
    public var warmupRatio: Double = 0
    public var optimizer = OptimizerSettings()
    public var seed: UInt64 = 0

    /// Evaluate every this many steps (0: only at the end of each epoch).
    public var evalEvery: Int = 0
    public var evalBatchSize: Int = 256
    public var patience: Int? = nil
    public var minDelta: Double = 0
    public var monitor: MonitoredMetric = .valLoss

    /// Checkpoint every this many steps (0: not by steps).
    public var saveEvery: Int = 0
    /// Checkpoint when this many minutes passed since the last one (rank 0's clock; 0: not by time).
    public var saveEveryMinutes: Double = 10
    /// Checkpoint at the end of every epoch.
    public var saveEachEpoch = true
    /// A fresh run may replace the earlier run in its output folder (its models, records and checkpoints).
    public var overwrite = false
    public var resume: ResumeMode = .off
    /// Stop cleanly after this step with a checkpoint, as an interruption would.
    public var stopAfterSteps: Int? = nil
    /// Print and record a training line every this many steps.
    public var logEvery: Int = 1
    /// Keep this many newest checkpoints (nil: all); the best evaluation's checkpoint is always kept.
    public var keepCheckpoints: Int? = nil

    /// Seconds one collective of the training loop may take before the job is aborted.
    public var collectiveTimeout: Double = 300
    /// Seconds the other ranks wait for rank 0's file writes (checkpoints, best/, final/).
    public var ioTimeout: Double = 1800
    public var onNonFinite: NonFinitePolicy = .stop
    /// Compare a checksum of every rank's parameters every this many steps (0: never).
    public var checkReplicasEvery: Int = 100
    /// Gradient exchange: overlap with backward, bucket size, optimizer-state sharding.
    public var exchange = GradientExchange.Settings()

    /// Test-only: each rank appends "epoch step example" lines for every example it trains on.
    public var exampleLogFolder: String? = nil
    /// The command line, for the record.
    public var commandLine: [String] = []

    public init(modelPath: String, trainPath: String, validPath: String?, outputPath: String) {
        self.modelPath = modelPath
        self.trainPath = trainPath
        self.validPath = validPath
        self.outputPath = outputPath
    }

    /// Options that change the mathematics of the run: resuming with any of them changed is refused.
    /// The run length counts only when the learning-rate schedule depends on it.
    public var mathematicalOptions: [String: String] {
        var o: [String: String] = [
            "batch-size": String(batchSize),
            "lr": learningRate.map { String($0) } ?? "default",
            "lr-schedule": schedule.rawValue,
            "optimizer": optimizer.kind.rawValue,
            "weight-decay": String(optimizer.weightDecay),
            "seed": String(seed),
        ]
        if let maxLength { o["max-length"] = String(maxLength) }
        // The newer options appear only when set, so older checkpoints stay resumable.
        if freeze.embeddings { o["freeze"] = "embeddings" }
        if freeze.layers > 0 { o["freeze-layers"] = String(freeze.layers) }
        if freeze.onlyHead { o["train-only"] = "head" }
        if let every = freeze.unfreezeEvery { o["unfreeze-every"] = String(every) }
        if let layerLRDecay { o["layer-lr-decay"] = String(layerLRDecay) }
        if let lora {
            o["lora-rank"] = String(lora.rank); o["lora-alpha"] = String(lora.alpha); o["lora-dropout"] = String(lora.dropout)
            o["lora-targets"] = lora.targets.map(\.rawValue).joined(separator: ",")
        }
        if let maxGradNorm { o["max-grad-norm"] = String(maxGradNorm) }
        if let hiddenDropout { o["dropout"] = String(hiddenDropout) }
        if let attentionDropout { o["attention-dropout"] = String(attentionDropout) }
        if let classifierDropout { o["classifier-dropout"] = String(classifierDropout) }
        if labelSmoothing > 0 { o["label-smoothing"] = String(labelSmoothing) }
        if let classWeights { o["class-weights"] = classWeights.description }
        if let pooling { o["pooling"] = pooling.rawValue }
        if let taskChoice { o["task"] = taskChoice.rawValue }
        if taskChoice == .mlm { o["mlm-probability"] = String(mlmProbability); o["whole-word-mask"] = String(wholeWordMask) }
        switch optimizer.kind {
        case .adamw:
            o["adam-beta1"] = String(optimizer.beta1)
            o["adam-beta2"] = String(optimizer.beta2)
            o["adam-epsilon"] = String(optimizer.epsilon)
        case .sgd:
            o["momentum"] = String(optimizer.momentum)
        }
        if schedule != .constant || warmupSteps != nil || warmupRatio > 0 {
            o["epochs"] = String(epochs)
            o["max-steps"] = maxSteps.map(String.init) ?? "none"
            o["warmup-steps"] = warmupSteps.map(String.init) ?? "none"
            o["warmup-ratio"] = String(warmupRatio)
        }
        if schedule == .polynomial { o["lr-end"] = String(lrEnd); o["lr-power"] = String(lrPower) }
        return o
    }
}

extension TrainingConfiguration: Encodable {
    /// One key per `train` option.
    public enum OptionKey: String, CodingKey, CaseIterable {
        case model, train, valid, test, output, maxLength = "max_length", pooling, task, progress, tensorboard, config, mlmProbability = "mlm_probability", wholeWordMask = "whole_word_mask"
        case epochs, maxSteps = "max_steps", batchSize = "batch_size", lr, lrSchedule = "lr_schedule"
        case warmupSteps = "warmup_steps", warmupRatio = "warmup_ratio", optimizer, weightDecay = "weight_decay", momentum
        case adamBeta1 = "adam_beta1", adamBeta2 = "adam_beta2", adamEpsilon = "adam_epsilon", seed
        case evalEvery = "eval_every", evalBatchSize = "eval_batch_size", patience, minDelta = "min_delta", monitor
        case saveEvery = "save_every", saveEveryMinutes = "save_every_minutes", saveEachEpoch = "save_each_epoch", overwrite, resume, stopAfterSteps = "stop_after_steps", logEvery = "log_every"
        case keepCheckpoints = "keep_checkpoints", collectiveTimeout = "collective_timeout", ioTimeout = "io_timeout"
        case onNonfinite = "on_nonfinite", checkReplicasEvery = "check_replicas_every", overlap, bucketMb = "bucket_mb"
        case shardOptimizer = "shard_optimizer", allreduce
        case layerLRDecay = "layer_lr_decay", gradAccum = "grad_accum", maxGradNorm = "max_grad_norm"
        case freeze, freezeLayers = "freeze_layers", trainOnly = "train_only", unfreezeEvery = "unfreeze_every"
        case dropout, attentionDropout = "attention_dropout", classifierDropout = "classifier_dropout"
        case labelSmoothing = "label_smoothing", classWeights = "class_weights", acceptChanged = "accept_changed"
        case trainEvalExamples = "train_eval_examples", lrEnd = "lr_end", lrPower = "lr_power"
        case loraRank = "lora_rank", loraAlpha = "lora_alpha", loraDropout = "lora_dropout", loraTargets = "lora_targets"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: OptionKey.self)
        // Absent options are written as null, so every option has its key.
        try c.encode(modelPath, forKey: .model); try c.encode(trainPath, forKey: .train); try c.encode(validPath, forKey: .valid)
        try c.encode(testPath, forKey: .test); try c.encode(outputPath, forKey: .output); try c.encode(maxLength, forKey: .maxLength)
        try c.encode(pooling, forKey: .pooling); try c.encode(taskChoice, forKey: .task)
        try c.encode(progressDisplay, forKey: .progress); try c.encode(tensorBoard, forKey: .tensorboard)
        try c.encode(configFile, forKey: .config)
        try c.encode(mlmProbability, forKey: .mlmProbability); try c.encode(wholeWordMask, forKey: .wholeWordMask)
        try c.encode(epochs, forKey: .epochs); try c.encode(maxSteps, forKey: .maxSteps); try c.encode(batchSize, forKey: .batchSize)
        try c.encode(learningRate, forKey: .lr); try c.encode(schedule, forKey: .lrSchedule); try c.encode(warmupSteps, forKey: .warmupSteps)
        try c.encode(warmupRatio, forKey: .warmupRatio); try c.encode(optimizer.kind, forKey: .optimizer)
        try c.encode(optimizer.weightDecay, forKey: .weightDecay); try c.encode(optimizer.momentum, forKey: .momentum)
        try c.encode(optimizer.beta1, forKey: .adamBeta1); try c.encode(optimizer.beta2, forKey: .adamBeta2)
        try c.encode(optimizer.epsilon, forKey: .adamEpsilon); try c.encode(seed, forKey: .seed)
        try c.encode(evalEvery, forKey: .evalEvery); try c.encode(evalBatchSize, forKey: .evalBatchSize); try c.encode(patience, forKey: .patience)
        try c.encode(minDelta, forKey: .minDelta)
        // Without validation data nothing is monitored (and --monitor would be refused when the record is repeated).
        try c.encode(validPath == nil ? nil : monitor, forKey: .monitor)
        try c.encode(saveEvery, forKey: .saveEvery); try c.encode(saveEveryMinutes, forKey: .saveEveryMinutes)
        try c.encode(saveEachEpoch, forKey: .saveEachEpoch); try c.encode(overwrite, forKey: .overwrite); try c.encode(resume, forKey: .resume); try c.encode(stopAfterSteps, forKey: .stopAfterSteps)
        try c.encode(logEvery, forKey: .logEvery); try c.encode(keepCheckpoints, forKey: .keepCheckpoints)
        try c.encode(collectiveTimeout, forKey: .collectiveTimeout); try c.encode(ioTimeout, forKey: .ioTimeout)
        try c.encode(onNonFinite, forKey: .onNonfinite); try c.encode(checkReplicasEvery, forKey: .checkReplicasEvery)
        try c.encode(exchange.overlap, forKey: .overlap); try c.encode(Double(exchange.bucketBytes) / 1_000_000, forKey: .bucketMb)
        try c.encode(exchange.shardOptimizer, forKey: .shardOptimizer); try c.encode(exchange.allreduce, forKey: .allreduce)
        try c.encode(layerLRDecay, forKey: .layerLRDecay); try c.encode(gradAccum, forKey: .gradAccum); try c.encode(maxGradNorm, forKey: .maxGradNorm)
        try c.encode(freeze.embeddings ? "embeddings" : nil, forKey: .freeze); try c.encode(freeze.layers, forKey: .freezeLayers)
        try c.encode(freeze.onlyHead ? "head" : nil, forKey: .trainOnly); try c.encode(freeze.unfreezeEvery, forKey: .unfreezeEvery)
        try c.encode(hiddenDropout, forKey: .dropout); try c.encode(attentionDropout, forKey: .attentionDropout)
        try c.encode(classifierDropout, forKey: .classifierDropout); try c.encode(labelSmoothing, forKey: .labelSmoothing)
        try c.encode(classWeights?.description, forKey: .classWeights); try c.encode(acceptChanged, forKey: .acceptChanged)
        try c.encode(trainEvalExamples, forKey: .trainEvalExamples); try c.encode(lrEnd, forKey: .lrEnd); try c.encode(lrPower, forKey: .lrPower)
        try c.encode(lora?.rank, forKey: .loraRank); try c.encode(lora?.alpha, forKey: .loraAlpha); try c.encode(lora?.dropout, forKey: .loraDropout)
        try c.encode(lora?.targets.map(\.rawValue), forKey: .loraTargets)
    }
}

/// `--class-weights`: inverse class frequency, or one weight per label.
public enum ClassWeights: Sendable, Equatable {
    /// n / (K · n_k), as sklearn's compute_class_weight("balanced").
    case balanced
    case explicit([Double])

    public init(parsing text: String) throws {
        if text == "balanced" { self = .balanced; return }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.map { Double($0) }
        guard !parts.isEmpty, values.allSatisfy({ $0 != nil && $0!.isFinite && $0! >= 0 }), values.contains(where: { $0! > 0 }) else {
            throw FineTuneError("--class-weights \"\(text)\": give \"balanced\" or one non-negative number per label, comma-separated, not all zero (e.g. 1,3.5,1)")
        }
        self = .explicit(values.map { $0! })
    }
    public var description: String {
        switch self {
        case .balanced: return "balanced"
        case .explicit(let w): return w.map { String($0) }.joined(separator: ",")
        }
    }
    /// The weight of each of `counts.count` labels, given how many training examples each has.
    public func resolve(counts: [Int], labels: [String]) throws -> [Float] {
        switch self {
        case .balanced:
            let n = Double(counts.reduce(0, +)), K = Double(counts.count)
            return counts.map { $0 > 0 ? Float(n / (K * Double($0))) : 0 }
        case .explicit(let w):
            guard w.count == counts.count else {
                throw FineTuneError("--class-weights gives \(w.count) weights; the model has \(counts.count) labels (\(labels.joined(separator: ", ")), in this order)")
            }
            return w.map(Float.init)
        }
    }
}

/// training_config.json: every option, what they resolved to, and the command line.
public struct TrainingConfigurationRecord: Encodable {
    public struct Resolved: Encodable {
        public var stepsPerEpoch: Int, totalSteps: Int, warmupSteps: Int
        public var learningRate: Double
        /// Parameters that train at the start, and all of them.
        public var trainableParameters: Int, parameters: Int
        /// Dropout probabilities in use.
        public var dropout: Double?, attentionDropout: Double?, classifierDropout: Double?
        public var classWeights: [Float]?
        enum CodingKeys: String, CodingKey {
            case stepsPerEpoch = "steps_per_epoch", totalSteps = "total_steps", warmupSteps = "warmup_steps", learningRate = "lr"
            case trainableParameters = "trainable_parameters", parameters, dropout, attentionDropout = "attention_dropout"
            case classifierDropout = "classifier_dropout", classWeights = "class_weights"
        }
    }
    public var options: TrainingConfiguration
    public var resolved: Resolved
    public var commandLine: [String]
    enum CodingKeys: String, CodingKey { case options, resolved, commandLine = "command_line" }
}
