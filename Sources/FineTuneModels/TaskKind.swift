import FineTuneKernels
/// What the model predicts.
public enum TaskKind: Equatable, Sendable {
    /// Single-label classification over the named classes (index = class id).
    case classification(labels: [String])
    /// Regression of one number.
    case regression
    /// Masked-language modelling: predict the original token at masked positions (domain
    /// adaptation of the encoder; the head is BERT's pre-training head, its decoder tied to the
    /// word embeddings).
    case maskedLanguageModel
    /// Sentence embeddings trained contrastively (MultipleNegativesRankingLoss over (anchor,
    /// positive, negatives) texts): the head is the pooling (and a Dense module of the model's own);
    /// the loss is computed over the whole global batch outside the model (`ContrastiveLoss`).
    case embedding
    /// Causal language modelling: a decoder predicts each next token (on everything, or on the
    /// completions only); the head is the decoder's lm_head.
    case causalLanguageModel

    public var outputCount: Int {
        switch self {
        case .classification(let labels): return labels.count
        case .regression: return 1
        case .maskedLanguageModel, .embedding, .causalLanguageModel: return 0
        }
    }
    public var labels: [String]? {
        if case .classification(let l) = self { return l }
        return nil
    }
}

/// What a fresh head learns, when the user says so rather than the labels (`--task`).
public enum TaskChoice: String, Sendable, Codable, CaseIterable {
    case classification, regression
    /// Masked-language modelling on unlabelled text (`--task mlm`).
    case mlm
    /// Contrastive sentence-embedding training on (anchor, positive[, negatives]) texts (`--task embedding`).
    case embedding
    /// Causal language modelling with a decoder (`--task causal-lm`; a decoder model implies it).
    case causalLM = "causal-lm"
}

/// The label names of a config's `id2label` ({"0": "neg", "1": "pos"}) in id order.
public func labelsFromID2Label(_ id2label: [String: String]) throws -> [String] {
    var labels = [String?](repeating: nil, count: id2label.count)
    for (key, name) in id2label {
        guard let id = Int(key), id >= 0, id < labels.count, labels[id] == nil else {
            throw FineTuneError("\"id2label\" must map the ids 0..<\(labels.count) to label names; bad entry \"\(key)\"")
        }
        labels[id] = name
    }
    return labels.map { $0! }
}

/// `id2label` and `label2id` as transformers writes them.
public func id2label(_ labels: [String]) -> [String: String] {
    Dictionary(uniqueKeysWithValues: labels.enumerated().map { (String($0.offset), $0.element) })
}
public func label2id(_ labels: [String]) -> [String: Int] {
    Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($0.element, $0.offset) })
}
