import FineTuneKernels
import FineTuneModels
/// Where a tensor lives in a model folder: which safetensors file, under which name.
public struct TensorLocation: Hashable, Sendable, CustomStringConvertible {
    public let file: String
    public let name: String
    public init(file: String, name: String) { self.file = file; self.name = name }
    public var description: String { "\(file): \(name)" }
}

/// The one map between an encoder's parameter names (EncoderParameters: `embeddings.*`,
/// `encoder.*`, `pooler.dense.*`, `classifier.*`, and the masked-LM head's `cls.*` / `lm_head.*`) and
/// the tensors of the folder layouts Hugging Face tools read and write. Loading and every export go
/// through it. Heads sit at the top level in every layout (`classifier.*` of
/// BertForSequenceClassification, `cls.predictions.*` of BertForMaskedLM).
public enum EncoderTensorNames: Equatable, Sendable {
    /// model.safetensors with the encoder and pooler under `prefix` ("" for BertModel and this
    /// program's own folders, "bert." for BertForSequenceClassification, "mpnet." for MPNet's) and
    /// the head at `classifier.*`.
    case transformers(prefix: String)
    /// sentence-transformers: the encoder in model.safetensors, the classifier as a Dense module
    /// (`head`/model.safetensors, `linear.weight` / `linear.bias`), and the model's own Dense module
    /// between pooling and classifier, if it has one (`projection`, the head's `projection.*`).
    case sentenceTransformers(projection: String? = nil, head: String = "2_Dense")

    public static let mainFile = "model.safetensors"

    /// Heads outside the encoder in every family's ...ForSequenceClassification / ...ForMaskedLM
    /// (BERT's `cls.predictions`, MPNet's and RoBERTa's `lm_head`, DistilBERT's `pre_classifier`
    /// and `vocab_*`; no family's encoder has a tensor by those names), and a sentence-transformers
    /// Dense module's `projection.*`.
    static func isTopLevel(_ name: String) -> Bool { topLevelPrefixes.contains(where: name.hasPrefix) }
    static let topLevelPrefixes = Set(EncoderFamily.allCases.flatMap(\.topLevelPrefixes) + ["projection."]).sorted()

    /// The safetensors file of a sentence-transformers module folder.
    static func moduleFile(_ folder: String) -> String { folder + "/" + mainFile }
    /// The file of the classifier's Dense module (sentence-transformers layout).
    public var headFile: String? {
        if case .sentenceTransformers(_, let head) = self { return Self.moduleFile(head) }
        return nil
    }

    public func location(of parameter: String) -> TensorLocation {
        switch self {
        case .transformers(let prefix):
            return TensorLocation(file: Self.mainFile, name: Self.isTopLevel(parameter) ? parameter : prefix + parameter)
        case .sentenceTransformers(let projection, let head):
            for (module, folder) in [("classifier.", head), ("projection.", projection)] where parameter.hasPrefix(module) {
                return TensorLocation(file: Self.moduleFile(folder ?? "projection"), name: "linear." + parameter.dropFirst(module.count))
            }
            return TensorLocation(file: Self.mainFile, name: parameter)
        }
    }

    /// The parameter stored at `location`, or nil when it is not one (position ids, another layout's tensor).
    public func parameter(at location: TensorLocation) -> String? {
        switch self {
        case .transformers(let prefix):
            guard location.file == Self.mainFile else { return nil }
            if Self.isTopLevel(location.name) { return location.name }
            guard location.name.hasPrefix(prefix) else { return nil }
            let name = String(location.name.dropFirst(prefix.count))
            return Self.isTopLevel(name) ? nil : name
        case .sentenceTransformers(let projection, let head):
            for (module, folder) in [("classifier.", head), ("projection.", projection)] where location.file == folder.map(Self.moduleFile) {
                return location.name.hasPrefix("linear.") ? module + location.name.dropFirst("linear.".count) : nil
            }
            guard location.file == Self.mainFile, !Self.isTopLevel(location.name) else { return nil }
            return location.name
        }
    }
}
