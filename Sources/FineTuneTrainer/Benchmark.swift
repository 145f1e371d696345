import FineTuneCore
import FineTuneDistributed
import Foundation

/// `finetune-dist bench`: training steps of a BERT encoder on random tokens, timed part by part.
public struct BenchmarkConfiguration: Sendable {
    /// A model folder, or nil for `shape`.
    public var modelPath: String? = nil
    /// A named shape with random weights: "minilm" (all-MiniLM-L6-v2's) or "tiny".
    public var shape = "minilm"
    public var perRankBatch = 16
    public var sequenceLength = 64
    public var steps = 10
    public var warmupSteps = 2
    public var seed: UInt64 = 0
    public var overlap = true
    public var shardOptimizer = false
    public var bucketMegabytes = 25.0
    public init() {}
}

public struct BenchmarkResult {
    public var ranks = 1
    public var threadsPerRank = 1
    public var stepSeconds = 0.0
    public var forwardSeconds = 0.0, backwardSeconds = 0.0, commExposedSeconds = 0.0, optimizerSeconds = 0.0, otherSeconds = 0.0
    public var examplesPerSecond = 0.0, tokensPerSecond = 0.0
    /// Achieved rate over all ranks, by the FLOP formula 3·T·(2·L·(4C² + 2CF) + 4·L·T·C) per example.
    public var gflops = 0.0
    public var sgemmGFLOPS = 0.0
    /// gflops / (ranks · threads per rank · single-thread sgemm rate).
    public var fractionOfSgemm = 0.0
    public var peakRSSBytes = 0
    /// Bytes of optimizer state (AdamW's two moments) this rank holds.
    public var optimizerStateBytes = 0
    /// What a step needs at least: weights + gradients + optimizer state + the activations kept
    /// for backward and the backward scratch, as allocated.
    public var theoreticalBytes = 0
    public var parameters = 0
    public var flopsPerExample = 0.0
    /// Median seconds per step in each kind of kernel (rank 0), and the FLOP rate of the dense
    /// layers' matrix products (by 3·2·T·L·(4C² + 2CF) per example) and of attention's (3·4·L·T²·C).
    public var kernelSeconds = KernelTimes()
    public var linearGFLOPS = 0.0, attentionGFLOPS = 0.0

    public var json: [String: Any] {
        ["ranks": ranks, "threads_per_rank": threadsPerRank, "step_s": stepSeconds, "examples_per_s": examplesPerSecond,
         "tokens_per_s": tokensPerSecond, "gflops": gflops, "sgemm_gflops": sgemmGFLOPS, "fraction_of_sgemm": fractionOfSgemm,
         "forward_s": forwardSeconds, "backward_s": backwardSeconds, "comm_exposed_s": commExposedSeconds,
         "optimizer_s": optimizerSeconds, "other_s": otherSeconds, "peak_rss_bytes": peakRSSBytes, "parameters": parameters,
         "optimizer_state_bytes": optimizerStateBytes, "theoretical_bytes": theoreticalBytes,
         "flops_per_example": flopsPerExample, "linear_gflops": linearGFLOPS, "attention_gflops": attentionGFLOPS,
         "kernel_s": Dictionary(uniqueKeysWithValues: KernelKind.allCases.map { ($0.name, kernelSeconds[$0]) })]
    }
}

public enum Benchmark {
    /// FLOPs of one example's forward and backward pass through a BERT encoder of T tokens.
    public static func flopsPerExample(layers L: Int, hidden C: Int, intermediate F: Int, tokens T: Int) -> Double {
        let (l, c, f, t) = (Double(L), Double(C), Double(F), Double(T))
        return 3 * t * (2 * l * (4 * c * c + 2 * c * f) + 4 * l * t * c)
    }

