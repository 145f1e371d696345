import FineTuneKernels

/// A Llama-architecture causal language model (transformers' LlamaForCausalLM; Qwen2ForCausalLM
/// with its q/k/v biases), trained end to end or through LoRA adapters:
///   x = embed[id]
///   per layer: h = x + Wo · attention(rope(Wq · rms(x)), rope(Wk · rms(x)), Wv · rms(x)); x = h + Wd · (silu(Wg · rms(h)) ⊙ Wu · rms(h))
///   logits = rms(x) · Eᵀ  (E = lm_head, or the embeddings when tied)
/// Batches are packed (CausalAttention.swift): each sequence is one document, so nothing attends
/// across documents and positions restart per document. The loss is the summed cross-entropy of
/// the scored positions (`Batch.nextTokenPositions`): the vocabulary logits are computed only
/// there; `correct` counts the positions whose most likely token is the target. A batch without
/// positions scores each sequence's last token (generation).
/// Shapes: N tokens, B sequences, M scored positions, C hidden, F MLP width, V vocabulary.
public final class DecoderModel: TextModel {
    public let config: DecoderConfig
    public let tensors: DecoderParameters
    public let decoderLoRA: DecoderLoRA?
    public let layout: ParameterLayout
    public let parameters: FlatBuffer<Float>
    public let gradients: FlatBuffer<Float>
    public var trainableFrom = 0
    public var objective = TrainingObjective()
    public var task: TaskKind { .causalLanguageModel }
    public var inputKind: InputKind { .text }
    public var defaultLearningRate: Double { decoderLoRA == nil ? 2e-5 : 2e-4 }
    /// Llama has no dropout (LoRA's is --lora-dropout, in `decoderLoRA`): --dropout changes nothing here.
    public var dropout: DropoutRates {
        get { DropoutRates(hidden: 0) }
        set {}
    }
    private var loraDropout: Double { decoderLoRA?.dropout ?? 0 }
    private let rotaryCos: [Float], rotarySin: [Float]

    public init(config: DecoderConfig, lora: DecoderLoRA? = nil) {
        self.config = config
        decoderLoRA = lora
        var layout = ParameterLayout()
        tensors = DecoderParameters(config: config, lora: lora, layout: &layout)
        self.layout = layout
        parameters = FlatBuffer(count: layout.count)
        gradients = FlatBuffer(count: layout.count)
        let factor = config.ropeLinearFactor ?? 1
        (rotaryCos, rotarySin) = rotaryTable(positions: config.maxPositions, headSize: config.headSize, theta: config.ropeTheta) { _ in 1 / factor }
    }

