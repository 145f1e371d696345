import Foundation

/// How a BERT-family folder is laid out, and how its tensors map onto `BertClassifier`.
///
/// Three layouts are read:
/// - a base encoder (BertModel: `embeddings.*`, `encoder.*`, maybe `pooler.*`), possibly a
///   sentence-transformers folder (modules.json, 1_Pooling/, and a 2_Dense/ head when exported by us);
/// - BertForSequenceClassification (`bert.`-prefixed encoder and pooler, `classifier.*`, id2label);
/// - this program's own layout (checkpoints): config.json with a "finetune_dist" block.
public struct BertDescription {
    public enum HeadLocation { case none, root, dense }
    public let config: BertConfig
    public let pooling: Pooling
    public let head: HeadLocation
    /// "bert." for BertForSequenceClassification, "" otherwise.
    public let prefix: String
    public let tokenizer: WordPieceTokenizer
    public let tokenizerFiles: [String: Data]
    public let maxLength: Int

    static let tokenizerFileNames = ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

    static func describe(_ source: ModelFileSource, config object: [String: Any], path: String,
                         requestedPooling: Pooling?) throws -> (BertDescription, TaskKind?) {
        let config = try BertConfig(json: object, path: path)
        var tokenizerFiles: [String: Data] = [:]
        for name in tokenizerFileNames { if let d = source.data(name) { tokenizerFiles[name] = d } }
        let tokenizer = try WordPieceTokenizer.load(files: tokenizerFiles, source: source.name)
        guard tokenizer.tokens.count <= config.vocabSize else {
            throw FineTuneError("\(source.name): the vocabulary has \(tokenizer.tokens.count) tokens, more than vocab_size \(config.vocabSize)")
        }
        var maxLength = config.maxPositions
        if let st = source.data("sentence_bert_config.json"),
           let o = (try? JSONSerialization.jsonObject(with: st)) as? [String: Any], let n = o["max_seq_length"] as? Int {
            maxLength = min(maxLength, n)
        }
        let pooling: Pooling, head: HeadLocation, prefix: String
        if let own = object["finetune_dist"] as? [String: Any] {
            guard let p = (own["pooling"] as? String).flatMap(Pooling.init) else { throw FineTuneError("\(path): finetune_dist.pooling missing") }
            pooling = p
            head = (own["has_head"] as? Bool) == true ? .root : .none
            prefix = ""
            if let n = own["max_length"] as? Int { maxLength = n }
        } else {
            let names = Set(try source.safetensors("model.safetensors")?.names ?? [])
            prefix = names.contains("bert.embeddings.word_embeddings.weight") ? "bert." : ""
            var stPooling: Pooling? = nil
            var dense = false
            if let modules = source.data("modules.json"),
               let list = (try? JSONSerialization.jsonObject(with: modules)) as? [[String: Any]] {
                for module in list {
                    let type = module["type"] as? String ?? "", dir = module["path"] as? String ?? ""
                    if type.hasSuffix("Pooling"), let d = source.data("\(dir)/config.json"),
                       let o = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] {
                        // sentence-transformers 6 writes "pooling_mode"; earlier versions one flag per mode.
                        let mode = o["pooling_mode"] as? String
                        if mode == "mean" || o["pooling_mode_mean_tokens"] as? Bool == true { stPooling = .mean }
                        else if mode == "cls" || o["pooling_mode_cls_token"] as? Bool == true { stPooling = .cls }
                        else { throw FineTuneError("\(source.name)/\(dir)/config.json: only mean or cls pooling is supported") }
                    }
                    if type.hasSuffix("Dense") && dir == "2_Dense" { dense = true }
                }
            }
            if names.contains("classifier.weight") {
                head = .root
                if requestedPooling == .mean {
                    throw FineTuneError("\(source.name): a sequence classifier with a trained [CLS] pooler and head; it needs --pooling cls")
                }
                pooling = .cls
            } else if dense {
                head = .dense
                pooling = stPooling ?? .mean
                if let requestedPooling, requestedPooling != pooling {
                    throw FineTuneError("\(source.name): a sentence-transformers model with a trained head on \(pooling.rawValue) pooling; it needs --pooling \(pooling.rawValue)")
                }
            } else {
                head = .none
                pooling = requestedPooling ?? stPooling ?? .mean
            }
        }
        var task: TaskKind? = nil
        if head != .none {
            if (object["problem_type"] as? String) == "regression" {
                task = .regression
            } else {
                guard let labels = try BertConfig.labels(in: object, path: path), labels.count >= 2 else {
                    throw FineTuneError("\(path): the model has a classification head but no \"id2label\" with at least two labels")
                }
                task = .classification(labels: labels)
            }
        }
        return (BertDescription(config: config, pooling: pooling, head: head, prefix: prefix, tokenizer: tokenizer,
                                tokenizerFiles: tokenizerFiles, maxLength: maxLength), task)
    }

    /// config.json in this program's layout (with the "finetune_dist" block) plus the tokenizer files.
    func resolvedFiles(task: TaskKind?) -> [String: Data] {
        var files = tokenizerFiles
        files["config.json"] = BertFolder.internalConfig(config: config, pooling: pooling, task: task, maxLength: maxLength)
        return files
    }

    /// File tensor name of an internal tensor name, per layout.
    func fileName(_ name: String) -> (file: String, tensor: String) {
        if name.hasPrefix("classifier.") {
            if head == .dense { return ("2_Dense/model.safetensors", name.replacingOccurrences(of: "classifier.", with: "linear.")) }
            return ("model.safetensors", name)
        }
        return ("model.safetensors", prefix + name)
    }

    func loadWeights(into model: BertClassifier, from source: ModelFileSource, seed: UInt64) throws {
        guard let main = try source.safetensors("model.safetensors") else { throw FineTuneError("\(source.name)/model.safetensors: missing") }
        var files = ["model.safetensors": main]
        if head == .dense {
            guard let dense = try source.safetensors("2_Dense/model.safetensors") else {
                throw FineTuneError("\(source.name)/2_Dense/model.safetensors: missing (modules.json lists a Dense head)")
            }
            files["2_Dense/model.safetensors"] = dense
        }
        var unused: [String: Set<String>] = files.mapValues { Set($0.names) }
        var freshPooler = false
        for spec in model.layout.tensors {
            let (fileKey, tensor) = fileName(spec.name)
            let file = files[fileKey]!
            guard let entry = file.entries[tensor] else {
                if spec.name.hasPrefix("classifier.") && head == .none { continue }
                if spec.name.hasPrefix("pooler.") && head == .none { freshPooler = true; continue }
                throw FineTuneError("\(file.path): missing tensor \(tensor) (shape \(spec.shape))")
            }
            guard entry.shape == spec.shape else {
                throw FineTuneError("\(file.path): tensor \(tensor) has shape \(entry.shape), the model needs \(spec.shape)")
            }
            try file.read(entry, into: model.parameters.base + spec.offset)
            unused[fileKey]!.remove(tensor)
        }
        if head == .none { model.initializeHead(seed: seed, includePooler: freshPooler) }
        // Read or skipped on purpose: position ids (I64 buffers, not weights); the base model's
        // pooler when pooling is mean (carried through to the exported folder unchanged).
        var leftovers = unused["model.safetensors"]!
        leftovers.remove(prefix + "embeddings.position_ids")
        model.passthrough = []
        for name in leftovers.sorted() where name.hasPrefix(prefix + "pooler.") && model.pooling == .mean {
            let entry = main.entries[name]!
            model.passthrough.append((String(name.dropFirst(prefix.count)), entry.shape, try main.floats(name)))
            leftovers.remove(name)
        }
        leftovers.formUnion(unused["2_Dense/model.safetensors"] ?? [])
        guard leftovers.isEmpty else {
            throw FineTuneError("\(source.name): tensors the model does not use: \(leftovers.sorted().joined(separator: ", "))")
        }
    }
}

