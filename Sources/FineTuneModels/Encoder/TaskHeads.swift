import FineTuneKernels

/// What a task head reads of the encoder below it, and the encoder's facts it needs.
public struct EncoderFacts: Sendable {
    /// C: the width of the hidden states.
    public var hiddenSize: Int
    public var vocabularySize: Int
    public var layerNormEps: Double
    public var initializerRange: Double
    /// The masked-LM transform's activation: tanh-approximated GELU, else erf GELU (BERT's and
    /// DistilBERT's follow the config's activation; MPNet's and RoBERTa's lm_head is always erf GELU).
    public var usesTanhGELU: Bool
    /// [V, C]: the word embeddings, which a masked-LM decoder shares (tied weights).
    public var wordEmbeddings: TensorSpec
    /// The dropout site of the head's own dropout (the body's sites come first); MPNet's and
    /// RoBERTa's heads also drop out before their dense layer, at the next site (LoRA's come after both).
    public var headDropoutSite: Int
    /// Names the heads' tensors as the family's transformers classes do.
    public var family: EncoderFamily
}

/// One pass of a head, as the model gives it: the batch, its token starts and dropout keys.
public struct HeadPass {
    public var batch: Batch
    public var training: Bool
    public var dropoutKey: (Int) -> DropoutKey
}

/// A task head on an encoder's hidden states x [N, C]: its tensors (laid out after the body's),
/// its activations (an arena of its own), forward to the loss and backward to d x.
public protocol EncoderHead: AnyObject {
    var task: TaskKind { get }
    /// The head's first tensor: the head is the layout's last group.
    var firstTensor: TensorSpec { get }
    /// Bytes of the head's activations.
    var activationBytes: Int { get }
    /// Dropout before the classifier (heads without one ignore it).
    var classifierDropout: Double { get set }
    /// Whether the word embeddings' gradient reaches every row (a tied decoder), not only the batch's tokens'.
    var touchesEveryWordEmbedding: Bool { get }

    /// Initialises the head's tensors as transformers does for a fresh head.
    func initialize(_ parameters: FlatBuffer<Float>, seed: UInt64, includePooler: Bool)
    /// The loss statistics of `pass` from the encoder's output `x` [N, C].
    func forward(_ x: UnsafeMutablePointer<Float>, pass: HeadPass, objective: TrainingObjective?, parameters p: UnsafeMutablePointer<Float>) -> BatchStatistics
    /// The head's gradients (`wordEmbeddingGradient`: the tied decoder's share, nil when frozen)
    /// and, when `dx` is given, d x [N, C] written into it (every row). Returns false when the
    /// head has no path to x (the backward pass ends here).
    func backward(dx: UnsafeMutablePointer<Float>?, pass: HeadPass, objective: TrainingObjective, parameters p: UnsafeMutablePointer<Float>,
                  gradients g: UnsafeMutablePointer<Float>, wordEmbeddingGradient: UnsafeMutablePointer<Float>?) -> Bool
    /// The logits [B][K] of the last forward pass (sequence heads).
    func lastLogits(count: Int) -> [[Float]]
    /// The vocabulary logits [M][V] at the masked positions of the last forward pass (masked-LM heads).
    func lastMaskedLogits(count: Int) -> [[Float]]?
    /// The sentence embeddings [B][C] of the last forward pass (sequence heads), as sentence-transformers pools them.
    func lastPooled(count: Int) -> [[Float]]
}

extension ParameterLayout {
    /// Adds a tensor with transformers' weight-decay convention: none on biases and LayerNorm weights
    /// (`LayerNorm`, or `layer_norm` as in MPNet's and RoBERTa's `lm_head.layer_norm` and DistilBERT's norms).
    mutating func addDecaying(_ name: String, _ shape: [Int]) -> TensorSpec {
        add(name, shape: shape, decays: !(name.hasSuffix("bias") || name.contains("LayerNorm") || name.contains("layer_norm")))
    }
}

