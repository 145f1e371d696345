import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// Where a model's files come from: a folder on disk (safetensors memory-mapped) or files in
/// memory (a checkpoint broadcast from rank 0).
public protocol ModelFileSource {
    /// For error messages: the folder, or "checkpoint".
    var name: String { get }
    func data(_ relativePath: String) -> Data?
    func safetensors(_ relativePath: String) throws -> SafetensorsFile?
}

public struct FolderSource: ModelFileSource {
    public let folder: String
    public init(_ folder: String) { self.folder = folder }
    public var name: String { folder }
    public func data(_ relativePath: String) -> Data? { FileManager.default.contents(atPath: "\(folder)/\(relativePath)") }
    public func safetensors(_ relativePath: String) throws -> SafetensorsFile? {
        let path = "\(folder)/\(relativePath)"
        return FileManager.default.fileExists(atPath: path) ? try SafetensorsFile(path: path) : nil
    }
}

public struct MemorySource: ModelFileSource {
    public let files: [String: Data]
    public let name: String
    public init(_ files: [String: Data], name: String) { self.files = files; self.name = name }
    public func data(_ relativePath: String) -> Data? { files[relativePath] }
    public func safetensors(_ relativePath: String) throws -> SafetensorsFile? {
        try files[relativePath].map { try SafetensorsFile(data: $0, path: "\(name)/\(relativePath)") }
    }
}

/// A tensor a folder holds that the model does not train but that is written back (the base
/// model's pooler when pooling is mean), under its parameter-style name.
public struct PassthroughTensor: Sendable {
    public let name: String
    public let shape: [Int]
    public let values: [Float]
}

/// A model and the rest of its folder: the tokenizer, the files carried into checkpoints and
/// exports, the token limit it was trained with.
public final class ModelBundle {
    /// The model as built, by family: the readers and writers of each family's folders use its
    /// concrete type; everything else uses `model`.
    public enum Built {
        case mlp(MLP)
        case bert(BertModel)
        case decoder(DecoderModel)
    }
    public let built: Built
    public var model: FineTunableModel {
        switch built {
        case .mlp(let m): return m
        case .bert(let m): return m
        case .decoder(let m): return m
        }
    }
    public let description: ModelDescription
    /// Text models: the longest input in tokens ([CLS] and [SEP] included).
    public var maxLength: Int?
    public var passthrough: [PassthroughTensor] = []
    /// The model folder a LoRA run started from: a PEFT adapter's base_model_name_or_path.
    public var baseModelPath: String? = nil

    init(_ built: Built, description: ModelDescription, maxLength: Int?) {
        self.built = built; self.description = description; self.maxLength = maxLength
    }

    /// The BERT model, for the BERT folder readers and writers (nil for another family).
    var bertModel: BertModel? {
        if case .bert(let m) = built { return m }
        return nil
    }

    public var bert: EncoderDescription? {
        if case .bert(let b) = description.kind { return b }
        return nil
    }
    public var tokenizer: TextTokenizer? { bert?.tokenizer ?? decoder?.tokenizer.bpe }

    /// A decoder's description (config, tokenizer, chat template), nil for another family.
    public var decoder: DecoderDescription? {
        if case .decoder(let d) = description.kind { return d }
        return nil
    }
    public var decoderModel: DecoderModel? {
        if case .decoder(let m) = built { return m }
        return nil
    }

    /// Sentence embeddings [B][C] of a text model's batch as sentence-transformers computes them:
    /// the pooled output, as unit vectors when the folder's modules.json has a Normalize module.
    public func sentenceEmbeddings(_ batch: Batch) -> [[Float]] {
        guard let model = bertModel else { return [] }
        let pooled = model.pooledOutput(batch)
        guard bert?.normalizesEmbeddings == true else { return pooled }
        return pooled.map { v in
            let norm = Float(v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
            // sentence-transformers' F.normalize: divides by max(norm, 1e-12).
            return v.map { $0 / max(norm, 1e-12) }
        }
    }

    /// A masked-language model masks its inputs as train, eval and bench ask (the special tokens
    /// from the tokenizer); returns false for any other model.
    @discardableResult
    public func enableMasking(probability: Double, wholeWord: Bool) throws -> Bool {
        guard model.task == .maskedLanguageModel, let tokenizer, let encoder = model as? TextModel else { return false }
        encoder.masking = try tokenizer.maskingSettings(probability: probability, wholeWord: wholeWord, vocabularySize: encoder.vocabularySize)
        return true
    }
}

/// What a model folder holds, read without its weights: enough to build the model once the task
/// is known (a folder without a trained head takes its labels from the training data).
public struct ModelDescription {
    public enum Kind {
        case mlp(MLPConfig)
        case bert(EncoderDescription)
        case decoder(DecoderDescription)
    }
    public let source: ModelFileSource
    public let kind: Kind
    /// The head's task when the folder has one; nil when the head is to be created.
    public var task: TaskKind?
    /// A PEFT adapter folder given as the model: its adapters (and head) go on this base.
    public var adapter: PeftAdapter? = nil

