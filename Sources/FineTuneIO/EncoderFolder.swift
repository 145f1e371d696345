import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// How a BERT-family folder is laid out. Three kinds are read:
/// - a base encoder (BertModel: `embeddings.*`, `encoder.*`, maybe `pooler.*`), possibly a
///   sentence-transformers folder (modules.json, 1_Pooling/, maybe a Dense module of the model's
///   own, and a Dense head when exported by us);
/// - BertForSequenceClassification (`bert.`-prefixed encoder and pooler, `classifier.*`, id2label);
/// - this program's own layout (checkpoints): config.json with a "finetune_dist" block.
public struct EncoderDescription {
    public enum Head { case none, root, dense }
    public let config: EncoderConfig
    public let pooling: Pooling
    public let head: Head
    /// Where each parameter is in the folder.
    public let names: EncoderTensorNames
    public let tokenizer: TextTokenizer
    /// Tokenizer files carried into checkpoints and exports (vocab.txt, tokenizer_config.json, ...).
    public let tokenizerFiles: [String: Data]
    public let maxLength: Int
    /// The folder was (or the run started from) a sentence-transformers folder.
    public var fromSentenceTransformers = false
    /// Its modules.json ends in a Normalize module (its folder may be absent: it has no
    /// parameters): sentence embeddings are unit vectors, and encoder exports keep the module.
    public var normalizesEmbeddings = false
    /// The folder holds BertForMaskedLM's head (`cls.predictions.*`: an adaptation's export,
    /// bert-base-uncased): eval and predict use it; train on labelled data replaces it.
    public var hasMaskedLMHead = false
    /// What the user should know about the folder, though it loads (rank 0 prints these).
    public var notices: [String] = []
    /// A sentence-transformers Dense module of the model's own between pooling and the classifier.
    public var projection: EmbeddingProjection? = nil

    /// This program's block in its own config.json.
    struct OwnBlock: Codable {
        var pooling: Pooling
        var hasHead: Bool
        var maxLength: Int?
        /// The head is BertForMaskedLM's (a checkpoint of `train --task mlm`).
        var maskedLM: Bool?
        /// A sentence-embedding model (a checkpoint of `train --task embedding`): no head beyond the pooling.
        var embedding: Bool?
        /// The run started from a sentence-transformers folder (its exports stay loadable there).
        var sentenceTransformers: Bool?
        /// ... with a Normalize module.
        var normalize: Bool?
        /// ... with a Dense module of its own after the pooling (its tensors are `projection.*`).
        var projection: EmbeddingProjection?
        enum CodingKeys: String, CodingKey {
            case pooling, hasHead = "has_head", maxLength = "max_length", maskedLM = "masked_lm", sentenceTransformers = "sentence_transformers"
            case normalize, projection, embedding
        }
    }
    static let ownBlockKey = "finetune_dist"
    /// The small files carried into checkpoints and exports: the tokenizer's, and
    /// sentence-transformers' settings (prompts, similarity function).
    static let carriedFileNames = WordPieceTokenizer.fileNames + [sentenceTransformersConfigFile]
    static let sentenceTransformersConfigFile = "config_sentence_transformers.json"

    /// sentence-transformers' modules.json entries and pooling config (the fields read here).
    struct SentenceModule: Codable { var idx: Int?; var name: String?; var path: String; var type: String }
    struct PoolingConfig: Decodable {
        var poolingMode: String?, meanTokens: Bool?, clsToken: Bool?
        enum CodingKeys: String, CodingKey { case poolingMode = "pooling_mode", meanTokens = "pooling_mode_mean_tokens", clsToken = "pooling_mode_cls_token" }
    }
    struct DenseConfig: Decodable {
        var inFeatures: Int, outFeatures: Int, bias: Bool?, activationFunction: String?
        enum CodingKeys: String, CodingKey {
            case inFeatures = "in_features", outFeatures = "out_features", bias, activationFunction = "activation_function"
        }
    }
    struct SentenceBertConfig: Decodable {
        var maxSeqLength: Int?
        enum CodingKeys: String, CodingKey { case maxSeqLength = "max_seq_length" }
    }