/// A sentence-transformers Dense module between the mean pooling and the classifier (as a model's
/// modules.json lists it): embedding [B, D] = act(W · pooled + b), W [D, C]. Its tensors are the
/// head's `projection.weight` / `projection.bias`.
public struct EmbeddingProjection: Sendable, Equatable, Codable {
    public enum Activation: String, Sendable, Codable, CaseIterable { case identity, tanh, relu }
    /// D: the embedding's width.
    public var outputs: Int
    public var bias: Bool
    public var activation: Activation
    public init(outputs: Int, bias: Bool, activation: Activation) { self.outputs = outputs; self.bias = bias; self.activation = activation }

    /// pre [B, D] = W · inp [B, C] + b, out [B, D] = act(pre).
    func forward(out: UnsafeMutablePointer<Float>, pre: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                 bias: UnsafePointer<Float>?, B: Int, C: Int) {
        let D = outputs
        linearForward(out: pre, inp: inp, weight: weight, bias: bias, B: B, C: C, OC: D)
        switch activation {
        case .identity: out.update(from: pre, count: B * D)
        case .tanh: tanhForward(out: out, inp: pre, N: B * D)
        case .relu: reluForward(out: out, inp: pre, N: B * D)
        }
    }

    /// From d out [B, D]: d pre into `dPre` [B, D], the weight's and bias's gradients added, and
    /// (when `dinp` is given) d inp [B, C] written.
    func backward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?,
                  dPre: UnsafeMutablePointer<Float>, dout: UnsafeMutablePointer<Float>, pre: UnsafePointer<Float>, out: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, B: Int, C: Int) {
        let D = outputs
        switch activation {
        case .identity: dPre.update(from: dout, count: B * D)
        case .tanh: tanhBackward(dinp: dPre, dout: dout, out: out, N: B * D, overwritingInput: true)
        case .relu:
            zeroFill(dPre, N: B * D)
            reluBackward(dinp: dPre, dout: dout, inp: pre, N: B * D)
        }
        linearBackward(dinp: dinp, dweight: dweight, dbias: dbias, dout: dPre, inp: inp, weight: weight, B: B, C: C, OC: D, overwritingInput: true)
    }
}

/// Sequence classification or regression (transformers' ...ForSequenceClassification): pooled =
/// mean over the tokens, or dropout(tanh(Wp · x[CLS] + bp)) with cls pooling; logits [B, K] =
/// Wc · pooled + bc. Tensors: BERT `pooler.dense.*` (cls pooling), `classifier.*`; MPNet's and
/// RoBERTa's head (cls pooling) `classifier.dense.*`, `classifier.out_proj.*`, with a dropout on
/// x[CLS] before its dense layer too; DistilBERT's `pre_classifier.*` with ReLU for tanh, then
/// `classifier.*`. Mean pooling has no dense layer and names its classifier `classifier.*`; a
/// sentence-transformers Dense module (`EmbeddingProjection`) may sit between it and the classifier.
public final class SequenceHead: EncoderHead {
    public let task: TaskKind
    public let pooling: Pooling
    let facts: EncoderFacts
    /// [C, C], [C] (cls pooling only), then [K, C], [K].
    public let poolerWeight: TensorSpec?, poolerBias: TensorSpec?
    public let classifierWeight: TensorSpec, classifierBias: TensorSpec
    /// [D, C], [D] (no bias when the module has none): the projection, mean pooling only.
    public let projection: EmbeddingProjection?
    public let projectionWeight: TensorSpec?, projectionBias: TensorSpec?
    public var firstTensor: TensorSpec { poolerWeight ?? projectionWeight ?? classifierWeight }
    /// The classifier's input width: C, or the projection's D.
    var embeddingSize: Int { projection?.outputs ?? facts.hiddenSize }
    public var classifierDropout: Double
    public var touchesEveryWordEmbedding: Bool { false }

