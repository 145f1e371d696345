import FineTuneKernels

/// BERT's encoder body (post-LayerNorm, as transformers' BertModel without its pooler):
///   x = dropout(LN(word[id] + position[t] + type[tt]))
///   per layer: a = dropout(Wo · attention(x) + bo); h = LN(a + x); f = dropout(W2 · gelu(W1 · h + b1) + b2); x = LN(f + h)
/// and the same for the other families (`EncoderFamily`: MPNet adds a relative position bias to
/// the scores, DistilBERT has no dropout on a, RoBERTa and MPNet start positions after padding_idx),
/// with LoRA adapters on its linear layers when asked. Its output x [N, C] goes to a task head
/// (TaskHeads.swift); `EncoderModel` joins the two. Batches are packed (Attention.swift): no
/// padding is computed. `backward` is `forward` read backwards.
/// Shapes: N tokens of the batch, B sequences, C hidden, F intermediate, A attention scores.
public final class TransformerEncoder: EncoderBody {
    public let config: EncoderConfig
    public let tensors: EncoderParameters
    /// LoRA on the encoder (nil: none): adapters after the encoder in the layout, base weights frozen.
    public let lora: LoRASettings?
    /// Dropout probabilities in training (zero turns dropout off, as the golden tests need).
    public var hiddenDropout: Double
    public var attentionDropout: Double

    /// Adds the body's tensors to `layout` (which must be empty: the body comes first).
    public init(config: EncoderConfig, lora: LoRASettings?, layout: inout ParameterLayout) {
        self.config = config
        self.lora = lora
        hiddenDropout = config.hiddenDropout
        attentionDropout = config.attentionDropout
        tensors = EncoderParameters(config: config, lora: lora, layout: &layout)
    }

    public var facts: EncoderFacts {
        // Dropout sites: 0 embeddings; 1 + 3l attention probabilities, 2 + 3l attention output
        // (unused by DistilBERT), 3 + 3l feed-forward output of layer l; 1 + 3L the head (and
        // 2 + 3L MPNet's and RoBERTa's before their dense layer); LoRA's after them.
        EncoderFacts(hiddenSize: config.hiddenSize, vocabularySize: config.vocabSize, layerNormEps: config.layerNormEps,
                     initializerRange: config.initializerRange,
                     usesTanhGELU: config.family.maskedLMFollowsActivation && config.usesTanhGELU,
                     wordEmbeddings: tensors.wordEmbeddings, headDropoutSite: 1 + 3 * config.layers, family: config.family)
    }
    public var maxPositions: Int { config.maxSequenceLength }
    public var transformerShape: (layers: Int, hidden: Int, intermediate: Int) { (config.layers, config.hiddenSize, config.intermediateSize) }
    public var defaultClassifierDropout: Double { config.classifierDropout }
    public var groupStarts: [(ParameterGroup.Kind, TensorSpec)] {
        let t = tensors
        let adapters: [(ParameterGroup.Kind, TensorSpec)] = t.adapters.first.flatMap { $0.values.map(\.a).min { $0.offset < $1.offset } }.map { [(.adapters, $0)] } ?? []
        return [(.embeddings, t.wordEmbeddings)] + t.layers.enumerated().map { (.layer($0), $1.queryWeight) } + adapters
    }

    /// A batch's gradient touches the word-embedding rows of its tokens and the position rows up
    /// to its longest text (a tied decoder's reaches every word-embedding row).
    public func sparseGradientTensors(tiedDecoder: Bool) -> [TensorSpec] {
        tiedDecoder ? [tensors.positionEmbeddings] : [tensors.wordEmbeddings, tensors.positionEmbeddings]
    }

