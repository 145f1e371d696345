/// The encoder families this program reads. All are BERT's post-LayerNorm transformer; they differ
/// in their embeddings (token types, where positions start), MPNet's relative position bias,
/// DistilBERT's missing dropout after the attention output, the names transformers gives their
/// tensors and config fields, and their task heads:
///
/// | family | token types | positions from | score bias | cls head | masked-LM head |
/// |---|---|---|---|---|---|
/// | bert (MiniLM, ...) | yes | 0 | none | pooler.dense + tanh, classifier | cls.predictions.* |
/// | mpnet | no | padding_idx + 1 | relative (shared by all layers) | classifier.dense + tanh, classifier.out_proj | lm_head.* |
/// | roberta | one type (all 0) | padding_idx + 1 | none | classifier.dense + tanh, classifier.out_proj | lm_head.* |
/// | distilbert | no | 0 | none | pre_classifier + ReLU, classifier | vocab_transform, vocab_layer_norm, vocab_projector |
///
/// Every name below is transformers' (MPNetModel, RobertaForSequenceClassification, ...): they are
/// this program's parameter names too, so checkpoints, exports and `inspect` say what transformers says.
public enum EncoderFamily: String, Sendable, CaseIterable, Codable {
    case bert, mpnet, roberta, distilbert

    /// transformers' attribute of the encoder inside ...ForSequenceClassification / ...ForMaskedLM.
    public var basePrefix: String { rawValue + "." }
    /// The architecture names written to an exported config.json.
    var classPrefix: String {
        switch self {
        case .bert: return "Bert"
        case .mpnet: return "MPNet"
        case .roberta: return "Roberta"
        case .distilbert: return "DistilBert"
        }
    }
    public var baseArchitecture: String { classPrefix + "Model" }
    public var sequenceClassificationArchitecture: String { classPrefix + "ForSequenceClassification" }
    public var maskedLMArchitecture: String { classPrefix + "ForMaskedLM" }

    /// Whether the embeddings add a token-type row (RoBERTa's table has one row, type 0).
    public var hasTokenTypes: Bool { self == .bert || self == .roberta }
    /// Whether positions start at padding_idx + 1 (fairseq's convention), not 0.
    public var positionsAfterPadding: Bool { self == .mpnet || self == .roberta }
    /// DistilBERT's attention sublayer has no dropout on its output (transformers' MultiHeadSelfAttention).
    public var dropsAttentionOutput: Bool { self != .distilbert }

    /// Where layer `l`'s modules sit.
    public func layerPrefix(_ l: Int) -> String { self == .distilbert ? "transformer.layer.\(l)." : "encoder.layer.\(l)." }

    /// A layer's modules, as paths below `layerPrefix(l)`.
    public struct LayerModules: Sendable {
        public let query: String, key: String, value: String, attentionOutput: String, attentionNorm: String
        public let intermediate: String, output: String, outputNorm: String
    }
    public var layerModules: LayerModules {
        switch self {
        case .bert, .roberta:
            return LayerModules(query: "attention.self.query", key: "attention.self.key", value: "attention.self.value",
                                attentionOutput: "attention.output.dense", attentionNorm: "attention.output.LayerNorm",
                                intermediate: "intermediate.dense", output: "output.dense", outputNorm: "output.LayerNorm")
        case .mpnet:
            return LayerModules(query: "attention.attn.q", key: "attention.attn.k", value: "attention.attn.v",
                                attentionOutput: "attention.attn.o", attentionNorm: "attention.LayerNorm",
                                intermediate: "intermediate.dense", output: "output.dense", outputNorm: "output.LayerNorm")
        case .distilbert:
            return LayerModules(query: "attention.q_lin", key: "attention.k_lin", value: "attention.v_lin",
                                attentionOutput: "attention.out_lin", attentionNorm: "sa_layer_norm",
                                intermediate: "ffn.lin1", output: "ffn.lin2", outputNorm: "output_layer_norm")
        }
    }

    /// The activation of the cls head's dense layer.
    public enum HeadActivation: Sendable { case tanh, relu }
    /// The sequence head on cls pooling: the dense layer on the first token, its activation and
    /// the classifier. MPNet's and RoBERTa's heads (...ClassificationHead) also drop out before the dense layer.
    public var clsHeadModules: (dense: String, classifier: String, dropoutBeforeDense: Bool, activation: HeadActivation) {
        switch self {
        case .bert: return ("pooler.dense", "classifier", false, .tanh)
        case .mpnet, .roberta: return ("classifier.dense", "classifier.out_proj", true, .tanh)
        case .distilbert: return ("pre_classifier", "classifier", false, .relu)
        }
    }

    /// Whether the cls head reads the base model's pooler (BERT's); the other families' heads have a
    /// dense layer of their own, so a base's pooler is never used there.
    public var clsHeadUsesPooler: Bool { self == .bert }

    /// The masked-LM head's modules: the transform's dense and LayerNorm, the decoder's bias (its
    /// weight is the word embeddings).
    public var maskedLMModules: (dense: String, norm: String, bias: String) {
        switch self {
        case .bert: return ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.bias")
        case .mpnet, .roberta: return ("lm_head.dense", "lm_head.layer_norm", "lm_head.bias")
        case .distilbert: return ("vocab_transform", "vocab_layer_norm", "vocab_projector.bias")
        }
    }

    /// Whether the masked-LM head's activation is the config's (BERT's transform, DistilBERT's
    /// vocab_transform); MPNet's and RoBERTa's lm_head applies erf GELU whatever hidden_act says.
    public var maskedLMFollowsActivation: Bool { self == .bert || self == .distilbert }

    /// Name prefixes of the pre-training head a base folder may hold, dropped when fine-tuning something else.
    public var pretrainingHeadPrefixes: [String] {
        switch self {
        case .bert: return ["cls."]
        case .mpnet, .roberta: return ["lm_head."]
        case .distilbert: return ["vocab_transform.", "vocab_layer_norm.", "vocab_projector."]
        }
    }
    /// Name prefixes of heads that sit at the top level of ...ForSequenceClassification and
    /// ...ForMaskedLM (outside the `basePrefix` encoder).
    public var topLevelPrefixes: [String] { (self == .distilbert ? ["pre_classifier.", "classifier."] : ["classifier."]) + pretrainingHeadPrefixes }
    /// PEFT's `modules_to_save` of a classifier on cls pooling: the head's modules.
    public var clsHeadModulesToSave: [String] {
        switch self {
        case .bert: return ["classifier", "pooler"]
        case .mpnet, .roberta: return ["classifier"]
        case .distilbert: return ["pre_classifier", "classifier"]
        }
    }
}
