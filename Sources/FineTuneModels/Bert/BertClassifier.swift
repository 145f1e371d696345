import FineTuneKernels
import Foundation

/// A BERT encoder with a sequence-classification (or regression) head, or with BertForMaskedLM's
/// head for masked-language modelling, trained end to end.
///
/// Forward (post-LayerNorm BERT, as transformers' BertModel):
///   x = dropout(LN(word[id] + position[t] + type[tt]))
///   per layer: a = dropout(Wo · attention(x) + bo); h = LN(a + x); f = dropout(W2 · gelu(W1 · h + b1) + b2); x = LN(f + h)
///   pooled = mean over tokens (mean pooling)  |  dropout(tanh(Wp · x[CLS] + bp)) (cls pooling)
///   logits = Wc · pooled + bc
///   masked-language modelling instead: at the M masked positions only,
///   logits[M, V] = LN(act(Wt · x[masked] + bt)) · wordᵀ + bv (the decoder tied to the word embeddings)
/// Batches are packed (Attention.swift): no padding is computed. `backward` is `forward` read backwards.
/// Shapes: N tokens of the batch, B sequences, C hidden, F intermediate, K outputs, A attention scores.
public final class BertClassifier: TextModel {
    public let config: BertConfig
    public let pooling: Pooling
    public let task: TaskKind
    public let tensors: BertParameters
    public var layout: ParameterLayout { tensors.layout }
    public let parameters: FlatBuffer<Float>
    public let gradients: FlatBuffer<Float>
    /// Dropout probabilities in training (zero turns dropout off, as the golden tests need).
    public var hiddenDropout: Double
    public var attentionDropout: Double
    public var classifierDropout: Double
    public var dropout: DropoutRates {
        get { DropoutRates(hidden: hiddenDropout, attention: attentionDropout, classifier: classifierDropout) }
        set {
            hiddenDropout = newValue.hidden
            if let p = newValue.attention { attentionDropout = p }
            if let p = newValue.classifier { classifierDropout = p }
        }
    }
    public var defaultLearningRate: Double { 5e-5 }
    public var vocabularySize: Int { config.vocabSize }
    public var maxPositions: Int { config.maxPositions }
    public var transformerShape: (layers: Int, hidden: Int, intermediate: Int) { (config.layers, config.hiddenSize, config.intermediateSize) }
    public var inputKind: InputKind { .text }
    /// A batch's gradient touches the word-embedding rows of its tokens and the position rows up to its longest text.
    /// (Masked-language modelling: the tied decoder's gradient reaches every word-embedding row.)
    public var sparseGradientTensors: [TensorSpec] {
        task == .maskedLanguageModel ? [tensors.positionEmbeddings] : [tensors.wordEmbeddings, tensors.positionEmbeddings]
    }
    /// Masked-language modelling: how inputs are masked (a batch that carries its own masked
    /// positions, as the golden tests give them, is used as it is).
    public var masking: MaskingSettings? = nil
    /// Evaluations mask with this seed, whatever the run's: every evaluation, before and after
    /// adaptation, scores the same positions.
    public static let evaluationMaskSeed: UInt64 = 0x5EED_E7A1

    public func touchedRows(in tensor: TensorSpec) -> [Int] {
        guard let pass = last, pass.training else { return [] }
        let batch = pass.batch
        switch tensor.offset {
        case tensors.wordEmbeddings.offset: return Set(batch.tokenIDs.map(Int.init)).sorted()
        case tensors.positionEmbeddings.offset:
            return Array(0..<(zip(batch.sequenceStarts.dropFirst(), batch.sequenceStarts).map { $0 - $1 }.max() ?? 0))
        default: return Array(0..<(tensor.shape.first ?? 0))
        }
    }

    /// LoRA on the encoder (nil: none): adapters after the encoder in the layout, base weights frozen.
    public let lora: LoRASettings?

    public init(config: BertConfig, pooling: Pooling, task: TaskKind, lora: LoRASettings? = nil) {
        self.config = config
        self.pooling = pooling
        self.task = task
        self.lora = lora
        hiddenDropout = config.hiddenDropout
        attentionDropout = config.attentionDropout
        classifierDropout = config.classifierDropout
        tensors = BertParameters(config: config, pooling: pooling, task: task, lora: lora)
        parameters = FlatBuffer(count: tensors.layout.count)
        gradients = FlatBuffer(count: tensors.layout.count)
    }