extension WordPieceTokenizer {
    /// A tokenizer from a folder's files (see `load(folder:)`).
    public static func load(files: [String: Data], source: String) throws -> WordPieceTokenizer {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, data) in files { try data.write(to: URL(fileURLWithPath: "\(dir)/\(name)")) }
        do { return try load(folder: dir) } catch let e as FineTuneError {
            throw FineTuneError(e.message.replacingOccurrences(of: dir, with: source))
        }
    }
}

/// Writing BERT models: this program's own layout (checkpoints) and the layouts transformers and
/// sentence-transformers load.
public enum BertFolder {
    static func jsonData(_ object: Any) -> Data {
        try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    static func withTask(_ raw: [String: Any], task: TaskKind?) -> [String: Any] {
        var o = raw
        o.removeValue(forKey: "finetune_dist")
        switch task {
        case .classification(let labels)?:
            o["id2label"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { (String($0.offset), $0.element) })
            o["label2id"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($0.element, $0.offset) })
            o["problem_type"] = "single_label_classification"
        case .regression?:
            o["id2label"] = ["0": "LABEL_0"]
            o["label2id"] = ["LABEL_0": 0]
            o["problem_type"] = "regression"
        case nil:
            break
        }
        return o
    }

    static func internalConfig(config: BertConfig, pooling: Pooling, task: TaskKind?, maxLength: Int) -> Data {
        var o = withTask(config.raw, task: task)
        o["finetune_dist"] = ["pooling": pooling.rawValue, "has_head": task != nil, "max_length": maxLength] as [String: Any]
        return jsonData(o)
    }

