import FineTuneDistributed
import FineTuneModels

/// What a training step needs to know beyond the model: which parameters train, micro-batches,
/// LoRA and the gradient exchange. `train` and `bench` both have these options, declared once
/// (`TrainingStepOptions.specs`).
public protocol TrainingStepOptions {
    var freeze: FreezeSettings { get set }
    var gradAccum: Int { get set }
    var loraRank: Int? { get set }
    var loraAlpha: Double { get set }
    var loraDropout: Double { get set }
    var loraTargets: [LoRATarget] { get set }
    /// --lora-targets as given (nil: the default of the model's family).
    var loraTargetsText: String? { get set }
    var exchange: GradientExchange.Settings { get set }
}

extension TrainingStepOptions {
    /// The LoRA options as one value (nil without --lora-rank).
    public var lora: LoRASettings? {
        get { loraRank.map { LoRASettings(rank: $0, alpha: loraAlpha, dropout: loraDropout, targets: loraTargets) } }
        set {
            loraRank = newValue?.rank
            if let newValue { loraAlpha = newValue.alpha; loraDropout = newValue.dropout; loraTargets = newValue.targets }
        }
    }

    /// The LoRA options for a decoder (nil without --lora-rank): --lora-targets in a decoder's
    /// names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all), default q_proj,v_proj (PEFT's for Llama).
    public func decoderLoRA() throws -> DecoderLoRA? {
        guard let rank = loraRank else { return nil }
        return DecoderLoRA(rank: rank, alpha: loraAlpha, dropout: loraDropout, targets: try DecoderProjection.parse(loraTargetsText ?? "q_proj,v_proj"))
    }
}

/// `--freeze embeddings` and `--train-only head`: the one part each can name.
public enum FreezablePart: String, CaseIterable, OptionValue { case embeddings }
public enum TrainOnlyPart: String, CaseIterable, OptionValue { case head }

/// How `train` shows its progress on rank 0's console.
public enum ProgressMode: String, CaseIterable, Codable, Sendable, OptionValue {
    /// A bar when someone watches a terminal, else lines.
    case auto
    /// One line redrawn in place: epoch, step/total, loss, examples/s, ETA, the last validation metric.
    case bar
    /// One line every --log-every steps (batch logs, files), with the ETA and the last validation metric.
    case lines
    /// No step lines (evaluations, notes and the summary still print).
    case none
}

public enum OptionGroups {
    public static let modelAndData = "Model and data", optimization = "Optimization", trainable = "What trains", lora = "LoRA"
    public static let regularization = "Regularization", evaluation = "Evaluation and early stopping"
    public static let checkpoints = "Checkpoints and resuming", exchange = "Gradient exchange", failures = "Failure handling"
    public static let general = "Options"
}