    /// Initialises the tensors a base model may lack (classifier, pooler) as transformers does:
    /// weights ~ N(0, initializer_range), biases 0.
    public func initializeHead(seed: UInt64, includePooler: Bool) {
        var rng = SplitMix64(seed: combineKey(seed, 0xC1A55))
        if let mlm = tensors.maskedLM {
            // BertForMaskedLM's _init_weights: dense ~ N(0, range), LayerNorm 1 and 0, biases 0.
            for i in 0..<mlm.transformWeight.count { parameters[mlm.transformWeight.offset + i] = Float(rng.nextNormal() * config.initializerRange) }
            for spec in [mlm.transformBias, mlm.normBias, mlm.decoderBias] { parameters.at(spec).update(repeating: 0, count: spec.count) }
            parameters.at(mlm.normWeight).update(repeating: 1, count: mlm.normWeight.count)
            return
        }
        var head = [tensors.classifierWeight!, tensors.classifierBias!]
        if includePooler, let w = tensors.poolerWeight, let b = tensors.poolerBias { head += [w, b] }
        for spec in head {
            let isBias = spec.name.hasSuffix("bias")
            for i in 0..<spec.count { parameters[spec.offset + i] = isBias ? 0 : Float(rng.nextNormal() * config.initializerRange) }
        }
    }

    // MARK: Activations

    private var capacity = ActivationShape(tokens: 0, sequences: 0, scores: 0)
    private var arena = ActivationArena(ArenaLayout())
    private var acts = BertActivations()

    public var activationBytes: Int { arena.byteCount }
    public var trainableFrom = 0
    public var objective = TrainingObjective()
    public var parameterGroups: [ParameterGroup] {
        let t = tensors
        let adapters: [(ParameterGroup.Kind, TensorSpec)] = t.adapters.first.flatMap { $0.values.map(\.a).min { $0.offset < $1.offset } }.map { [(.adapters, $0)] } ?? []
        return ParameterGroup.split(layout, starts: [(.embeddings, t.wordEmbeddings)] + t.layers.enumerated().map { (.layer($0), $1.queryWeight) }
                                    + adapters + [(.head, t.headStart)])
    }

    /// PEFT's initialisation of fresh adapters: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0.
    public func initializeAdapters(seed: UInt64) {
        var rng = SplitMix64(seed: combineKey(seed, 0x10BA))
        for adapter in tensors.adapters.flatMap({ $0.sorted { $0.key < $1.key }.map(\.value) }) {
            let bound = 1 / Double(adapter.a.shape[1]).squareRoot()
            for i in 0..<adapter.a.count { parameters[adapter.a.offset + i] = Float((rng.nextUnit() * 2 - 1) * bound) }
            parameters.at(adapter.b).update(repeating: 0, count: adapter.b.count)
        }
    }

    /// A base weight with its adapter merged in, W + scale·B·A ([out, in]); nil for a tensor LoRA does not adapt.
    public func mergedWeight(_ spec: TensorSpec) -> [Float]? {
        guard let lora else { return nil }
        for (l, layer) in tensors.adapters.enumerated() {
            for (target, adapter) in layer where BertParameters.layerPrefix(l) + target.modulePath + ".weight" == spec.name {
                var merged = Array(UnsafeBufferPointer(start: parameters.at(spec), count: spec.count))
                let (outputs, rank, inputs) = (adapter.b.shape[0], lora.rank, adapter.a.shape[1])
                merged.withUnsafeMutableBufferPointer {
                    Float.gemm(transA: false, transB: false, m: outputs, n: inputs, k: rank, alpha: Float(lora.scale), a: parameters.at(adapter.b), lda: rank,
                               b: parameters.at(adapter.a), ldb: inputs, beta: 1, c: $0.baseAddress!, ldc: inputs)
                }
                return merged
            }
        }
        return nil
    }

    /// Grows the arena (never shrinks it) so `shape` fits.
    private func reserve(_ shape: ActivationShape) {
        guard !shape.fits(in: capacity) else { return }
        capacity = capacity.union(shape)
        let (layout, regions) = BertActivations.layout(config: config, outputs: task.outputCount, shape: capacity, lora: lora)
        arena = ActivationArena(layout)
        acts = regions
        arena[acts.ones].update(repeating: 1, count: capacity.sequences)
        arena[acts.mlmOnes].update(repeating: 1, count: capacity.masked)
    }

    /// What backward needs of the last forward pass besides the arena.
    private struct Pass {
        var batch: Batch
        var training: Bool
        var seed: UInt64, step: Int
        /// Each sequence's attention block in the score buffers (B + 1 offsets).
        var attentionOffsets: [Int]
        /// x_0 = the embeddings' output, x_l = h2 of layer l - 1: the input of each layer.
        var layerInputs: [UnsafeMutablePointer<Float>]
        /// The classifier's input: pooled, or pooled after dropout.
        var headInput: UnsafeMutablePointer<Float>
        /// Dropout sites: 0 embeddings; 1 + 3l attention probabilities, 2 + 3l attention output,
        /// 3 + 3l feed-forward output of layer l; 1 + 3L the classifier input.
        func key(_ site: Int) -> DropoutKey { DropoutKey(seed: seed, step: step, site: site) }
    }
    private var last: Pass? = nil