    /// The rotary table's cos and sin from row `position` on ([P − position, HS/2] each).
    func withRotaryRow<R>(_ position: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) -> R) -> R {
        let half = config.headSize / 2
        return rotaryCos.withUnsafeBufferPointer { c in rotarySin.withUnsafeBufferPointer { s in body(c.baseAddress! + position * half, s.baseAddress! + position * half) } }
    }

    /// A decoder masks nothing: its targets are the next tokens.
    public var masking: MaskingSettings? { get { nil } set {} }
    public func lastMaskedLogits() -> (logits: [[Float]], batch: Batch)? { nil }

    /// Training FLOPs per sequence of T tokens, every position scored: the matrix products (forward
    /// 2·P per token over the projections and the vocabulary head; backward the same for the input
    /// gradients and, where weights train, again for theirs) and causal attention (half the T²
    /// scores of QKᵀ and PV, forward and two backward products each).
    public func trainingFLOPs(tokens T: Int) -> Double {
        let f = trainingFLOPBreakdown(tokens: T)
        return f.layers + f.head + f.attention
    }

    /// The same by kernel kind: the layers' projections, the vocabulary head, causal attention.
    public func trainingFLOPBreakdown(tokens T: Int) -> (layers: Double, head: Double, attention: Double) {
        let c = config, t = Double(T)
        let projections = Double(c.layers) * Double(c.hiddenSize * (2 * c.queryWidth + 2 * c.keyValueWidth) + 3 * c.hiddenSize * c.intermediateSize)
        let passes = decoderLoRA == nil && trainableFrom == 0 ? 3.0 : 2.0  // forward, input gradients, weight gradients
        let attention = Double(c.layers) * 2 * 2 * t * t * Double(c.queryWidth) / 2
        return (t * projections * 2 * passes, t * Double(c.hiddenSize * c.vocabSize) * 2 * passes, 3 * attention)
    }

    public var vocabularySize: Int { config.vocabSize }
    public var maxPositions: Int { config.maxPositions }
    public var transformerShape: (layers: Int, hidden: Int, intermediate: Int) { (config.layers, config.hiddenSize, config.intermediateSize) }

    public var parameterGroups: [ParameterGroup] {
        let t = tensors
        var starts: [(ParameterGroup.Kind, TensorSpec)] = [(.embeddings, t.embeddings)]
        starts += t.layers.enumerated().map { (.layer($0), $1.inputNorm) }
        starts.append((.head, t.finalNorm))
        if let first = t.adapters.first?.values.map(\.a).min(by: { $0.offset < $1.offset }) { starts.append((.adapters, first)) }
        return ParameterGroup.split(layout, starts: starts)
    }

    /// Untied embeddings: a batch touches the rows of its tokens only (tied ones get every row from the logits).
    public var sparseGradientTensors: [TensorSpec] { config.tiedEmbeddings ? [] : [tensors.embeddings] }
    public func touchedRows(in tensor: TensorSpec) -> [Int] {
        guard let pass = last, pass.training else { return [] }
        if tensor.offset == tensors.embeddings.offset { return Set(pass.batch.tokenIDs.map(Int.init)).sorted() }
        return Array(0..<(tensor.shape.first ?? 0))
    }

    /// PEFT's initialisation of fresh adapters: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0.
    public func initializeAdapters(seed: UInt64) {
        initializeLoRAAdapters(tensors.adapters.flatMap { $0.sorted { $0.key < $1.key }.map { ($0.value.a, $0.value.b) } }, parameters: parameters, seed: seed)
    }

    /// A base weight with its adapter merged in, W + scale·B·A ([out, in]); nil for a tensor LoRA does not adapt.
    public func mergedWeight(_ spec: TensorSpec) -> [Float]? {
        guard let lora = decoderLoRA else { return nil }
        for (l, layer) in tensors.adapters.enumerated() {
            for (target, adapter) in layer where tensors.layers[l].weights[target]?.offset == spec.offset {
                var merged = Array(UnsafeBufferPointer(start: parameters.at(spec), count: spec.count))
                let (outputs, inputs) = (adapter.b.shape[0], adapter.a.shape[1])
                merged.withUnsafeMutableBufferPointer {
                    Float.gemm(transA: false, transB: false, m: outputs, n: inputs, k: lora.rank, alpha: Float(lora.scale), a: parameters.at(adapter.b),
                               lda: lora.rank, b: parameters.at(adapter.a), ldb: inputs, beta: 1, c: $0.baseAddress!, ldc: inputs)
                }
                return merged
            }
        }
        return nil
    }

    // MARK: Activations

    private struct LayerActivations {
        /// [N, C] rms(x), [N] its 1/rms; [N, NH·HS] q, [N, NKV·HS] k, v (after rotation); [A] probabilities;
        /// [N, NH·HS] the attention context; [N, C] h = x + attention; rms(h) and its [N] 1/rms;
        /// [N, F] gate, up and silu(gate)·up; [N, C] the layer's output.
        var normed1: ArenaRegion<Float>, rstd1: ArenaRegion<Float>, q: ArenaRegion<Float>, k: ArenaRegion<Float>, v: ArenaRegion<Float>
        var probs: ArenaRegion<Float>, context: ArenaRegion<Float>, residual1: ArenaRegion<Float>, normed2: ArenaRegion<Float>, rstd2: ArenaRegion<Float>
        var gate: ArenaRegion<Float>, up: ArenaRegion<Float>, activated: ArenaRegion<Float>, output: ArenaRegion<Float>
    }
    /// LoRA per layer and target: h = x·Aᵀ [N, r]; with LoRA dropout, the dropped input [N, in] and its mask.
    private struct AdapterActivations { var h: ArenaRegion<Float>, dropped: ArenaRegion<Float>, mask: ArenaRegion<UInt8> }
    private struct Activations {
        var layers: [LayerActivations] = []
        var adapters: [[DecoderProjection: AdapterActivations]] = []
        /// [N, C] embeddings; the final rms and its [N] 1/rms; [M, C] the scored rows; [M, V] logits; [M] losses.
        var embedded = ArenaRegion<Float>.empty, finalNormed = ArenaRegion<Float>.empty, finalRstd = ArenaRegion<Float>.empty
        var scoredRows = ArenaRegion<Float>.empty, logits = ArenaRegion<Float>.empty, losses = ArenaRegion<Float>.empty
        /// Backward scratch: d x [N, C], d rms [N, C], d context and d q [N, NH·HS], d k, d v [N, NKV·HS],
        /// d activated, d gate, d up [N, F], attention's block scratch, d scored rows [M, C], LoRA's d h and d input.
        var dx = ArenaRegion<Float>.empty, dNormed = ArenaRegion<Float>.empty, dContext = ArenaRegion<Float>.empty, dq = ArenaRegion<Float>.empty
        var dk = ArenaRegion<Float>.empty, dv = ArenaRegion<Float>.empty, dActivated = ArenaRegion<Float>.empty, dGate = ArenaRegion<Float>.empty
        var dUp = ArenaRegion<Float>.empty, attentionScratch = ArenaRegion<Float>.empty, dScoredRows = ArenaRegion<Float>.empty
        var dAdapterH = ArenaRegion<Float>.empty, dAdapterInput = ArenaRegion<Float>.empty
    }
    private var capacity = ActivationShape(tokens: 0, sequences: 0, scores: 0)
    private var arena = ActivationArena(ArenaLayout())
    private var acts = Activations()
    public var activationBytes: Int { arena.byteCount }

    private func reserve(_ shape: ActivationShape) {
        guard !shape.fits(in: capacity) else { return }
        capacity = capacity.union(shape)
        let N = capacity.tokens, A = capacity.scores, M = capacity.masked
        let C = config.hiddenSize, F = config.intermediateSize, Cq = config.queryWidth, Ckv = config.keyValueWidth, V = config.vocabSize
        var m = ArenaLayout(), a = Activations()
        for _ in 0..<config.layers {
            a.layers.append(LayerActivations(normed1: m.floats(N * C), rstd1: m.floats(N), q: m.floats(N * Cq), k: m.floats(N * Ckv), v: m.floats(N * Ckv),
                                             probs: m.floats(A), context: m.floats(N * Cq), residual1: m.floats(N * C), normed2: m.floats(N * C),
                                             rstd2: m.floats(N), gate: m.floats(N * F), up: m.floats(N * F), activated: m.floats(N * F),
                                             output: m.floats(N * C)))
        }
        if let lora = decoderLoRA {
            a.adapters = (0..<config.layers).map { _ in
                Dictionary(uniqueKeysWithValues: lora.targets.map { target in
                    let dropped = lora.dropout > 0 ? N * target.shape(config).inputs : 0
                    return (target, AdapterActivations(h: m.floats(N * lora.rank), dropped: m.floats(dropped), mask: m.bytes(dropped)))
                })
            }
            a.dAdapterH = m.floats(N * lora.rank); a.dAdapterInput = m.floats(N * max(C, F, Cq))
        }
        a.embedded = m.floats(N * C); a.finalNormed = m.floats(N * C); a.finalRstd = m.floats(N)
        a.scoredRows = m.floats(M * C); a.logits = m.floats(M * V); a.losses = m.floats(M)
        a.dx = m.floats(N * C); a.dNormed = m.floats(N * C); a.dContext = m.floats(N * Cq); a.dq = m.floats(N * Cq)
        a.dk = m.floats(N * Ckv); a.dv = m.floats(N * Ckv); a.dActivated = m.floats(N * F); a.dGate = m.floats(N * F); a.dUp = m.floats(N * F)
        a.attentionScratch = m.floats(causalAttentionScratchCount(longest: N)); a.dScoredRows = m.floats(M * C)
        arena = ActivationArena(m)
        acts = a
    }

    /// The last forward pass: the batch, whether it trained, its dropout keys, the attention
    /// offsets, and the scored positions (targets, or each sequence's last token).
    private struct Pass {
        var batch: Batch
        var training: Bool
        var seed: UInt64, step: Int
        var offsets: [Int]
        var scored: [Int32]
        func key(_ site: Int) -> DropoutKey { DropoutKey(seed: seed, step: step, site: site) }
    }
    private var last: Pass? = nil

    // MARK: Forward

    public func forward(_ batch: Batch, mode: ForwardMode) -> BatchStatistics {
        last = nil
        guard batch.count > 0 else { return BatchStatistics() }
        var pass = Pass(batch: batch, training: false, seed: 0, step: 0, offsets: attentionOffsets(starts: batch.sequenceStarts, heads: config.heads), scored: [])
        if case .training(let seed, let step) = mode { pass.training = true; pass.seed = seed; pass.step = step }
        pass.scored = batch.nextTokenPositions.isEmpty ? batch.sequenceStarts.dropFirst().map { Int32($0 - 1) } : batch.nextTokenPositions
        let N = batch.tokenIDs.count, B = batch.count, M = pass.scored.count
        let C = config.hiddenSize, F = config.intermediateSize, V = config.vocabSize
        let NH = config.heads, NKV = config.keyValueHeads, HS = config.headSize
        reserve(ActivationShape(tokens: N, sequences: B, scores: pass.offsets.last!, masked: M))
        let p = parameters.base, a = acts, t = tensors
        let eps = Float(config.rmsNormEps)
        let starts = batch.sequenceStarts
        let dropLoRA = pass.training && loraDropout > 0

        gatherRows(out: arena[a.embedded], inp: p + t.embeddings.offset, rows: batch.tokenIDs, M: N, C: C)
        var x = arena[a.embedded]
        func linear(_ l: Int, _ projection: DecoderProjection, out: ArenaRegion<Float>, inp: UnsafeMutablePointer<Float>) {
            let layer = t.layers[l], (outputs, inputs) = projection.shape(config)
            linearForward(out: arena[out], inp: inp, weight: p + layer.weights[projection]!.offset, bias: layer.biases[projection].map { p + $0.offset },
                          B: N, C: inputs, OC: outputs)
            guard let lora = decoderLoRA, let adapter = t.adapters[l][projection], let regions = a.adapters[l][projection] else { return }
            var x = inp
            if dropLoRA {
                let site = 1 + DecoderProjection.allCases.count * l + DecoderProjection.allCases.firstIndex(of: projection)!
                dropoutForward(out: arena[regions.dropped], mask: arena[regions.mask], inp: inp, probability: loraDropout, key: pass.key(site),
                               exampleIndices: batch.exampleIndices, segmentStarts: starts.map { $0 * inputs }, B: B)
                x = arena[regions.dropped]
            }
            loraForward(out: arena[out], h: arena[regions.h], inp: x, a: p + adapter.a.offset, b: p + adapter.b.offset, scale: Float(lora.scale),
                        B: N, C: inputs, OC: outputs, R: lora.rank)
        }
        for (l, layer) in t.layers.enumerated() {
            let al = a.layers[l]
            rmsNormForward(out: arena[al.normed1], rstd: arena[al.rstd1], inp: x, weight: p + layer.inputNorm.offset, eps: eps, N: N, C: C)
            linear(l, .q, out: al.q, inp: arena[al.normed1])
            linear(l, .k, out: al.k, inp: arena[al.normed1])
            linear(l, .v, out: al.v, inp: arena[al.normed1])
            rotaryForward(arena[al.q], cos: rotaryCos, sin: rotarySin, starts: starts, B: B, H: NH, HS: HS)
            rotaryForward(arena[al.k], cos: rotaryCos, sin: rotarySin, starts: starts, B: B, H: NKV, HS: HS)
            causalAttentionForward(out: arena[al.context], probs: arena[al.probs], q: arena[al.q], k: arena[al.k], v: arena[al.v],
                                   starts: starts, offsets: pass.offsets, B: B, NH: NH, NKV: NKV, HS: HS)
            linear(l, .o, out: al.residual1, inp: arena[al.context])
            residualForward(out: arena[al.residual1], a: arena[al.residual1], b: x, N: N * C)
            rmsNormForward(out: arena[al.normed2], rstd: arena[al.rstd2], inp: arena[al.residual1], weight: p + layer.postAttentionNorm.offset,
                           eps: eps, N: N, C: C)
            linear(l, .gate, out: al.gate, inp: arena[al.normed2])
            linear(l, .up, out: al.up, inp: arena[al.normed2])
            swigluForward(out: arena[al.activated], gate: arena[al.gate], up: arena[al.up], N: N * F)
            linear(l, .down, out: al.output, inp: arena[al.activated])
            residualForward(out: arena[al.output], a: arena[al.output], b: arena[al.residual1], N: N * C)
            x = arena[al.output]
        }
        rmsNormForward(out: arena[a.finalNormed], rstd: arena[a.finalRstd], inp: x, weight: p + t.finalNorm.offset, eps: eps, N: N, C: C)
        gatherRows(out: arena[a.scoredRows], inp: arena[a.finalNormed], rows: pass.scored, M: M, C: C)
        linearForward(out: arena[a.logits], inp: arena[a.scoredRows], weight: p + t.outputEmbeddings.offset, bias: nil, B: M, C: C, OC: V)
        last = pass
        guard !batch.nextTokenTargets.isEmpty else { return BatchStatistics(count: Double(M)) }
        vocabularyCrossEntropyForward(losses: arena[a.losses], logits: arena[a.logits], targets: batch.nextTokenTargets, M: M, V: V)
        var stats = BatchStatistics(count: Double(M))
        for m in 0..<M {
            stats.lossSum += Double(arena[a.losses][m])
            if argmax(arena[a.logits] + m * V, V) == Int(batch.nextTokenTargets[m]) { stats.correct += 1 }
        }
        return stats
    }

    // MARK: Backward

    public func backward(gradientsReady: (Int) -> Void) {
        guard let pass = last, pass.training, !pass.batch.nextTokenTargets.isEmpty else { gradientsReady(0); return }
        let batch = pass.batch, starts = batch.sequenceStarts
        let N = batch.tokenIDs.count, B = batch.count, M = pass.scored.count
        let C = config.hiddenSize, F = config.intermediateSize, V = config.vocabSize
        let NH = config.heads, NKV = config.keyValueHeads, HS = config.headSize
        let p = parameters.base, g = gradients.base, a = acts, t = tensors
        func weightGradient(_ spec: TensorSpec?) -> UnsafeMutablePointer<Float>? { spec.flatMap { $0.offset >= trainableFrom ? g + $0.offset : nil } }
        // With LoRA the adapters (laid out last) are final only when layer 0 is done.
        var final = layout.count
        func finished(_ offset: Int) { if decoderLoRA == nil { final = max(offset, trainableFrom) }; gradientsReady(final) }

        // Head: d logits in place (each scored position's loss counts once), then d rms(x_L) at the scored rows.
        let ones = [Float](repeating: 1, count: M)
        vocabularyCrossEntropyBackward(probsToGradient: arena[a.logits], dlosses: ones, targets: batch.nextTokenTargets, M: M, V: V)
        let outputEmbeddings = t.outputEmbeddings
        linearBackward(dinp: arena[a.dScoredRows], dweight: weightGradient(outputEmbeddings), dbias: nil, dout: arena[a.logits],
                       inp: arena[a.scoredRows], weight: p + outputEmbeddings.offset, B: M, C: C, OC: V, overwritingInput: true)
        zeroFill(arena[a.dNormed], N: N * C)
        scatterAddRows(dinp: arena[a.dNormed], dout: arena[a.dScoredRows], rows: pass.scored, M: M, C: C)
        let top = t.layers.isEmpty ? arena[a.embedded] : arena[a.layers[t.layers.count - 1].output]
        rmsNormBackward(dinp: arena[a.dx], dweight: weightGradient(t.finalNorm), dout: arena[a.dNormed], inp: top, weight: p + t.finalNorm.offset,
                        rstd: arena[a.finalRstd], N: N, C: C, overwritingInput: true)
        finished(t.finalNorm.offset)

        let lowestLayer = decoderLoRA != nil ? 0 : t.layers.firstIndex { $0.inputNorm.offset >= trainableFrom } ?? t.layers.count
        // Backward of `linear`: the base weight's and bias's gradients (unless frozen), LoRA's, and
        // dinp (= with `overwriting`, else +=; nil: not needed).
        func linearBack(_ l: Int, _ projection: DecoderProjection, dout: UnsafeMutablePointer<Float>, inp: UnsafeMutablePointer<Float>,
                        dinp: UnsafeMutablePointer<Float>?, overwriting: Bool) {
            let layer = t.layers[l], (outputs, inputs) = projection.shape(config)
            let weight = layer.weights[projection]!
            linearBackward(dinp: dinp, dweight: weightGradient(weight), dbias: weightGradient(layer.biases[projection]), dout: dout, inp: inp,
                           weight: p + weight.offset, B: N, C: inputs, OC: outputs, overwritingInput: overwriting)
            guard let lora = decoderLoRA, let adapter = t.adapters[l][projection], let regions = a.adapters[l][projection] else { return }
            loraBranchBackward(dinp: dinp, da: g + adapter.a.offset, db: g + adapter.b.offset, dh: arena[a.dAdapterH], scratch: arena[a.dAdapterInput],
                               dout: dout, h: arena[regions.h], input: loraDropout > 0 ? arena[regions.dropped] : inp,
                               a: p + adapter.a.offset, b: p + adapter.b.offset, scale: Float(lora.scale), dropout: loraDropout,
                               mask: arena[regions.mask], B: N, C: inputs, OC: outputs, R: lora.rank)
        }
        // Layers, last to first; dx holds d(layer output) on entry, d(layer input) on exit.
        for l in stride(from: t.layers.count - 1, through: lowestLayer, by: -1) {
            let al = a.layers[l], layer = t.layers[l]
            let x = l == 0 ? arena[a.embedded] : arena[a.layers[l - 1].output]
            let dx = arena[a.dx]
            // x_out = h + down(swiglu(gate(rms(h)), up(rms(h)))): d down's output = dx.
            linearBack(l, .down, dout: dx, inp: arena[al.activated], dinp: arena[a.dActivated], overwriting: true)
            swigluBackward(dgate: arena[a.dGate], dup: arena[a.dUp], dout: arena[a.dActivated], gate: arena[al.gate], up: arena[al.up], N: N * F)
            linearBack(l, .gate, dout: arena[a.dGate], inp: arena[al.normed2], dinp: arena[a.dNormed], overwriting: true)
            linearBack(l, .up, dout: arena[a.dUp], inp: arena[al.normed2], dinp: arena[a.dNormed], overwriting: false)
            rmsNormBackward(dinp: dx, dweight: weightGradient(layer.postAttentionNorm), dout: arena[a.dNormed], inp: arena[al.residual1],
                            weight: p + layer.postAttentionNorm.offset, rstd: arena[al.rstd2], N: N, C: C)
            gradientsReady(final)
            // h = x + o(attention(...)): dx now holds d h.
            linearBack(l, .o, dout: dx, inp: arena[al.context], dinp: arena[a.dContext], overwriting: true)
            causalAttentionBackward(dq: arena[a.dq], dk: arena[a.dk], dv: arena[a.dv], scratch: arena[a.attentionScratch], dout: arena[a.dContext],
                                    probs: arena[al.probs], q: arena[al.q], k: arena[al.k], v: arena[al.v], starts: starts, offsets: pass.offsets,
                                    B: B, NH: NH, NKV: NKV, HS: HS)
            rotaryBackward(arena[a.dq], cos: rotaryCos, sin: rotarySin, starts: starts, B: B, H: NH, HS: HS)
            rotaryBackward(arena[a.dk], cos: rotaryCos, sin: rotarySin, starts: starts, B: B, H: NKV, HS: HS)
            gradientsReady(final)
            linearBack(l, .q, dout: arena[a.dq], inp: arena[al.normed1], dinp: arena[a.dNormed], overwriting: true)
            linearBack(l, .k, dout: arena[a.dk], inp: arena[al.normed1], dinp: arena[a.dNormed], overwriting: false)
            linearBack(l, .v, dout: arena[a.dv], inp: arena[al.normed1], dinp: arena[a.dNormed], overwriting: false)
            // Below the lowest trainable layer no input gradient is needed.
            let needsInput = !(l == lowestLayer && trainableFrom > 0)
            rmsNormBackward(dinp: needsInput ? dx : nil, dweight: weightGradient(layer.inputNorm), dout: arena[a.dNormed], inp: x,
                            weight: p + layer.inputNorm.offset, rstd: arena[al.rstd1], N: N, C: C)
            finished(layer.inputNorm.offset)
        }
        guard trainableFrom == 0 else { gradientsReady(0); return }
        scatterAddRows(dinp: g + t.embeddings.offset, dout: arena[a.dx], rows: batch.tokenIDs, M: N, C: C)
        gradientsReady(0)
    }

    /// Layer l's rotated keys and values [N, NKV·HS] of the last forward pass (a prompt's, for the
    /// generator's cache), copied to `keys` and `values`.
    func copyKeysValues(layer l: Int, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>) {
        guard let pass = last else { return }
        let count = pass.batch.tokenIDs.count * config.keyValueWidth
        keys.update(from: arena[acts.layers[l].k], count: count)
        values.update(from: arena[acts.layers[l].v], count: count)
    }

    /// The vocabulary logits [M][V] of the last forward pass at its scored positions (each
    /// sequence's last token when the batch names none), when the batch had no targets (with
    /// targets the loss turned them into probabilities, and backward into their gradient).
    public func lastLogits() -> [[Float]] {
        guard let pass = last else { return [] }
        let V = config.vocabSize, logits = arena[acts.logits]
        return (0..<pass.scored.count).map { Array(UnsafeBufferPointer(start: logits + $0 * V, count: V)) }
    }
}