    static func describe(_ source: ModelFileSource, config: EncoderConfig, path: String,
                         requestedPooling: Pooling?) throws -> (EncoderDescription, TaskKind?) {
        var tokenizerFiles: [String: Data] = [:]
        for name in carriedFileNames { if let d = source.data(name) { tokenizerFiles[name] = d } }
        let tokenizer = try WordPieceTokenizer.load(files: tokenizerFiles, source: source.name)
        guard tokenizer.tokens.count <= config.vocabSize else {
            throw FineTuneError("\(source.name): the vocabulary has \(tokenizer.tokens.count) tokens, more than vocab_size \(config.vocabSize)")
        }
        // A post-processor that gives a pair's second text type 1 does not fit RoBERTa's one-row table.
        if config.family.hasTokenTypes, let highest = tokenizer.encode("a", pair: "b", maxLength: nil).typeIDs.max(), highest >= config.typeVocabSize {
            throw FineTuneError("\(source.name)/tokenizer.json: its post-processor gives token type \(highest), but type_vocab_size is \(config.typeVocabSize)")
        }
        var maxLength = config.maxSequenceLength
        if let data = source.data("sentence_bert_config.json"),
           let n = (try? decodeJSON(SentenceBertConfig.self, from: data))?.maxSeqLength {
            maxLength = min(maxLength, n)
        }
        // The length a tokenizer truncates to by default (this program's exports write the trained one).
        if let n = modelMaxLength(source.data("tokenizer_config.json")) { maxLength = min(maxLength, n) }
        let pooling: Pooling, head: Head, names: EncoderTensorNames
        var maskedLM = false, embedding = false, fromSentenceTransformers = source.data("modules.json") != nil, hasMaskedLMHead = false
        var normalize = false
        var projection: EmbeddingProjection? = nil
        if let block = config.raw[ownBlockKey] {
            let own: OwnBlock
            do { own = try JSONValueDecoder().decode(OwnBlock.self, from: block) } catch {
                throw FineTuneError("\(path): \"\(ownBlockKey)\": \(userMessage(for: error))")
            }
            pooling = own.pooling
            head = own.hasHead ? .root : .none
            maskedLM = own.maskedLM ?? false
            embedding = own.embedding ?? false
            hasMaskedLMHead = maskedLM
            fromSentenceTransformers = own.sentenceTransformers ?? false
            normalize = own.normalize ?? false
            projection = own.projection
            names = .transformers(prefix: "")
            if let n = own.maxLength { maxLength = n }
        } else {
            let tensorNames = Set(try source.safetensors(EncoderTensorNames.mainFile)?.names ?? [])
            let family = config.family
            let prefix = tensorNames.contains(family.basePrefix + "embeddings.word_embeddings.weight") ? family.basePrefix : ""
            hasMaskedLMHead = tensorNames.contains(family.maskedLMModules.dense + ".weight")
            var stPooling: Pooling? = nil
            var denseModules: [(path: String, config: DenseConfig)] = []
            var moduleCount = 0
            if let data = source.data("modules.json") {
                let modules: [SentenceModule]
                do { modules = try decodeJSON([SentenceModule].self, from: data) } catch {
                    throw FineTuneError("\(source.name)/modules.json: \(userMessage(for: error))")
                }
                for module in modules {
                    // Another module would change the embeddings: refused rather than skipped.
                    let kind = module.type.split(separator: ".").last.map(String.init) ?? module.type
                    guard ["Transformer", "Pooling", "Dense", "Normalize"].contains(kind) else {
                        throw FineTuneError("\(source.name)/modules.json: the module \(module.type) is not supported (Transformer, Pooling, Dense and Normalize are)")
                    }
                    if module.type.hasSuffix("Pooling"), let d = source.data("\(module.path)/config.json") {
                        let p: PoolingConfig
                        do { p = try decodeJSON(PoolingConfig.self, from: d) } catch {
                            throw FineTuneError("\(source.name)/\(module.path)/config.json: \(userMessage(for: error))")
                        }
                        // sentence-transformers 6 writes "pooling_mode"; earlier versions one flag per mode.
                        if p.poolingMode == "mean" || p.meanTokens == true { stPooling = .mean }
                        else if p.poolingMode == "cls" || p.clsToken == true { stPooling = .cls }
                        else { throw FineTuneError("\(source.name)/\(module.path)/config.json: only mean or cls pooling is supported") }
                    }
                    if module.type.hasSuffix("Dense") {
                        let place = "\(source.name)/\(module.path)/config.json"
                        guard let d = source.data("\(module.path)/config.json") else { throw FineTuneError("\(place): missing (modules.json lists a Dense module)") }
                        do { denseModules.append((module.path, try decodeJSON(DenseConfig.self, from: d))) } catch {
                            throw FineTuneError("\(place): \(userMessage(for: error))")
                        }
                    }
                    if module.type.hasSuffix("Normalize") { normalize = true }
                    moduleCount += 1
                }
            }
            // The last Dense module is a classifier this program wrote when it has the config's
            // labels as outputs and no activation; any other is the model's own projection.
            var headFolder: String? = nil
            if let last = denseModules.last, last.config.activationFunction?.hasSuffix(".Identity") ?? false,
               last.config.outFeatures == (config.problemType == "regression" ? 1 : config.labels?.count ?? -1) {
                headFolder = last.path
                denseModules.removeLast()
            }
            var projectionFolder: String? = nil
            if let own = denseModules.first {
                let place = "\(source.name)/\(own.path)/config.json"
                guard denseModules.count == 1 else {
                    throw FineTuneError("\(source.name)/modules.json: \(denseModules.count) Dense modules (\(denseModules.map(\.path).joined(separator: ", "))); one after the pooling is read")
                }
                guard own.config.inFeatures == config.hiddenSize else {
                    throw FineTuneError("\(place): in_features \(own.config.inFeatures), but the encoder's hidden size is \(config.hiddenSize)")
                }
                let name = own.config.activationFunction ?? EncoderFolder.denseActivations[.identity]!
                guard let activation = EncoderFolder.denseActivations.first(where: { $0.value.split(separator: ".").last == name.split(separator: ".").last })?.key else {
                    throw FineTuneError("\(place): activation_function \(own.config.activationFunction ?? "") is not supported (Identity, Tanh and ReLU are)")
                }
                guard (stPooling ?? .mean) == .mean && requestedPooling != .cls else {
                    throw FineTuneError("\(place): a Dense module is read after mean pooling only")
                }
                projection = EmbeddingProjection(outputs: own.config.outFeatures, bias: own.config.bias ?? true, activation: activation)
                projectionFolder = own.path
            }
            if tensorNames.contains(family.clsHeadModules.classifier + ".weight") {
                head = .root
                if requestedPooling == .mean {
                    throw FineTuneError("\(source.name): a sequence classifier with a trained [CLS] pooler and head; it needs --pooling cls")
                }
                pooling = .cls
                names = .transformers(prefix: prefix)
            } else if let headFolder {
                head = .dense
                pooling = stPooling ?? .mean
                if let requestedPooling, requestedPooling != pooling {
                    throw FineTuneError("\(source.name): a sentence-transformers model with a trained head on \(pooling.rawValue) pooling; it needs --pooling \(pooling.rawValue)")
                }
                names = .sentenceTransformers(projection: projectionFolder, head: headFolder)
            } else if let projectionFolder {
                head = .none
                pooling = .mean
                names = .sentenceTransformers(projection: projectionFolder, head: "\(moduleCount)_Dense")
            } else {
                head = .none
                pooling = requestedPooling ?? stPooling ?? .mean
                names = .transformers(prefix: prefix)
            }
        }
        var task: TaskKind? = nil
        if maskedLM {
            task = .maskedLanguageModel
        } else if embedding {
            task = .embedding
        } else if head != .none {
            if config.problemType == "regression" {
                task = .regression
            } else {
                guard let labels = config.labels, labels.count >= 2 else {
                    throw FineTuneError("\(path): the model has a classification head but no \"id2label\" with at least two labels")
                }
                task = .classification(labels: labels)
            }
        }
        var description = EncoderDescription(config: config, pooling: pooling, head: head, names: names, tokenizer: tokenizer,
                                          tokenizerFiles: tokenizerFiles, maxLength: maxLength)
        description.fromSentenceTransformers = fromSentenceTransformers
        description.normalizesEmbeddings = normalize
        description.hasMaskedLMHead = hasMaskedLMHead
        description.projection = projection
        if tokenizer.tokens.count < config.vocabSize {
            // transformers accepts this too (BERT checkpoints pad vocab_size), but a vocabulary file cut
            // short (a failed copy) also looks like this.
            description.notices.append("note: \(source.name): the vocabulary has \(tokenizer.tokens.count) tokens, fewer than vocab_size " +
                                       "\(config.vocabSize); the embeddings of ids \(tokenizer.tokens.count)...\(config.vocabSize - 1) are never used " +
                                       "(harmless if the model was made so, a sign of a truncated vocab.txt if not)")
        }
        return (description, task)
    }