    // MARK: Forward

    public func forward(_ batch: Batch, mode: ForwardMode) -> BatchStatistics {
        let B = batch.count
        last = nil
        guard B > 0 else { return BatchStatistics() }
        var pass = Pass(batch: batch, training: false, seed: 0, step: 0, attentionOffsets: [], layerInputs: [], headInput: arena[acts.pooled])
        if case .training(let seed, let step) = mode { pass.training = true; pass.seed = seed; pass.step = step }
        if task == .maskedLanguageModel, batch.maskedPositions.isEmpty, let masking {
            pass.batch = pass.training ? masking.mask(batch, seed: pass.seed, step: pass.step)
                                       : masking.mask(batch, seed: Self.evaluationMaskSeed, step: MaskingSettings.evaluationStep)
        }
        let batch = pass.batch
        let N = batch.tokenIDs.count, C = config.hiddenSize, NH = config.heads, K = task.outputCount
        let starts = batch.sequenceStarts
        pass.attentionOffsets = attentionOffsets(starts: starts, heads: NH)
        reserve(ActivationShape(tokens: N, sequences: B, scores: pass.attentionOffsets.last!, masked: batch.maskedPositions.count))
        let a = acts, t = tensors, p = parameters.base
        let eps = Float(config.layerNormEps)
        let tokenSegments = starts.map { $0 * C }
        let dropHidden = pass.training && hiddenDropout > 0, dropAttention = pass.training && attentionDropout > 0

        embeddingForward(out: arena[a.embeddingSum], ids: batch.tokenIDs, types: batch.tokenTypeIDs, starts: starts,
                         wte: p + t.wordEmbeddings.offset, wpe: p + t.positionEmbeddings.offset, wtt: p + t.tokenTypeEmbeddings.offset, B: B, C: C)
        layerNormForward(out: arena[a.embeddingNormed], mean: arena[a.embeddingMean], rstd: arena[a.embeddingRstd], inp: arena[a.embeddingSum],
                         weight: p + t.embeddingNormWeight.offset, bias: p + t.embeddingNormBias.offset, eps: eps, N: N, C: C)
        var x = arena[a.embeddingNormed]
        if dropHidden {
            dropoutForward(out: arena[a.embeddingDropped], mask: arena[a.embeddingMask], inp: x, probability: hiddenDropout, key: pass.key(0),
                           exampleIndices: batch.exampleIndices, segmentStarts: tokenSegments, B: B)
            x = arena[a.embeddingDropped]
        }
        pass.layerInputs = [x]
        // A sublayer's output as BERT ends it: out = LayerNorm(dropout(y) + residual), keeping what backward needs.
        func addAndNorm(_ y: ArenaRegion<Float>, dropped: ArenaRegion<Float>, mask: ArenaRegion<UInt8>, site: Int, residual: UnsafeMutablePointer<Float>,
                        sum: ArenaRegion<Float>, out: ArenaRegion<Float>, mean: ArenaRegion<Float>, rstd: ArenaRegion<Float>,
                        weight: TensorSpec, bias: TensorSpec) {
            var kept = arena[y]
            if dropHidden {
                dropoutForward(out: arena[dropped], mask: arena[mask], inp: kept, probability: hiddenDropout, key: pass.key(site),
                               exampleIndices: batch.exampleIndices, segmentStarts: tokenSegments, B: B)
                kept = arena[dropped]
            }
            residualForward(out: arena[sum], a: kept, b: residual, N: N * C)
            layerNormForward(out: arena[out], mean: arena[mean], rstd: arena[rstd], inp: arena[sum],
                             weight: p + weight.offset, bias: p + bias.offset, eps: eps, N: N, C: C)
        }
        // LoRA: out += scale·dropout(x)·Aᵀ·Bᵀ for an adapted layer (dropout sites after the classifier's).
        func adapt(_ l: Int, _ target: LoRATarget, out: UnsafeMutablePointer<Float>, inp: UnsafeMutablePointer<Float>, inputs: Int, outputs: Int) {
            guard let lora, let adapter = t.adapters[l][target], let regions = a.adapters[l][target] else { return }
            var x = inp
            if pass.training && lora.dropout > 0 {
                let site = 2 + 3 * config.layers + LoRATarget.allCases.count * l + LoRATarget.allCases.firstIndex(of: target)!
                dropoutForward(out: arena[regions.dropped], mask: arena[regions.mask], inp: inp, probability: lora.dropout, key: pass.key(site),
                               exampleIndices: batch.exampleIndices, segmentStarts: starts.map { $0 * inputs }, B: B)
                x = arena[regions.dropped]
            }
            loraForward(out: out, h: arena[regions.h], inp: x, a: p + adapter.a.offset, b: p + adapter.b.offset, scale: Float(lora.scale),
                        B: N, C: inputs, OC: outputs, R: lora.rank)
        }
        for (l, layer) in t.layers.enumerated() {
            let al = a.layers[l]
            let F = config.intermediateSize
            for ((out, projection), target) in zip(zip([al.q, al.k, al.v], layer.projections), [LoRATarget.query, .key, .value]) {
                linearForward(out: arena[out], inp: x, weight: p + projection.weight.offset, bias: p + projection.bias.offset, B: N, C: C, OC: C)
                adapt(l, target, out: arena[out], inp: x, inputs: C, outputs: C)
            }
            batch.exampleIndices.withUnsafeBufferPointer { indices in
                let dropout = dropAttention ? AttentionDropout(probability: attentionDropout, key: pass.key(1 + 3 * l), exampleIndices: indices.baseAddress!) : nil
                attentionForward(out: arena[al.context], probs: arena[al.probs], probsDropped: arena[al.probsDropped], mask: arena[al.probsMask],
                                 q: arena[al.q], k: arena[al.k], v: arena[al.v], dropout: dropout, starts: starts, offsets: pass.attentionOffsets, B: B, C: C, NH: NH)
            }
            linearForward(out: arena[al.attentionOutput], inp: arena[al.context], weight: p + layer.attentionOutputWeight.offset,
                          bias: p + layer.attentionOutputBias.offset, B: N, C: C, OC: C)
            adapt(l, .attentionOutput, out: arena[al.attentionOutput], inp: arena[al.context], inputs: C, outputs: C)
            addAndNorm(al.attentionOutput, dropped: al.attentionDropped, mask: al.attentionMask, site: 2 + 3 * l, residual: x,
                       sum: al.residual1, out: al.hidden1, mean: al.norm1Mean, rstd: al.norm1Rstd,
                       weight: layer.attentionNormWeight, bias: layer.attentionNormBias)
            linearForward(out: arena[al.intermediate], inp: arena[al.hidden1], weight: p + layer.intermediateWeight.offset,
                          bias: p + layer.intermediateBias.offset, B: N, C: C, OC: F)
            adapt(l, .intermediate, out: arena[al.intermediate], inp: arena[al.hidden1], inputs: C, outputs: F)
            if config.usesTanhGELU {
                geluTanhForward(out: arena[al.activated], inp: arena[al.intermediate], N: N * F)
            } else {
                geluForward(out: arena[al.activated], slope: arena[al.geluSlope], inp: arena[al.intermediate], N: N * F)
            }
            linearForward(out: arena[al.ffn], inp: arena[al.activated], weight: p + layer.outputWeight.offset,
                          bias: p + layer.outputBias.offset, B: N, C: F, OC: C)
            adapt(l, .output, out: arena[al.ffn], inp: arena[al.activated], inputs: F, outputs: C)
            addAndNorm(al.ffn, dropped: al.ffnDropped, mask: al.ffnMask, site: 3 + 3 * l, residual: arena[al.hidden1],
                       sum: al.residual2, out: al.hidden2, mean: al.norm2Mean, rstd: al.norm2Rstd,
                       weight: layer.outputNormWeight, bias: layer.outputNormBias)
            x = arena[al.hidden2]
            pass.layerInputs.append(x)
        }
        if let head = t.maskedLM {
            last = pass
            return maskedLMForward(head, x: x, batch: batch)
        }
        // Head
        switch pooling {
        case .mean:
            meanPoolForward(out: arena[a.pooled], inp: x, starts: starts, B: B, C: C)
            pass.headInput = arena[a.pooled]
        case .cls:
            firstTokenForward(out: arena[a.first], inp: x, starts: starts, B: B, C: C)
            linearForward(out: arena[a.poolerPre], inp: arena[a.first], weight: p + t.poolerWeight!.offset, bias: p + t.poolerBias!.offset, B: B, C: C, OC: C)
            tanhForward(out: arena[a.pooled], inp: arena[a.poolerPre], N: B * C)
            pass.headInput = arena[a.pooled]
            if pass.training && classifierDropout > 0 {
                dropoutForward(out: arena[a.pooledDropped], mask: arena[a.headMask], inp: arena[a.pooled], probability: classifierDropout,
                               key: pass.key(1 + 3 * config.layers), exampleIndices: batch.exampleIndices,
                               segmentStarts: (0...B).map { $0 * C }, B: B)
                pass.headInput = arena[a.pooledDropped]
            }
        }
        linearForward(out: arena[a.logits], inp: pass.headInput, weight: p + t.classifierWeight!.offset, bias: p + t.classifierBias!.offset, B: B, C: C, OC: K)
        last = pass
        return lossStatistics(task: task, objective: pass.training ? objective : nil, logits: arena[a.logits], probabilities: arena[a.probabilities], losses: arena[a.losses], batch: batch)
    }

