import FineTuneKernels

/// The size of a forward and backward pass: N tokens, B sequences, A attention scores (Σ NH·L_b²),
/// M masked positions (masked-language modelling).
public struct ActivationShape: Equatable, Sendable {
    public var tokens: Int, sequences: Int, scores: Int, masked: Int
    public init(tokens: Int, sequences: Int, scores: Int, masked: Int = 0) {
        self.tokens = tokens; self.sequences = sequences; self.scores = scores; self.masked = masked
    }
    /// Large enough for both.
    func union(_ other: ActivationShape) -> ActivationShape {
        ActivationShape(tokens: max(tokens, other.tokens), sequences: max(sequences, other.sequences), scores: max(scores, other.scores),
                        masked: max(masked, other.masked))
    }
    func fits(in other: ActivationShape) -> Bool {
        tokens <= other.tokens && sequences <= other.sequences && scores <= other.scores && masked <= other.masked
    }
}

/// Every activation a BERT encoder body's forward pass keeps for backward, and backward's scratch:
/// regions of one arena (shapes: N tokens, B sequences, A scores, C hidden, F intermediate). The
/// task head keeps its own (TaskHeads.swift).
struct EncoderActivations {
    struct Layer {
        /// [N, C] each: every token's query, key and value.
        var q: ArenaRegion<Float>, k: ArenaRegion<Float>, v: ArenaRegion<Float>
        /// [A] each: softmax probabilities, after dropout, and the dropout mask.
        var probs: ArenaRegion<Float>, probsDropped: ArenaRegion<Float>, probsMask: ArenaRegion<UInt8>
        /// [N, C] each: attention context, its output projection, after dropout (and the mask [N·C]).
        var context: ArenaRegion<Float>, attentionOutput: ArenaRegion<Float>, attentionDropped: ArenaRegion<Float>
        var attentionMask: ArenaRegion<UInt8>
        /// [N, C]: residual sum and LayerNorm output h1; [N] each: LayerNorm's mean and 1/std.
        var residual1: ArenaRegion<Float>, hidden1: ArenaRegion<Float>, norm1Mean: ArenaRegion<Float>, norm1Rstd: ArenaRegion<Float>
        /// [N, F] each: feed-forward pre-activation, GELU output, GELU's slope (for backward).
        var intermediate: ArenaRegion<Float>, activated: ArenaRegion<Float>, geluSlope: ArenaRegion<Float>
        /// [N, C] each: feed-forward output, after dropout (and the mask [N·C]).
        var ffn: ArenaRegion<Float>, ffnDropped: ArenaRegion<Float>, ffnMask: ArenaRegion<UInt8>
        /// [N, C]: residual sum and the layer's output h2; [N] each: LayerNorm's mean and 1/std.
        var residual2: ArenaRegion<Float>, hidden2: ArenaRegion<Float>, norm2Mean: ArenaRegion<Float>, norm2Rstd: ArenaRegion<Float>
    }
    var layers: [Layer] = []
    /// LoRA, per layer and target: h = x·Aᵀ [N, r]; with LoRA dropout, the dropped input [N, in] and its mask.
    struct Adapter { var h: ArenaRegion<Float>, dropped: ArenaRegion<Float>, mask: ArenaRegion<UInt8> }
    var adapters: [[LoRATarget: Adapter]] = []
    /// LoRA backward scratch: d h [N, r] and an input gradient [N, max(C, F)].
    var dAdapterH = ArenaRegion<Float>.empty, dAdapterInput = ArenaRegion<Float>.empty
    /// [N, C]: embedding sum, LayerNorm output, after dropout (mask [N·C]); [N] each: mean and 1/std.
    var embeddingSum = ArenaRegion<Float>.empty, embeddingNormed = ArenaRegion<Float>.empty, embeddingDropped = ArenaRegion<Float>.empty
    var embeddingMask = ArenaRegion<UInt8>.empty, embeddingMean = ArenaRegion<Float>.empty, embeddingRstd = ArenaRegion<Float>.empty
    /// Backward scratch: [N, C] ×3 rotated between layers (gradA takes the head's d output), [N, C] ×4 (d q, k, v, context), [N, F] ×2, [A].
    var gradA = ArenaRegion<Float>.empty, gradB = ArenaRegion<Float>.empty, gradC = ArenaRegion<Float>.empty
    var dq = ArenaRegion<Float>.empty, dk = ArenaRegion<Float>.empty, dv = ArenaRegion<Float>.empty, dContext = ArenaRegion<Float>.empty
    var dIntermediate = ArenaRegion<Float>.empty, dActivated = ArenaRegion<Float>.empty, dScores = ArenaRegion<Float>.empty

    /// The one function that sizes the arena.
    static func layout(config: EncoderConfig, shape: ActivationShape, lora: LoRASettings? = nil) -> (ArenaLayout, EncoderActivations) {
        let N = shape.tokens, A = shape.scores, C = config.hiddenSize, F = config.intermediateSize
        var m = ArenaLayout(), a = EncoderActivations()
        for _ in 0..<config.layers {
            a.layers.append(Layer(q: m.floats(N * C), k: m.floats(N * C), v: m.floats(N * C), probs: m.floats(A), probsDropped: m.floats(A), probsMask: m.bytes(A),
                                  context: m.floats(N * C), attentionOutput: m.floats(N * C), attentionDropped: m.floats(N * C),
                                  attentionMask: m.bytes(N * C), residual1: m.floats(N * C), hidden1: m.floats(N * C),
                                  norm1Mean: m.floats(N), norm1Rstd: m.floats(N),
                                  intermediate: m.floats(N * F), activated: m.floats(N * F), geluSlope: m.floats(N * F),
                                  ffn: m.floats(N * C), ffnDropped: m.floats(N * C), ffnMask: m.bytes(N * C),
                                  residual2: m.floats(N * C), hidden2: m.floats(N * C), norm2Mean: m.floats(N), norm2Rstd: m.floats(N)))
        }
        a.embeddingSum = m.floats(N * C); a.embeddingNormed = m.floats(N * C); a.embeddingDropped = m.floats(N * C)
        a.embeddingMask = m.bytes(N * C); a.embeddingMean = m.floats(N); a.embeddingRstd = m.floats(N)
        a.gradA = m.floats(N * C); a.gradB = m.floats(N * C); a.gradC = m.floats(N * C)
        a.dq = m.floats(N * C); a.dk = m.floats(N * C); a.dv = m.floats(N * C); a.dContext = m.floats(N * C)
        a.dIntermediate = m.floats(N * F); a.dActivated = m.floats(N * F); a.dScores = m.floats(A)
        if let lora {
            a.adapters = (0..<config.layers).map { _ in
                Dictionary(uniqueKeysWithValues: lora.targets.map { target in
                    let inputs = target == .output ? F : C, dropped = lora.dropout > 0 ? N * inputs : 0
                    return (target, Adapter(h: m.floats(N * lora.rank), dropped: m.floats(dropped), mask: m.bytes(dropped)))
                })
            }
            a.dAdapterH = m.floats(N * lora.rank); a.dAdapterInput = m.floats(N * max(C, F))
        }
        return (m, a)
    }
}