    /// tokenizer_config.json's model_max_length when it is a usable token count (some folders hold
    /// a 1e30 sentinel for "no limit").
    static func modelMaxLength(_ data: Data?) -> Int? {
        guard let data, let value = (try? StrictJSON.parse(data))?.object?["model_max_length"]?.number,
              value >= 2, value < 1e9 else { return nil }
        return Int(value)
    }

    /// config.json in this program's layout plus the tokenizer files.
    func resolvedFiles(task: TaskKind?) throws -> [String: Data] {
        var files = tokenizerFiles
        files["config.json"] = try EncoderFolder.ownConfig(config, pooling: pooling, task: task, maxLength: maxLength,
                                                    sentenceTransformers: fromSentenceTransformers, normalize: normalizesEmbeddings, projection: projection)
        return files
    }

    func loadWeights(into bundle: ModelBundle, from source: ModelFileSource, seed: UInt64) throws {
        guard let model = bundle.bertModel else { preconditionFailure("a BERT description builds a BERT model") }
        guard let main = try source.safetensors(EncoderTensorNames.mainFile) else {
            throw FineTuneError("\(source.name)/\(EncoderTensorNames.mainFile): missing")
        }
        if projection != nil && model.task == .maskedLanguageModel {
            throw FineTuneError("\(source.name): masked-language modelling of a sentence-transformers model with a Dense module is not supported " +
                                "(its export would lose the module); adapt the encoder alone, or train --task classification/regression")
        }
        var files = [EncoderTensorNames.mainFile: main]
        var moduleFiles: [String] = []
        if case .sentenceTransformers(let projectionFolder, let headFolder) = names {
            moduleFiles = (projectionFolder.map { [$0] } ?? []) + (head == .dense ? [headFolder] : [])
        }
        for folder in moduleFiles {
            let path = EncoderTensorNames.moduleFile(folder)
            guard let dense = try source.safetensors(path) else {
                throw FineTuneError("\(source.name)/\(path): missing (modules.json lists a Dense module there)")
            }
            files[path] = dense
        }
        var unused = Set(files.flatMap { file, contents in contents.names.map { TensorLocation(file: file, name: $0) } })
        var freshPooler = false, freshAdapters = false, freshHead = false
        let family = config.family
        for spec in model.layout.tensors {
            let location = names.location(of: spec.name)
            let file = files[location.file]
            guard let file, let entry = file.entries[location.name] else {
                // LoRA on a model without adapters (a checkpoint of a LoRA run has them).
                if spec.name.contains(".lora_") { freshAdapters = true; continue }
                // The dense layer of cls pooling: BERT's pooler (a base model may lack it), MPNet's and
                // RoBERTa's classifier.dense, DistilBERT's pre_classifier (always part of the fresh head).
                if spec.name.hasPrefix(family.clsHeadModules.dense + ".") && head == .none { freshPooler = true; continue }
                // A base encoder gets a fresh head: a classifier, or the masked-LM head.
                if EncoderTensorNames.isTopLevel(spec.name) && head == .none { freshHead = true; continue }
                throw FineTuneError("\(file?.path ?? "\(source.name)/\(location.file)"): missing tensor \(location.name) (shape \(spec.shape))")
            }
            guard entry.shape == spec.shape else {
                throw FineTuneError("\(file.path): tensor \(location.name) has shape \(entry.shape), the model needs \(spec.shape)")
            }
            try file.read(entry, into: model.parameters.at(spec))
            unused.remove(location)
        }
        if freshHead { model.initializeHead(seed: seed, includePooler: freshPooler) }
        if freshAdapters { model.initializeAdapters(seed: seed) }
        // Left alone on purpose: position ids (I64 buffers, not weights); the base model's pooler
        // when pooling is mean (carried through to the exported folder unchanged).
        bundle.passthrough = []
        for location in unused.sorted(by: { $0.name < $1.name }) {
            let parameter = names.parameter(at: location)
            if parameter == "embeddings.position_ids" { unused.remove(location); continue }
            // Pre-training heads (BertForMaskedLM's cls.predictions, BertForPreTraining's
            // cls.seq_relationship) when fine-tuning something else, and a masked-LM decoder's weight
            // (lm_head.decoder.*, vocab_projector.weight: tied to the word embeddings, never a
            // tensor of its own); a sentence-transformers Dense head when adapting the encoder:
            // dropped, as transformers drops them.
            if let parameter, family.pretrainingHeadPrefixes.contains(where: parameter.hasPrefix), model.layout.spec(parameter) == nil {
                unused.remove(location); continue
            }
            // MPNet's and RoBERTa's base pooler under cls pooling: their ...ForSequenceClassification
            // has no pooler (the head has its own dense layer) and transformers drops it too.
            if let parameter, parameter.hasPrefix("pooler."), !family.clsHeadUsesPooler, model.pooling == .cls, model.task != .embedding {
                unused.remove(location); continue
            }
            if model.task == .maskedLanguageModel && location.file == names.headFile { unused.remove(location); continue }
            if let parameter, parameter.hasPrefix("pooler."), model.pooling == .mean || model.task == .embedding, let entry = files[location.file]!.entries[location.name] {
                bundle.passthrough.append(PassthroughTensor(name: parameter, shape: entry.shape, values: try files[location.file]!.floats(location.name)))
                unused.remove(location)
            }
        }
        guard unused.isEmpty else {
            throw FineTuneError("\(source.name): tensors the model does not use: \(unused.map(\.name).sorted().joined(separator: ", "))")
        }
    }
}