    public init(task: TaskKind, pooling: Pooling, facts: EncoderFacts, classifierDropout: Double, projection: EmbeddingProjection? = nil,
                layout: inout ParameterLayout) {
        precondition(projection == nil || pooling == .mean, "a sentence-transformers Dense module follows mean pooling")
        self.task = task; self.pooling = pooling; self.facts = facts; self.classifierDropout = classifierDropout; self.projection = projection
        let C = facts.hiddenSize
        let modules = facts.family.clsHeadModules
        let classifier = pooling == .cls ? modules.classifier : "classifier"
        if pooling == .cls {
            poolerWeight = layout.addDecaying(modules.dense + ".weight", [C, C]); poolerBias = layout.addDecaying(modules.dense + ".bias", [C])
        } else {
            poolerWeight = nil; poolerBias = nil
        }
        projectionWeight = projection.map { layout.addDecaying("projection.weight", [$0.outputs, C]) }
        projectionBias = projection.flatMap { $0.bias ? layout.addDecaying("projection.bias", [$0.outputs]) : nil }
        classifierWeight = layout.addDecaying(classifier + ".weight", [task.outputCount, projection?.outputs ?? C])
        classifierBias = layout.addDecaying(classifier + ".bias", [task.outputCount])
    }

    /// MPNet's and RoBERTa's heads drop x[CLS] out before their dense layer.
    var dropsFirstToken: Bool { pooling == .cls && facts.family.clsHeadModules.dropoutBeforeDense }

    // [B, C] each: [CLS] rows, pooler pre-activation, pooled, after the classifier's dropout (mask [B·C]);
    // [B, K], [B, K], [B], [B] (ones: d loss / d per-example loss); backward scratch [B, C] ×3, [B, K].
    private var first = ArenaRegion<Float>.empty, poolerPre = ArenaRegion<Float>.empty, pooled = ArenaRegion<Float>.empty
    private var pooledDropped = ArenaRegion<Float>.empty, headMask = ArenaRegion<UInt8>.empty
    private var firstDropped = ArenaRegion<Float>.empty, firstMask = ArenaRegion<UInt8>.empty
    private var logits = ArenaRegion<Float>.empty, probabilities = ArenaRegion<Float>.empty, losses = ArenaRegion<Float>.empty
    private var ones = ArenaRegion<Float>.empty
    /// [B, D] each: the projection's output before and after its activation (the embedding).
    private var projectedPre = ArenaRegion<Float>.empty, projected = ArenaRegion<Float>.empty
    private var dHeadA = ArenaRegion<Float>.empty, dHeadB = ArenaRegion<Float>.empty, dHeadC = ArenaRegion<Float>.empty, dLogits = ArenaRegion<Float>.empty
    private var capacity = 0
    private var arena = ActivationArena(ArenaLayout())
    /// The classifier's input in the last pass: pooled, or pooled after dropout; cls pooling: the
    /// dense layer's input, x[CLS] or (MPNet) x[CLS] after dropout.
    private var headInput: UnsafeMutablePointer<Float>? = nil, denseInput: UnsafeMutablePointer<Float>? = nil
    public var activationBytes: Int { arena.byteCount }

    private func reserve(sequences B: Int) {
        guard B > capacity else { return }
        capacity = B
        let C = facts.hiddenSize, K = task.outputCount
        var m = ArenaLayout()
        first = m.floats(B * C); poolerPre = m.floats(B * C); pooled = m.floats(B * C)
        pooledDropped = m.floats(B * C); headMask = m.bytes(B * C)
        firstDropped = m.floats(dropsFirstToken ? B * C : 0); firstMask = m.bytes(dropsFirstToken ? B * C : 0)
        logits = m.floats(B * K); probabilities = m.floats(B * K); losses = m.floats(B); ones = m.floats(B)
        let D = projection?.outputs ?? 0
        projectedPre = m.floats(B * D); projected = m.floats(B * D)
        let width = max(C, D)
        dHeadA = m.floats(B * width); dHeadB = m.floats(B * width); dHeadC = m.floats(B * width); dLogits = m.floats(B * K)
        arena = ActivationArena(m)
        arena[ones].update(repeating: 1, count: B)
    }