    // MARK: Backward

    public func backward(gradientsReady: (Int) -> Void) {
        guard let pass = last, pass.training else { gradientsReady(0); return }
        let batch = pass.batch, B = batch.count
        let N = batch.tokenIDs.count, C = config.hiddenSize, F = config.intermediateSize, NH = config.heads, K = task.outputCount
        let starts = batch.sequenceStarts
        let a = acts, t = tensors, p = parameters.base, g = gradients.base
        let dropAttention = attentionDropout > 0

        // The gradient behind a dropout site: `dout` itself when the site is off, else dout · mask / (1 − p) in `scratch`.
        func throughDropout(_ dout: UnsafeMutablePointer<Float>, mask: ArenaRegion<UInt8>, probability: Double, count: Int,
                            scratch: ArenaRegion<Float>) -> UnsafeMutablePointer<Float> {
            guard probability > 0 else { return dout }
            dropoutGradient(dinp: arena[scratch], dout: dout, mask: arena[mask], probability: probability, N: count)
            return arena[scratch]
        }
        // Backward of the forward pass's addAndNorm: d(sum) into `dsum` (also the residual's gradient),
        // LayerNorm's parameter gradients, and d(y) behind the dropout, returned.
        func addAndNormBackward(dout: UnsafeMutablePointer<Float>, dsum: UnsafeMutablePointer<Float>, sum: ArenaRegion<Float>, mask: ArenaRegion<UInt8>,
                                mean: ArenaRegion<Float>, rstd: ArenaRegion<Float>, weight: TensorSpec, bias: TensorSpec) -> UnsafeMutablePointer<Float> {
            layerNormBackward(dinp: dsum, dweight: g + weight.offset, dbias: g + bias.offset, dout: dout, inp: arena[sum], weight: p + weight.offset,
                              mean: arena[mean], rstd: arena[rstd], N: N, C: C, overwritingInput: true)
            return throughDropout(dsum, mask: mask, probability: hiddenDropout, count: N * C, scratch: a.gradC)
        }

        // Frozen groups are a prefix: backward ends at the lowest trainable one. With LoRA every
        // layer's adapters train: backward runs through all layers, without the frozen base
        // weights' gradient products (LayerNorm's C-element sums are still written, into the frozen
        // part of the gradient buffer, which nothing reads).
        let headStart = t.headStart.offset
        let headOnly = trainableFrom >= headStart
        let lowestLayer = lora != nil ? 0 : t.layers.firstIndex { $0.queryWeight.offset >= trainableFrom } ?? t.layers.count
        func weightGradient(_ spec: TensorSpec) -> UnsafeMutablePointer<Float>? { spec.offset >= trainableFrom ? g + spec.offset : nil }
        // LoRA's backward for an adapted layer: its adapters' gradients, and `dinp` += the input's share.
        func adaptBackward(_ l: Int, _ target: LoRATarget, dout: UnsafeMutablePointer<Float>, inp: UnsafeMutablePointer<Float>,
                           dinp: UnsafeMutablePointer<Float>?, inputs: Int, outputs: Int) {
            guard let lora, let adapter = t.adapters[l][target], let regions = a.adapters[l][target] else { return }
            let dropped = lora.dropout > 0
            let x = dropped ? arena[regions.dropped] : inp
            let scratch = arena[a.dAdapterInput]
            loraBackward(dinp: dropped && dinp != nil ? scratch : dinp, da: g + adapter.a.offset, db: g + adapter.b.offset, dh: arena[a.dAdapterH],
                         dout: dout, h: arena[regions.h], inp: x, a: p + adapter.a.offset, b: p + adapter.b.offset, scale: Float(lora.scale),
                         B: N, C: inputs, OC: outputs, R: lora.rank, overwritingInput: dropped)
            if dropped, let dinp {
                dropoutGradient(dinp: scratch, dout: scratch, mask: arena[regions.mask], probability: lora.dropout, N: N * inputs)
                residualForward(out: dinp, a: dinp, b: scratch, N: N * inputs)
            }
        }
        let dx = arena[a.gradA]
        if let head = t.maskedLM {
            maskedLMBackward(head, dx: dx, batch: batch, wordEmbeddingGradient: weightGradient(t.wordEmbeddings), inputGradient: !headOnly)
            if headOnly { gradientsReady(0); return }
        } else {
            let dLogits = arena[a.dLogits]
            zeroFill(dLogits, N: B * K)
            lossBackward(task: task, objective: objective, dlogits: dLogits, ones: arena[a.ones], logits: arena[a.logits], probabilities: arena[a.probabilities], batch: batch)
            // Head
            linearBackward(dinp: arena[a.dHeadA], dweight: g + t.classifierWeight!.offset, dbias: g + t.classifierBias!.offset, dout: dLogits,
                           inp: pass.headInput, weight: p + t.classifierWeight!.offset, B: B, C: C, OC: K, overwritingInput: true)
            if headOnly && pooling == .mean { gradientsReady(0); return }
            switch pooling {
            case .mean:
                meanPoolBackward(dinp: dx, dout: arena[a.dHeadA], starts: starts, B: B, C: C, overwritingInput: true)
            case .cls:
                let dPooled = throughDropout(arena[a.dHeadA], mask: a.headMask, probability: classifierDropout, count: B * C, scratch: a.dHeadB)
                tanhBackward(dinp: arena[a.dHeadC], dout: dPooled, out: arena[a.pooled], N: B * C, overwritingInput: true)
                linearBackward(dinp: headOnly ? nil : arena[a.dHeadA], dweight: g + t.poolerWeight!.offset, dbias: g + t.poolerBias!.offset,
                               dout: arena[a.dHeadC], inp: arena[a.first], weight: p + t.poolerWeight!.offset, B: B, C: C, OC: C, overwritingInput: true)
                if headOnly { gradientsReady(0); return }
                zeroFill(dx, N: N * C)
                firstTokenBackward(dinp: dx, dout: arena[a.dHeadA], starts: starts, B: B, C: C)
            }
        }
        // Gradients from `final` on are complete. Reporting them after every large kernel (not just
        // when a tensor completes) also gives the exchange's collectives a chance to progress: MPI's
        // non-blocking reductions only move inside MPI calls.
        var final = headStart
        // With LoRA the adapters (laid out after the encoder) are final only when layer 0 is done.
        func finished(_ offset: Int) { if lora == nil { final = offset }; gradientsReady(final) }
        func progress() { gradientsReady(final) }
        progress()
        // Layers, last to first. On entry gradA holds d(layer output); on exit d(layer input).
        for l in stride(from: t.layers.count - 1, through: lowestLayer, by: -1) {
            let al = a.layers[l], layer = t.layers[l], x = pass.layerInputs[l]
            // x_out = LN2(ffn' + h1)
            let dRes2 = arena[a.gradB]
            let dFFN = addAndNormBackward(dout: arena[a.gradA], dsum: dRes2, sum: al.residual2, mask: al.ffnMask, mean: al.norm2Mean,
                                          rstd: al.norm2Rstd, weight: layer.outputNormWeight, bias: layer.outputNormBias)
            linearBackward(dinp: arena[a.dActivated], dweight: weightGradient(layer.outputWeight), dbias: weightGradient(layer.outputBias), dout: dFFN,
                           inp: arena[al.activated], weight: p + layer.outputWeight.offset, B: N, C: F, OC: C, overwritingInput: true)
            adaptBackward(l, .output, dout: dFFN, inp: arena[al.activated], dinp: arena[a.dActivated], inputs: F, outputs: C)
            finished(layer.outputWeight.offset)
            if config.usesTanhGELU {
                geluTanhBackward(dinp: arena[a.dIntermediate], dout: arena[a.dActivated], inp: arena[al.intermediate], N: N * F, overwritingInput: true)
            } else {
                geluBackward(dinp: arena[a.dIntermediate], dout: arena[a.dActivated], slope: arena[al.geluSlope], N: N * F, overwritingInput: true)
            }
            progress()
            // d h1 = d res2 (residual) + the feed-forward input's gradient, accumulated into gradB.
            let dH1 = dRes2
            linearBackward(dinp: dH1, dweight: weightGradient(layer.intermediateWeight), dbias: weightGradient(layer.intermediateBias),
                           dout: arena[a.dIntermediate], inp: arena[al.hidden1], weight: p + layer.intermediateWeight.offset, B: N, C: C, OC: F)
            adaptBackward(l, .intermediate, dout: arena[a.dIntermediate], inp: arena[al.hidden1], dinp: dH1, inputs: C, outputs: F)
            finished(layer.intermediateWeight.offset)
            // h1 = LN1(attn' + x)
            let dRes1 = arena[a.gradA]
            let dProjection = addAndNormBackward(dout: dH1, dsum: dRes1, sum: al.residual1, mask: al.attentionMask, mean: al.norm1Mean,
                                                 rstd: al.norm1Rstd, weight: layer.attentionNormWeight, bias: layer.attentionNormBias)
            linearBackward(dinp: arena[a.dContext], dweight: weightGradient(layer.attentionOutputWeight), dbias: weightGradient(layer.attentionOutputBias),
                           dout: dProjection, inp: arena[al.context], weight: p + layer.attentionOutputWeight.offset, B: N, C: C, OC: C,
                           overwritingInput: true)
            adaptBackward(l, .attentionOutput, dout: dProjection, inp: arena[al.context], dinp: arena[a.dContext], inputs: C, outputs: C)
            finished(layer.attentionOutputWeight.offset)
            attentionBackward(dq: arena[a.dq], dk: arena[a.dk], dv: arena[a.dv], dscores: arena[a.dScores], dout: arena[a.dContext], probs: arena[al.probs],
                              probsDropped: arena[al.probsDropped], mask: arena[al.probsMask], q: arena[al.q], k: arena[al.k], v: arena[al.v],
                              dropoutProbability: dropAttention ? attentionDropout : 0, starts: starts, offsets: pass.attentionOffsets,
                              B: B, C: C, NH: NH)
            progress()
            // d x = d res1 (residual) + the Q, K and V projections' input gradients, accumulated into gradA
            // (not needed below the lowest trainable layer).
            let inputGradient: UnsafeMutablePointer<Float>? = l == lowestLayer && trainableFrom > 0 ? nil : dRes1
            for ((dout, projection), target) in zip(zip([a.dq, a.dk, a.dv], layer.projections), [LoRATarget.query, .key, .value]) {
                linearBackward(dinp: inputGradient, dweight: weightGradient(projection.weight), dbias: weightGradient(projection.bias), dout: arena[dout],
                               inp: x, weight: p + projection.weight.offset, B: N, C: C, OC: C)
                adaptBackward(l, target, dout: arena[dout], inp: x, dinp: inputGradient, inputs: C, outputs: C)
                progress()
            }
            finished(layer.queryWeight.offset)
        }
        guard trainableFrom == 0 else { gradientsReady(0); return }
        // Embeddings: x_0 = dropout(LN(sum))
        let dEmbedding = throughDropout(arena[a.gradA], mask: a.embeddingMask, probability: hiddenDropout, count: N * C, scratch: a.gradC)
        layerNormBackward(dinp: arena[a.gradB], dweight: g + t.embeddingNormWeight.offset, dbias: g + t.embeddingNormBias.offset, dout: dEmbedding,
                          inp: arena[a.embeddingSum], weight: p + t.embeddingNormWeight.offset, mean: arena[a.embeddingMean],
                          rstd: arena[a.embeddingRstd], N: N, C: C, overwritingInput: true)
        embeddingBackward(dwte: g + t.wordEmbeddings.offset, dwpe: g + t.positionEmbeddings.offset, dwtt: g + t.tokenTypeEmbeddings.offset,
                          dout: arena[a.gradB], ids: batch.tokenIDs, types: batch.tokenTypeIDs, starts: starts, B: B, C: C)
        gradientsReady(0)
    }