/// Writing BERT models: this program's own layout (checkpoints) and the layouts transformers and
/// sentence-transformers load.
enum EncoderFolder {
    /// sentence-transformers' Dense activation_function names (read by their last component).
    static let denseActivations: [EmbeddingProjection.Activation: String] = [
        .identity: "torch.nn.modules.linear.Identity", .tanh: "torch.nn.modules.activation.Tanh", .relu: "torch.nn.modules.activation.ReLU",
    ]

    static func ownConfig(_ config: EncoderConfig, pooling: Pooling, task: TaskKind?, maxLength: Int, sentenceTransformers: Bool,
                          normalize: Bool, projection: EmbeddingProjection?) throws -> Data {
        let block = EncoderDescription.OwnBlock(pooling: pooling, hasHead: task != nil && task != .embedding, maxLength: maxLength,
                                             maskedLM: task == .maskedLanguageModel ? true : nil, embedding: task == .embedding ? true : nil,
                                             sentenceTransformers: sentenceTransformers ? true : nil, normalize: normalize ? true : nil,
                                             projection: projection)
        return try prettyJSON(config.object(task: task, extra: [EncoderDescription.ownBlockKey: try JSONValue(encoding: block)]))
    }

    /// The config others read: ours without this program's block.
    static func exportConfig(_ config: EncoderConfig, task: TaskKind, architecture: String) throws -> Data {
        var o = config.object(task: task, extra: ["architectures": .array([.string(architecture)])])
        o.removeValue(forKey: EncoderDescription.ownBlockKey)
        return try prettyJSON(o)
    }