    public func initialize(_ parameters: FlatBuffer<Float>, seed: UInt64, includePooler: Bool) {
        var rng = SplitMix64(seed: combineKey(seed, 0xC1A55))
        var head = [classifierWeight, classifierBias]
        if includePooler, let w = poolerWeight, let b = poolerBias { head += [w, b] }
        for spec in head {
            let isBias = spec.name.hasSuffix("bias")
            for i in 0..<spec.count { parameters[spec.offset + i] = isBias ? 0 : Float(rng.nextNormal() * facts.initializerRange) }
        }
    }

    public func forward(_ x: UnsafeMutablePointer<Float>, pass: HeadPass, objective: TrainingObjective?, parameters p: UnsafeMutablePointer<Float>) -> BatchStatistics {
        let batch = pass.batch, B = batch.count, C = facts.hiddenSize, K = task.outputCount, starts = batch.sequenceStarts
        reserve(sequences: B)
        switch pooling {
        case .mean:
            meanPoolForward(out: arena[pooled], inp: x, starts: starts, B: B, C: C)
            headInput = arena[pooled]
            if let projection, let w = projectionWeight {
                projection.forward(out: arena[projected], pre: arena[projectedPre], inp: arena[pooled], weight: p + w.offset,
                                   bias: projectionBias.map { p + $0.offset }, B: B, C: C)
                headInput = arena[projected]
            }
        case .cls:
            firstTokenForward(out: arena[first], inp: x, starts: starts, B: B, C: C)
            denseInput = arena[first]
            if dropsFirstToken && pass.training && classifierDropout > 0 {
                dropoutForward(out: arena[firstDropped], mask: arena[firstMask], inp: arena[first], probability: classifierDropout,
                               key: pass.dropoutKey(facts.headDropoutSite + 1), exampleIndices: batch.exampleIndices,
                               segmentStarts: (0...B).map { $0 * C }, B: B)
                denseInput = arena[firstDropped]
            }
            linearForward(out: arena[poolerPre], inp: denseInput!, weight: p + poolerWeight!.offset, bias: p + poolerBias!.offset, B: B, C: C, OC: C)
            switch facts.family.clsHeadModules.activation {
            case .tanh: tanhForward(out: arena[pooled], inp: arena[poolerPre], N: B * C)
            case .relu: reluForward(out: arena[pooled], inp: arena[poolerPre], N: B * C)
            }
            headInput = arena[pooled]
            if pass.training && classifierDropout > 0 {
                dropoutForward(out: arena[pooledDropped], mask: arena[headMask], inp: arena[pooled], probability: classifierDropout,
                               key: pass.dropoutKey(facts.headDropoutSite), exampleIndices: batch.exampleIndices,
                               segmentStarts: (0...B).map { $0 * C }, B: B)
                headInput = arena[pooledDropped]
            }
        }
        linearForward(out: arena[logits], inp: headInput!, weight: p + classifierWeight.offset, bias: p + classifierBias.offset, B: B, C: embeddingSize, OC: K)
        return lossStatistics(task: task, objective: objective, logits: arena[logits], probabilities: arena[probabilities], losses: arena[losses], batch: batch)
    }

