import FineTuneKernels

/// The parameters of a BERT encoder body: named views into one flat buffer, with transformers'
/// BertModel tensor names (`embeddings.word_embeddings.weight`,
/// `encoder.layer.{l}.attention.self.query.weight`, ...), then LoRA's adapters. The task head's
/// tensors follow in the same layout (TaskHeads.swift). Shapes: V vocabulary, P positions, TV
/// token types, C hidden, F intermediate.
public struct BertParameters: Sendable {
    public struct Layer: Sendable {
        /// [C, C], [C] each: the query, key and value projections.
        public let queryWeight: TensorSpec, queryBias: TensorSpec
        public let keyWeight: TensorSpec, keyBias: TensorSpec
        public let valueWeight: TensorSpec, valueBias: TensorSpec
        /// The three projections in the order their products run (Q, K, V).
        public var projections: [(weight: TensorSpec, bias: TensorSpec)] { [(queryWeight, queryBias), (keyWeight, keyBias), (valueWeight, valueBias)] }
        /// [C, C], [C]: the attention output projection.
        public let attentionOutputWeight: TensorSpec, attentionOutputBias: TensorSpec
        /// [C], [C]: LayerNorm after the attention sublayer.
        public let attentionNormWeight: TensorSpec, attentionNormBias: TensorSpec
        /// [F, C], [F]: the feed-forward expansion.
        public let intermediateWeight: TensorSpec, intermediateBias: TensorSpec
        /// [C, F], [C]: the feed-forward projection back.
        public let outputWeight: TensorSpec, outputBias: TensorSpec
        /// [C], [C]: LayerNorm after the feed-forward sublayer.
        public let outputNormWeight: TensorSpec, outputNormBias: TensorSpec
    }

    /// [V, C], [P, C], [TV, C]
    public let wordEmbeddings: TensorSpec, positionEmbeddings: TensorSpec, tokenTypeEmbeddings: TensorSpec
    /// [C], [C]
    public let embeddingNormWeight: TensorSpec, embeddingNormBias: TensorSpec
    public let layers: [Layer]
    /// LoRA's A [r, in] and B [out, r] of one adapted linear layer.
    public struct Adapter: Sendable { public let a: TensorSpec, b: TensorSpec }
    /// Per layer, the adapters of its target layers (empty without LoRA). Laid out after the
    /// encoder, so the trainable adapters and the head are one suffix of the buffer.
    public let adapters: [[LoRATarget: Adapter]]
    public static func layerPrefix(_ l: Int) -> String { "encoder.layer.\(l)." }

    /// Adds the body's tensors to `layout` (empty: the body comes first).
    public init(config: BertConfig, lora: LoRASettings? = nil, layout: inout ParameterLayout) {
        let C = config.hiddenSize, F = config.intermediateSize
        func add(_ name: String, _ shape: [Int]) -> TensorSpec { layout.addDecaying(name, shape) }
        wordEmbeddings = add("embeddings.word_embeddings.weight", [config.vocabSize, C])
        positionEmbeddings = add("embeddings.position_embeddings.weight", [config.maxPositions, C])
        tokenTypeEmbeddings = add("embeddings.token_type_embeddings.weight", [config.typeVocabSize, C])
        embeddingNormWeight = add("embeddings.LayerNorm.weight", [C])
        embeddingNormBias = add("embeddings.LayerNorm.bias", [C])
        layers = (0..<config.layers).map { l in
            let p = BertParameters.layerPrefix(l)
            return Layer(queryWeight: add(p + "attention.self.query.weight", [C, C]), queryBias: add(p + "attention.self.query.bias", [C]),
                         keyWeight: add(p + "attention.self.key.weight", [C, C]), keyBias: add(p + "attention.self.key.bias", [C]),
                         valueWeight: add(p + "attention.self.value.weight", [C, C]), valueBias: add(p + "attention.self.value.bias", [C]),
                         attentionOutputWeight: add(p + "attention.output.dense.weight", [C, C]),
                         attentionOutputBias: add(p + "attention.output.dense.bias", [C]),
                         attentionNormWeight: add(p + "attention.output.LayerNorm.weight", [C]),
                         attentionNormBias: add(p + "attention.output.LayerNorm.bias", [C]),
                         intermediateWeight: add(p + "intermediate.dense.weight", [F, C]),
                         intermediateBias: add(p + "intermediate.dense.bias", [F]),
                         outputWeight: add(p + "output.dense.weight", [C, F]),
                         outputBias: add(p + "output.dense.bias", [C]),
                         outputNormWeight: add(p + "output.LayerNorm.weight", [C]),
                         outputNormBias: add(p + "output.LayerNorm.bias", [C]))
        }
        adapters = (0..<config.layers).map { l in
            guard let lora else { return [:] }
            var adapters: [LoRATarget: Adapter] = [:]
            for target in lora.targets {
                let (inputs, outputs) = target == .intermediate ? (C, F) : target == .output ? (F, C) : (C, C)
                let p = BertParameters.layerPrefix(l) + target.modulePath
                adapters[target] = Adapter(a: add(p + ".lora_A.weight", [lora.rank, inputs]), b: add(p + ".lora_B.weight", [outputs, lora.rank]))
            }
            return adapters
        }
    }
}
