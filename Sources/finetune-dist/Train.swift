import ArgumentParser
import FineTuneDistributed
import FineTuneKernels
import FineTuneModels
import FineTuneTrainer
import Foundation

struct DataOptions: ParsableArguments {
    @Option(help: "Model folder to start from (config.json + model.safetensors). Not needed with --resume (the checkpoint holds the model); --resume auto needs it for the fresh start.") var model: String?
    @Option(help: "Training data: JSON Lines ({\"features\": [...], \"label\": ...} for an MLP, {\"text\": ..., \"text_pair\": ..., \"label\": ...} for a text model) or CSV with a header and a label column.") var train: String
    @Option(help: "Validation data, same format. Needed for evaluation, early stopping and best/.") var valid: String?
    @Option(help: "Test data, evaluated once at the end with the best model (or the final one without --valid).") var test: String?
    @Option(help: "Run folder for metrics, checkpoints and models.") var output: String
    @Option(help: "Text models: tokens per example, [CLS] and [SEP] included; longer texts are truncated (default: the model's limit, at most 128). Batches are packed, never padded.") var maxLength: Int?
    @Option(help: "Text models without a trained head: mean (masked mean of the tokens, exported as a sentence-transformers folder) or cls (pooler on [CLS], exported as BertForSequenceClassification). Default: the folder's own, else mean.") var pooling: Pooling?
    @Option(help: "Text models: what the head learns. Default: classification when the labels are names, regression (mean squared error) when they are numbers; `--task classification` reads whole-number labels as class names. `--task mlm`: masked-language modelling on unlabelled text (plain text, one document per line, or a text field), to adapt the encoder to a domain before fine-tuning; the run exports a BertForMaskedLM folder.") var task: TaskChoice?
    @Option(help: "--task mlm: the share of (non-special) tokens chosen for prediction; of those 80% become [MASK], 10% a random token, 10% stay.") var mlmProbability: Double = 0.15
    @Flag(help: "--task mlm: choose whole words (a token and its ## pieces together) rather than single tokens.") var wholeWordMask = false

    func validate() throws {
        guard mlmProbability > 0 && mlmProbability < 1 else { throw ValidationError("--mlm-probability must be in (0, 1)") }
        if task != .mlm && (mlmProbability != 0.15 || wholeWordMask) {
            throw ValidationError("--mlm-probability and --whole-word-mask need --task mlm")
        }
    }
}

struct OptimizationOptions: ParsableArguments {
    @Option(help: "Passes over the training data.") var epochs: Int = 3
    @Option(help: "Stop after this many optimizer steps if reached before --epochs.") var maxSteps: Int?
    @Option(help: "Global batch: examples per optimizer step over all ranks (results do not depend on the rank count).") var batchSize: Int = 32
    @Option(help: "Peak learning rate. Default: 5e-5 for a pre-trained encoder (BERT family, as the Hugging Face Trainer), 1e-3 for an MLP.") var lr: Double?
    @Option(help: "Learning-rate schedule after warm-up, as transformers': constant, linear (to 0 at the end), cosine (half-cosine to 0) or polynomial (to --lr-end with --lr-power).") var lrSchedule: ScheduleKind = .constant
    @Option(help: "Polynomial schedule: the final learning rate.") var lrEnd: Double = 1e-7
    @Option(help: "Polynomial schedule: the power of the decay (1: linear to --lr-end).") var lrPower: Double = 1
    @Option(help: "Layer-wise learning-rate decay: the head trains at --lr, the top layer at D·lr, each group below at D times the one above (embeddings last). E.g. 0.9.") var layerLrDecay: Double?
    @Option(help: "Gradient accumulation: split each rank's share of --batch-size into K micro-batches (forward and backward one at a time, one exchange and one update per step). Same weights as K=1 (up to float rounding), less activation memory.") var gradAccum: Int = 1
    @Option(help: "Clip the averaged gradient to this global L2 norm before the update (torch's clip_grad_norm_; after the exchange, so every rank clips alike).") var maxGradNorm: Double?
    @Option(help: "Linear warm-up steps from 0 to --lr (overrides --warmup-ratio).") var warmupSteps: Int?
    @Option(help: "Warm-up as a fraction of the run's steps.") var warmupRatio: Double = 0
    @Option(help: "Optimizer: adamw (torch.optim.AdamW semantics) or sgd (with --momentum).") var optimizer: OptimizerKind = .adamw
    @Option(help: "Weight decay; AdamW decouples it. Not applied to biases and LayerNorm weights (transformers' convention).") var weightDecay: Double = 0
    @Option(help: "SGD momentum.") var momentum: Double = 0.9
    @Option(help: "AdamW beta1.") var adamBeta1: Double = 0.9
    @Option(help: "AdamW beta2.") var adamBeta2: Double = 0.999
    @Option(help: "AdamW epsilon.") var adamEpsilon: Double = 1e-8
    @Option(help: "Seed of the data order, dropout and a fresh head's weights.") var seed: UInt64 = 0

