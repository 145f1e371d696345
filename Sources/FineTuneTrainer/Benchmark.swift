import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

/// `finetune-dist bench`: training steps of a BERT encoder on random tokens, timed part by part,
/// through the same `TrainingStep` as `train`.
public struct BenchmarkConfiguration: Sendable, TrainingStepOptions {
    /// A model folder, or nil for `shape`.
    public var modelPath: String? = nil
    /// A named shape with random weights: "minilm" (all-MiniLM-L6-v2's), "bert-base", "mpnet-base" or "tiny".
    public var shape = "minilm"
    public var perRankBatch = 16
    public var sequenceLength = 64
    public var steps = 10
    public var warmupSteps = 2
    public var seed: UInt64 = 0
    public var exchange = GradientExchange.Settings()
    /// Which parameters train, as in `train`.
    public var freeze = FreezeSettings()
    /// Micro-batches per rank per step.
    public var gradAccum = 1
    /// LoRA adapters (the base frozen), as in `train`: rank nil is none.
    public var loraRank: Int? = nil
    public var loraAlpha: Double = 8, loraDropout: Double = 0
    public var loraTargets: [LoRATarget] = [.query, .value]
    public var loraTargetsText: String? = nil
    /// Masked-language modelling (15 % of the tokens masked) instead of a classifier head.
    public var maskedLM = false
    /// Contrastive sentence-embedding steps (train --task embedding): each example an anchor and a
    /// positive of --seq-len tokens, in mini-batches of `miniBatchSize` examples (GradCache; nil: whole).
    public var embedding = false
    public var miniBatchSize: Int? = nil
    /// Texts per example: 2 (anchor, positive) for sentence embeddings, else 1.
    var textsPerExample: Int { embedding ? 2 : 1 }
    public init() {}

    /// `bench`'s options: its own, then the training step's that `train` has too.
    public static let specs: [OptionSpec<BenchmarkConfiguration>] = {
        typealias S = OptionSpec<BenchmarkConfiguration>
        let g = OptionGroups.general
        let shared: Set<String> = ["grad-accum", "freeze", "freeze-layers", "train-only", "lora-rank", "lora-alpha", "lora-dropout",
                                   "lora-targets", "overlap", "bucket-mb", "shard-optimizer", "allreduce"]
        return [
            S.value("model", \.modelPath, group: g, math: .no, help: "A text model: an encoder folder (BERT, MPNet, RoBERTa, DistilBERT), or a decoder (a Llama/Qwen2 folder or a .gguf file: causal-LM steps, every position scored); default: the named --shape with random weights."),
            S.value("shape", \.shape, group: g, math: .no,
                    help: "Named shape with random weights: minilm (all-MiniLM-L6-v2's), bert-base (bert-base-uncased's), mpnet-base (all-mpnet-base-v2's) or tiny."),
            S.value("per-rank-batch", \.perRankBatch, group: g, math: .no, check: Checks.positive(), help: "Sequences per rank per step."),
            S.value("seq-len", \.sequenceLength, group: g, math: .no, check: { $0 >= 2 ? nil : "must be at least 2 ([CLS] and [SEP])" },
                    help: "Tokens per sequence."),
            S.value("steps", \.steps, group: g, math: .no, check: Checks.positive(), help: "Timed steps (after the warm-up)."),
            S.value("warmup", \.warmupSteps, group: g, math: .no, check: Checks.nonNegative(), help: "Untimed warm-up steps."),
            S.flag("mlm", \.maskedLM, group: g, math: .no,
                   help: "Masked-language modelling (train --task mlm): 15% of the tokens masked, BertForMaskedLM's head at those positions."),
            S.flag("embedding", \.embedding, group: g, math: .no,
                   help: "Contrastive sentence-embedding steps (train --task embedding): --per-rank-batch (anchor, positive) pairs of --seq-len tokens each, every rank's examples as negatives."),
            S.value("mini-batch-size", \.miniBatchSize, group: g, math: .no, check: Checks.positive(),
                    help: "--embedding: pairs per forward pass (GradCache, as train's); the activation memory is one mini-batch's."),
        ] + stepSpecs.filter { shared.contains($0.name) }
    }()

