import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

/// Reads the data files of a run in the form the model takes.
public enum DataLoading {
    /// Default token budget for text when neither --max-length nor the model says otherwise.
    public static let defaultMaxLength = 128

    public struct Loaded {
        public var train: ExampleSet
        public var valid: ExampleSet?
        public var test: ExampleSet?
        public var task: TaskKind
        /// Text models: the token limit the examples were cut to.
        public var maxLength: Int?
        /// Things the user should know about how the data was read (rank 0 prints them).
        public var notices: [String] = []
    }

    /// The training, validation and test sets, and the task: the model's when it has a head, else
    /// inferred from the training labels (sorted label names, or regression for numbers).
    public static func load(train: String, valid: String?, test: String?, for description: ModelDescription,
                            maxLength requested: Int?, pooling: Pooling? = nil, taskChoice: TaskChoice? = nil,
                            tokenCache: TokenCacheSettings? = nil) throws -> Loaded {
        let maskedLM = taskChoice == .mlm || description.task == .maskedLanguageModel
        let embedding = taskChoice == .embedding || description.task == .embedding
        if taskChoice == .embedding, let task = description.task, task != .embedding {
            throw FineTuneError("--task embedding: the model has a \(task == .regression ? "regression" : task == .maskedLanguageModel ? "masked-language" : "classification") head" +
                                (task.labels.map { " (labels \($0.joined(separator: ", ")))" } ?? "") +
                                "; sentence embeddings are trained from an encoder without one (a sentence-transformers or base model folder)")
        }
        if let taskChoice, taskChoice != .mlm, taskChoice != .embedding, let task = description.task, (task == .regression) != (taskChoice == .regression) {
            throw FineTuneError("--task \(taskChoice.rawValue): the model already has a \(task == .regression ? "regression" : "classification") head" +
                                (task.labels.map { " (labels \($0.joined(separator: ", ")))" } ?? "") + "; --task chooses for a model without one")
        }
        if taskChoice == .causalLM, case .decoder = description.kind {} else if taskChoice == .causalLM {
            throw FineTuneError("--task causal-lm trains a decoder (a Llama-architecture folder or a .gguf file); this model is not one")
        }
        switch description.kind {
        case .decoder(let decoder):
            if let taskChoice, taskChoice != .causalLM {
                throw FineTuneError("--task \(taskChoice.rawValue): a decoder learns causal language modelling (--task causal-lm, the default for it)")
            }
            if pooling != nil { throw FineTuneError("--pooling applies to encoders; a decoder has no pooling") }
            let maxLength = try decoderMaxLength(requested, model: decoder)
            var notices: [String] = []
            let eos = decoder.config.eosTokenIDs.first.map(Int32.init)
            func read(_ path: String) throws -> ExampleSet {
                let set = try CausalLMDataset(path: path, tokenizer: decoder.tokenizer, maxLength: maxLength, endOfText: eos)
                notices += set.notices
                return set
            }
            return Loaded(train: try read(train), valid: try valid.map(read), test: try test.map(read), task: .causalLanguageModel,
                          maxLength: maxLength, notices: notices)
        case .mlp(let config):
            if maskedLM || embedding {
                throw FineTuneError("--task \(maskedLM ? "mlm" : "embedding") trains a text encoder (BERT family); this model is an MLP over feature vectors")
            }
            if requested != nil || pooling != nil {
                throw FineTuneError("--max-length and --pooling apply to text models; this model is an MLP over feature vectors")
            }
            let load = { (path: String) in try TabularDataset(path: path, featureWidth: config.inputSize, task: config.task) }
            return Loaded(train: try load(train), valid: try valid.map(load), test: try test.map(load), task: config.task, maxLength: nil)
        case .bert(let bert):
            let maxLength = try resolvedMaxLength(requested, model: bert)
            if embedding {
                let read = { (path: String) in try PairDataset(path: path, tokenizer: bert.tokenizer, maxLength: maxLength) }
                return Loaded(train: try read(train), valid: try valid.map(read), test: try test.map(read), task: .embedding, maxLength: maxLength)
            }
            // Text through the token cache when the run has one (nil: every rank reads the file itself).
            let cached = { (path: String, layout: TokenCache.Layout) throws -> (entry: String, meta: TokenCache.Meta)? in
                guard let tokenCache else { return nil }
                return try TokenCacheBuild.ensure(tokenCacheRequest(path, layout: layout, maxLength: maxLength, model: bert), settings: tokenCache)
            }
            if maskedLM {
                // Unlabelled text in windows of maxLength tokens; labels, if any, not read.
                var notices: [String] = []
                func corpus(_ path: String) throws -> ExampleSet {
                    if let (entry, meta) = try cached(path, .windows) {
                        if meta.parts.contains(where: \.sawLabels) { notices.append(TextDataset.labelsNotReadNotice(path: path)) }
                        return try CachedTextDataset(entry: entry, meta: meta, path: path, task: .maskedLanguageModel)
                    }
                    let (set, said) = try TextDataset.corpus(path: path, tokenizer: bert.tokenizer, maxLength: maxLength)
                    notices += said
                    return set
                }
                return Loaded(train: try corpus(train), valid: try valid.map(corpus), test: try test.map(corpus), task: .maskedLanguageModel,
                              maxLength: maxLength, notices: notices)
            }
            // A classifier over numeric labels (--task classification) reads them as class names.
            let numbersAsNames = description.task == nil && taskChoice == .classification
            var notices: [String] = []
            if let (entry, meta) = try cached(train, .examples) {
                let raw = try CachedTextDataset(entry: entry, meta: meta, path: train, task: nil)
                let task = try description.task ?? TextDataset.inferTask(labels: raw.labels, path: train, choice: taskChoice)
                if description.task == nil, task == .regression, taskChoice == nil,
                   let notice = TextDataset.regressionNotice(labels: raw.labels, path: train) { notices.append(notice) }
                func make(_ path: String) throws -> ExampleSet {
                    // The training file's entry is open already (no second look-up, no second notice).
                    guard let (entry, meta) = path == train ? (entry, meta) : try cached(path, .examples) else {
                        throw FineTuneError("\(path): the token cache went away during loading")
                    }
                    return try CachedTextDataset(entry: entry, meta: meta, path: path, task: task, numbersAsNames: numbersAsNames)
                }
                return Loaded(train: try make(train), valid: try valid.map(make), test: try test.map(make), task: task, maxLength: maxLength,
                              notices: notices)
            }
            let trainRecords = try TextDataset.readRecords(path: train)
            let task = try description.task ?? TextDataset.inferTask(trainRecords, path: train, choice: taskChoice)
            if description.task == nil, task == .regression, taskChoice == nil,
               let notice = TextDataset.regressionNotice(trainRecords, path: train) { notices.append(notice) }
            func make(_ records: [TextRecord], _ path: String) throws -> TextDataset {
                let records = numbersAsNames ? try TextDataset.numbersAsNames(records, path: path) : records
                return try TextDataset(records: records, path: path, tokenizer: bert.tokenizer, maxLength: maxLength, task: task)
            }
            let validSet = try valid.map { try make(TextDataset.readRecords(path: $0), $0) }
            let testSet = try test.map { try make(TextDataset.readRecords(path: $0), $0) }
            return Loaded(train: try make(trainRecords, train), valid: validSet, test: testSet, task: task, maxLength: maxLength,
                          notices: notices)
        }
    }