    static func namedConfig(_ shape: String) throws -> [String: Any] {
        switch shape {
        case "minilm":
            return ["model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                    "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu"]
        case "tiny":
            return ["model_type": "bert", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "intermediate_size": 128, "max_position_embeddings": 128, "type_vocab_size": 2, "hidden_act": "gelu"]
        default:
            throw FineTuneError("unknown shape \"\(shape)\"; known: minilm, tiny (or give --model DIR)")
        }
    }

    public static func run(_ c: BenchmarkConfiguration, comm: Communicator) throws -> BenchmarkResult {
        let budget = try ThreadBudget.apply(comm)
        let task = TaskKind.classification(labels: ["a", "b"])
        let model: BertClassifier = try comm.agree("building the model") {
            if let path = c.modelPath {
                let description = try ModelFolder.describe(FolderSource(path))
                guard case .bert = description.kind else { throw FineTuneError("\(path): bench measures BERT-family models") }
                let m = description.build(task: description.task ?? task) as! BertClassifier
                if comm.isRoot { try description.loadWeights(into: m, seed: c.seed) }
                return m
            }
            let config = try BertConfig(json: try namedConfig(c.shape), path: c.shape)
            let tokenizer = try WordPieceTokenizer(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]"], lowercase: true)
            let m = BertClassifier(config: config, pooling: .mean, task: task, tokenizer: tokenizer, tokenizerFiles: [:])
            var rng = SplitMix64(seed: c.seed)
            for i in 0..<m.parameters.count { m.parameters[i] = Float(rng.nextNormal() * 0.02) }
            return m
        }
        try comm.broadcast(model.parameters, root: 0)
        guard c.sequenceLength >= 2, c.sequenceLength <= model.config.maxPositions else {
            throw FineTuneError("--seq-len must be in 2...\(model.config.maxPositions)")
        }
        let optimizer = Optimizer(settings: OptimizerSettings(), layout: model.layout,
                                  shard: c.shardOptimizer ? Sharding.slice(count: model.layout.count, rank: comm.rank, size: comm.size) : nil)

        // Random tokens; the examples of each rank are distinct (they key dropout).
        var rng = SplitMix64(seed: combineKey(c.seed, UInt64(comm.rank)))
        var batch = Batch(exampleIndices: (0..<c.perRankBatch).map { comm.rank * c.perRankBatch + $0 })
        for _ in 0..<c.perRankBatch {
            batch.tokenIDs.append(model.tokenizer.clsID)
            for _ in 0..<(c.sequenceLength - 2) { batch.tokenIDs.append(Int32(rng.next() % UInt64(model.config.vocabSize))) }
            batch.tokenIDs.append(model.tokenizer.sepID)
            batch.tokenTypeIDs += [Int32](repeating: 0, count: c.sequenceLength)
            batch.sequenceStarts.append(batch.tokenIDs.count)
            batch.classTargets.append(Int32(rng.next() % 2))
        }

        let sgemm = OpenBLAS.singleThreadSgemmGFLOPS()
        let reducer = GradientReducer(comm: comm, buffer: model.gradients, parameterCount: model.layout.count, overlap: c.overlap,
                                      bucketBytes: Int(c.bucketMegabytes * 1_000_000), shardOptimizer: c.shardOptimizer,
                                      sparse: model.sparseGradientTensors.compactMap { model.layout.spec($0) })
        var samples: [[Double]] = []  // step, forward, backward, comm, optimizer
        var kernelSamples: [KernelTimes] = []
        model.recordsKernelTimes = true
        let globalExamples = Float(c.perRankBatch * comm.size)
        for step in 0..<(c.warmupSteps + c.steps) {
            try comm.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            model.gradients.zero()
            reducer.beginStep()
            _ = model.trainStep(batch, dropoutSeed: c.seed, step: step) { try? reducer.ready(from: $0) }
            let t1 = DispatchTime.now().uptimeNanoseconds
            _ = try reducer.finish(nonFiniteSlot: 3)
            let t2 = DispatchTime.now().uptimeNanoseconds
            optimizer.step(parameters: model.parameters, gradientsOfShard: reducer.gradientsOfShard, gradientScale: 1 / globalExamples, learningRate: 1e-5)
            let t3 = DispatchTime.now().uptimeNanoseconds
            try reducer.afterUpdate(model.parameters)
            let t4 = DispatchTime.now().uptimeNanoseconds
            if step >= c.warmupSteps {
                let timings = model.lastTimings
                // Exposed communication: after backward until the gradients are summed, plus (sharded)
                // the parameter allgather after the update.
                samples.append([Double(t4 - t0) * 1e-9, timings.forward, timings.backward, Double(t2 - t1 + t4 - t3) * 1e-9, Double(t3 - t2) * 1e-9])
                kernelSamples.append(model.lastKernelTimes)
            }
        }
        func median(_ column: Int) -> Double {
            let values = samples.map { $0[column] }.sorted()
            return values.isEmpty ? 0 : values[values.count / 2]
        }
        // The slowest rank sets the pace: the medians are reduced with max over ranks.
        var slowest = (0..<5).map { Int64(median($0) * 1e9) } + [Int64(peakResidentBytes())]
        try comm.allreduce(&slowest, op: .max)
        let everyone = slowest.prefix(5).map { Double($0) * 1e-9 }
        var r = BenchmarkResult()
        r.ranks = comm.size
        r.threadsPerRank = budget.threads
        r.stepSeconds = everyone[0]
        r.forwardSeconds = everyone[1]; r.backwardSeconds = everyone[2]; r.commExposedSeconds = everyone[3]; r.optimizerSeconds = everyone[4]
        r.otherSeconds = max(0, r.stepSeconds - r.forwardSeconds - r.backwardSeconds - r.commExposedSeconds - r.optimizerSeconds)
        let examples = Double(c.perRankBatch * comm.size)
        r.examplesPerSecond = examples / r.stepSeconds
        r.tokensPerSecond = examples * Double(c.sequenceLength) / r.stepSeconds
        r.flopsPerExample = flopsPerExample(layers: model.config.layers, hidden: model.config.hiddenSize,
                                            intermediate: model.config.intermediateSize, tokens: c.sequenceLength)
        r.gflops = r.flopsPerExample * r.examplesPerSecond / 1e9
        r.sgemmGFLOPS = sgemm
        for kind in KernelKind.allCases {
            let values = kernelSamples.map { $0[kind] }.sorted()
            r.kernelSeconds[kind] = values.isEmpty ? 0 : values[values.count / 2]
        }
        let (L, C, F, T) = (Double(model.config.layers), Double(model.config.hiddenSize), Double(model.config.intermediateSize), Double(c.sequenceLength))
        let localExamples = Double(c.perRankBatch)
        r.linearGFLOPS = localExamples * 3 * 2 * T * L * (4 * C * C + 2 * C * F) / max(r.kernelSeconds[.linear], 1e-12) / 1e9
        r.attentionGFLOPS = localExamples * 3 * 4 * L * T * T * C / max(r.kernelSeconds[.attention], 1e-12) / 1e9
        r.fractionOfSgemm = r.gflops / (Double(comm.size * budget.threads) * sgemm)
        r.peakRSSBytes = Int(slowest[5])
        r.parameters = model.layout.count
        r.optimizerStateBytes = (optimizer.firstMoment.count + optimizer.secondMoment.count) * MemoryLayout<Float>.stride
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