    /// The safetensors files of `bundle`'s parameters (and passthrough tensors) in layout `names`.
    /// `merged`: LoRA's adapters folded into their base weights (W + scale·B·A), not written themselves.
    /// `passthrough`: with the tensors carried through unchanged (a base model's pooler).
    static func tensorFiles(_ bundle: ModelBundle, names: EncoderTensorNames, merged: Bool = false, passthrough: Bool = true) throws -> [String: Data] {
        guard let model = bundle.bertModel else { preconditionFailure("BERT tensor files of a BERT model") }
        var writers: [String: SafetensorsWriter] = [:]
        func add(_ parameter: String, shape: [Int], _ values: UnsafeBufferPointer<Float>) {
            let location = names.location(of: parameter)
            writers[location.file, default: { var w = SafetensorsWriter(); w.metadata = ["format": "pt"]; return w }()]
                .add(location.name, shape: shape, floats: values)
        }
        for spec in model.layout.tensors {
            if merged && spec.name.contains(".lora_") { continue }
            if merged, let weight = model.mergedWeight(spec) {
                weight.withUnsafeBufferPointer { add(spec.name, shape: spec.shape, $0) }
            } else {
                add(spec.name, shape: spec.shape, UnsafeBufferPointer(start: model.parameters.at(spec), count: spec.count))
            }
        }
        for t in bundle.passthrough where passthrough { t.values.withUnsafeBufferPointer { add(t.name, shape: t.shape, $0) } }
        return try writers.mapValues { try $0.serialized() }
    }