    public func touchedRows(in tensor: TensorSpec, batch: Batch) -> [Int] {
        switch tensor.offset {
        case tensors.wordEmbeddings.offset: return Set(batch.tokenIDs.map(Int.init)).sorted()
        case tensors.positionEmbeddings.offset:
            let longest = zip(batch.sequenceStarts.dropFirst(), batch.sequenceStarts).map { $0 - $1 }.max() ?? 0
            return Array(config.positionOffset..<(config.positionOffset + longest))
        default: return Array(0..<(tensor.shape.first ?? 0))
        }
    }

    /// PEFT's initialisation of fresh adapters: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0.
    public func initializeAdapters(_ parameters: FlatBuffer<Float>, seed: UInt64) {
        initializeLoRAAdapters(tensors.adapters.flatMap { $0.sorted { $0.key < $1.key }.map { ($0.value.a, $0.value.b) } }, parameters: parameters, seed: seed)
    }

    /// A base weight with its adapter merged in, W + scale·B·A ([out, in]); nil for a tensor LoRA does not adapt.
    public func mergedWeight(_ spec: TensorSpec, parameters: FlatBuffer<Float>) -> [Float]? {
        guard let lora else { return nil }
        for (l, layer) in tensors.adapters.enumerated() {
            for (target, adapter) in layer where config.family.layerPrefix(l) + target.modulePath(in: config.family) + ".weight" == spec.name {
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

    // MARK: Activations

    private var capacity = ActivationShape(tokens: 0, sequences: 0, scores: 0)
    private var arena = ActivationArena(ArenaLayout())
    private var acts = EncoderActivations()
    public var activationBytes: Int { arena.byteCount + (relativeBias.count + relativeBiasGradient.count) * MemoryLayout<Float>.stride }

    /// Grows the arena (never shrinks it) so `shape` fits.
    private func reserve(_ shape: ActivationShape) {
        guard !shape.fits(in: capacity) else { return }
        capacity = capacity.union(shape)
        let (layout, regions) = EncoderActivations.layout(config: config, shape: capacity, lora: lora)
        arena = ActivationArena(layout)
        acts = regions
    }

    /// Of the last forward pass, for backward: each sequence's attention block in the score
    /// buffers (B + 1 offsets), and x_0 = the embeddings' output, x_l = h2 of layer l - 1: the input of each layer.
    private var attentionOffsets: [Int] = []
    private var layerInputs: [UnsafeMutablePointer<Float>] = []

    /// MPNet: the relative position bias of the last forward pass [NH, L, L] (L its longest
    /// sequence, the stride) and backward's gradient of it (summed over the layers).
    private var relativeBias: [Float] = [], relativeBiasGradient: [Float] = [], relativeBiasStride = 0

    /// Runs `body` with the attention score bias (MPNet's relative positions; nil for BERT), with
    /// a gradient buffer in backward: the pointers are valid inside `body` only.
    private func withScoreBias<R>(gradient: UnsafeMutablePointer<Float>?, _ body: (AttentionBias<Float>?) -> R) -> R {
        guard tensors.relativeAttentionBias != nil else { return body(nil) }
        return relativeBias.withUnsafeBufferPointer { body(AttentionBias(values: $0.baseAddress!, gradient: gradient, stride: relativeBiasStride)) }
    }

    /// d x [N, C] of the output: the head writes it here before `backward`.
    public var outputGradient: UnsafeMutablePointer<Float> { arena[acts.gradA] }

    // MARK: Forward

    /// The last layer's output x [N, C] for `batch` (B > 0), in the body's arena.
    public func forward(_ batch: Batch, training: Bool, key: (Int) -> DropoutKey, parameters p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        let B = batch.count
        let N = batch.tokenIDs.count, C = config.hiddenSize, NH = config.heads
        let starts = batch.sequenceStarts
        attentionOffsets = FineTuneKernels.attentionOffsets(starts: starts, heads: NH)
        reserve(ActivationShape(tokens: N, sequences: B, scores: attentionOffsets.last!))
        let a = acts, t = tensors
        let eps = Float(config.layerNormEps)
        let tokenSegments = starts.map { $0 * C }
        let dropHidden = training && hiddenDropout > 0, dropAttention = training && attentionDropout > 0

        embeddingForward(out: arena[a.embeddingSum], ids: batch.tokenIDs, types: batch.tokenTypeIDs, starts: starts,
                         wte: p + t.wordEmbeddings.offset, wpe: p + t.positionEmbeddings.offset, wtt: t.tokenTypeEmbeddings.map { p + $0.offset },
                         positionOffset: config.positionOffset, B: B, C: C)
        layerNormForward(out: arena[a.embeddingNormed], mean: arena[a.embeddingMean], rstd: arena[a.embeddingRstd], inp: arena[a.embeddingSum],
                         weight: p + t.embeddingNormWeight.offset, bias: p + t.embeddingNormBias.offset, eps: eps, N: N, C: C)
        var x = arena[a.embeddingNormed]
        if let table = t.relativeAttentionBias, let relative = config.relativeAttention {
            // One [NH, L, L] bias for the longest sequence: every shorter one reads its top-left corner.
            let L = zip(starts.dropFirst(), starts).map { $0 - $1 }.max() ?? 0
            relativeBiasStride = L
            if relativeBias.count < NH * L * L { relativeBias = [Float](repeating: 0, count: NH * L * L) }
            relativeBias.withUnsafeMutableBufferPointer {
                relativePositionBiasForward(out: $0.baseAddress!, table: p + table.offset, L: L, stride: L, NH: NH,
                                            buckets: relative.buckets, maxDistance: relative.maxDistance)
            }
        }
        if dropHidden {
            dropoutForward(out: arena[a.embeddingDropped], mask: arena[a.embeddingMask], inp: x, probability: hiddenDropout, key: key(0),
                           exampleIndices: batch.exampleIndices, segmentStarts: tokenSegments, B: B)
            x = arena[a.embeddingDropped]
        }
        layerInputs = [x]
        // A sublayer's output as BERT ends it: out = LayerNorm(dropout(y) + residual), keeping what backward needs.
        func addAndNorm(_ y: ArenaRegion<Float>, dropped: ArenaRegion<Float>, mask: ArenaRegion<UInt8>, site: Int, residual: UnsafeMutablePointer<Float>,
                        sum: ArenaRegion<Float>, out: ArenaRegion<Float>, mean: ArenaRegion<Float>, rstd: ArenaRegion<Float>,
                        weight: TensorSpec, bias: TensorSpec, dropsOut: Bool = true) {
            var kept = arena[y]
            if dropHidden && dropsOut {
                dropoutForward(out: arena[dropped], mask: arena[mask], inp: kept, probability: hiddenDropout, key: key(site),
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
            if training && lora.dropout > 0 {
                // BERT's sites as they were; MPNet's and RoBERTa's heads take one more before LoRA's.
                let first = 2 + 3 * config.layers + (config.family.clsHeadModules.dropoutBeforeDense ? 1 : 0)
                let site = first + LoRATarget.allCases.count * l + LoRATarget.allCases.firstIndex(of: target)!
                dropoutForward(out: arena[regions.dropped], mask: arena[regions.mask], inp: inp, probability: lora.dropout, key: key(site),
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
                let dropout = dropAttention ? AttentionDropout(probability: attentionDropout, key: key(1 + 3 * l), exampleIndices: indices.baseAddress!) : nil
                withScoreBias(gradient: nil) { bias in
                    attentionForward(out: arena[al.context], probs: arena[al.probs], probsDropped: arena[al.probsDropped], mask: arena[al.probsMask],
                                     q: arena[al.q], k: arena[al.k], v: arena[al.v], dropout: dropout, bias: bias,
                                     starts: starts, offsets: attentionOffsets, B: B, C: C, NH: NH)
                }
            }
            linearForward(out: arena[al.attentionOutput], inp: arena[al.context], weight: p + layer.attentionOutputWeight.offset,
                          bias: p + layer.attentionOutputBias.offset, B: N, C: C, OC: C)
            adapt(l, .attentionOutput, out: arena[al.attentionOutput], inp: arena[al.context], inputs: C, outputs: C)
            addAndNorm(al.attentionOutput, dropped: al.attentionDropped, mask: al.attentionMask, site: 2 + 3 * l, residual: x,
                       sum: al.residual1, out: al.hidden1, mean: al.norm1Mean, rstd: al.norm1Rstd,
                       weight: layer.attentionNormWeight, bias: layer.attentionNormBias, dropsOut: config.family.dropsAttentionOutput)
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
            layerInputs.append(x)
        }
        return x
    }

    // MARK: Backward

    /// From d x in `outputGradient` down to the lowest trainable tensor; `gradientsReady(offset)`
    /// says the gradients from `offset` on are complete (`headStart`: where the head's begin).
    public func backward(_ batch: Batch, trainableFrom: Int, headStart: Int, parameters p: UnsafeMutablePointer<Float>,
                         gradients g: UnsafeMutablePointer<Float>, gradientsReady: (Int) -> Void) {
        let B = batch.count
        let N = batch.tokenIDs.count, C = config.hiddenSize, F = config.intermediateSize, NH = config.heads
        let starts = batch.sequenceStarts
        let a = acts, t = tensors
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
                                mean: ArenaRegion<Float>, rstd: ArenaRegion<Float>, weight: TensorSpec, bias: TensorSpec,
                                dropsOut: Bool = true) -> UnsafeMutablePointer<Float> {
            layerNormBackward(dinp: dsum, dweight: g + weight.offset, dbias: g + bias.offset, dout: dout, inp: arena[sum], weight: p + weight.offset,
                              mean: arena[mean], rstd: arena[rstd], N: N, C: C, overwritingInput: true)
            return throughDropout(dsum, mask: mask, probability: dropsOut ? hiddenDropout : 0, count: N * C, scratch: a.gradC)
        }

        // Frozen groups are a prefix: backward ends at the lowest trainable one. With LoRA every
        // layer's adapters train: backward runs through all layers, without the frozen base
        // weights' gradient products (LayerNorm's C-element sums are still written, into the frozen
        // part of the gradient buffer, which nothing reads).
        let lowestLayer = lora != nil ? 0 : t.layers.firstIndex { $0.queryWeight.offset >= trainableFrom } ?? t.layers.count
        func weightGradient(_ spec: TensorSpec) -> UnsafeMutablePointer<Float>? { spec.offset >= trainableFrom ? g + spec.offset : nil }
        // LoRA's backward for an adapted layer: its adapters' gradients, and `dinp` += the input's share.
        func adaptBackward(_ l: Int, _ target: LoRATarget, dout: UnsafeMutablePointer<Float>, inp: UnsafeMutablePointer<Float>,
                           dinp: UnsafeMutablePointer<Float>?, inputs: Int, outputs: Int) {
            guard let lora, let adapter = t.adapters[l][target], let regions = a.adapters[l][target] else { return }
            loraBranchBackward(dinp: dinp, da: g + adapter.a.offset, db: g + adapter.b.offset, dh: arena[a.dAdapterH], scratch: arena[a.dAdapterInput],
                               dout: dout, h: arena[regions.h], input: lora.dropout > 0 ? arena[regions.dropped] : inp,
                               a: p + adapter.a.offset, b: p + adapter.b.offset, scale: Float(lora.scale), dropout: lora.dropout,
                               mask: arena[regions.mask], B: N, C: inputs, OC: outputs, R: lora.rank)
        }
        // Gradients from `final` on are complete. Reporting them after every large kernel (not just
        // when a tensor completes) also gives the exchange's collectives a chance to progress: MPI's
        // non-blocking reductions only move inside MPI calls.
        var final = headStart
        // MPNet's relative bias sits below layer 0: it trains with the embeddings, its gradient
        // summed over every layer's scores, then over the positions of each bucket.
        let trainsRelativeBias = t.relativeAttentionBias.map { $0.offset >= trainableFrom } ?? false
        if trainsRelativeBias {
            let count = NH * relativeBiasStride * relativeBiasStride
            if relativeBiasGradient.count < count { relativeBiasGradient = [Float](repeating: 0, count: count) }
            relativeBiasGradient.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        }
        // With LoRA the adapters (laid out after the encoder) are final only when layer 0 is done.
        func finished(_ offset: Int) { if lora == nil { final = offset }; gradientsReady(final) }
        func progress() { gradientsReady(final) }
        progress()
        // Layers, last to first. On entry gradA holds d(layer output); on exit d(layer input).
        for l in stride(from: t.layers.count - 1, through: lowestLayer, by: -1) {
            let al = a.layers[l], layer = t.layers[l], x = layerInputs[l]
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
                                                 rstd: al.norm1Rstd, weight: layer.attentionNormWeight, bias: layer.attentionNormBias,
                                                 dropsOut: config.family.dropsAttentionOutput)
            linearBackward(dinp: arena[a.dContext], dweight: weightGradient(layer.attentionOutputWeight), dbias: weightGradient(layer.attentionOutputBias),
                           dout: dProjection, inp: arena[al.context], weight: p + layer.attentionOutputWeight.offset, B: N, C: C, OC: C,
                           overwritingInput: true)
            adaptBackward(l, .attentionOutput, dout: dProjection, inp: arena[al.context], dinp: arena[a.dContext], inputs: C, outputs: C)
            finished(layer.attentionOutputWeight.offset)
            relativeBiasGradient.withUnsafeMutableBufferPointer { biasGradient in
                withScoreBias(gradient: trainsRelativeBias ? biasGradient.baseAddress! : nil) { bias in
                    attentionBackward(dq: arena[a.dq], dk: arena[a.dk], dv: arena[a.dv], dscores: arena[a.dScores], dout: arena[a.dContext],
                                      probs: arena[al.probs], probsDropped: arena[al.probsDropped], mask: arena[al.probsMask],
                                      q: arena[al.q], k: arena[al.k], v: arena[al.v], dropoutProbability: dropAttention ? attentionDropout : 0,
                                      bias: bias, starts: starts, offsets: attentionOffsets, B: B, C: C, NH: NH)
                }
            }
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
        if trainsRelativeBias, let table = t.relativeAttentionBias, let relative = config.relativeAttention {
            relativeBiasGradient.withUnsafeBufferPointer {
                relativePositionBiasBackward(dtable: g + table.offset, dout: $0.baseAddress!, L: relativeBiasStride, stride: relativeBiasStride,
                                             NH: NH, buckets: relative.buckets, maxDistance: relative.maxDistance)
            }
        }
        guard trainableFrom == 0 else { gradientsReady(0); return }
        // Embeddings: x_0 = dropout(LN(sum))
        let dEmbedding = throughDropout(arena[a.gradA], mask: a.embeddingMask, probability: hiddenDropout, count: N * C, scratch: a.gradC)
        layerNormBackward(dinp: arena[a.gradB], dweight: g + t.embeddingNormWeight.offset, dbias: g + t.embeddingNormBias.offset, dout: dEmbedding,
                          inp: arena[a.embeddingSum], weight: p + t.embeddingNormWeight.offset, mean: arena[a.embeddingMean],
                          rstd: arena[a.embeddingRstd], N: N, C: C, overwritingInput: true)
        embeddingBackward(dwte: g + t.wordEmbeddings.offset, dwpe: g + t.positionEmbeddings.offset, dwtt: t.tokenTypeEmbeddings.map { g + $0.offset },
                          dout: arena[a.gradB], ids: batch.tokenIDs, types: batch.tokenTypeIDs, starts: starts,
                          positionOffset: config.positionOffset, B: B, C: C)
        gradientsReady(0)
    }
}