    /// The rules between options (each option's range is checked as it is read).
    public func checkCombinations() throws {
        guard gradAccum <= perRankBatch else { throw OptionValueError("--grad-accum must be in 1...--per-rank-batch") }
        if miniBatchSize != nil && !embedding { throw OptionValueError("--mini-batch-size needs --embedding") }
        if embedding && (maskedLM || gradAccum > 1) { throw OptionValueError("--embedding does not combine with --mlm or --grad-accum (use --mini-batch-size)") }
        if let size = miniBatchSize, size > perRankBatch { throw OptionValueError("--mini-batch-size must be in 1...--per-rank-batch") }
        guard modelPath != nil || Benchmark.shapes.contains(shape) else {
            throw OptionValueError("--shape \(shape) is not known; known: \(Benchmark.shapes.joined(separator: ", ")) (or give --model DIR)")
        }
    }
}

public struct BenchmarkResult: Encodable {
    public var ranks = 1
    public var threadsPerRank = 1
    public var stepSeconds = 0.0
    public var forwardSeconds = 0.0, backwardSeconds = 0.0, commExposedSeconds = 0.0, optimizerSeconds = 0.0, otherSeconds = 0.0
    /// The exposed communication's parts (medians, slowest rank): embedding rows, waiting for buckets, finite check.
    public var sparseRowsSeconds = 0.0, bucketWaitSeconds = 0.0, finiteCheckSeconds = 0.0
    public var examplesPerSecond = 0.0, tokensPerSecond = 0.0
    /// Achieved rate over all ranks, by the FLOP formula 3·T·(2·L·(4C² + 2CF) + 4·L·T·C) per example.
    public var gflops = 0.0
    public var sgemmGFLOPS = 0.0
    /// gflops / (ranks · threads per rank · single-thread sgemm rate).
    public var fractionOfSgemm = 0.0
    public var peakRSSBytes = 0
    /// Bytes of optimizer state (AdamW's two moments) this rank holds.
    public var optimizerStateBytes = 0
    /// What a step needs at least: weights + gradients + optimizer state + the activation arena.
    public var theoreticalBytes = 0
    public var parameters = 0
    public var trainableParameters = 0
    /// The activation arena (falls with --grad-accum: it holds one micro-batch).
    public var activationBytes = 0
    public var flopsPerExample = 0.0
    /// Floats this rank put into collectives per step (gradients, sparse rows, controls).
    public var floatsExchangedPerStep = 0
    /// Median seconds per step in each kind of kernel (rank 0), and the FLOP rate of the dense
    /// layers' matrix products (by 3·2·T·L·(4C² + 2CF) per example) and of attention's (3·4·L·T²·C).
    public var kernelSeconds = KernelTimes()
    public var linearGFLOPS = 0.0, attentionGFLOPS = 0.0
    /// The OpenBLAS kernel set in use, the fastest the CPU supports, and that set's sgemm rate when it differs.
    public var blasCore = "", bestBLASCore = ""
    public var bestSgemmGFLOPS: Double? = nil