    public func backward(dx: UnsafeMutablePointer<Float>?, pass: HeadPass, objective: TrainingObjective, parameters p: UnsafeMutablePointer<Float>,
                         gradients g: UnsafeMutablePointer<Float>, wordEmbeddingGradient: UnsafeMutablePointer<Float>?) -> Bool {
        let batch = pass.batch, B = batch.count, C = facts.hiddenSize, K = task.outputCount, starts = batch.sequenceStarts
        let N = batch.tokenIDs.count
        zeroFill(arena[dLogits], N: B * K)
        lossBackward(task: task, objective: objective, dlogits: arena[dLogits], ones: arena[ones], logits: arena[logits], probabilities: arena[probabilities], batch: batch)
        linearBackward(dinp: arena[dHeadA], dweight: g + classifierWeight.offset, dbias: g + classifierBias.offset, dout: arena[dLogits],
                       inp: headInput!, weight: p + classifierWeight.offset, B: B, C: embeddingSize, OC: K, overwritingInput: true)
        switch pooling {
        case .mean:
            if let projection, let w = projectionWeight {
                // d embedding (dHeadA) -> d pre-activation (dHeadB) -> the projection's gradients and d pooled (dHeadA).
                projection.backward(dinp: dx == nil ? nil : arena[dHeadA], dweight: g + w.offset, dbias: projectionBias.map { g + $0.offset },
                                    dPre: arena[dHeadB], dout: arena[dHeadA], pre: arena[projectedPre], out: arena[projected], inp: arena[pooled],
                                    weight: p + w.offset, B: B, C: C)
            }
            guard let dx else { return false }
            meanPoolBackward(dinp: dx, dout: arena[dHeadA], starts: starts, B: B, C: C, overwritingInput: true)
        case .cls:
            var dPooled = arena[dHeadA]
            if classifierDropout > 0 {
                dropoutGradient(dinp: arena[dHeadB], dout: dPooled, mask: arena[headMask], probability: classifierDropout, N: B * C)
                dPooled = arena[dHeadB]
            }
            switch facts.family.clsHeadModules.activation {
            case .tanh: tanhBackward(dinp: arena[dHeadC], dout: dPooled, out: arena[pooled], N: B * C, overwritingInput: true)
            case .relu:
                zeroFill(arena[dHeadC], N: B * C)
                reluBackward(dinp: arena[dHeadC], dout: dPooled, inp: arena[poolerPre], N: B * C)
            }
            linearBackward(dinp: dx == nil ? nil : arena[dHeadA], dweight: g + poolerWeight!.offset, dbias: g + poolerBias!.offset,
                           dout: arena[dHeadC], inp: denseInput!, weight: p + poolerWeight!.offset, B: B, C: C, OC: C, overwritingInput: true)
            guard let dx else { return false }
            if denseInput != UnsafeMutablePointer(arena[first]) {
                dropoutGradient(dinp: arena[dHeadA], dout: arena[dHeadA], mask: arena[firstMask], probability: classifierDropout, N: B * C)
            }
            zeroFill(dx, N: N * C)
            firstTokenBackward(dinp: dx, dout: arena[dHeadA], starts: starts, B: B, C: C)
        }
        return true
    }

    public func lastLogits(count B: Int) -> [[Float]] {
        let K = task.outputCount, logits = arena[logits]
        return (0..<B).map { Array(UnsafeBufferPointer(start: logits + $0 * K, count: K)) }
    }
    public func lastMaskedLogits(count: Int) -> [[Float]]? { nil }
    /// The sentence embedding as sentence-transformers pools it: the mean, or the projection's
    /// output when there is one; with cls pooling the first token's hidden state itself (not the
    /// classifier's dense + tanh on it).
    public func lastPooled(count B: Int) -> [[Float]] {
        let width = embeddingSize, pooled = pooling == .cls ? arena[first] : projection == nil ? arena[pooled] : arena[projected]
        return (0..<B).map { Array(UnsafeBufferPointer(start: pooled + $0 * width, count: width)) }
    }
}

/// BertForMaskedLM's head (`cls.predictions.*`; MPNet's and RoBERTa's `lm_head.*`; DistilBERT's
/// `vocab_transform`, `vocab_layer_norm`, `vocab_projector.bias`), at the M masked positions only:
/// logits [M, V] = LN(act(Wt · x[masked] + bt)) · wordᵀ + bv, the decoder tied to the word
/// embeddings (not a tensor of its own); cross-entropy against the original tokens.
public final class MaskedLMHead: EncoderHead {
    public var task: TaskKind { .maskedLanguageModel }
    let facts: EncoderFacts
    /// [C, C], [C]: the transform; [C], [C]: its LayerNorm; [V]: the decoder's bias.
    public let transformWeight: TensorSpec, transformBias: TensorSpec
    public let normWeight: TensorSpec, normBias: TensorSpec
    public let decoderBias: TensorSpec
    public var firstTensor: TensorSpec { transformWeight }
    public var classifierDropout: Double = 0
    public var touchesEveryWordEmbedding: Bool { true }