    // MARK: Masked-language modelling

    /// The head at the M masked positions of `x` [N, C]: logits [M, V] against the tied word
    /// embeddings, cross-entropy against the original tokens. Returns the summed loss, the correct
    /// predictions and M.
    private func maskedLMForward(_ head: BertParameters.MaskedLMHead, x: UnsafeMutablePointer<Float>, batch: Batch) -> BatchStatistics {
        let M = batch.maskedPositions.count, C = config.hiddenSize, V = config.vocabSize
        var stats = BatchStatistics(count: Double(M))
        guard M > 0 else { return stats }
        let a = acts, p = parameters.base, t = tensors
        batch.maskedPositions.withUnsafeBufferPointer { rows in
            gatherRowsForward(out: arena[a.mlmRows], inp: x, rows: rows.baseAddress!, M: M, C: C)
        }
        linearForward(out: arena[a.mlmDense], inp: arena[a.mlmRows], weight: p + head.transformWeight.offset, bias: p + head.transformBias.offset,
                      B: M, C: C, OC: C)
        if config.usesTanhGELU {
            geluTanhForward(out: arena[a.mlmActivated], inp: arena[a.mlmDense], N: M * C)
        } else {
            geluForward(out: arena[a.mlmActivated], slope: arena[a.mlmSlope], inp: arena[a.mlmDense], N: M * C)
        }
        layerNormForward(out: arena[a.mlmNormed], mean: arena[a.mlmMean], rstd: arena[a.mlmRstd], inp: arena[a.mlmActivated],
                         weight: p + head.normWeight.offset, bias: p + head.normBias.offset, eps: Float(config.layerNormEps), N: M, C: C)
        linearForward(out: arena[a.mlmLogits], inp: arena[a.mlmNormed], weight: p + t.wordEmbeddings.offset, bias: p + head.decoderBias.offset,
                      B: M, C: C, OC: V)
        let losses = arena[a.mlmLosses], probabilities = arena[a.mlmProbabilities]
        softmaxCrossEntropyForward(losses: losses, probs: probabilities, logits: arena[a.mlmLogits], targets: batch.maskedTargets, B: M, K: V)
        for m in 0..<M {
            stats.lossSum += Double(losses[m])
            if argmax(probabilities + m * V, V) == Int(batch.maskedTargets[m]) { stats.correct += 1 }
        }
        return stats
    }