    /// The task of the head the folder holds, for eval and predict: `task`, or masked-language
    /// modelling for a BertForMaskedLM folder (which `train` on labelled data takes as a base encoder).
    public var headTask: TaskKind? {
        if task == nil, case .bert(let b) = kind, b.hasMaskedLMHead { return .maskedLanguageModel }
        if case .decoder = kind { return .causalLanguageModel }
        return task
    }

    public var inputKind: InputKind {
        switch kind {
        case .mlp(let c): return .features(width: c.inputSize)
        case .bert, .decoder: return .text
        }
    }

    /// The small files (config with everything resolved, tokenizer) that let another rank describe
    /// the same model without the folder.
    public func resolvedFiles() throws -> [String: Data] {
        switch kind {
        case .mlp(let c): return ["config.json": try prettyJSON(c)]
        case .bert(let b):
            var files = try b.resolvedFiles(task: task)
            // The adapter's settings travel with the description (its weights are read by rank 0).
            if let adapter { files["adapter_config.json"] = FileManager.default.contents(atPath: "\(adapter.path)/adapter_config.json") }
            return files
        case .decoder(let d): return try d.resolvedFiles()
        }
    }

    /// Builds the model (weights zero) for `task`, with LoRA adapters when `lora` is given (BERT),
    /// or `decoderLoRA` (a decoder; else the adapters its checkpoint names).
    public func build(task: TaskKind, lora: LoRASettings? = nil, decoderLoRA: DecoderLoRA? = nil) -> ModelBundle {
        let lora = lora ?? adapter?.lora
        switch kind {
        case .mlp(let c):
            var config = c
            config.task = task
            return ModelBundle(.mlp(MLP(config: config)), description: self, maxLength: nil)
        case .bert(let b):
            return ModelBundle(.bert(BertModel(config: b.config, pooling: b.pooling, task: task, lora: lora, projection: b.projection)), description: self, maxLength: b.maxLength)
        case .decoder(let d):
            return ModelBundle(.decoder(DecoderModel(config: d.config, lora: decoderLoRA ?? d.lora)), description: self, maxLength: d.maxLength)
        }
    }

    /// Reads the weights into `bundle` (built from this description). A BERT head or pooler the
    /// folder lacks is initialised from `seed`.
    public func loadWeights(into bundle: ModelBundle, seed: UInt64) throws {
        switch kind {
        case .mlp:
            guard let file = try source.safetensors("model.safetensors") else {
                throw FineTuneError("\(source.name)/model.safetensors: missing")
            }
            try ModelFolder.loadWeights(into: bundle.model.layout, parameters: bundle.model.parameters, from: file)
        case .bert(let b):
            try b.loadWeights(into: bundle, from: source, seed: seed)
            if let adapter, let model = bundle.bertModel {
                try adapter.load(into: model)
                bundle.baseModelPath = adapter.basePath
            }
        case .decoder(let d):
            let model = bundle.decoderModel!
            model.initializeAdapters(seed: seed)
            try d.loadWeights(into: model)
        }
        try ModelFolder.requireFiniteWeights(bundle.model, source: source.name)
    }
}

/// Loading model folders.
public enum ModelFolder {
    /// The model types this program reads.
    public static let supportedModelTypes = EncoderFamily.allCases.map(\.rawValue) + DecoderConfig.modelTypes + ["mlp"]

    private struct ModelType: Decodable {
        var modelType: String?
        enum CodingKeys: String, CodingKey { case modelType = "model_type" }
    }

