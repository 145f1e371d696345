import FineTuneKernels

/// The head of a sentence-embedding model: sentence-transformers' Pooling (the mean over the
/// tokens, or the first token's hidden state) and, after mean pooling, a Dense module of the
/// model's own (`projection.*`). Its output is the embedding e [B, D]; the loss is not the
/// head's: the caller scores the embeddings of the whole global batch (`ContrastiveLoss`) and
/// writes d e [B, D] into `embeddingGradient` before backward. Normalisation is part of the loss
/// (cosine similarity), not of the head.
public final class EmbeddingHead: EncoderHead {
    public var task: TaskKind { .embedding }
    public let pooling: Pooling
    let facts: EncoderFacts
    public let projection: EmbeddingProjection?
    /// [D, C], [D] (no bias when the module has none).
    public let projectionWeight: TensorSpec?, projectionBias: TensorSpec?
    /// Without a projection the head has no tensors: an empty group at the layout's end.
    public let firstTensor: TensorSpec
    /// D: the embedding's width (C without a projection).
    public var embeddingSize: Int { projection?.outputs ?? facts.hiddenSize }
    public var classifierDropout: Double = 0
    public var touchesEveryWordEmbedding: Bool { false }

    public init(pooling: Pooling, facts: EncoderFacts, projection: EmbeddingProjection?, layout: inout ParameterLayout) {
        precondition(projection == nil || pooling == .mean, "a sentence-transformers Dense module follows mean pooling")
        self.pooling = pooling; self.facts = facts; self.projection = projection
        let C = facts.hiddenSize
        projectionWeight = projection.map { layout.addDecaying("projection.weight", [$0.outputs, C]) }
        projectionBias = projection.flatMap { $0.bias ? layout.addDecaying("projection.bias", [$0.outputs]) : nil }
        firstTensor = projectionWeight ?? TensorSpec(name: "", shape: [0], offset: layout.count, decays: false)
    }

    // [B, C]: pooled; [B, D] each: the projection's output before and after its activation;
    // [B, D]: d e, written by the caller; backward scratch [B, max(C, D)] ×2.
    private var pooled = ArenaRegion<Float>.empty, projectedPre = ArenaRegion<Float>.empty, projected = ArenaRegion<Float>.empty
    private var dEmbedding = ArenaRegion<Float>.empty, dA = ArenaRegion<Float>.empty, dB = ArenaRegion<Float>.empty
    private var capacity = 0
    private var arena = ActivationArena(ArenaLayout())
    public var activationBytes: Int { arena.byteCount }

    private func reserve(sequences B: Int) {
        guard B > capacity else { return }
        capacity = B
        let C = facts.hiddenSize, D = projection?.outputs ?? 0
        var m = ArenaLayout()
        pooled = m.floats(B * C); projectedPre = m.floats(B * D); projected = m.floats(B * D)
        dEmbedding = m.floats(B * embeddingSize)
        dA = m.floats(B * max(C, D)); dB = m.floats(B * max(C, D))
        arena = ActivationArena(m)
    }

    /// A Dense module's tensors the base folder lacks never happen (it is read with the module);
    /// nothing else to initialise.
    public func initialize(_ parameters: FlatBuffer<Float>, seed: UInt64, includePooler: Bool) {}

    /// The embeddings e [B, D] of the pass; the statistics only count the sequences.
    public func forward(_ x: UnsafeMutablePointer<Float>, pass: HeadPass, objective: TrainingObjective?, parameters p: UnsafeMutablePointer<Float>) -> BatchStatistics {
        let batch = pass.batch, B = batch.count, C = facts.hiddenSize
        reserve(sequences: B)
        switch pooling {
        case .mean: meanPoolForward(out: arena[pooled], inp: x, starts: batch.sequenceStarts, B: B, C: C)
        case .cls: firstTokenForward(out: arena[pooled], inp: x, starts: batch.sequenceStarts, B: B, C: C)
        }
        if let projection, let w = projectionWeight {
            projection.forward(out: arena[projected], pre: arena[projectedPre], inp: arena[pooled], weight: p + w.offset,
                               bias: projectionBias.map { p + $0.offset }, B: B, C: C)
        }
        return BatchStatistics(count: Double(B))
    }

    /// e [B, D] of the last forward pass.
    var embeddings: UnsafeMutablePointer<Float> { projection == nil ? arena[pooled] : arena[projected] }
    /// Where the caller writes d e [B, D] before backward.
    var embeddingGradient: UnsafeMutablePointer<Float> { arena[dEmbedding] }

    public func backward(dx: UnsafeMutablePointer<Float>?, pass: HeadPass, objective: TrainingObjective, parameters p: UnsafeMutablePointer<Float>,
                         gradients g: UnsafeMutablePointer<Float>, wordEmbeddingGradient: UnsafeMutablePointer<Float>?) -> Bool {
        let batch = pass.batch, B = batch.count, C = facts.hiddenSize, N = batch.tokenIDs.count
        var dPooled = arena[dEmbedding]
        if let projection, let w = projectionWeight {
            // d e -> d pre-activation (dA) -> the projection's gradients and d pooled (dB).
            projection.backward(dinp: dx == nil ? nil : arena[dB], dweight: g + w.offset, dbias: projectionBias.map { g + $0.offset },
                                dPre: arena[dA], dout: arena[dEmbedding], pre: arena[projectedPre], out: arena[projected], inp: arena[pooled],
                                weight: p + w.offset, B: B, C: C)
            dPooled = arena[dB]
        }
        guard let dx else { return false }
        switch pooling {
        case .mean: meanPoolBackward(dinp: dx, dout: dPooled, starts: batch.sequenceStarts, B: B, C: C, overwritingInput: true)
        case .cls:
            zeroFill(dx, N: N * C)
            firstTokenBackward(dinp: dx, dout: dPooled, starts: batch.sequenceStarts, B: B, C: C)
        }
        return true
    }

    public func lastLogits(count: Int) -> [[Float]] { [] }
    public func lastMaskedLogits(count: Int) -> [[Float]]? { nil }
    public func lastPooled(count B: Int) -> [[Float]] {
        let D = embeddingSize, e = embeddings
        return (0..<B).map { Array(UnsafeBufferPointer(start: e + $0 * D, count: D)) }
    }
}