    /// Backward of `maskedLMForward`: the head's gradients, the tied decoder's added into the word
    /// embeddings' (nil: frozen), and, with `inputGradient`, dx [N, C] = the encoder output's
    /// gradient (zero except at the masked rows).
    private func maskedLMBackward(_ head: BertParameters.MaskedLMHead, dx: UnsafeMutablePointer<Float>, batch: Batch,
                                  wordEmbeddingGradient: UnsafeMutablePointer<Float>?, inputGradient: Bool) {
        let M = batch.maskedPositions.count, C = config.hiddenSize, V = config.vocabSize, N = batch.tokenIDs.count
        let a = acts, p = parameters.base, g = gradients.base, t = tensors
        if inputGradient { zeroFill(dx, N: N * C) }
        guard M > 0 else { return }
        // The logits are spent: their region takes their gradient.
        let dLogits = arena[a.mlmLogits]
        zeroFill(dLogits, N: M * V)
        softmaxCrossEntropyBackward(dlogits: dLogits, dlosses: arena[a.mlmOnes], probs: arena[a.mlmProbabilities], targets: batch.maskedTargets, B: M, K: V)
        linearBackward(dinp: arena[a.dMlmA], dweight: wordEmbeddingGradient, dbias: g + head.decoderBias.offset, dout: dLogits,
                       inp: arena[a.mlmNormed], weight: p + t.wordEmbeddings.offset, B: M, C: C, OC: V, overwritingInput: true)
        layerNormBackward(dinp: arena[a.dMlmB], dweight: g + head.normWeight.offset, dbias: g + head.normBias.offset, dout: arena[a.dMlmA],
                          inp: arena[a.mlmActivated], weight: p + head.normWeight.offset, mean: arena[a.mlmMean], rstd: arena[a.mlmRstd],
                          N: M, C: C, overwritingInput: true)
        if config.usesTanhGELU {
            geluTanhBackward(dinp: arena[a.dMlmA], dout: arena[a.dMlmB], inp: arena[a.mlmDense], N: M * C, overwritingInput: true)
        } else {
            geluBackward(dinp: arena[a.dMlmA], dout: arena[a.dMlmB], slope: arena[a.mlmSlope], N: M * C, overwritingInput: true)
        }
        linearBackward(dinp: inputGradient ? arena[a.dMlmB] : nil, dweight: g + head.transformWeight.offset, dbias: g + head.transformBias.offset,
                       dout: arena[a.dMlmA], inp: arena[a.mlmRows], weight: p + head.transformWeight.offset, B: M, C: C, OC: C, overwritingInput: true)
        if inputGradient {
            batch.maskedPositions.withUnsafeBufferPointer { rows in
                gatherRowsBackward(dinp: dx, dout: arena[a.dMlmB], rows: rows.baseAddress!, M: M, C: C)
            }
        }
    }

    // MARK: Outputs

    public func lastLogits() -> [[Float]] {
        guard let batch = last?.batch else { return [] }
        let K = task.outputCount, logits = arena[acts.logits]
        return (0..<batch.count).map { Array(UnsafeBufferPointer(start: logits + $0 * K, count: K)) }
    }

    /// Masked-language modelling: the vocabulary logits [M][V] at the masked positions of the last
    /// forward pass (backward overwrites them with their gradient), and that batch as masked.
    public func lastMaskedLogits() -> (logits: [[Float]], batch: Batch)? {
        guard let batch = last?.batch, task == .maskedLanguageModel else { return nil }
        let V = config.vocabSize, logits = arena[acts.mlmLogits]
        return ((0..<batch.maskedPositions.count).map { Array(UnsafeBufferPointer(start: logits + $0 * V, count: V)) }, batch)
    }

    /// The pooled sentence representation [B][C] of a batch (before the classifier's dropout).
    public func pooledOutput(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        _ = forward(batch, mode: .evaluation)
        let C = config.hiddenSize, pooled = arena[acts.pooled]
        return (0..<batch.count).map { Array(UnsafeBufferPointer(start: pooled + $0 * C, count: C)) }
    }
}