    /// Describes a model folder (or a checkpoint's files). `pooling` asks for a pooling for a BERT
    /// folder without a head; nil takes the folder's own (cls for BertForSequenceClassification,
    /// the sentence-transformers pooling, else mean).
    public static func describe(_ source: ModelFileSource, pooling: Pooling? = nil) throws -> ModelDescription {
        // A GGUF file is a decoder (llama.cpp's single-file format).
        if let folder = source as? FolderSource, folder.folder.hasSuffix(".gguf") {
            guard FileManager.default.fileExists(atPath: folder.folder) else { throw FineTuneError("\(folder.folder): no such file") }
            return ModelDescription(source: source, kind: .decoder(try DecoderDescription.describe(gguf: folder.folder)), task: .causalLanguageModel)
        }
        if let folder = source as? FolderSource {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder.folder, isDirectory: &isDirectory) else {
                throw FineTuneError("\(folder.folder): model folder does not exist")
            }
            guard isDirectory.boolValue else {
                throw FineTuneError("\(folder.folder): is a file; a model is a folder (the one holding config.json and model.safetensors)")
            }
            // A PEFT adapter folder: its base, described, with the adapter on top.
            if source.data("config.json") == nil, let adapter = try PeftAdapter.read(folder.folder) {
                var description = try describe(FolderSource(adapter.basePath), pooling: pooling ?? adapter.pooling)
                guard case .bert(let base) = description.kind else {
                    throw FineTuneError("\(folder.folder): a LoRA adapter needs a text encoder base; \(adapter.basePath) is not one")
                }
                // Read again with the base's family: its module names decide which layers the targets are.
                let adapter = try PeftAdapter.read(folder.folder, family: base.config.family)!
                if description.task == nil, let outputs = adapter.classifierOutputs {
                    // A base without a head names no labels: those of the merged folder the adapter was
                    // exported in (best/adapter, final/adapter), else transformers' LABEL_i.
                    description.task = .classification(labels: adapter.labelsBeside(count: outputs) ?? (0..<outputs).map { "LABEL_\($0)" })
                }
                description.adapter = adapter
                return description
            }
        }
        let path = "\(source.name)/config.json"
        guard let data = source.data("config.json") else {
            throw FineTuneError("\(path): missing (a model folder holds config.json and model.safetensors)")
        }
        let (type, _) = try decodeConfig(ModelType.self, from: data, path: path)
        switch type.modelType {
        case "mlp"?:
            let config = try MLPConfig.decode(data, path: path)
            return ModelDescription(source: source, kind: .mlp(config), task: config.task)
        case let type? where EncoderFamily(rawValue: type) != nil:
            let (description, task) = try EncoderDescription.describe(source, config: EncoderConfig.decode(data, path: path), path: path,
                                                                   requestedPooling: pooling)
            return ModelDescription(source: source, kind: .bert(description), task: task)
        case let type? where DecoderConfig.modelTypes.contains(type):
            return ModelDescription(source: source, kind: .decoder(try DecoderDescription.describe(source, configData: data, path: path)), task: .causalLanguageModel)
        case nil:
            throw FineTuneError("\(path): missing \"model_type\"")
        case let other?:
            throw FineTuneError("\(path): model_type \"\(other)\" is not supported; supported: \(supportedModelTypes.joined(separator: ", ")) (BERT-architecture checkpoints such as BERT and MiniLM use \"bert\")")
        }
    }

    /// Loads a complete model (for eval and predict): the folder must hold a trained head.
    public static func load(_ folder: String) throws -> ModelBundle {
        let description = try describe(FolderSource(folder))
        // A sentence-transformers folder without a head is a sentence-embedding model.
        var sentenceEmbeddings = false
        if case .bert(let b) = description.kind, b.fromSentenceTransformers, description.adapter == nil { sentenceEmbeddings = true }
        guard let task = description.headTask ?? (sentenceEmbeddings ? .embedding : nil) else {
            if description.adapter != nil {
                throw FineTuneError("\(folder): a FEATURE_EXTRACTION adapter carries no head (a mean-pooling run keeps it in the merged folder's 2_Dense): evaluate the merged folder beside it")
            }
            throw FineTuneError("\(folder): has no classification, regression or masked-language head (a base model), and is not a sentence-transformers folder; fine-tune it with `train` first")
        }
        let bundle = description.build(task: task)
        try description.loadWeights(into: bundle, seed: 0)
        return bundle
    }

    /// Reads every tensor of `layout` from `file` under its own name; missing, misshapen or unused tensors are errors.
    /// A NaN or infinity among the weights read is the folder's fault, not the learning rate's:
    /// said before training starts, naming the tensor.
    static func requireFiniteWeights(_ model: FineTunableModel, source: String) throws {
        let values = model.parameters.buffer
        guard let bad = values.firstIndex(where: { !$0.isFinite }),
              let tensor = model.layout.tensors.first(where: { $0.range.contains(bad) }) else { return }
        let value = values[bad]
        throw FineTuneError("\(source): tensor \(tensor.name) holds \(value.isNaN ? "NaN" : value > 0 ? "Infinity" : "-Infinity") " +
                            "at element \(bad - tensor.offset) of shape \(tensor.shape); the weights are damaged (a diverged run or a bad conversion), so they cannot be fine-tuned")
    }

    public static func loadWeights(into layout: ParameterLayout, parameters: FlatBuffer<Float>, from file: SafetensorsFile) throws {
        var unused = Set(file.entries.keys)
        for spec in layout.tensors {
            guard let entry = file.entries[spec.name] else {
                throw FineTuneError("\(file.path): missing tensor \(spec.name) (shape \(spec.shape))")
            }
            guard entry.shape == spec.shape else {
                throw FineTuneError("\(file.path): tensor \(spec.name) has shape \(entry.shape), the model needs \(spec.shape)")
            }
            try file.read(entry, into: parameters.at(spec))
            unused.remove(spec.name)
        }
        guard unused.isEmpty else {
            throw FineTuneError("\(file.path): tensors the model does not use: \(unused.sorted().joined(separator: ", "))")
        }
    }
}