    static func internalFiles(_ bundle: ModelBundle, model: BertModel) throws -> [String: Data] {
        var files = bundle.bert!.tokenizerFiles
        files["config.json"] = try ownConfig(model.config, pooling: model.pooling, task: model.task, maxLength: bundle.maxLength ?? model.config.maxSequenceLength,
                                         sentenceTransformers: bundle.bert!.fromSentenceTransformers, normalize: bundle.bert!.normalizesEmbeddings,
                                         projection: bundle.bert!.projection)
        files.merge(try tensorFiles(bundle, names: .transformers(prefix: ""))) { _, new in new }
        // A LoRA model's checkpoint says which adapters its tensors are (read back on resume).
        if let lora = model.lora { files["adapter_config.json"] = try peftAdapterConfig(bundle, model: model, lora: lora) }
        return files
    }

    /// cls pooling: a BertForSequenceClassification folder. mean pooling: a sentence-transformers
    /// folder (Transformer, mean Pooling, and the head as a Dense module with identity activation).
    /// Masked-language modelling: a BertForMaskedLM folder, which is also a sentence-transformers
    /// folder (Transformer and Pooling) when the run started from one.
    static func exportFiles(_ bundle: ModelBundle, model: BertModel) throws -> [String: Data] {
        var files = bundle.bert!.tokenizerFiles
        let family = model.config.family
        // The length the model was trained with, where transformers' tokenizer and eval/predict take their default.
        files["tokenizer_config.json"] = tokenizerConfig(files["tokenizer_config.json"], maxLength: bundle.maxLength ?? model.config.maxSequenceLength)
        if model.task == .maskedLanguageModel {
            files["config.json"] = try exportConfig(model.config, task: model.task, architecture: family.maskedLMArchitecture)
            // ...ForMaskedLM has no pooler. BERT's is kept (BertForSequenceClassification, the next
            // fine-tune, starts from it); MPNet's and RoBERTa's classifiers never use theirs, so it
            // is left out, as transformers' save_pretrained leaves it.
            files.merge(try tensorFiles(bundle, names: .transformers(prefix: family.basePrefix), merged: true,
                                        passthrough: family.clsHeadUsesPooler)) { _, new in new }
            if bundle.bert!.fromSentenceTransformers {
                files.merge(try sentenceTransformersFiles(bundle, model: model, dense: false)) { _, new in new }
            }
            return files
        }
        switch model.task == .embedding ? nil : model.pooling {
        case nil:
            // A sentence-embedding model: the encoder, its pooling, its own Dense module and Normalize, as it was read.
            files["config.json"] = try exportConfig(model.config, task: model.task, architecture: family.baseArchitecture)
            files.merge(try tensorFiles(bundle, names: .sentenceTransformers(projection: bundle.bert!.projection == nil ? nil : "2_Dense", head: "3_Dense"),
                                        merged: true)) { _, new in new }
            files.merge(try sentenceTransformersFiles(bundle, model: model, dense: false)) { _, new in new }
        case .cls?:
            files["config.json"] = try exportConfig(model.config, task: model.task, architecture: family.sequenceClassificationArchitecture)
            files.merge(try tensorFiles(bundle, names: .transformers(prefix: family.basePrefix), merged: true)) { _, new in new }
        case .mean?:
            files["config.json"] = try exportConfig(model.config, task: model.task, architecture: family.baseArchitecture)
            let projection = bundle.bert!.projection
            files.merge(try tensorFiles(bundle, names: .sentenceTransformers(projection: projection == nil ? nil : "2_Dense", head: projection == nil ? "2_Dense" : "3_Dense"),
                                        merged: true)) { _, new in new }
            files.merge(try sentenceTransformersFiles(bundle, model: model, dense: true)) { _, new in new }
        }
        if let lora = model.lora {
            for (name, data) in try peftAdapterFiles(bundle, model: model, lora: lora) { files["adapter/" + name] = data }
        }
        return files
    }

    /// tokenizer_config.json with model_max_length set (created with only that when the folder had none).
    static func tokenizerConfig(_ data: Data?, maxLength: Int) -> Data? {
        var object: [String: JSONValue] = [:]
        if let data {
            guard let parsed = (try? StrictJSON.parse(data))?.object else { return data }
            object = parsed
        }
        object["model_max_length"] = .integer(Int64(maxLength))
        return try? prettyJSON(object)
    }