    public init(facts: EncoderFacts, layout: inout ParameterLayout) {
        self.facts = facts
        let C = facts.hiddenSize
        let m = facts.family.maskedLMModules
        transformWeight = layout.addDecaying(m.dense + ".weight", [C, C])
        transformBias = layout.addDecaying(m.dense + ".bias", [C])
        normWeight = layout.addDecaying(m.norm + ".weight", [C])
        normBias = layout.addDecaying(m.norm + ".bias", [C])
        decoderBias = layout.addDecaying(m.bias, [facts.vocabularySize])
    }

    // [M, C] each: the encoder's rows, the transform's output, its activation (and GELU's slope),
    // the LayerNorm output; [M] each: LayerNorm's mean and 1/std, the losses, ones. [M, V] each:
    // the vocabulary logits (overwritten by their gradient in backward) and probabilities.
    // Backward scratch [M, C] ×2.
    private var rows = ArenaRegion<Float>.empty, dense = ArenaRegion<Float>.empty, activated = ArenaRegion<Float>.empty
    private var slope = ArenaRegion<Float>.empty, normed = ArenaRegion<Float>.empty
    private var mean = ArenaRegion<Float>.empty, rstd = ArenaRegion<Float>.empty, losses = ArenaRegion<Float>.empty, ones = ArenaRegion<Float>.empty
    private var logits = ArenaRegion<Float>.empty, probabilities = ArenaRegion<Float>.empty
    private var dA = ArenaRegion<Float>.empty, dB = ArenaRegion<Float>.empty
    private var capacity = 0
    private var arena = ActivationArena(ArenaLayout())
    public var activationBytes: Int { arena.byteCount }

    private func reserve(masked M: Int) {
        guard M > capacity else { return }
        capacity = M
        let C = facts.hiddenSize, V = facts.vocabularySize
        var m = ArenaLayout()
        rows = m.floats(M * C); dense = m.floats(M * C); activated = m.floats(M * C); slope = m.floats(M * C)
        normed = m.floats(M * C); mean = m.floats(M); rstd = m.floats(M); losses = m.floats(M); ones = m.floats(M)
        logits = m.floats(M * V); probabilities = m.floats(M * V)
        dA = m.floats(M * C); dB = m.floats(M * C)
        arena = ActivationArena(m)
        arena[ones].update(repeating: 1, count: M)
    }

    /// BertForMaskedLM's _init_weights: dense ~ N(0, range), LayerNorm 1 and 0, biases 0.
    public func initialize(_ parameters: FlatBuffer<Float>, seed: UInt64, includePooler: Bool) {
        var rng = SplitMix64(seed: combineKey(seed, 0xC1A55))
        for i in 0..<transformWeight.count { parameters[transformWeight.offset + i] = Float(rng.nextNormal() * facts.initializerRange) }
        for spec in [transformBias, normBias, decoderBias] { parameters.at(spec).update(repeating: 0, count: spec.count) }
        parameters.at(normWeight).update(repeating: 1, count: normWeight.count)
    }

