import FineTuneJSON
import FineTuneKernels
import Foundation

public enum Pooling: String, Sendable, CaseIterable, Codable {
    /// Masked mean over the tokens (sentence-transformers' default); exported as a sentence-transformers folder.
    case mean
    /// Hugging Face's pooler: dense + tanh on [CLS]; exported as BertForSequenceClassification.
    case cls
}

/// config.json of a BERT-architecture encoder (BERT, MiniLM, MPNet: `EncoderFamily`), with
/// transformers' field names. Fields this program does not use stay in `raw` and are written back.
public struct BertConfig: Decodable, Sendable {
    /// From model_type.
    public var family: EncoderFamily
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    /// Rows of the token-type table (0: the family has none).
    public var typeVocabSize: Int
    /// The position-embedding row of a sequence's first token: 0 for BERT, padding_idx + 1 for MPNet.
    public var positionOffset: Int
    /// MPNet's relative position bias: its buckets (relative_attention_num_buckets) and the
    /// distance the last bucket starts at (128 in transformers, not configurable there); nil for BERT.
    public var relativeAttention: (buckets: Int, maxDistance: Int)?
    public var layerNormEps: Double
    /// "gelu" (erf form) or "gelu_new" / "gelu_pytorch_tanh" (tanh form).
    public var hiddenAct: String
    public var hiddenDropout: Double
    public var attentionDropout: Double
    /// Dropout before the classifier (transformers' `classifier_dropout`, else hidden_dropout_prob).
    public var classifierDropout: Double
    /// Standard deviation of a fresh head's weights.
    public var initializerRange: Double
    /// The head described by the config (`id2label`), if any.
    public var labels: [String]?
    public var problemType: String?
    /// Every field of the file, for writing it back.
    public var raw: [String: JSONValue] = [:]

    public static let supportedActivations = ["gelu", "gelu_new", "gelu_pytorch_tanh"]

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", layers = "num_hidden_layers", heads = "num_attention_heads"
        case intermediateSize = "intermediate_size", maxPositions = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act", hiddenDropout = "hidden_dropout_prob"
        case attentionDropout = "attention_probs_dropout_prob", classifierDropout = "classifier_dropout"
        case initializerRange = "initializer_range", positionEmbeddingType = "position_embedding_type"
        case labels = "id2label", problemType = "problem_type"
        case modelType = "model_type", padTokenID = "pad_token_id", relativeBuckets = "relative_attention_num_buckets"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let modelType = try c.string(.modelType, default: "bert")
        guard let family = EncoderFamily(rawValue: modelType) else {
            throw FineTuneError("model_type \"\(modelType)\" is not an encoder family this program reads (\(EncoderFamily.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.family = family
        vocabSize = try c.positiveInteger(.vocabSize)
        hiddenSize = try c.positiveInteger(.hiddenSize)
        layers = try c.positiveInteger(.layers)
        heads = try c.positiveInteger(.heads)
        intermediateSize = try c.positiveInteger(.intermediateSize)
        maxPositions = try c.positiveInteger(.maxPositions, default: 512)
        typeVocabSize = family.hasTokenTypes ? try c.positiveInteger(.typeVocabSize, default: 2) : 0
        switch family {
        case .bert:
            positionOffset = 0
            relativeAttention = nil
        case .mpnet:
            positionOffset = try c.nonNegativeInteger(.padTokenID, default: 1) + 1
            relativeAttention = (try c.positiveInteger(.relativeBuckets, default: 32), 128)
        }
        guard positionOffset < maxPositions else {
            throw FineTuneError("pad_token_id \(positionOffset - 1) leaves no position embeddings (max_position_embeddings \(maxPositions))")
        }
        guard hiddenSize % heads == 0 else {
            throw FineTuneError("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(heads)")
        }
        layerNormEps = try c.number(.layerNormEps, default: family == .mpnet ? 1e-5 : 1e-12)
        hiddenAct = try c.string(.hiddenAct, default: "gelu")
        guard BertConfig.supportedActivations.contains(hiddenAct) else {
            throw FineTuneError("hidden_act \"\(hiddenAct)\" is not supported; supported: \(BertConfig.supportedActivations.joined(separator: ", "))")
        }
        let positions = try c.string(.positionEmbeddingType, default: "absolute")
        guard positions == "absolute" else { throw FineTuneError("position_embedding_type \"\(positions)\" is not supported (only absolute)") }
        hiddenDropout = try c.probability(.hiddenDropout, default: 0.1)
        attentionDropout = try c.probability(.attentionDropout, default: 0.1)
        classifierDropout = try c.probability(.classifierDropout, default: hiddenDropout)
        initializerRange = try c.number(.initializerRange, default: 0.02)
        labels = try c.labels(.labels)
        problemType = try? c.string(.problemType, default: "")
        if problemType == "" { problemType = nil }
    }

    /// Reads config.json; errors name `path` and the field.
    public static func decode(_ data: Data, path: String) throws -> BertConfig {
        var (config, raw) = try decodeConfig(BertConfig.self, from: data, path: path)
        config.raw = raw
        return config
    }

    public var headSize: Int { hiddenSize / heads }
    /// The longest input the position embeddings allow.
    public var maxSequenceLength: Int { maxPositions - positionOffset }
    public var usesTanhGELU: Bool { hiddenAct != "gelu" }

    /// The config as written back: every field of the original file, the head of `task` as
    /// transformers describes it (id2label, label2id, problem_type), and `extra` fields on top.
    public func object(task: TaskKind?, extra: [String: JSONValue] = [:]) -> [String: JSONValue] {
        var o = raw
        switch task {
        case .classification(let labels)?:
            o["id2label"] = .object(id2label(labels).mapValues { .string($0) })
            o["label2id"] = .object(label2id(labels).mapValues { .integer(Int64($0)) })
            o["problem_type"] = .string("single_label_classification")
        case .regression?:
            o["id2label"] = .object(["0": .string("LABEL_0")])
            o["label2id"] = .object(["LABEL_0": .integer(0)])
            o["problem_type"] = .string("regression")
        case .maskedLanguageModel?, nil:
            // A masked-LM model keeps the folder's labels, if any: they belong to the encoder's
            // next fine-tune, not to this head.
            break
        }
        o.merge(extra) { _, new in new }
        return o
    }
}