    /// sentence-transformers' module files as version 6 writes them (Tests/Fixtures/tiny-bert/export_reference.json):
    /// the Transformer, the Pooling, the model's own Dense module (as read, trained along) and, with
    /// `dense`, the head as a Dense module with identity activation; without a head, the Normalize
    /// module when the run started from a folder with one. The prompts, default prompt and similarity function of the folder the run started from are kept.
    static func sentenceTransformersFiles(_ bundle: ModelBundle, model: BertModel, dense: Bool) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let C = model.config.hiddenSize
        let json: ([String: JSONValue]) throws -> Data = { try prettyJSON($0) }
        var modules = [
            EncoderDescription.SentenceModule(idx: 0, name: "0", path: "", type: "sentence_transformers.base.modules.transformer.Transformer"),
            EncoderDescription.SentenceModule(idx: 1, name: "1", path: "1_Pooling", type: "sentence_transformers.sentence_transformer.modules.pooling.Pooling"),
        ]
        func addDense(inputs: Int, outputs: Int, bias: Bool, activation: String) throws {
            let index = modules.count
            files["\(index)_Dense/config.json"] = try json(["in_features": .integer(Int64(inputs)), "out_features": .integer(Int64(outputs)),
                                                         "bias": .bool(bias), "activation_function": .string(activation),
                                                         "module_input_name": .string("sentence_embedding"), "module_output_name": .string("sentence_embedding")])
            modules.append(EncoderDescription.SentenceModule(idx: index, name: "\(index)", path: "\(index)_Dense", type: "sentence_transformers.base.modules.dense.Dense"))
        }
        var width = C
        if let projection = bundle.bert!.projection, model.task != .maskedLanguageModel {
            try addDense(inputs: C, outputs: projection.outputs, bias: projection.bias, activation: denseActivations[projection.activation]!)
            width = projection.outputs
        }
        if dense {
            try addDense(inputs: width, outputs: model.task.outputCount, bias: true, activation: denseActivations[.identity]!)
        } else if bundle.bert!.normalizesEmbeddings {
            // No parameters, so no files: sentence-transformers loads it without its folder.
            let index = modules.count
            modules.append(EncoderDescription.SentenceModule(idx: index, name: "\(index)", path: "\(index)_Normalize",
                                                             type: "sentence_transformers.base.modules.normalize.Normalize"))
        }
        files["1_Pooling/config.json"] = try json(["embedding_dimension": .integer(Int64(C)), "pooling_mode": .string(model.pooling.rawValue),
                                               "include_prompt": .bool(true)])
        files["modules.json"] = try prettyJSON(modules)
        files["sentence_bert_config.json"] = try json([
            "max_seq_length": .integer(Int64(bundle.maxLength ?? model.config.maxSequenceLength)),
            "modality_config": .object(["text": .object(["method": .string("forward"), "method_output_name": .string("last_hidden_state")])]),
            "module_output_name": .string("token_embeddings"), "transformer_task": .string("feature-extraction"),
        ])
        var settings: [String: JSONValue] = [
            "__version__": .object(["sentence_transformers": .string("6.2.0")]), "model_type": .string("SentenceTransformer"),
            "prompts": .object(["document": .string(""), "query": .string("")]), "default_prompt_name": .null,
            "similarity_fn_name": .string("cosine"),
        ]
        if let data = bundle.bert!.tokenizerFiles[EncoderDescription.sentenceTransformersConfigFile], let source = (try? StrictJSON.parse(data))?.object {
            for key in ["prompts", "default_prompt_name", "similarity_fn_name"] { if let value = source[key] { settings[key] = value } }
        }
        files[EncoderDescription.sentenceTransformersConfigFile] = try json(settings)
        return files
    }

    /// The adapter alone as PEFT saves it (`PeftModel.save_pretrained`): adapter_config.json and
    /// adapter_model.safetensors with PEFT's names (`base_model.model.` + the module path +
    /// `.lora_A.weight`), the trained head under its own name as modules_to_save. Its base is
    /// the folder the run started from. cls pooling: a SEQ_CLS adapter on BertForSequenceClassification
    /// (head: classifier and bert.pooler); mean pooling: a FEATURE_EXTRACTION adapter on BertModel
    /// (the classifier stays in the merged folder's 2_Dense).
    /// PEFT matches a list of target_modules by name suffix, so "output.dense" would also take
    /// attention.output.dense; then a regular expression (which PEFT matches whole) names exactly the adapted layers.
    static func peftTargetModules(_ targets: [LoRATarget], family: EncoderFamily) -> JSONValue {
        if (family == .bert || family == .roberta) && !targets.contains(.output) { return .array(targets.map { .string($0.rawValue) }) }
        let paths = targets.map { $0.modulePath(in: family).replacingOccurrences(of: ".", with: "\\.") }
        let layers = family.layerPrefix(0).replacingOccurrences(of: "0.", with: "").replacingOccurrences(of: ".", with: "\\.")
        return .string(".*" + layers + #"\d+\.("# + paths.joined(separator: "|") + ")")
    }

    static func peftAdapterFiles(_ bundle: ModelBundle, model: BertModel, lora: LoRASettings) throws -> [String: Data] {
        let cls = model.pooling == .cls && model.task != .embedding
        let prefix = "base_model.model." + (cls ? model.config.family.basePrefix : "")
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "pt"]
        for spec in model.layout.tensors {
            let values = UnsafeBufferPointer(start: model.parameters.at(spec), count: spec.count)
            if spec.name.contains(".lora_") {
                writer.add(prefix + spec.name, shape: spec.shape, floats: values)
            } else if cls && EncoderTensorNames.isTopLevel(spec.name) {
                writer.add("base_model.model." + spec.name, shape: spec.shape, floats: values)
            } else if cls && spec.name.hasPrefix("pooler.") {
                writer.add(prefix + spec.name, shape: spec.shape, floats: values)
            }
        }
        return ["adapter_config.json": try peftAdapterConfig(bundle, model: model, lora: lora), "adapter_model.safetensors": try writer.serialized()]
    }

    /// adapter_config.json of the adapter (also in a LoRA run's checkpoints).
    static func peftAdapterConfig(_ bundle: ModelBundle, model: BertModel, lora: LoRASettings) throws -> Data {
        let cls = model.pooling == .cls && model.task != .embedding
        let config: [String: JSONValue] = [
            "peft_type": .string("LORA"), "task_type": .string(cls ? "SEQ_CLS" : "FEATURE_EXTRACTION"),
            "base_model_name_or_path": .string(bundle.baseModelPath ?? ""), "r": .integer(Int64(lora.rank)),
            "lora_alpha": .double(lora.alpha), "lora_dropout": .double(lora.dropout),
            "target_modules": peftTargetModules(lora.targets, family: model.config.family), "bias": .string("none"),
            "modules_to_save": cls ? .array(model.config.family.clsHeadModulesToSave.map { .string($0) }) : .null,
            "fan_in_fan_out": .bool(false), "inference_mode": .bool(true), "init_lora_weights": .bool(true),
            "use_rslora": .bool(false), "use_dora": .bool(false), "layers_to_transform": .null, "layers_pattern": .null,
            "rank_pattern": .object([:]), "alpha_pattern": .object([:]), "revision": .null,
        ]
        return try prettyJSON(config)
    }
}