    /// The summed loss, the correct predictions and M.
    public func forward(_ x: UnsafeMutablePointer<Float>, pass: HeadPass, objective: TrainingObjective?, parameters p: UnsafeMutablePointer<Float>) -> BatchStatistics {
        let batch = pass.batch
        let M = batch.maskedPositions.count, C = facts.hiddenSize, V = facts.vocabularySize
        var stats = BatchStatistics(count: Double(M))
        guard M > 0 else { return stats }
        reserve(masked: M)
        batch.maskedPositions.withUnsafeBufferPointer { positions in
            gatherRowsForward(out: arena[rows], inp: x, rows: positions.baseAddress!, M: M, C: C)
        }
        linearForward(out: arena[dense], inp: arena[rows], weight: p + transformWeight.offset, bias: p + transformBias.offset, B: M, C: C, OC: C)
        if facts.usesTanhGELU {
            geluTanhForward(out: arena[activated], inp: arena[dense], N: M * C)
        } else {
            geluForward(out: arena[activated], slope: arena[slope], inp: arena[dense], N: M * C)
        }
        layerNormForward(out: arena[normed], mean: arena[mean], rstd: arena[rstd], inp: arena[activated],
                         weight: p + normWeight.offset, bias: p + normBias.offset, eps: Float(facts.layerNormEps), N: M, C: C)
        linearForward(out: arena[logits], inp: arena[normed], weight: p + facts.wordEmbeddings.offset, bias: p + decoderBias.offset, B: M, C: C, OC: V)
        let losses = arena[losses], probabilities = arena[probabilities]
        softmaxCrossEntropyForward(losses: losses, probs: probabilities, logits: arena[logits], targets: batch.maskedTargets, B: M, K: V)
        for m in 0..<M {
            stats.lossSum += Double(losses[m])
            if argmax(probabilities + m * V, V) == Int(batch.maskedTargets[m]) { stats.correct += 1 }
        }
        return stats
    }

    /// d x is zero except at the masked rows.
    public func backward(dx: UnsafeMutablePointer<Float>?, pass: HeadPass, objective: TrainingObjective, parameters p: UnsafeMutablePointer<Float>,
                         gradients g: UnsafeMutablePointer<Float>, wordEmbeddingGradient: UnsafeMutablePointer<Float>?) -> Bool {
        let batch = pass.batch
        let M = batch.maskedPositions.count, C = facts.hiddenSize, V = facts.vocabularySize, N = batch.tokenIDs.count
        if let dx { zeroFill(dx, N: N * C) }
        guard M > 0 else { return dx != nil }
        // The logits are spent: their region takes their gradient.
        let dLogits = arena[logits]
        zeroFill(dLogits, N: M * V)
        softmaxCrossEntropyBackward(dlogits: dLogits, dlosses: arena[ones], probs: arena[probabilities], targets: batch.maskedTargets, B: M, K: V)
        linearBackward(dinp: arena[dA], dweight: wordEmbeddingGradient, dbias: g + decoderBias.offset, dout: dLogits,
                       inp: arena[normed], weight: p + facts.wordEmbeddings.offset, B: M, C: C, OC: V, overwritingInput: true)
        layerNormBackward(dinp: arena[dB], dweight: g + normWeight.offset, dbias: g + normBias.offset, dout: arena[dA],
                          inp: arena[activated], weight: p + normWeight.offset, mean: arena[mean], rstd: arena[rstd], N: M, C: C, overwritingInput: true)
        if facts.usesTanhGELU {
            geluTanhBackward(dinp: arena[dA], dout: arena[dB], inp: arena[dense], N: M * C, overwritingInput: true)
        } else {
            geluBackward(dinp: arena[dA], dout: arena[dB], slope: arena[slope], N: M * C, overwritingInput: true)
        }
        linearBackward(dinp: dx == nil ? nil : arena[dB], dweight: g + transformWeight.offset, dbias: g + transformBias.offset,
                       dout: arena[dA], inp: arena[rows], weight: p + transformWeight.offset, B: M, C: C, OC: C, overwritingInput: true)
        guard let dx else { return false }
        batch.maskedPositions.withUnsafeBufferPointer { positions in
            gatherRowsBackward(dinp: dx, dout: arena[dB], rows: positions.baseAddress!, M: M, C: C)
        }
        return true
    }

    public func lastLogits(count: Int) -> [[Float]] { [] }
    public func lastMaskedLogits(count M: Int) -> [[Float]]? {
        let V = facts.vocabularySize, logits = arena[logits]
        return (0..<M).map { Array(UnsafeBufferPointer(start: logits + $0 * V, count: V)) }
    }
    public func lastPooled(count: Int) -> [[Float]] { [] }
}
