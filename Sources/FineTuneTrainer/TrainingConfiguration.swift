import FineTuneJSON
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

/// Everything a training run needs: one stored property per `train` option, with the option's
/// default; `TrainingConfiguration.specs` (TrainOptions.swift) declares each option over its
/// property. Encoded, it is the `options` of training_config.json: one key per option, named as
/// the option (`--batch-size` is `batch_size`).
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
    /// Text data is tokenized once into a token cache and read by memory map (false: every rank
    /// reads and tokenizes each file itself, into memory).
    public var tokenCache = true
    /// Where the token cache lives (nil: the run folder's token-cache/).
    public var cacheDir: String? = nil
    /// A model without a head: what the new head learns (nil: classification for label names,
    /// regression for numbers).
    public var taskChoice: TaskChoice? = nil
    /// How the console shows progress (the CLI's concern; recorded with the other options).
    public var progressDisplay = ProgressMode.auto
    /// Rank 0 writes TensorBoard event files under the run folder's tensorboard/.
    public var tensorBoard = true
    /// The --config file the options came from, if any.
    public var configFile: String? = nil
    /// Masked-language modelling (`--task mlm`): the share of tokens chosen, and whether whole words are.
    public var mlmProbability = 0.15
    public var wholeWordMask = false
    /// Sentence embeddings (`--task embedding`): the loss's scale on cosine similarities, its
    /// symmetric form, and examples per forward pass on a rank (GradCache; nil: the rank's whole share).
    public var contrastiveScale = 20.0
    public var symmetric = false
    public var miniBatchSize: Int? = nil

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
    /// LoRA adapters on the encoder (the base frozen): rank nil is none. `lora` is the four as one value.
    public var loraRank: Int? = nil
    public var loraAlpha: Double = 8, loraDropout: Double = 0
    public var loraTargets: [LoRATarget] = [.query, .value]
    public var loraTargetsText: String? = nil
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
    /// --monitor as given (nil: the task's default).
    public var monitorChoice: MonitoredMetric? = nil
    /// The metric early stopping and best/ follow: --monitor, else val_ndcg@10 for sentence
    /// embeddings (they have no validation loss), val_loss for every other task.
    public var monitor: MonitoredMetric { monitorChoice ?? (taskChoice == .embedding ? .valNDCG10 : .valLoss) }

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

    /// Options that change the mathematics of the run, with their values: resuming with any of
    /// them changed is refused (see `OptionSpec.Mathematics`).
    public var mathematicalOptions: [String: String] {
        Self.specs.mathematicalOptions(of: self, defaults: .defaults)
    }
}

extension TrainingConfiguration: Encodable {
    /// One key per `train` option; an absent one is null, so every option has its key.
    public func encode(to encoder: Encoder) throws { try OptionRecord(specs: Self.specs, root: self).encode(to: encoder) }
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