extension TrainingStepOptions {
    /// Freezing, micro-batches, LoRA and the exchange, as `train` and `bench` take them.
    public static var stepSpecs: [OptionSpec<Self>] {
        typealias S = OptionSpec<Self>
        let g = OptionGroups.self
        return [
            S.value("grad-accum", \.gradAccum, group: g.optimization, math: .no, check: Checks.positive(),
                    help: "Gradient accumulation: split each rank's share of --batch-size into K micro-batches (forward and backward one at a time, one exchange and one update per step). Same weights as K=1 (up to float rounding), less activation memory."),
            S(name: "freeze", group: g.trainable,
              help: "Freeze the embeddings (word, position, token type, their LayerNorm): no gradients, no exchange, no optimizer state.",
              choices: FreezablePart.optionChoices, mathematics: .whenSet,
              assign: { root, text in root.freeze.embeddings = try S.parse(text, name: "freeze", check: nil) as FreezablePart == .embeddings },
              recorded: { $0.freeze.embeddings ? "embeddings" as String? : nil }, text: { $0.freeze.embeddings ? "embeddings" : nil }),
            S.value("freeze-layers", \.freeze.layers, group: g.trainable, math: .whenSet, check: Checks.nonNegative(),
                    help: "Freeze the embeddings and the lowest N encoder layers (an MLP's lowest N hidden layers); backward stops at the lowest trainable layer."),
            S(name: "train-only", group: g.trainable, help: "Train only the head (pooler and classifier): a linear probe on frozen features.",
              choices: TrainOnlyPart.optionChoices, mathematics: .whenSet,
              assign: { root, text in root.freeze.onlyHead = try S.parse(text, name: "train-only", check: nil) as TrainOnlyPart == .head },
              recorded: { $0.freeze.onlyHead ? "head" as String? : nil }, text: { $0.freeze.onlyHead ? "head" : nil }),
            S.value("unfreeze-every", \.freeze.unfreezeEvery, group: g.trainable, math: .whenSet,
                    check: { $0 > 0 ? nil : "must be a positive number of epochs" },
                    help: "Gradual unfreezing (ULMFiT): start with the head and add one layer from the top every E epochs (then the embeddings), down to what --freeze/--freeze-layers keep frozen."),
            S.value("lora-rank", \.loraRank, group: g.lora, math: .whenSet, check: Checks.positive(),
                    help: "LoRA: train rank-r adapters on the encoder's linear layers (and the head) instead of the model; the base weights are frozen. best/ and final/ hold the merged model and, in adapter/, the adapter as PEFT saves it."),
            S.value("lora-alpha", \.loraAlpha, group: g.lora, math: .when { $0.loraRank != nil }, check: Checks.positive(),
                    help: "LoRA scale numerator: the update is (alpha / r)·B·A. Default 8 (PEFT's)."),
            S.value("lora-dropout", \.loraDropout, group: g.lora, math: .when { $0.loraRank != nil }, check: Checks.belowOne,
                    help: "LoRA dropout on each adapted layer's input. Default 0 (PEFT's)."),
            S(name: "lora-targets", group: g.lora,
              help: "LoRA: the layers to adapt, comma-separated. An encoder's: query, key, value, attention.output.dense, intermediate.dense, output.dense, or all (the six); default query,value (PEFT's for BERT). A decoder's: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or all; default q_proj,v_proj (PEFT's for Llama).",
              mathematics: .when { $0.loraRank != nil },
              assign: { root, text in
                  // Either family's names; which family the model is decides later which must hold.
                  let encoder = Result { try LoRATarget.parse(text) }, decoder = Result { try DecoderProjection.parse(text) }
                  switch (encoder, decoder) {
                  case (.success(let targets), _): root.loraTargets = targets
                  case (.failure, .success): break
                  case (.failure(let error), .failure):
                      // The encoder's message, with the decoders' names added (one message, said once).
                      throw OptionValueError("\(error); a decoder's: \(DecoderProjection.allCases.map(\.rawValue).joined(separator: ", "))")
                  }
                  root.loraTargetsText = text
              },
              recorded: { o -> any Encodable in
                  guard o.loraRank != nil else { return [String]?.none }
                  // A decoder's names when they are not an encoder's (the encoders' record as before).
                  if let text = o.loraTargetsText, (try? LoRATarget.parse(text)) == nil, let names = try? DecoderProjection.parse(text) {
                      return Optional(names.map(\.rawValue))
                  }
                  return Optional(o.loraTargets.map(\.rawValue))
              },
              text: { $0.loraTargetsText ?? $0.loraTargets.map(\.rawValue).joined(separator: ",") }),
            S.flag("overlap", \.exchange.overlap, invertible: true, group: g.exchange, math: .no,
                   help: "Allreduce gradient buckets while backward is still running (--no-overlap: one allreduce after backward, to measure the difference)."),
            S(name: "bucket-mb", group: g.exchange, help: "Gradient bucket size in MB for the overlapped allreduce.", mathematics: .no,
              assign: { root, text in
                  let check: OptionCheck<Double> = { $0 > 0 && $0.isFinite ? nil : "must be a positive number" }
                  root.exchange.bucketBytes = Int(try S.parse(text, name: "bucket-mb", check: check) * 1_000_000)
              },
              recorded: { Double($0.exchange.bucketBytes) / 1_000_000 }, text: { String(Double($0.exchange.bucketBytes) / 1_000_000) }),
            S.flag("shard-optimizer", \.exchange.shardOptimizer, group: g.exchange, math: .no,
                   help: "ZeRO stage 1: reduce-scatter the gradients, each rank updates 1/N of the parameters and keeps only their optimizer state, then the parameters are all-gathered."),
            S.value("allreduce", \.exchange.allreduce, group: g.exchange, math: .no,
                    help: "How the gradients are summed: ring (point-to-point, each rank sends 2(N-1)/N of the buffer), mpi (Open MPI's MPI_Iallreduce), or auto (ring for buffers of 32Ki floats and more)."),
        ]
    }
}