    /// `finetune-dist tokenize`: builds (or finds) the token cache entries of `paths` for a model
    /// folder, as `train` with these --task and --max-length would read them.
    public static func buildTokenCache(_ paths: [String], model: String, maskedLM: Bool, maxLength requested: Int?,
                                       settings: TokenCacheSettings) throws -> [(path: String, entry: String, meta: TokenCache.Meta)] {
        let description = try settings.comm.agree("reading the model") { try ModelFolder.describe(FolderSource(model), pooling: nil) }
        guard case .bert(let bert) = description.kind else {
            throw FineTuneError("\(model): an MLP over feature vectors reads numbers, not text: there is nothing to tokenize")
        }
        let maxLength = try settings.comm.agree("checking --max-length") { try resolvedMaxLength(requested, model: bert) }
        let layout: TokenCache.Layout = maskedLM || description.task == .maskedLanguageModel ? .windows : .examples
        return try paths.map { path in
            guard let (entry, meta) = try TokenCacheBuild.ensure(tokenCacheRequest(path, layout: layout, maxLength: maxLength, model: bert),
                                                                 settings: settings) else {
                throw FineTuneError("\(settings.folder): not every rank sees this folder; give --cache-dir a folder on a filesystem every rank sees, " +
                                    "or run tokenize on each host")
            }
            return (path, entry, meta)
        }
    }

    /// What the token cache tokenizes for a text file of this model.
    public static func tokenCacheRequest(_ path: String, layout: TokenCache.Layout, maxLength: Int, model: EncoderDescription) -> TokenCache.Request {
        var digest = Digest()
        for name in model.tokenizerFiles.keys.sorted() {
            digest.update(data: Data(name.utf8)); digest.update(data: model.tokenizerFiles[name]!)
        }
        digest.update(data: Data(model.tokenizer.summary.utf8))
        return TokenCache.Request(path: path, layout: layout, maxLength: maxLength, tokenizer: model.tokenizer, tokenizerDigest: digest.hex())
    }