    enum CodingKeys: String, CodingKey {
        case ranks, threadsPerRank = "threads_per_rank", stepSeconds = "step_s", examplesPerSecond = "examples_per_s"
        case tokensPerSecond = "tokens_per_s", gflops, sgemmGFLOPS = "sgemm_gflops", fractionOfSgemm = "fraction_of_sgemm"
        case forwardSeconds = "forward_s", backwardSeconds = "backward_s", commExposedSeconds = "comm_exposed_s"
        case optimizerSeconds = "optimizer_s", otherSeconds = "other_s", peakRSSBytes = "peak_rss_bytes", parameters
        case trainableParameters = "trainable_parameters", activationBytes = "activation_bytes"
        case optimizerStateBytes = "optimizer_state_bytes", theoreticalBytes = "theoretical_bytes"
        case flopsPerExample = "flops_per_example", floatsExchangedPerStep = "floats_exchanged_per_step"
        case linearGFLOPS = "linear_gflops", attentionGFLOPS = "attention_gflops", kernelSeconds = "kernel_s"
        case blasCore = "blas_core", bestBLASCore = "best_blas_core", bestSgemmGFLOPS = "best_sgemm_gflops"
        case sparseRowsSeconds = "sparse_rows_s", bucketWaitSeconds = "bucket_wait_s", finiteCheckSeconds = "finite_check_s"
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ranks, forKey: .ranks); try c.encode(threadsPerRank, forKey: .threadsPerRank); try c.encode(stepSeconds, forKey: .stepSeconds)
        try c.encode(examplesPerSecond, forKey: .examplesPerSecond); try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
        try c.encode(gflops, forKey: .gflops); try c.encode(sgemmGFLOPS, forKey: .sgemmGFLOPS); try c.encode(fractionOfSgemm, forKey: .fractionOfSgemm)
        try c.encode(forwardSeconds, forKey: .forwardSeconds); try c.encode(backwardSeconds, forKey: .backwardSeconds)
        try c.encode(commExposedSeconds, forKey: .commExposedSeconds); try c.encode(optimizerSeconds, forKey: .optimizerSeconds)
        try c.encode(otherSeconds, forKey: .otherSeconds); try c.encode(peakRSSBytes, forKey: .peakRSSBytes); try c.encode(parameters, forKey: .parameters)
        try c.encode(trainableParameters, forKey: .trainableParameters); try c.encode(activationBytes, forKey: .activationBytes)
        try c.encode(optimizerStateBytes, forKey: .optimizerStateBytes); try c.encode(theoreticalBytes, forKey: .theoreticalBytes)
        try c.encode(flopsPerExample, forKey: .flopsPerExample); try c.encode(floatsExchangedPerStep, forKey: .floatsExchangedPerStep)
        try c.encode(linearGFLOPS, forKey: .linearGFLOPS); try c.encode(attentionGFLOPS, forKey: .attentionGFLOPS)
        try c.encode(Dictionary(uniqueKeysWithValues: KernelKind.allCases.map { ($0.name, kernelSeconds[$0]) }), forKey: .kernelSeconds)
        try c.encode(blasCore, forKey: .blasCore); try c.encode(bestBLASCore, forKey: .bestBLASCore)
        try c.encode(bestSgemmGFLOPS ?? sgemmGFLOPS, forKey: .bestSgemmGFLOPS)
        try c.encode(sparseRowsSeconds, forKey: .sparseRowsSeconds); try c.encode(bucketWaitSeconds, forKey: .bucketWaitSeconds)
        try c.encode(finiteCheckSeconds, forKey: .finiteCheckSeconds)
    }
}

public enum Benchmark {
    /// FLOPs of one example's forward and backward pass through a BERT encoder of T tokens.
    public static func flopsPerExample(layers L: Int, hidden C: Int, intermediate F: Int, tokens T: Int) -> Double {
        let (l, c, f, t) = (Double(L), Double(C), Double(F), Double(T))
        return 3 * t * (2 * l * (4 * c * c + 2 * c * f) + 4 * l * t * c)
    }

    public static let shapes = ["minilm", "bert-base", "mpnet-base", "tiny"]

    static func namedConfig(_ shape: String) throws -> EncoderConfig {
        let json: String
        switch shape {
        case "minilm":
            json = #"{"model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu"}"#
        case "bert-base":
            json = #"{"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu"}"#
        case "mpnet-base":
            json = #"{"model_type": "mpnet", "vocab_size": 30527, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514, "hidden_act": "gelu", "layer_norm_eps": 1e-5, "pad_token_id": 1, "relative_attention_num_buckets": 32}"#
        case "tiny":
            json = #"{"model_type": "bert", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 128, "type_vocab_size": 2, "hidden_act": "gelu"}"#
        default:
            throw FineTuneError("unknown shape \"\(shape)\"; known: \(shapes.joined(separator: ", ")) (or give --model DIR)")
        }
        return try EncoderConfig.decode(Data(json.utf8), path: shape)
    }