    static func internalFiles(_ model: BertClassifier) -> [String: Data] {
        var files = model.tokenizerFiles
        files["config.json"] = internalConfig(config: model.config, pooling: model.pooling, task: model.task, maxLength: model.maxLength)
        files["model.safetensors"] = ModelFolder.safetensors(layout: model.layout, buffer: model.parameters, extra: model.passthrough)
        return files
    }

    /// cls pooling: a BertForSequenceClassification folder. mean pooling: a sentence-transformers
    /// folder (Transformer, mean Pooling, and the head as a Dense module with identity activation).
    static func exportFiles(_ model: BertClassifier) -> [String: Data] {
        var files = model.tokenizerFiles
        var config = withTask(model.config.raw, task: model.task)
        switch model.pooling {
        case .cls:
            config["architectures"] = ["BertForSequenceClassification"]
            files["config.json"] = jsonData(config)
            files["model.safetensors"] = ModelFolder.safetensors(layout: model.layout, buffer: model.parameters,
                                                                 rename: { $0.hasPrefix("classifier.") ? $0 : "bert." + $0 },
                                                                 extra: model.passthrough)
        case .mean:
            config["architectures"] = ["BertModel"]
            files["config.json"] = jsonData(config)
            let encoder = ParameterLayout.subset(model.layout) { !$0.hasPrefix("classifier.") }
            files["model.safetensors"] = ModelFolder.safetensors(layout: encoder, buffer: model.parameters, extra: model.passthrough)
            let head = ParameterLayout.subset(model.layout) { $0.hasPrefix("classifier.") }
            files["2_Dense/model.safetensors"] = ModelFolder.safetensors(layout: head, buffer: model.parameters,
                                                                         rename: { $0.replacingOccurrences(of: "classifier.", with: "linear.") })
            // As sentence-transformers 6 writes them (Tests/.../tiny-bert/export_reference.json).
            let C = model.config.hiddenSize
            files["2_Dense/config.json"] = jsonData(["in_features": C, "out_features": model.task.outputCount, "bias": true,
                                                     "activation_function": "torch.nn.modules.linear.Identity",
                                                     "module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"])
            files["1_Pooling/config.json"] = jsonData(["embedding_dimension": C, "pooling_mode": "mean", "include_prompt": true])
            files["modules.json"] = jsonData([
                ["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"],
                ["idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"],
                ["idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.base.modules.dense.Dense"],
            ] as [[String: Any]])
            files["sentence_bert_config.json"] = jsonData([
                "max_seq_length": model.maxLength,
                "modality_config": ["text": ["method": "forward", "method_output_name": "last_hidden_state"]],
                "module_output_name": "token_embeddings", "transformer_task": "feature-extraction",
            ] as [String: Any])
            files["config_sentence_transformers.json"] = jsonData([
                "__version__": ["sentence_transformers": "6.2.0"], "model_type": "SentenceTransformer",
                "prompts": ["document": "", "query": ""], "default_prompt_name": NSNull(), "similarity_fn_name": "cosine",
            ] as [String: Any])
        }
        return files
    }
}

extension ParameterLayout {
    /// The tensors of `layout` whose names pass `include`, at their offsets in the original buffer.
    public static func subset(_ layout: ParameterLayout, _ include: (String) -> Bool) -> ParameterLayout {
        var out = ParameterLayout()
        out.adopt(layout.tensors.filter { include($0.name) })
        return out
    }
}