    static func decoderMaxLength(_ requested: Int?, model: DecoderDescription) throws -> Int {
        guard let requested else { return model.maxLength }
        guard requested >= 2 && requested <= model.config.maxPositions else {
            throw FineTuneError("--max-length \(requested) must be in 2...\(model.config.maxPositions) (the positions the decoder has: max_position_embeddings)")
        }
        return requested
    }

    static func resolvedMaxLength(_ requested: Int?, model: EncoderDescription) throws -> Int {
        if let requested {
            guard requested >= 3 && requested <= model.config.maxSequenceLength else {
                throw FineTuneError("--max-length \(requested) must be in 3...\(model.config.maxSequenceLength) (the two framing tokens, [CLS] and [SEP] or <s> and </s>, and at least one token of the text; " +
                                    "the positions the model has: max_position_embeddings, less padding_idx + 1 for RoBERTa and MPNet)")
            }
            return requested
        }
        return min(model.maxLength, defaultMaxLength)
    }

    /// A data file for `eval` (labels required) or `predict` (labels ignored) with a loaded model.
    /// A masked-language model evaluates on a corpus, read as `train --task mlm` reads it (windows).
    /// With `tokenCache`, a corpus or labelled file is read through the token cache, as train reads it.
    public static func load(_ path: String, for bundle: ModelBundle, maxLength requested: Int?, requireLabels: Bool,
                            tokenCache: TokenCacheSettings? = nil) throws -> ExampleSet {
        let model = bundle.model
        switch model.inputKind {
        case .features(let width):
            return try TabularDataset(path: path, featureWidth: width, task: model.task, requireLabels: requireLabels)
        case .text:
            if let decoder = bundle.decoder {
                let maxLength = try decoderMaxLength(requested ?? bundle.maxLength, model: decoder)
                return try CausalLMDataset(path: path, tokenizer: decoder.tokenizer, maxLength: maxLength, endOfText: decoder.config.eosTokenIDs.first.map(Int32.init))
            }
            let bert = bundle.bert!
            let maxLength = try loadedMaxLength(requested, bundle: bundle)
            if model.task == .maskedLanguageModel {
                if let tokenCache, let (entry, meta) = try TokenCacheBuild.ensure(tokenCacheRequest(path, layout: .windows, maxLength: maxLength, model: bert),
                                                                                  settings: tokenCache) {
                    return try CachedTextDataset(entry: entry, meta: meta, path: path, task: .maskedLanguageModel)
                }
                return try TextDataset.corpus(path: path, tokenizer: bert.tokenizer, maxLength: maxLength).0
            }
            // An embedding model is evaluated on pairs (retrieval); it embeds any text.
            if model.task == .embedding && requireLabels {
                return try PairDataset(path: path, tokenizer: bert.tokenizer, maxLength: maxLength)
            }
            if model.task != .embedding, let tokenCache,
               let (entry, meta) = try TokenCacheBuild.ensure(tokenCacheRequest(path, layout: .examples, maxLength: maxLength, model: bert), settings: tokenCache) {
                return try CachedTextDataset(entry: entry, meta: meta, path: path, task: model.task, requireLabels: requireLabels)
            }
            return try TextDataset(records: TextDataset.readRecords(path: path), path: path, tokenizer: bert.tokenizer,
                                   maxLength: maxLength, task: model.task, requireLabels: requireLabels)
        }
    }

    /// The inputs of fill-mask prediction with a loaded masked-language model (`TextDataset.fillMaskInputs`).
    public static func fillMaskInputs(_ path: String, for bundle: ModelBundle, maxLength requested: Int?) throws -> ExampleSet {
        guard let bert = bundle.bert else { throw FineTuneError("fill-mask needs a BERT-family model") }
        return try TextDataset.fillMaskInputs(path: path, tokenizer: bert.tokenizer, maxLength: loadedMaxLength(requested, bundle: bundle))
    }

    /// A loaded text model's token limit: --max-length, else the one it was trained with.
    static func loadedMaxLength(_ requested: Int?, bundle: ModelBundle) throws -> Int {
        let bert = bundle.bert!
        let maxLength = requested ?? bundle.maxLength ?? bert.maxLength
        guard maxLength >= 3 && maxLength <= bert.config.maxSequenceLength else {
            throw FineTuneError("--max-length \(maxLength) must be in 3...\(bert.config.maxSequenceLength) (the two framing tokens, [CLS] and [SEP] or <s> and </s>, and at least one token of the text)")
        }
        return maxLength
    }
}