    public static func run(_ c: BenchmarkConfiguration, comm: Communicator) throws -> BenchmarkResult {
        let budget = try ThreadBudget.apply(comm)
        let task = c.maskedLM ? TaskKind.maskedLanguageModel : c.embedding ? TaskKind.embedding : TaskKind.classification(labels: ["a", "b"])
        // The model, and its [CLS] and [SEP] ids (the named shapes' random vocabulary: 2 and 3).
        let (model, cls, sep): (TextModel, Int32, Int32) = try comm.agree("building the model") {
            if let path = c.modelPath {
                let description = try ModelFolder.describe(FolderSource(path))
                if case .decoder(let decoder) = description.kind {
                    guard !c.maskedLM && !c.embedding else { throw FineTuneError("--mlm and --embedding train encoders; \(path) is a decoder") }
                    let bundle = description.build(task: .causalLanguageModel, decoderLoRA: try c.decoderLoRA())
                    if comm.isRoot { try description.loadWeights(into: bundle, seed: c.seed) }
                    let end = Int32(decoder.config.eosTokenIDs.first ?? 0)
                    return (bundle.decoderModel!, end, end)
                }
                let bundle = description.build(task: c.maskedLM || c.embedding ? task : description.task ?? task, lora: c.lora)
                guard let model = bundle.model as? TextModel, let tokenizer = bundle.tokenizer else {
                    throw FineTuneError("\(path): bench measures text encoders (BERT, MPNet, RoBERTa, DistilBERT)")
                }
                if comm.isRoot { try description.loadWeights(into: bundle, seed: c.seed) }
                if c.maskedLM { try bundle.enableMasking(probability: TrainingConfiguration.defaults.mlmProbability, wholeWord: false) }
                return (model, tokenizer.clsID, tokenizer.sepID)
            }
            let m = BertModel(config: try namedConfig(c.shape), pooling: .mean, task: task, lora: c.lora)
            var rng = SplitMix64(seed: c.seed)
            for i in 0..<m.parameters.count { m.parameters[i] = Float(rng.nextNormal() * 0.02) }
            m.initializeAdapters(seed: c.seed)
            if c.maskedLM {
                // The named shapes' random vocabulary: 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP], 4 [MASK].
                m.masking = MaskingSettings(maskID: 4, vocabularySize: m.config.vocabSize, specialIDs: [0, 1, 2, 3, 4])
            }
            return (m, 2, 3)
        }
        try comm.broadcast(model.parameters, root: 0)
        guard c.sequenceLength >= 2, c.sequenceLength <= model.maxPositions else {
            throw FineTuneError("--seq-len must be in 2...\(model.maxPositions)")
        }
        model.trainableFrom = try c.freeze.trainableFrom(model.parameterGroups, epoch: 0)
        let step = TrainingStep(model: model, optimizer: OptimizerSettings(), comm: comm, exchange: c.exchange)

        // Random tokens; the examples of each rank are distinct (they key dropout). The rank's
        // batch in `gradAccum` micro-batches.
        var rng = SplitMix64(seed: combineKey(c.seed, UInt64(comm.rank)))
        // Sentence embeddings: mini-batches of pairs, their texts column by column as PairDataset gives them.
        let texts = c.textsPerExample
        let passes = c.embedding ? (c.perRankBatch + (c.miniBatchSize ?? c.perRankBatch) - 1) / (c.miniBatchSize ?? c.perRankBatch) : c.gradAccum
        let microBatches = (0..<passes).map { part -> Batch in
            let examples = c.embedding ? (part * (c.miniBatchSize ?? c.perRankBatch))..<min(c.perRankBatch, (part + 1) * (c.miniBatchSize ?? c.perRankBatch))
                                       : Sharding.slice(count: c.perRankBatch, rank: part, size: c.gradAccum)
            var batch = Batch(exampleIndices: [])
            for column in 0..<texts {
                for e in examples {
                    batch.exampleIndices.append((comm.rank * c.perRankBatch + e) * texts + column)
                    batch.tokenIDs.append(cls)
                    for _ in 0..<(c.sequenceLength - 2) { batch.tokenIDs.append(Int32(rng.next() % UInt64(model.vocabularySize))) }
                    batch.tokenIDs.append(sep)
                    batch.tokenTypeIDs += [Int32](repeating: 0, count: c.sequenceLength)
                    batch.sequenceStarts.append(batch.tokenIDs.count)
                    if model.task == .causalLanguageModel {
                        // Every position predicts the next token of its own sequence.
                        let start = batch.tokenIDs.count - c.sequenceLength
                        for k in start..<(batch.tokenIDs.count - 1) {
                            batch.nextTokenPositions.append(Int32(k)); batch.nextTokenTargets.append(batch.tokenIDs[k + 1])
                        }
                    } else if !c.maskedLM && !c.embedding { batch.classTargets.append(Int32(rng.next() % 2)) }
                }
            }
            return batch
        }
        let share = TrainingStep.ContrastiveShare(miniBatches: microBatches, examplesByRank: [Int](repeating: c.perRankBatch, count: comm.size),
                                                  columns: texts)

        let sgemm = OpenBLAS.singleThreadSgemmGFLOPS()
        var samples: [TrainingStep.Timings] = []
        var kernelSamples: [KernelTimes] = []
        KernelProfiler.isEnabled = true
        defer { KernelProfiler.isEnabled = false }
        for stepIndex in 0..<(c.warmupSteps + c.steps) {
            try comm.barrier()
            _ = KernelProfiler.take()
            let outcome = c.embedding
                ? try step.run(contrastive: share, loss: ContrastiveLoss(), dropoutSeed: c.seed, step: stepIndex, learningRate: 1e-5, preempted: false)
                : try step.run(microBatches: microBatches, dropoutSeed: c.seed, step: stepIndex, learningRate: 1e-5, preempted: false)
            let kernels = KernelProfiler.take()
            if stepIndex >= c.warmupSteps {
                samples.append(outcome.timings)
                kernelSamples.append(kernels)
            }
        }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        }
        let parts: [KeyPath<TrainingStep.Timings, Double>] = [\.total, \.forward, \.backward, \.exposedCommunication, \.optimizer,
                                                              \.exchange.sparseRows, \.exchange.waiting, \.exchange.finiteCheck]
        // The slowest rank sets the pace: the medians are reduced with max over ranks.
        var slowest = parts.map { path in Int64(median(samples.map { $0[keyPath: path] }) * 1e9) } + [Int64(peakResidentBytes())]
        try comm.allreduce(&slowest, op: .max)
        let everyone = slowest.prefix(parts.count).map { Double($0) * 1e-9 }
        var r = BenchmarkResult()
        r.ranks = comm.size
        r.threadsPerRank = budget.threads
        r.stepSeconds = everyone[0]
        r.forwardSeconds = everyone[1]; r.backwardSeconds = everyone[2]; r.commExposedSeconds = everyone[3]; r.optimizerSeconds = everyone[4]
        r.otherSeconds = max(0, r.stepSeconds - r.forwardSeconds - r.backwardSeconds - r.commExposedSeconds - r.optimizerSeconds)
        r.sparseRowsSeconds = everyone[5]; r.bucketWaitSeconds = everyone[6]; r.finiteCheckSeconds = everyone[7]
        let examples = Double(c.perRankBatch * comm.size)
        r.examplesPerSecond = examples / r.stepSeconds
        r.tokensPerSecond = examples * Double(texts * c.sequenceLength) / r.stepSeconds
        let shape = model.transformerShape
        // A pair is two sequences; GradCache's second forward pass is not counted (it is overhead).
        r.flopsPerExample = (model as? DecoderModel)?.trainingFLOPs(tokens: c.sequenceLength)
            ?? Double(texts) * flopsPerExample(layers: shape.layers, hidden: shape.hidden, intermediate: shape.intermediate, tokens: c.sequenceLength)
        r.gflops = r.flopsPerExample * r.examplesPerSecond / 1e9
        r.sgemmGFLOPS = sgemm
        for kind in KernelKind.allCases { r.kernelSeconds[kind] = median(kernelSamples.map { $0[kind] }) }
        let (L, C, F, T) = (Double(shape.layers), Double(shape.hidden), Double(shape.intermediate), Double(c.sequenceLength))
        let localExamples = Double(c.perRankBatch * texts)
        if let decoder = model as? DecoderModel {
            let flops = decoder.trainingFLOPBreakdown(tokens: c.sequenceLength)
            r.linearGFLOPS = localExamples * flops.layers / max(r.kernelSeconds[.linear], 1e-12) / 1e9
            r.attentionGFLOPS = localExamples * flops.attention / max(r.kernelSeconds[.attention], 1e-12) / 1e9
        } else {
            r.linearGFLOPS = localExamples * 3 * 2 * T * L * (4 * C * C + 2 * C * F) / max(r.kernelSeconds[.linear], 1e-12) / 1e9
            r.attentionGFLOPS = localExamples * 3 * 4 * L * T * T * C / max(r.kernelSeconds[.attention], 1e-12) / 1e9
        }
        r.fractionOfSgemm = r.gflops / (Double(comm.size * budget.threads) * sgemm)
        r.peakRSSBytes = Int(slowest[parts.count])
        r.parameters = model.layout.count
        r.trainableParameters = model.trainableRange.count
        r.floatsExchangedPerStep = step.exchange.floatsExchanged
        r.optimizerStateBytes = step.optimizer.moments.reduce(0) { $0 + $1.count } * MemoryLayout<Float>.stride
        r.activationBytes = model.activationBytes
        r.theoreticalBytes = (model.parameters.count + model.gradients.count) * 4 + r.optimizerStateBytes + model.activationBytes
        return r
    }

    /// Peak resident set size of this process (getrusage's ru_maxrss, in kB on Linux).
    public static func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) * 1024
    }
}
