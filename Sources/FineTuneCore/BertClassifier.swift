import Foundation

/// A BERT encoder with a sequence-classification (or regression) head, trained end to end.
///
/// Forward (post-LayerNorm BERT, as transformers' BertModel):
///   x = dropout(LN(word[id] + position[t] + type[tt]))
///   per layer: a = dropout(Wo · attention(x) + bo); h = LN(a + x); f = dropout(W2 · gelu(W1 · h + b1) + b2); x = LN(f + h)
///   pooled = mean over tokens (--pooling mean)  |  dropout(tanh(Wp · x[CLS] + bp)) (--pooling cls)
///   logits = Wc · pooled + bc
/// Tensors use transformers' BertModel names (`embeddings.word_embeddings.weight`,
/// `encoder.layer.{l}.attention.self.query.weight`, ...), plus `pooler.dense.*` (cls pooling) and
/// `classifier.*`. Batches are packed (see TransformerKernels.swift): no padding is computed.
/// Shapes: N tokens of the batch, B sequences, C hidden, F intermediate, K outputs, A attention scores.
public final class BertClassifier: FineTunableModel {
    public let config: BertConfig
    public let pooling: Pooling
    public let task: TaskKind
    public let tokenizer: WordPieceTokenizer
    /// Tokenizer files carried into checkpoints and exports (vocab.txt, tokenizer_config.json, ...).
    public let tokenizerFiles: [String: Data]
    public let layout: ParameterLayout
    public let parameters: FlatBuffer<Float>
    public let gradients: FlatBuffer<Float>
    /// Tensors kept only to be written back (the base model's pooler when pooling is mean).
    public var passthrough: [(name: String, shape: [Int], values: [Float])] = []
    /// Dropout probabilities in training (zero turns dropout off, as the golden tests need).
    public var hiddenDropout: Double
    public var attentionDropout: Double
    public var classifierDropout: Double
    public var inputKind: InputKind { .text }
    /// A batch's gradient touches the word-embedding rows of its tokens and the position rows up to its longest text.
    public var sparseGradientTensors: [String] { ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"] }
    /// Forward and backward time of the last `trainStep`.
    public private(set) var lastTimings = StepTimings()
    /// When set, each `trainStep` times its kernels by kind into `lastKernelTimes` (for `bench`).
    public var recordsKernelTimes = false
    public private(set) var lastKernelTimes = KernelTimes()
    /// Longest input in tokens ([CLS] and [SEP] included) the model was trained with.
    public var maxLength: Int

    struct LayerOffsets {
        var qw = 0, qb = 0, kw = 0, kb = 0, vw = 0, vb = 0, aow = 0, aob = 0, ln1w = 0, ln1b = 0
        var iw = 0, ib = 0, ow = 0, ob = 0, ln2w = 0, ln2b = 0
    }
    let wte: Int, wpe: Int, wtt: Int, embLNw: Int, embLNb: Int
    let layerOffsets: [LayerOffsets]
    let poolerW: Int?, poolerB: Int?
    let classifierW: Int, classifierB: Int

    public static func layerPrefix(_ l: Int) -> String { "encoder.layer.\(l)." }

    public init(config: BertConfig, pooling: Pooling, task: TaskKind, tokenizer: WordPieceTokenizer, tokenizerFiles: [String: Data]) {
        self.config = config
        self.pooling = pooling
        self.task = task
        self.tokenizer = tokenizer
        self.tokenizerFiles = tokenizerFiles
        hiddenDropout = config.hiddenDropout
        attentionDropout = config.attentionDropout
        classifierDropout = config.classifierDropout
        maxLength = config.maxPositions
        let C = config.hiddenSize, F = config.intermediateSize
        var layout = ParameterLayout()
        func add(_ name: String, _ shape: [Int]) -> Int {
            // transformers' convention: no weight decay on biases and LayerNorm weights.
            layout.add(name, shape: shape, decays: !(name.hasSuffix("bias") || name.contains("LayerNorm")))
        }
        wte = add("embeddings.word_embeddings.weight", [config.vocabSize, C])
        wpe = add("embeddings.position_embeddings.weight", [config.maxPositions, C])
        wtt = add("embeddings.token_type_embeddings.weight", [config.typeVocabSize, C])
        embLNw = add("embeddings.LayerNorm.weight", [C])
        embLNb = add("embeddings.LayerNorm.bias", [C])
        var offsets: [LayerOffsets] = []
        for l in 0..<config.layers {
            let p = BertClassifier.layerPrefix(l)
            var o = LayerOffsets()
            o.qw = add(p + "attention.self.query.weight", [C, C]); o.qb = add(p + "attention.self.query.bias", [C])
            o.kw = add(p + "attention.self.key.weight", [C, C]); o.kb = add(p + "attention.self.key.bias", [C])
            o.vw = add(p + "attention.self.value.weight", [C, C]); o.vb = add(p + "attention.self.value.bias", [C])
            o.aow = add(p + "attention.output.dense.weight", [C, C]); o.aob = add(p + "attention.output.dense.bias", [C])
            o.ln1w = add(p + "attention.output.LayerNorm.weight", [C]); o.ln1b = add(p + "attention.output.LayerNorm.bias", [C])
            o.iw = add(p + "intermediate.dense.weight", [F, C]); o.ib = add(p + "intermediate.dense.bias", [F])
            o.ow = add(p + "output.dense.weight", [C, F]); o.ob = add(p + "output.dense.bias", [C])
            o.ln2w = add(p + "output.LayerNorm.weight", [C]); o.ln2b = add(p + "output.LayerNorm.bias", [C])
            offsets.append(o)
        }
        layerOffsets = offsets
        if pooling == .cls {
            poolerW = add("pooler.dense.weight", [C, C]); poolerB = add("pooler.dense.bias", [C])
        } else {
            poolerW = nil; poolerB = nil
        }
        classifierW = add("classifier.weight", [task.outputCount, C])
        classifierB = add("classifier.bias", [task.outputCount])
        self.layout = layout
        parameters = FlatBuffer(count: layout.count)
        gradients = FlatBuffer(count: layout.count + modelControlSlots)
    }

    /// Initialises the tensors a base model may lack (classifier, pooler) as transformers does:
    /// weights ~ N(0, initializer_range), biases 0.
    public func initializeHead(seed: UInt64, includePooler: Bool) {
        let std = (config.raw["initializer_range"] as? NSNumber)?.doubleValue ?? 0.02
        var rng = SplitMix64(seed: combineKey(seed, 0xC1A55))
        var names = ["classifier.weight", "classifier.bias"]
        if includePooler && pooling == .cls { names += ["pooler.dense.weight", "pooler.dense.bias"] }
        for name in names {
            let spec = layout.spec(name)!
            for i in 0..<spec.count {
                parameters[spec.offset + i] = name.hasSuffix("bias") ? 0 : Float(rng.nextNormal() * std)
            }
        }
    }

    // MARK: Activations

    /// Activations of one layer, sized for `tokens` rows and `scores` attention entries.
    final class LayerActivations {
        let q, k, v, ctx, attnProj, attnDropped, res1, h1, ffn, ffnDropped, res2, h2: FlatBuffer<Float>
        let inter, act: FlatBuffer<Float>
        let probs, probsDropped: FlatBuffer<Float>
        let ln1Mean, ln1Rstd, ln2Mean, ln2Rstd: FlatBuffer<Float>
        let attnMask, ffnMask, probsMask: ByteBuffer
        /// GELU's slope at the feed-forward pre-activations, kept from the forward pass for its backward.
        let geluSlope: FlatBuffer<Float>
        init(tokens N: Int, scores A: Int, C: Int, F: Int) {
            q = FlatBuffer(count: N * C); k = FlatBuffer(count: N * C); v = FlatBuffer(count: N * C); ctx = FlatBuffer(count: N * C)
            attnProj = FlatBuffer(count: N * C); attnDropped = FlatBuffer(count: N * C); res1 = FlatBuffer(count: N * C)
            h1 = FlatBuffer(count: N * C); ffn = FlatBuffer(count: N * C); ffnDropped = FlatBuffer(count: N * C)
            res2 = FlatBuffer(count: N * C); h2 = FlatBuffer(count: N * C)
            inter = FlatBuffer(count: N * F); act = FlatBuffer(count: N * F)
            probs = FlatBuffer(count: A); probsDropped = FlatBuffer(count: A)
            ln1Mean = FlatBuffer(count: N); ln1Rstd = FlatBuffer(count: N); ln2Mean = FlatBuffer(count: N); ln2Rstd = FlatBuffer(count: N)
            attnMask = ByteBuffer(count: N * C); ffnMask = ByteBuffer(count: N * C)
            probsMask = ByteBuffer(count: A)
            geluSlope = FlatBuffer(count: N * F)
        }
    }

    private var tokenCapacity = 0, scoreCapacity = 0, sequenceCapacity = 0
    private var layerActs: [LayerActivations] = []
    private var embSum = FlatBuffer<Float>(count: 0), embLN = FlatBuffer<Float>(count: 0), embOut = FlatBuffer<Float>(count: 0)
    private var embMean = FlatBuffer<Float>(count: 0), embRstd = FlatBuffer<Float>(count: 0)
    private var embMask = ByteBuffer(count: 0)
    // Head, [B, C] or [B, K]
    private var first = FlatBuffer<Float>(count: 0), poolerPre = FlatBuffer<Float>(count: 0), pooled = FlatBuffer<Float>(count: 0)
    private var headDropped = FlatBuffer<Float>(count: 0), logits = FlatBuffer<Float>(count: 0), probabilities = FlatBuffer<Float>(count: 0)
    private var losses = FlatBuffer<Float>(count: 0), ones = FlatBuffer<Float>(count: 0)
    private var headMask = ByteBuffer(count: 0)
    // Backward scratch
    private var gradA = FlatBuffer<Float>(count: 0), gradB = FlatBuffer<Float>(count: 0), gradC = FlatBuffer<Float>(count: 0)
    private var dq = FlatBuffer<Float>(count: 0), dk = FlatBuffer<Float>(count: 0), dv = FlatBuffer<Float>(count: 0), dctx = FlatBuffer<Float>(count: 0)
    private var dInter = FlatBuffer<Float>(count: 0), dAct = FlatBuffer<Float>(count: 0)
    private var dScores = FlatBuffer<Float>(count: 0)
    private var dHeadA = FlatBuffer<Float>(count: 0), dHeadB = FlatBuffer<Float>(count: 0), dHeadC = FlatBuffer<Float>(count: 0)
    private var dLogits = FlatBuffer<Float>(count: 0)

    /// Bytes of activation and scratch buffers currently allocated (for memory accounting).
    public var activationBytes: Int {
        let perLayer = layerActs.reduce(0) { total, a in
            let floats = [a.q, a.k, a.v, a.ctx, a.attnProj, a.attnDropped, a.res1, a.h1, a.ffn, a.ffnDropped, a.res2, a.h2,
                          a.inter, a.act, a.probs, a.probsDropped, a.ln1Mean, a.ln1Rstd, a.ln2Mean, a.ln2Rstd, a.geluSlope].reduce(0) { $0 + $1.count }
            return total + 4 * floats + a.attnMask.count + a.ffnMask.count + a.probsMask.count
        }
        let others = [embSum, embLN, embOut, embMean, embRstd, first, poolerPre, pooled, headDropped, logits, probabilities, losses, ones,
                      gradA, gradB, gradC, dq, dk, dv, dctx, dInter, dAct, dScores, dHeadA, dHeadB, dHeadC, dLogits]
        return perLayer + 4 * others.reduce(0) { $0 + $1.count } + embMask.count + headMask.count
    }

    private func reserve(tokens N: Int, scores A: Int, sequences B: Int) {
        let C = config.hiddenSize, F = config.intermediateSize, K = task.outputCount
        if N > tokenCapacity || A > scoreCapacity {
            tokenCapacity = max(N, tokenCapacity)
            scoreCapacity = max(A, scoreCapacity)
            let n = tokenCapacity, a = scoreCapacity
            layerActs = (0..<config.layers).map { _ in LayerActivations(tokens: n, scores: a, C: C, F: F) }
            embSum = FlatBuffer(count: n * C); embLN = FlatBuffer(count: n * C); embOut = FlatBuffer(count: n * C)
            embMean = FlatBuffer(count: n); embRstd = FlatBuffer(count: n); embMask = ByteBuffer(count: n * C)
            gradA = FlatBuffer(count: n * C); gradB = FlatBuffer(count: n * C); gradC = FlatBuffer(count: n * C)
            dq = FlatBuffer(count: n * C); dk = FlatBuffer(count: n * C); dv = FlatBuffer(count: n * C); dctx = FlatBuffer(count: n * C)
            dInter = FlatBuffer(count: n * F); dAct = FlatBuffer(count: n * F)
            dScores = FlatBuffer(count: a)
        }
        if B > sequenceCapacity {
            sequenceCapacity = B
            first = FlatBuffer(count: B * C); poolerPre = FlatBuffer(count: B * C); pooled = FlatBuffer(count: B * C)
            headDropped = FlatBuffer(count: B * C); headMask = ByteBuffer(count: B * C)
            logits = FlatBuffer(count: B * K); probabilities = FlatBuffer(count: B * K); dLogits = FlatBuffer(count: B * K)
            losses = FlatBuffer(count: B); ones = FlatBuffer(count: B)
            ones.base.update(repeating: 1, count: B)
            dHeadA = FlatBuffer(count: B * C); dHeadB = FlatBuffer(count: B * C); dHeadC = FlatBuffer(count: B * C)
        }
    }

    // MARK: Forward

    /// Dropout sites: 0 embeddings; 1 + 3l attention probabilities, 2 + 3l attention output,
    /// 3 + 3l feed-forward output of layer l; 1 + 3L the classifier input.
    private struct Pass {
        var training: Bool
        var seed: UInt64
        var step: Int
        func key(_ site: Int) -> DropoutKey { DropoutKey(seed: seed, step: step, site: site) }
    }

    /// Layer inputs of the last forward pass: x_0 = embeddings output, x_l = h2 of layer l - 1.
    private var layerInputs: [UnsafeMutablePointer<Float>] = []
    private var headInput: UnsafeMutablePointer<Float>? = nil
    private var attention: [Int] = []

    private func forward(_ batch: Batch, _ pass: Pass) {
        let N = batch.tokenIDs.count, B = batch.count, C = config.hiddenSize, F = config.intermediateSize
        let NH = config.heads, K = task.outputCount
        let starts = batch.sequenceStarts
        attention = attentionOffsets(starts: starts, heads: NH)
        reserve(tokens: N, scores: attention.last!, sequences: B)
        let p = parameters.base
        let eps = Float(config.layerNormEps)
        let tokenSegments = starts.map { $0 * C }
        let dropHidden = pass.training && hiddenDropout > 0, dropAttention = pass.training && attentionDropout > 0

        timed(.embeddings) {
            embeddingForward(out: embSum.base, ids: batch.tokenIDs, types: batch.tokenTypeIDs, starts: starts,
                             wte: p + wte, wpe: p + wpe, wtt: p + wtt, B: B, C: C)
        }
        timed(.layerNorm) {
            layerNormForward(out: embLN.base, mean: embMean.base, rstd: embRstd.base, inp: embSum.base,
                             weight: p + embLNw, bias: p + embLNb, eps: eps, N: N, C: C)
        }
        var x = embLN.base
        if dropHidden {
            timed(.dropout) {
                dropoutForward(out: embOut.base, mask: embMask.base, inp: embLN.base, probability: hiddenDropout, key: pass.key(0),
                               exampleIndices: batch.exampleIndices, segmentStarts: tokenSegments, B: B)
            }
            x = embOut.base
        }
        layerInputs = [x]
        // A sublayer's output as BERT ends it: out = LayerNorm(dropout(y) + residual), keeping what backward needs.
        func addAndNorm(_ y: FlatBuffer<Float>, dropped: FlatBuffer<Float>, mask: ByteBuffer, site: Int, residual: UnsafeMutablePointer<Float>,
                        sum: FlatBuffer<Float>, out: FlatBuffer<Float>, mean: FlatBuffer<Float>, rstd: FlatBuffer<Float>,
                        weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>) {
            var kept = y.base
            if dropHidden {
                timed(.dropout) {
                    dropoutForward(out: dropped.base, mask: mask.base, inp: y.base, probability: hiddenDropout, key: pass.key(site),
                                   exampleIndices: batch.exampleIndices, segmentStarts: tokenSegments, B: B)
                }
                kept = dropped.base
            }
            timed(.elementwise) { residualForward(out: sum.base, a: kept, b: residual, N: N * C) }
            timed(.layerNorm) {
                layerNormForward(out: out.base, mean: mean.base, rstd: rstd.base, inp: sum.base, weight: weight, bias: bias, eps: eps, N: N, C: C)
            }
        }
        for l in 0..<config.layers {
            let a = layerActs[l], o = layerOffsets[l]
            timed(.linear) {
                linearForward(out: a.q.base, inp: x, weight: p + o.qw, bias: p + o.qb, B: N, C: C, OC: C)
            }
            timed(.linear) {
                linearForward(out: a.k.base, inp: x, weight: p + o.kw, bias: p + o.kb, B: N, C: C, OC: C)
            }
            timed(.linear) {
                linearForward(out: a.v.base, inp: x, weight: p + o.vw, bias: p + o.vb, B: N, C: C, OC: C)
            }
            timed(.attention) {
                batch.exampleIndices.withUnsafeBufferPointer { indices in
                    let dropout = dropAttention ? AttentionDropout(probability: attentionDropout, key: pass.key(1 + 3 * l), exampleIndices: indices.baseAddress!) : nil
                    attentionForward(out: a.ctx.base, probs: a.probs.base, probsDropped: a.probsDropped.base, mask: a.probsMask.base,
                                     q: a.q.base, k: a.k.base, v: a.v.base, dropout: dropout, starts: starts, offsets: attention, B: B, C: C, NH: NH)
                }
            }
            timed(.linear) {
                linearForward(out: a.attnProj.base, inp: a.ctx.base, weight: p + o.aow, bias: p + o.aob, B: N, C: C, OC: C)
            }
            addAndNorm(a.attnProj, dropped: a.attnDropped, mask: a.attnMask, site: 2 + 3 * l, residual: x, sum: a.res1, out: a.h1,
                       mean: a.ln1Mean, rstd: a.ln1Rstd, weight: p + o.ln1w, bias: p + o.ln1b)
            timed(.linear) {
                linearForward(out: a.inter.base, inp: a.h1.base, weight: p + o.iw, bias: p + o.ib, B: N, C: C, OC: F)
            }
            timed(.gelu) {
                if config.usesTanhGELU { geluTanhForward(out: a.act.base, inp: a.inter.base, N: N * F) } else { geluForward(out: a.act.base, slope: a.geluSlope.base, inp: a.inter.base, N: N * F) }
            }
            timed(.linear) {
                linearForward(out: a.ffn.base, inp: a.act.base, weight: p + o.ow, bias: p + o.ob, B: N, C: F, OC: C)
            }
            addAndNorm(a.ffn, dropped: a.ffnDropped, mask: a.ffnMask, site: 3 + 3 * l, residual: a.h1.base, sum: a.res2, out: a.h2,
                       mean: a.ln2Mean, rstd: a.ln2Rstd, weight: p + o.ln2w, bias: p + o.ln2b)
            x = a.h2.base
            layerInputs.append(x)
        }
        // Head
        switch pooling {
        case .mean:
            timed(.head) {
                meanPoolForward(out: pooled.base, inp: x, starts: starts, B: B, C: C)
            }
            headInput = pooled.base
        case .cls:
            timed(.head) {
                firstTokenForward(out: first.base, inp: x, starts: starts, B: B, C: C)
            }
            timed(.linear) {
                linearForward(out: poolerPre.base, inp: first.base, weight: p + poolerW!, bias: p + poolerB!, B: B, C: C, OC: C)
            }
            timed(.head) {
                tanhForward(out: pooled.base, inp: poolerPre.base, N: B * C)
            }
            headInput = pooled.base
            if pass.training && classifierDropout > 0 {
                timed(.dropout) {
                    dropoutForward(out: headDropped.base, mask: headMask.base, inp: pooled.base, probability: classifierDropout,
                                   key: pass.key(1 + 3 * config.layers), exampleIndices: batch.exampleIndices,
                                   segmentStarts: (0...B).map { $0 * C }, B: B)
                }
                headInput = headDropped.base
            }
        }
        timed(.linear) {
            linearForward(out: logits.base, inp: headInput!, weight: p + classifierW, bias: p + classifierB, B: B, C: C, OC: K)
        }
    }

    /// The pooled sentence representation [B, C] of the last forward pass (before the classifier's dropout).
    public func pooledOutput(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        forward(batch, Pass(training: false, seed: 0, step: 0))
        let C = config.hiddenSize
        return (0..<batch.count).map { Array(UnsafeBufferPointer(start: pooled.base + $0 * C, count: C)) }
    }

    private func loss(_ batch: Batch) -> BatchStatistics {
        lossStatistics(task: task, logits: logits.base, probabilities: probabilities.base, losses: losses.base, batch: batch)
    }

    // MARK: Backward

    public func trainStep(_ batch: Batch, dropoutSeed: UInt64, step: Int, gradientsReady: (Int) -> Void) -> BatchStatistics {
        let B = batch.count
        guard B > 0 else { recordLossSum(BatchStatistics()); gradientsReady(0); return BatchStatistics() }
        let pass = Pass(training: true, seed: dropoutSeed, step: step)
        lastKernelTimes = KernelTimes()
        let started = DispatchTime.now().uptimeNanoseconds
        forward(batch, pass)
        let stats = loss(batch)
        recordLossSum(stats)
        let forwardDone = DispatchTime.now().uptimeNanoseconds
        defer {
            let end = DispatchTime.now().uptimeNanoseconds
            lastTimings = StepTimings(forward: Double(forwardDone - started) * 1e-9, backward: Double(end - forwardDone) * 1e-9)
        }
        let N = batch.tokenIDs.count, C = config.hiddenSize, F = config.intermediateSize, NH = config.heads, K = task.outputCount
        let starts = batch.sequenceStarts
        let p = parameters.base, g = gradients.base
        let dropAttention = attentionDropout > 0

        timed(.elementwise) { dLogits.zero() }
        timed(.head) {
            lossBackward(task: task, dlogits: dLogits.base, ones: ones.base, logits: logits.base, probabilities: probabilities.base, batch: batch)
        }
        // Head
        timed(.elementwise) { dHeadA.base.update(repeating: 0, count: B * C) }
        timed(.linear) {
            linearBackward(dinp: dHeadA.base, dweight: g + classifierW, dbias: g + classifierB, dout: dLogits.base,
                           inp: headInput!, weight: p + classifierW, B: B, C: C, OC: K)
        }
        let dx = gradA.base
        timed(.elementwise) { dx.update(repeating: 0, count: N * C) }
        switch pooling {
        case .mean:
            timed(.head) {
                meanPoolBackward(dinp: dx, dout: dHeadA.base, starts: starts, B: B, C: C)
            }
        case .cls:
            let dPooled = throughDropout(dHeadA.base, mask: headMask, probability: classifierDropout, count: B * C, scratch: dHeadB.base)
            timed(.elementwise) { dHeadC.base.update(repeating: 0, count: B * C) }
            timed(.head) {
                tanhBackward(dinp: dHeadC.base, dout: dPooled, out: pooled.base, N: B * C)
            }
            timed(.elementwise) { dHeadA.base.update(repeating: 0, count: B * C) }
            timed(.linear) {
                linearBackward(dinp: dHeadA.base, dweight: g + poolerW!, dbias: g + poolerB!, dout: dHeadC.base,
                               inp: first.base, weight: p + poolerW!, B: B, C: C, OC: C)
            }
            timed(.head) {
                firstTokenBackward(dinp: dx, dout: dHeadA.base, starts: starts, B: B, C: C)
            }
        }
        gradientsReady(poolerW ?? classifierW)
        // Backward of the forward pass's addAndNorm: d(sum) into `dsum` (zeroed first; it is also the
        // residual's gradient), LayerNorm's parameter gradients, and d(y) behind the dropout, returned.
        func addAndNormBackward(dout: UnsafeMutablePointer<Float>, dsum: UnsafeMutablePointer<Float>, sum: FlatBuffer<Float>, mask: ByteBuffer,
                                mean: FlatBuffer<Float>, rstd: FlatBuffer<Float>, weight: Int, bias: Int) -> UnsafeMutablePointer<Float> {
            timed(.elementwise) { dsum.update(repeating: 0, count: N * C) }
            timed(.layerNorm) {
                layerNormBackward(dinp: dsum, dweight: g + weight, dbias: g + bias, dout: dout, inp: sum.base, weight: p + weight,
                                  mean: mean.base, rstd: rstd.base, N: N, C: C)
            }
            return throughDropout(dsum, mask: mask, probability: hiddenDropout, count: N * C, scratch: gradC.base)
        }
        // Layers, last to first. On entry gradA holds d(layer output); on exit d(layer input).
        for l in stride(from: config.layers - 1, through: 0, by: -1) {
            let a = layerActs[l], o = layerOffsets[l], x = layerInputs[l]
            // x_out = LN2(ffn' + h1)
            let dRes2 = gradB.base
            let dFFN = addAndNormBackward(dout: gradA.base, dsum: dRes2, sum: a.res2, mask: a.ffnMask, mean: a.ln2Mean, rstd: a.ln2Rstd,
                                          weight: o.ln2w, bias: o.ln2b)
            timed(.linear) {
                linearBackward(dinp: dAct.base, dweight: g + o.ow, dbias: g + o.ob, dout: dFFN, inp: a.act.base, weight: p + o.ow,
                               B: N, C: F, OC: C, overwritingInput: true)
            }
            gradientsReady(o.ow)
            timed(.gelu) {
                if config.usesTanhGELU {
                    dInter.base.update(repeating: 0, count: N * F)
                    geluTanhBackward(dinp: dInter.base, dout: dAct.base, inp: a.inter.base, N: N * F)
                } else {
                    geluBackward(dinp: dInter.base, dout: dAct.base, slope: a.geluSlope.base, N: N * F, overwritingInput: true)
                }
            }
            // d h1 = d res2 (residual) + the feed-forward input's gradient, accumulated into gradB.
            let dH1 = dRes2
            timed(.linear) {
                linearBackward(dinp: dH1, dweight: g + o.iw, dbias: g + o.ib, dout: dInter.base, inp: a.h1.base, weight: p + o.iw, B: N, C: C, OC: F)
            }
            // The feed-forward's tensors (iw ... ln2b) are final; reporting mid-layer also lets MPI progress more often.
            gradientsReady(o.iw)
            // h1 = LN1(attn' + x)
            let dRes1 = gradA.base
            let dProj = addAndNormBackward(dout: dH1, dsum: dRes1, sum: a.res1, mask: a.attnMask, mean: a.ln1Mean, rstd: a.ln1Rstd,
                                           weight: o.ln1w, bias: o.ln1b)
            timed(.linear) {
                linearBackward(dinp: dctx.base, dweight: g + o.aow, dbias: g + o.aob, dout: dProj, inp: a.ctx.base, weight: p + o.aow,
                               B: N, C: C, OC: C, overwritingInput: true)
            }
            gradientsReady(o.aow)
            timed(.elementwise) { dq.base.update(repeating: 0, count: N * C); dk.base.update(repeating: 0, count: N * C); dv.base.update(repeating: 0, count: N * C) }
            timed(.attention) {
                attentionBackward(dq: dq.base, dk: dk.base, dv: dv.base, dscores: dScores.base, dout: dctx.base, probs: a.probs.base,
                                  probsDropped: a.probsDropped.base, mask: a.probsMask.base, q: a.q.base, k: a.k.base, v: a.v.base,
                                  dropoutProbability: dropAttention ? attentionDropout : 0, starts: starts, offsets: attention, B: B, C: C, NH: NH)
            }
            // d x = d res1 (residual) + the q, k, v projections' input gradients, accumulated into gradA.
            timed(.linear) {
                linearBackward(dinp: dRes1, dweight: g + o.qw, dbias: g + o.qb, dout: dq.base, inp: x, weight: p + o.qw, B: N, C: C, OC: C)
            }
            timed(.linear) {
                linearBackward(dinp: dRes1, dweight: g + o.kw, dbias: g + o.kb, dout: dk.base, inp: x, weight: p + o.kw, B: N, C: C, OC: C)
            }
            timed(.linear) {
                linearBackward(dinp: dRes1, dweight: g + o.vw, dbias: g + o.vb, dout: dv.base, inp: x, weight: p + o.vw, B: N, C: C, OC: C)
            }
            gradientsReady(o.qw)
        }
        // Embeddings: x_0 = dropout(LN(sum))
        let dEmb = throughDropout(gradA.base, mask: embMask, probability: hiddenDropout, count: N * C, scratch: gradC.base)
        timed(.elementwise) { gradB.base.update(repeating: 0, count: N * C) }
        timed(.layerNorm) {
            layerNormBackward(dinp: gradB.base, dweight: g + embLNw, dbias: g + embLNb, dout: dEmb, inp: embSum.base,
                              weight: p + embLNw, mean: embMean.base, rstd: embRstd.base, N: N, C: C)
        }
        timed(.embeddings) {
            embeddingBackward(dwte: g + wte, dwpe: g + wpe, dwtt: g + wtt, dout: gradB.base, ids: batch.tokenIDs,
                              types: batch.tokenTypeIDs, starts: starts, B: B, C: C)
        }
        gradientsReady(0)
        return stats
    }

    /// Runs one kernel, adding its time to `lastKernelTimes` when `recordsKernelTimes` is on.
    @inline(__always)
    private func timed(_ kind: KernelKind, _ kernel: () -> Void) {
        guard recordsKernelTimes else { kernel(); return }
        let start = DispatchTime.now().uptimeNanoseconds
        kernel()
        lastKernelTimes[kind] += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
    }

    /// The gradient behind a dropout site: `dout` itself when the site is off (p = 0), else
    /// dout · mask / (1 − p) written into `scratch`.
    private func throughDropout(_ dout: UnsafeMutablePointer<Float>, mask: ByteBuffer, probability p: Double, count: Int,
                                scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        guard p > 0 else { return dout }
        timed(.dropout) { dropoutGradient(dinp: scratch, dout: dout, mask: mask.base, probability: p, N: count) }
        return scratch
    }

    public func evaluate(_ batch: Batch) -> BatchStatistics {
        guard batch.count > 0 else { return BatchStatistics() }
        forward(batch, Pass(training: false, seed: 0, step: 0))
        return loss(batch)
    }

    public func predict(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        forward(batch, Pass(training: false, seed: 0, step: 0))
        return predictions(task: task, logits: logits.base, probabilities: probabilities.base, losses: losses.base, B: batch.count)
    }

    /// The logits [B, K] of the last forward pass.
    public func lastLogits(_ B: Int) -> [Float] { Array(UnsafeBufferPointer(start: logits.base, count: B * task.outputCount)) }

    public func logits(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        forward(batch, Pass(training: false, seed: 0, step: 0))
        let K = task.outputCount
        return (0..<batch.count).map { Array(UnsafeBufferPointer(start: logits.base + $0 * K, count: K)) }
    }

    public func internalFiles() -> [String: Data] { BertFolder.internalFiles(self) }
    public func exportFiles() -> [String: Data] { BertFolder.exportFiles(self) }
}