extension TrainingConfiguration: TrainingStepOptions {
    /// A configuration with every option at its default.
    public static var defaults: TrainingConfiguration { TrainingConfiguration(modelPath: "", trainPath: "", validPath: nil, outputPath: "") }

    /// Every `train` option, in --help's order. The one place an option is declared (besides
    /// its stored property and default, above).
    public static let specs: [OptionSpec<TrainingConfiguration>] = {
        typealias S = OptionSpec<TrainingConfiguration>
        let g = OptionGroups.self
        let step = Dictionary(uniqueKeysWithValues: stepSpecs.map { ($0.name, $0) })
        let lengthMatters: (TrainingConfiguration) -> Bool = { $0.schedule != .constant || $0.warmupSteps != nil || $0.warmupRatio > 0 }
        return [
            // Model and data
            S.value("model", \.modelPath, group: g.modelAndData, math: .no,
                    help: "Model folder to start from (config.json + model.safetensors). Not needed with --resume (the checkpoint holds the model); --resume auto needs it for the fresh start."),
            S.value("train", \.trainPath, group: g.modelAndData, math: .no, required: true,
                    help: "Training data: JSON Lines ({\"features\": [...], \"label\": ...} for an MLP, {\"text\": ..., \"text_pair\": ..., \"label\": ...} for a text model) or CSV with a header and a label column."),
            S.value("valid", \.validPath, group: g.modelAndData, math: .no,
                    help: "Validation data, same format. Needed for evaluation, early stopping and best/."),
            S.value("test", \.testPath, group: g.modelAndData, math: .no,
                    help: "Test data, evaluated once at the end with the best model (or the final one without --valid)."),
            S.value("output", \.outputPath, group: g.modelAndData, math: .no, required: true, help: "Run folder for metrics, checkpoints and models."),
            S.value("max-length", \.maxLength, group: g.modelAndData, math: .whenSet,
                    help: "Text models: tokens per example, [CLS] and [SEP] included; longer texts are truncated (default: the model's limit, at most 128). Batches are packed, never padded."),
            S.value("pooling", \.pooling, group: g.modelAndData, math: .whenSet,
                    help: "Text models without a trained head: mean (masked mean of the tokens, exported as a sentence-transformers folder) or cls (pooler on [CLS], exported as BertForSequenceClassification). Default: the folder's own, else mean."),
            S.value("task", \.taskChoice, group: g.modelAndData, math: .whenSet,
                    help: "Text models: what the head learns. Default: classification when the labels are names, regression (mean squared error) when they are numbers; `--task classification` reads whole-number labels as class names. `--task mlm`: masked-language modelling on unlabelled text (plain text, one document per line, or a text field), to adapt the encoder to a domain before fine-tuning; the run exports a BertForMaskedLM folder. `--task embedding`: contrastive sentence-embedding training (MultipleNegativesRankingLoss) on anchor/positive[/negative] texts, every rank's examples as negatives; validation is retrieval (NDCG@10, ...); the run exports a sentence-transformers folder."),
            S.flag("token-cache", \.tokenCache, invertible: true, group: g.modelAndData, math: .no,
                   help: "Text data (--task mlm corpora, classification and regression files): tokenize each file once, the ranks each a slice, into binary token files that every run, resume and `eval --cache-dir` reuses and reads by memory map, so memory per rank does not grow with the data and the ranks of a host share the pages. A changed file, tokenizer or --max-length gets a new entry. --no-token-cache: every rank reads and tokenizes each file into memory (sentence-embedding pairs are always read so)."),
            S.value("cache-dir", \.cacheDir, group: g.modelAndData, math: .no,
                    help: "Folder of the token cache (default: token-cache/ in --output). Share one between runs of the same data; on a cluster, a folder every rank sees (or build it on each host with `finetune-dist tokenize`)."),
            S.value("mlm-probability", \.mlmProbability, group: g.modelAndData, math: .when { $0.taskChoice == .mlm }, check: Checks.openUnit,
                    help: "--task mlm: the share of (non-special) tokens chosen for prediction; of those 80% become [MASK], 10% a random token, 10% stay."),
            S.flag("whole-word-mask", \.wholeWordMask, group: g.modelAndData, math: .when { $0.taskChoice == .mlm },
                   help: "--task mlm: choose whole words (a token and its ## pieces together) rather than single tokens."),
            S.value("scale", \.contrastiveScale, group: g.modelAndData, math: .when { $0.taskChoice == .embedding },
                    check: { $0 > 0 && $0.isFinite ? nil : "must be a positive number" },
                    help: "--task embedding: the loss's scale on cosine similarities (the inverse temperature; sentence-transformers' default 20)."),
            S.flag("symmetric", \.symmetric, group: g.modelAndData, math: .when { $0.taskChoice == .embedding },
                   help: "--task embedding: also score each positive against every anchor (MultipleNegativesSymmetricRankingLoss); the two cross-entropies are averaged."),
            S.value("mini-batch-size", \.miniBatchSize, group: g.modelAndData, math: .no, check: Checks.positive(),
                    help: "--task embedding: examples per forward pass on a rank (GradCache): embeddings of the whole global batch are computed in mini-batches without keeping activations, then each mini-batch is run again with its share of the gradient. Same weights (up to float rounding), memory of one mini-batch. Default: the rank's whole share at once."),
            // Optimization
            S.value("epochs", \.epochs, group: g.optimization, math: .when(lengthMatters), check: Checks.positive(),
                    help: "Passes over the training data."),
            S.value("max-steps", \.maxSteps, group: g.optimization, math: .when(lengthMatters), check: Checks.positive(),
                    help: "Stop after this many optimizer steps if reached before --epochs."),
            S.value("batch-size", \.batchSize, group: g.optimization, math: .always, check: Checks.positive(),
                    help: "Global batch: examples per optimizer step over all ranks (results do not depend on the rank count)."),
            S.value("lr", \.learningRate, group: g.optimization, math: .always, absentText: "default",
                    check: { $0 > 0 && $0.isFinite ? nil : "must be a positive number" },
                    help: "Peak learning rate. Default: 5e-5 for a pre-trained encoder (BERT family, as the Hugging Face Trainer), 1e-3 for an MLP."),
            S.value("lr-schedule", \.schedule, group: g.optimization, math: .always,
                    help: "Learning-rate schedule after warm-up, as transformers': constant, linear (to 0 at the end), cosine (half-cosine to 0) or polynomial (to --lr-end with --lr-power)."),
            S.value("lr-end", \.lrEnd, group: g.optimization, math: .when { $0.schedule == .polynomial }, check: Checks.nonNegative(),
                    help: "Polynomial schedule: the final learning rate."),
            S.value("lr-power", \.lrPower, group: g.optimization, math: .when { $0.schedule == .polynomial }, check: Checks.positive(),
                    help: "Polynomial schedule: the power of the decay (1: linear to --lr-end)."),
            S.value("layer-lr-decay", \.layerLRDecay, group: g.optimization, math: .whenSet,
                    check: { $0 > 0 && $0 <= 1 ? nil : "must be in (0, 1]" },
                    help: "Layer-wise learning-rate decay: the head trains at --lr, the top layer at D·lr, each group below at D times the one above (embeddings last). E.g. 0.9."),
            step["grad-accum"]!,
            S.value("max-grad-norm", \.maxGradNorm, group: g.optimization, math: .whenSet, check: { $0 > 0 && $0.isFinite ? nil : "must be a positive number" },
                    help: "Clip the averaged gradient to this global L2 norm before the update (torch's clip_grad_norm_; after the exchange, so every rank clips alike)."),
            S.value("warmup-steps", \.warmupSteps, group: g.optimization, math: .when(lengthMatters), check: Checks.nonNegative(),
                    help: "Linear warm-up steps from 0 to --lr (overrides --warmup-ratio)."),
            S.value("warmup-ratio", \.warmupRatio, group: g.optimization, math: .when(lengthMatters), check: Checks.belowOne,
                    help: "Warm-up as a fraction of the run's steps."),
            S.value("optimizer", \.optimizer.kind, group: g.optimization, math: .always,
                    help: "Optimizer: adamw (torch.optim.AdamW semantics) or sgd (with --momentum)."),
            S.value("weight-decay", \.optimizer.weightDecay, group: g.optimization, math: .always, check: Checks.nonNegative(),
                    help: "Weight decay; AdamW decouples it. Not applied to biases and LayerNorm weights (transformers' convention)."),
            S.value("momentum", \.optimizer.momentum, group: g.optimization, math: .when { $0.optimizer.kind == .sgd }, check: Checks.belowOne,
                    help: "SGD momentum."),
            S.value("adam-beta1", \.optimizer.beta1, group: g.optimization, math: .when { $0.optimizer.kind == .adamw }, check: Checks.belowOne,
                    help: "AdamW beta1."),
            S.value("adam-beta2", \.optimizer.beta2, group: g.optimization, math: .when { $0.optimizer.kind == .adamw }, check: Checks.belowOne,
                    help: "AdamW beta2."),
            S.value("adam-epsilon", \.optimizer.epsilon, group: g.optimization, math: .when { $0.optimizer.kind == .adamw },
                    check: Checks.positive(" (it keeps AdamW's division finite)"), help: "AdamW epsilon."),
            S.value("seed", \.seed, group: g.optimization, math: .always, help: "Seed of the data order, dropout and a fresh head's weights."),
            // What trains, LoRA
            step["freeze"]!, step["freeze-layers"]!, step["train-only"]!, step["unfreeze-every"]!,
            step["lora-rank"]!, step["lora-alpha"]!, step["lora-dropout"]!, step["lora-targets"]!,
            // Regularization
            S.value("dropout", \.hiddenDropout, group: g.regularization, math: .whenSet, check: Checks.belowOne,
                    help: "Dropout after the embeddings and each sublayer (BERT's hidden_dropout_prob; an MLP's dropout). Default: config.json's."),
            S.value("attention-dropout", \.attentionDropout, group: g.regularization, math: .whenSet, check: Checks.belowOne,
                    help: "Dropout on the attention probabilities (attention_probs_dropout_prob). Default: config.json's."),
            S.value("classifier-dropout", \.classifierDropout, group: g.regularization, math: .whenSet, check: Checks.belowOne,
                    help: "Dropout before the classifier with [CLS] pooling (classifier_dropout). Default: config.json's classifier_dropout, else its hidden_dropout_prob."),
            S.value("label-smoothing", \.labelSmoothing, group: g.regularization, math: .whenSet, check: Checks.belowOne,
                    help: "Classification: train against (1 - e) on the label + e/K on every class (torch's label_smoothing). Validation reports the plain loss."),
            S(name: "class-weights", group: g.regularization,
              help: "Classification: weight each example's loss by its label: 'balanced' (n / (K * n_label), from the training data) or one weight per label in the model's label order, e.g. 1,4,1.",
              mathematics: .whenSet,
              assign: { root, text in
                  do { root.classWeights = try ClassWeights(parsing: text) } catch { throw OptionValueError("\(error)") }
              },
              recorded: { $0.classWeights?.description }, text: { $0.classWeights?.description }),
            // Evaluation and early stopping
            S.value("eval-every", \.evalEvery, group: g.evaluation, math: .no, check: Checks.nonNegative(),
                    help: "Evaluate every N steps as well as at each epoch end (0: epoch ends only)."),
            S.value("eval-batch-size", \.evalBatchSize, group: g.evaluation, math: .no, check: Checks.positive(),
                    help: "Examples per evaluation forward pass on each rank."),
            S.value("patience", \.patience, group: g.evaluation, math: .no, check: Checks.positive(),
                    help: "Early stopping: stop after this many evaluations without improvement."),
            S.value("min-delta", \.minDelta, group: g.evaluation, math: .no,
                    check: Checks.nonNegative(" (it is the size of an improvement, in either direction)"),
                    help: "Smallest change of the monitored metric that counts as an improvement."),
            S(name: "monitor", group: g.evaluation,
              help: "Metric for early stopping and best/ (the direction is known): val_loss (the default); classification val_accuracy, val_macro_f1, val_mcc; regression val_mse, val_mae, val_r2; masked-language modelling val_accuracy, val_perplexity; sentence embeddings val_ndcg@10 (their default), val_mrr@10, val_map@100, val_recall@1, val_recall@10, val_accuracy@1. Needs --valid.",
              choices: MonitoredMetric.optionChoices, mathematics: .no,
              assign: { root, text in root.monitorChoice = try S.parse(text, name: "monitor", check: nil) },
              // Without validation data nothing is monitored (and --monitor would be refused when the record is repeated).
              recorded: { $0.validPath == nil ? nil : Optional($0.monitor) }, text: { _ in nil }),
            S.value("train-eval-examples", \.trainEvalExamples, group: g.evaluation, math: .no, check: Checks.nonNegative(),
                    help: "Also evaluate N training examples (a fixed random subset, without dropout) at each evaluation, logged as train_eval_*, so the gap to validation shows."),
            // Checkpoints and resuming
            S.value("save-every", \.saveEvery, group: g.checkpoints, math: .no, check: Checks.nonNegative(),
                    help: "Write a checkpoint every N steps (0: not by steps). Checkpoints are also written by time (--save-every-minutes), at every epoch end (--save-each-epoch), at the end, and when the run is stopped by Ctrl-C, SIGTERM or SIGUSR1."),
            S.value("save-every-minutes", \.saveEveryMinutes, group: g.checkpoints, math: .no, check: Checks.nonNegative(" (0: not by time)"),
                    help: "Write a checkpoint when this many minutes have passed since the last one (rank 0's clock; 0: not by time), so that a killed run (kill -9, a lost node) loses at most that much."),
            S.flag("save-each-epoch", \.saveEachEpoch, invertible: true, group: g.checkpoints, math: .no,
                   help: "Write a checkpoint at the end of every epoch."),
            S.flag("overwrite", \.overwrite, group: g.checkpoints, math: .no,
                   help: "A fresh run into an --output that holds an earlier run replaces it (its checkpoints, best/, final/, metrics and records are deleted first); without it such a folder is refused. As the Hugging Face Trainer's overwrite_output_dir."),
            S(name: "resume", group: g.checkpoints,
              help: "Continue the run in --output from its newest complete checkpoint (any number of ranks). `--resume auto` starts fresh when there is no checkpoint yet, so a requeued batch job can always pass it.",
              form: .flag(invertible: false, optionalValues: ["auto"]), mathematics: .no,
              assign: { root, text in root.resume = text == "auto" ? .auto : (text == "true" ? .on : .off) },
              recorded: { $0.resume }, text: { $0.resume == .auto ? "auto" : String($0.resume == .on) }),
            S.value("stop-after-steps", \.stopAfterSteps, group: g.checkpoints, math: .no, check: Checks.positive(),
                    help: "Stop cleanly after step K with a checkpoint, as an interruption would (the run's length is unchanged; continue with --resume)."),
            S.value("keep-checkpoints", \.keepCheckpoints, group: g.checkpoints, math: .no, check: Checks.positive(),
                    help: "Keep only the N newest checkpoints (the best evaluation's checkpoint is kept too). Default: all."),
            S.value("log-every", \.logEvery, group: g.checkpoints, math: .no, check: Checks.positive(),
                    help: "Print and record a training line every N steps."),
            S(name: "accept-changed", group: g.checkpoints,
              help: "Resume although these options (comma-separated, as named in the refusal message, e.g. freeze-layers,lr) differ from the checkpoint's. Newly trainable tensors start without optimizer state.",
              mathematics: .no,
              assign: { root, text in root.acceptChanged = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } },
              recorded: { $0.acceptChanged }, text: { $0.acceptChanged.isEmpty ? nil : $0.acceptChanged.joined(separator: ",") }),
            // Gradient exchange
            step["overlap"]!, step["bucket-mb"]!, step["shard-optimizer"]!, step["allreduce"]!,
            // Failure handling
            S.value("collective-timeout", \.collectiveTimeout, group: g.failures, math: .no, check: Checks.positive(),
                    help: "Seconds any collective of the training loop may take; past it every rank that can still act aborts with a message naming the step (a lost rank, a cut network)."),
            S.value("io-timeout", \.ioTimeout, group: g.failures, math: .no, check: Checks.positive(),
                    help: "Seconds the other ranks wait while rank 0 writes checkpoints and models."),
            S.value("on-nonfinite", \.onNonFinite, group: g.failures, math: .no,
                    help: "A NaN or Inf in the loss or gradients on any rank: stop (naming step and rank) or skip the update."),
            S.value("check-replicas-every", \.checkReplicasEvery, group: g.failures, math: .no, check: Checks.nonNegative(),
                    help: "Compare a checksum of every rank's parameters every N steps; a mismatch stops the run (0: never)."),
            // General
            S.value("progress", \.progressDisplay, group: g.general, math: .no,
                    help: "Progress on the console: bar (one line redrawn: epoch, step/total, loss, examples/s, ETA, last validation metric), lines (one line every --log-every steps, with ETA: for batch logs), none, or auto (bar when mpirun's or this program's output is a terminal, else lines)."),
            S.flag("tensorboard", \.tensorBoard, invertible: true, group: g.general, math: .no,
                   help: "Write TensorBoard event files (training loss, learning rate, throughput per rank, every validation and test figure) under the run folder's tensorboard/ (open them with `tensorboard`, the run folder as its logdir)."),
            S.value("config", \.configFile, group: g.general, math: .no,
                    help: "A YAML or JSON file of these options (keys as the options: batch_size or batch-size); options given here win over it. A run's training_config.json works too, to repeat that run."),
        ]
    }()

    /// The rules between options (each option's own range is checked as it is read). `given`:
    /// the names of the options the user set.
    public func checkCombinations(given: Set<String>) throws {
        func refuse(_ message: String) throws { throw OptionValueError(message) }
        if taskChoice != .mlm && (mlmProbability != Self.defaults.mlmProbability || wholeWordMask) {
            try refuse("--mlm-probability and --whole-word-mask need --task mlm")
        }
        if taskChoice != .embedding && (contrastiveScale != Self.defaults.contrastiveScale || symmetric || miniBatchSize != nil) {
            try refuse("--scale, --symmetric and --mini-batch-size need --task embedding")
        }
        if taskChoice == .embedding {
            if batchSize < 2 { try refuse("--batch-size \(batchSize): contrastive training needs at least 2 examples per step (the other examples are each anchor's negatives)") }
            if gradAccum > 1 { try refuse("--grad-accum splits a step into independent micro-batches, which would take negatives away from each anchor; with --task embedding use --mini-batch-size (GradCache: the same step in bounded memory)") }
            if labelSmoothing > 0 || classWeights != nil { try refuse("--label-smoothing and --class-weights need a classifier; --task embedding trains sentence embeddings") }
        }
        if freeze.onlyHead && freeze.unfreezeEvery != nil {
            try refuse("--train-only head and --unfreeze-every contradict each other: gradual unfreezing starts with the head alone")
        }
        if overwrite && resume != .off { try refuse("--overwrite replaces the run in --output, --resume continues it: give one of them") }
        if validPath == nil {
            if trainEvalExamples > 0 { try refuse("--train-eval-examples needs --valid (the training subset is evaluated beside the validation set)") }
            if patience != nil { try refuse("--patience needs --valid (early stopping watches the validation metric)") }
            if given.contains("monitor") { try refuse("--monitor \(monitor.rawValue) needs --valid (the metric is measured on the validation data)") }
        }
        if modelPath.isEmpty && resume != .on {
            try refuse("--model is needed to start a run (only --resume, which continues the checkpoint in --output, does without it)")
        }
    }
}