/// The files of a model folder, for any model.
public enum ModelFiles {
    /// The files in this program's own format (a loadable model folder): what checkpoints hold.
    public static func internalFiles(_ bundle: ModelBundle) throws -> [String: Data] {
        switch bundle.built {
        case .bert(let bert): return try EncoderFolder.internalFiles(bundle, model: bert)
        case .decoder(let decoder): return try DecoderFolder.internalFiles(bundle, model: decoder)
        case .mlp(let mlp): return try files(of: mlp)
        }
    }

    /// The files as others load them (transformers / sentence-transformers for BERT): best/ and final/.
    public static func exportFiles(_ bundle: ModelBundle) throws -> [String: Data] {
        switch bundle.built {
        case .bert(let bert): return try EncoderFolder.exportFiles(bundle, model: bert)
        case .decoder(let decoder): return try DecoderFolder.exportFiles(bundle, model: decoder)
        case .mlp(let mlp): return try files(of: mlp)
        }
    }

    /// An MLP's folder: config.json and model.safetensors (the same for checkpoints and exports).
    public static func files(of mlp: MLP) throws -> [String: Data] {
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "pt"]
        for spec in mlp.layout.tensors {
            writer.add(spec.name, shape: spec.shape, floats: UnsafeBufferPointer(start: mlp.parameters.at(spec), count: spec.count))
        }
        return ["config.json": try prettyJSON(mlp.config), "model.safetensors": try writer.serialized()]
    }

    /// Writes a model's export files (best/, final/) atomically.
    public static func save(_ bundle: ModelBundle, to folder: String) throws {
        try AtomicFiles.writeFolder(folder, files: exportFiles(bundle))
    }
}