    func validate() throws {
        guard epochs > 0 else { throw ValidationError("--epochs must be positive") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        if let lr { guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be a positive number") } }
        guard lrEnd >= 0, lrEnd.isFinite else { throw ValidationError("--lr-end must not be negative") }
        guard lrPower > 0, lrPower.isFinite else { throw ValidationError("--lr-power must be positive") }
        if let layerLrDecay { guard layerLrDecay > 0 && layerLrDecay <= 1 else { throw ValidationError("--layer-lr-decay must be in (0, 1]") } }
        guard gradAccum > 0 else { throw ValidationError("--grad-accum must be positive") }
        if let maxGradNorm { guard maxGradNorm > 0, maxGradNorm.isFinite else { throw ValidationError("--max-grad-norm must be a positive number") } }
        guard warmupRatio >= 0 && warmupRatio < 1 else { throw ValidationError("--warmup-ratio must be in [0, 1)") }
        guard weightDecay >= 0, weightDecay.isFinite else { throw ValidationError("--weight-decay must not be negative") }
        guard adamBeta1 >= 0 && adamBeta1 < 1, adamBeta2 >= 0 && adamBeta2 < 1 else { throw ValidationError("--adam-beta1 and --adam-beta2 must be in [0, 1)") }
        guard adamEpsilon > 0, adamEpsilon.isFinite else { throw ValidationError("--adam-epsilon must be positive (it keeps AdamW's division finite)") }
        guard momentum >= 0 && momentum < 1 else { throw ValidationError("--momentum must be in [0, 1)") }
        if let warmupSteps { guard warmupSteps >= 0 else { throw ValidationError("--warmup-steps must not be negative") } }
        if let maxSteps { guard maxSteps > 0 else { throw ValidationError("--max-steps must be positive") } }
    }
}

enum FreezablePart: String, ExpressibleByArgument, CaseIterable { case embeddings }
enum TrainOnlyPart: String, ExpressibleByArgument, CaseIterable { case head }

struct TrainableOptions: ParsableArguments {
    @Option(help: "Freeze the embeddings (word, position, token type, their LayerNorm): no gradients, no exchange, no optimizer state.") var freeze: FreezablePart?
    @Option(help: "Freeze the embeddings and the lowest N encoder layers (an MLP's lowest N hidden layers); backward stops at the lowest trainable layer.") var freezeLayers: Int = 0
    @Option(help: "Train only the head (pooler and classifier): a linear probe on frozen features.") var trainOnly: TrainOnlyPart?
    @Option(help: "Gradual unfreezing (ULMFiT): start with the head and add one layer from the top every E epochs (then the embeddings), down to what --freeze/--freeze-layers keep frozen.") var unfreezeEvery: Int?

    func validate() throws {
        guard freezeLayers >= 0 else { throw ValidationError("--freeze-layers must not be negative") }
        if let unfreezeEvery { guard unfreezeEvery > 0 else { throw ValidationError("--unfreeze-every must be a positive number of epochs") } }
        if trainOnly != nil && unfreezeEvery != nil { throw ValidationError("--train-only head and --unfreeze-every contradict each other: gradual unfreezing starts with the head alone") }
    }

    var settings: FreezeSettings {
        var f = FreezeSettings()
        f.embeddings = freeze == .embeddings; f.layers = freezeLayers; f.onlyHead = trainOnly == .head; f.unfreezeEvery = unfreezeEvery
        return f
    }
}

struct LoRAOptions: ParsableArguments {
    @Option(help: "LoRA: train rank-r adapters on the encoder's linear layers (and the head) instead of the model; the base weights are frozen. best/ and final/ hold the merged model and, in adapter/, the adapter as PEFT saves it.") var loraRank: Int?
    @Option(help: "LoRA scale numerator: the update is (alpha / r)·B·A. Default 8 (PEFT's).") var loraAlpha: Double = 8
    @Option(help: "LoRA dropout on each adapted layer's input. Default 0 (PEFT's).") var loraDropout: Double = 0
    @Option(help: "LoRA: the layers to adapt, comma-separated: query, key, value, attention.output.dense, intermediate.dense, output.dense, or all (the six). Default query,value (PEFT's for BERT).") var loraTargets: String = "query,value"

    func validate() throws {
        if let loraRank { guard loraRank > 0 else { throw ValidationError("--lora-rank must be positive") } }
        guard loraAlpha > 0, loraAlpha.isFinite else { throw ValidationError("--lora-alpha must be positive") }
        guard loraDropout >= 0 && loraDropout < 1 else { throw ValidationError("--lora-dropout must be in [0, 1)") }
        do { _ = try LoRATarget.parse(loraTargets) } catch { throw ValidationError("\(error)") }
    }

    var settings: LoRASettings? {
        guard let loraRank, let targets = try? LoRATarget.parse(loraTargets) else { return nil }
        return LoRASettings(rank: loraRank, alpha: loraAlpha, dropout: loraDropout, targets: targets)
    }
}

struct RegularizationOptions: ParsableArguments {
    @Option(help: "Dropout after the embeddings and each sublayer (BERT's hidden_dropout_prob; an MLP's dropout). Default: config.json's.") var dropout: Double?
    @Option(help: "Dropout on the attention probabilities (attention_probs_dropout_prob). Default: config.json's.") var attentionDropout: Double?
    @Option(help: "Dropout before the classifier with [CLS] pooling (classifier_dropout). Default: config.json's classifier_dropout, else its hidden_dropout_prob.") var classifierDropout: Double?
    @Option(help: "Classification: train against (1 - e) on the label + e/K on every class (torch's label_smoothing). Validation reports the plain loss.") var labelSmoothing: Double = 0
    @Option(help: "Classification: weight each example's loss by its label: 'balanced' (n / (K * n_label), from the training data) or one weight per label in the model's label order, e.g. 1,4,1.") var classWeights: String?

    func validate() throws {
        for (name, p) in [("--dropout", dropout), ("--attention-dropout", attentionDropout), ("--classifier-dropout", classifierDropout)] {
            if let p { guard p >= 0 && p < 1 else { throw ValidationError("\(name) must be in [0, 1)") } }
        }
        guard labelSmoothing >= 0 && labelSmoothing < 1 else { throw ValidationError("--label-smoothing must be in [0, 1)") }
        if let classWeights { _ = try parsedClassWeights(classWeights) }
    }

    func parsedClassWeights(_ text: String) throws -> ClassWeights {
        do { return try ClassWeights(parsing: text) } catch { throw ValidationError("\(error)") }
    }
}

struct EvaluationOptions: ParsableArguments {
    @Option(help: "Evaluate every N steps as well as at each epoch end (0: epoch ends only).") var evalEvery: Int = 0
    @Option(help: "Examples per evaluation forward pass on each rank.") var evalBatchSize: Int = 256
    @Option(help: "Early stopping: stop after this many evaluations without improvement.") var patience: Int?
    @Option(help: "Smallest change of the monitored metric that counts as an improvement.") var minDelta: Double = 0
    @Option(help: "Metric for early stopping and best/ (the direction is known): val_loss (the default); classification val_accuracy, val_macro_f1, val_mcc; regression val_mse, val_mae, val_r2; masked-language modelling val_accuracy, val_perplexity. Needs --valid.") var monitor: MonitoredMetric?
    @Option(help: "Also evaluate N training examples (a fixed random subset, without dropout) at each evaluation, logged as train_eval_*, so the gap to validation shows.") var trainEvalExamples: Int = 0

    func validate() throws {
        guard evalEvery >= 0 else { throw ValidationError("--eval-every must not be negative") }
        guard evalBatchSize > 0 else { throw ValidationError("--eval-batch-size must be positive") }
        if let patience { guard patience > 0 else { throw ValidationError("--patience must be positive") } }
        guard trainEvalExamples >= 0 else { throw ValidationError("--train-eval-examples must not be negative") }
        guard minDelta >= 0, minDelta.isFinite else { throw ValidationError("--min-delta must not be negative (it is the size of an improvement, in either direction)") }
    }
}

struct CheckpointOptions: ParsableArguments {
    @Option(help: "Write a checkpoint every N steps (0: not by steps). Checkpoints are also written by time (--save-every-minutes), at every epoch end (--save-each-epoch), at the end, and when the run is stopped by Ctrl-C, SIGTERM or SIGUSR1.") var saveEvery: Int = 0
    @Option(help: "Write a checkpoint when this many minutes have passed since the last one (rank 0's clock; 0: not by time), so that a killed run (kill -9, a lost node) loses at most that much.") var saveEveryMinutes: Double = 10
    @Flag(inversion: .prefixedNo, help: "Write a checkpoint at the end of every epoch.") var saveEachEpoch = true
    @Flag(help: "A fresh run into an --output that holds an earlier run replaces it (its checkpoints, best/, final/, metrics and records are deleted first); without it such a folder is refused. As the Hugging Face Trainer's overwrite_output_dir.") var overwrite = false
    @Flag(help: "Continue the run in --output from its newest complete checkpoint (any number of ranks). `--resume auto` starts fresh when there is no checkpoint yet, so a requeued batch job can always pass it.") var resume = false
    @Flag(help: .hidden) var resumeAuto = false
    @Option(help: "Stop cleanly after step K with a checkpoint, as an interruption would (the run's length is unchanged; continue with --resume).") var stopAfterSteps: Int?
    @Option(help: "Keep only the N newest checkpoints (the best evaluation's checkpoint is kept too). Default: all.") var keepCheckpoints: Int?
    @Option(help: "Print and record a training line every N steps.") var logEvery: Int = 1
    @Option(help: "Resume although these options (comma-separated, as named in the refusal message, e.g. freeze-layers,lr) differ from the checkpoint's. Newly trainable tensors start without optimizer state.") var acceptChanged: String?

    func validate() throws {
        guard saveEvery >= 0 else { throw ValidationError("--save-every must not be negative") }
        guard saveEveryMinutes >= 0, saveEveryMinutes.isFinite else { throw ValidationError("--save-every-minutes must not be negative (0: not by time)") }
        if overwrite && (resume || resumeAuto) { throw ValidationError("--overwrite replaces the run in --output, --resume continues it: give one of them") }
        guard logEvery > 0 else { throw ValidationError("--log-every must be positive") }
        if let stopAfterSteps { guard stopAfterSteps > 0 else { throw ValidationError("--stop-after-steps must be positive") } }
        if let keepCheckpoints { guard keepCheckpoints > 0 else { throw ValidationError("--keep-checkpoints must be positive") } }
    }

    var mode: ResumeMode { resumeAuto ? .auto : (resume ? .on : .off) }
}

struct FailureOptions: ParsableArguments {
    @Option(help: "Seconds any collective of the training loop may take; past it every rank that can still act aborts with a message naming the step (a lost rank, a cut network).") var collectiveTimeout: Double = 300
    @Option(help: "Seconds the other ranks wait while rank 0 writes checkpoints and models.") var ioTimeout: Double = 1800
    @Option(help: "A NaN or Inf in the loss or gradients on any rank: stop (naming step and rank) or skip the update.") var onNonfinite: NonFinitePolicy = .stop
    @Option(help: "Compare a checksum of every rank's parameters every N steps; a mismatch stops the run (0: never).") var checkReplicasEvery: Int = 100

    func validate() throws {
        guard collectiveTimeout > 0, ioTimeout > 0 else { throw ValidationError("--collective-timeout and --io-timeout must be positive") }
        guard checkReplicasEvery >= 0 else { throw ValidationError("--check-replicas-every must not be negative") }
    }
}

/// Test-only fault injection (hidden from --help).
struct DebugOptions: ParsableArguments {
    @Option(help: .hidden) var debugExampleLog: String?
    @Option(help: .hidden) var debugPerturb: String?
    @Option(help: .hidden) var debugStall: String?
    @Option(help: .hidden) var debugSlowCheckpoint: Double = 0
    @Option(help: .hidden) var debugSignalAt: String?
    @Option(help: .hidden) var debugStepDelay: Double = 0

    func switches() throws -> DebugSwitches {
        let d = DebugSwitches()
        if let debugPerturb {
            let n = try DebugSwitches.numbers(debugPerturb, count: 2, option: "--debug-perturb")
            d.perturb = (Int(n[0]), Int(n[1]))
        }
        if let debugStall {
            let n = try DebugSwitches.numbers(debugStall, count: 3, option: "--debug-stall")
            d.stall = (Int(n[0]), Int(n[1]), n[2])
        }
        d.slowCheckpointSeconds = debugSlowCheckpoint
        d.stepDelaySeconds = debugStepDelay
        if let debugSignalAt {
            let n = try DebugSwitches.numbers(debugSignalAt, count: 2, option: "--debug-signal-at")
            d.signalAt = (Int(n[0]), Int(n[1]))
        }
        return d
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a model folder on a data set, data-parallel over the MPI ranks it is started on.",
        discussion: """
        Start it under mpirun (or launch/local.sh, launch/cluster.sh); without mpirun it runs as one rank.
        The output folder receives metrics.jsonl, run.json (provenance), training_config.json (every \
        option), checkpoints/, best/ (the best evaluation's model) and final/. A run stopped for any \
        reason continues with --resume, from its newest complete checkpoint, on any number of ranks.
        """)

    @OptionGroup(title: "Model and data") var data: DataOptions
    @OptionGroup(title: "Optimization") var optimization: OptimizationOptions
    @OptionGroup(title: "What trains") var trainable: TrainableOptions
    @OptionGroup(title: "LoRA") var lora: LoRAOptions
    @OptionGroup(title: "Regularization") var regularization: RegularizationOptions
    @OptionGroup(title: "Evaluation and early stopping") var evaluation: EvaluationOptions
    @OptionGroup(title: "Checkpoints and resuming") var checkpoints: CheckpointOptions
    @OptionGroup(title: "Gradient exchange") var exchange: ExchangeOptions
    @OptionGroup(title: "Failure handling") var failures: FailureOptions
    @OptionGroup(visibility: .hidden) var debug: DebugOptions
    @Option(help: "Progress on the console: bar (one line redrawn: epoch, step/total, loss, examples/s, ETA, last validation metric), lines (one line every --log-every steps, with ETA: for batch logs), none, or auto (bar when mpirun's or this program's output is a terminal, else lines).")
    var progress: ProgressMode = .auto
    @Flag(inversion: .prefixedNo, help: "Write TensorBoard event files (training loss, learning rate, throughput per rank, every validation and test figure) under the run folder's tensorboard/ (open them with `tensorboard`, the run folder as its logdir).")
    var tensorboard = true
    @Option(help: "A YAML or JSON file of these options (keys as the options: batch_size or batch-size); options given here win over it. A run's training_config.json works too, to repeat that run.")
    var config: String?

    func validate() throws {
        if evaluation.trainEvalExamples > 0 && data.valid == nil {
            throw ValidationError("--train-eval-examples needs --valid (the training subset is evaluated beside the validation set)")
        }
        if evaluation.patience != nil && data.valid == nil {
            throw ValidationError("--patience needs --valid (early stopping watches the validation metric)")
        }
        if let monitor = evaluation.monitor, data.valid == nil {
            throw ValidationError("--monitor \(monitor.rawValue) needs --valid (the metric is measured on the validation data)")
        }
        if data.model == nil && checkpoints.mode != .on {
            throw ValidationError("--model is needed to start a run (only --resume, which continues the checkpoint in --output, does without it)")
        }
    }

    var trainingConfiguration: TrainingConfiguration {
        var c = TrainingConfiguration(modelPath: data.model ?? "", trainPath: data.train, validPath: data.valid, outputPath: data.output)
        c.testPath = data.test; c.maxLength = data.maxLength; c.pooling = data.pooling; c.taskChoice = data.task; c.progressDisplay = progress.rawValue; c.tensorBoard = tensorboard; c.configFile = config
        c.mlmProbability = data.mlmProbability; c.wholeWordMask = data.wholeWordMask
        let o = optimization
        c.epochs = o.epochs; c.maxSteps = o.maxSteps; c.batchSize = o.batchSize
        c.learningRate = o.lr; c.schedule = o.lrSchedule; c.lrEnd = o.lrEnd; c.lrPower = o.lrPower; c.layerLRDecay = o.layerLrDecay
        c.gradAccum = o.gradAccum; c.maxGradNorm = o.maxGradNorm
        c.freeze = trainable.settings
        c.lora = lora.settings
        let r = regularization
        c.hiddenDropout = r.dropout; c.attentionDropout = r.attentionDropout; c.classifierDropout = r.classifierDropout
        c.labelSmoothing = r.labelSmoothing; c.classWeights = r.classWeights.flatMap { try? r.parsedClassWeights($0) }
        c.trainEvalExamples = evaluation.trainEvalExamples
        c.acceptChanged = checkpoints.acceptChanged.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        c.warmupSteps = o.warmupSteps; c.warmupRatio = o.warmupRatio
        c.optimizer.kind = o.optimizer; c.optimizer.weightDecay = o.weightDecay; c.optimizer.momentum = o.momentum
        c.optimizer.beta1 = o.adamBeta1; c.optimizer.beta2 = o.adamBeta2; c.optimizer.epsilon = o.adamEpsilon
        c.seed = o.seed
        let e = evaluation
        c.evalEvery = e.evalEvery; c.evalBatchSize = e.evalBatchSize; c.patience = e.patience; c.minDelta = e.minDelta; c.monitor = e.monitor ?? .valLoss
        let k = checkpoints
        c.saveEvery = k.saveEvery; c.resume = k.mode; c.stopAfterSteps = k.stopAfterSteps; c.logEvery = k.logEvery
        c.keepCheckpoints = k.keepCheckpoints
        c.saveEveryMinutes = k.saveEveryMinutes; c.saveEachEpoch = k.saveEachEpoch; c.overwrite = k.overwrite
        let f = failures
        c.collectiveTimeout = f.collectiveTimeout; c.ioTimeout = f.ioTimeout; c.onNonFinite = f.onNonfinite; c.checkReplicasEvery = f.checkReplicasEvery
        c.exchange = exchange.settings
        c.exampleLogFolder = debug.debugExampleLog
        c.commandLine = CommandLine.arguments
        return c
    }

    func run() throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator() } catch { exitOnError(error, comm: nil) }
        let display = comm.isRoot ? ProgressDisplay(mode: progress, monitor: evaluation.monitor ?? .valLoss) : nil
        let trainer = Trainer(configuration: trainingConfiguration, communicator: comm) { event in
            display?.handle(event)
        }
        defer { display?.finish() }
        do {
            defer { display?.finish() }
            trainer.hooks = try debug.switches()
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
