import ArgumentParser
import FineTuneDistributed
import FineTuneJSON
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import FineTuneTrainer
import Foundation

/// What eval and predict both take: the model, how many examples per pass, the text length, the progress display.
struct InferenceOptions: ParsableArguments {
    @Option(help: "Model folder (e.g. runs/exp1/best).") var model: String
    @Option(help: "Examples per forward pass.") var batchSize: Int = 256
    @Option(help: "Text models: tokens per example (default: the length the model was trained with).") var maxLength: Int?
    @Option(help: "Progress on standard error: bar, lines (every 10 s), none, or auto (bar on a terminal).") var progress: ProgressMode = .auto

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        if let maxLength { guard maxLength > 0 else { throw ValidationError("--max-length must be positive") } }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print how a model folder does on a labelled data file.",
        discussion: "Classification: loss, accuracy, macro-F1, Matthews correlation, per-class precision, recall and F1, and the confusion matrix (rows: true label, columns: predicted). Regression: MSE, MAE and R². A masked-language model (a train --task mlm folder, bert-base-uncased): masked-token loss, accuracy and perplexity on a corpus (plain text or a text field, read as train --task mlm reads it), the masks drawn with the fixed key every evaluation of train uses, so the figures equal the run's val_* on the same file. A sentence-embedding model (a train --task embedding folder, or any sentence-transformers folder without a head): retrieval on pairs (anchor, positive, optional negative columns; the anchors are the queries, the positives and negatives the corpus), NDCG@10, MRR@10, MAP@100, recall@1 and @10, accuracy@1, as sentence-transformers' InformationRetrievalEvaluator computes them. --json prints the same as one object; --report FILE also writes it there. Under mpirun every rank evaluates a slice of the data and rank 0 prints the figures of the whole set (the same as one process).")

    @OptionGroup var inference: InferenceOptions
    @Option(help: "Labelled data: JSON Lines or CSV (a masked-language model: a corpus, also plain text; a sentence-embedding model: anchor/positive pairs).") var data: String
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @Option(help: "Also write the JSON object to this file.") var report: String?
    @Option(help: "Masked-language models: the fraction of tokens masked, as train's --mlm-probability. Default: train's, 0.15.") var mlmProbability: Double?
    @Flag(help: "Masked-language models: mask whole words, as train --whole-word-mask.") var wholeWordMask = false
    @Option(help: "Read the data through the token cache in this folder (a train run's token-cache/, or one `finetune-dist tokenize` built), building its entry if missing.") var cacheDir: String?

    var model: String { inference.model }
    var batchSize: Int { inference.batchSize }
    var maxLength: Int? { inference.maxLength }
    var progress: ProgressMode { inference.progress }

    func validate() throws {
        // The same range as train's option (its declaration's check).
        if let p = mlmProbability, let problem = Checks.openUnit(p) { throw ValidationError("--mlm-probability \(problem)") }
    }

    struct Report: Encodable {
        var model: String, data: String
        var result: EvaluationResult
        var labels: [String]?
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: NamedKey.self)
            try c.encode(model, forKey: NamedKey("model")); try c.encode(data, forKey: NamedKey("data"))
            try c.encode(result.examples, forKey: NamedKey("eval_examples"))
            for (name, value) in result.figures { try c.encode(value.flatMap { $0.isFinite ? $0 : nil }, forKey: NamedKey("eval_\(name)")) }
            if let labels, let perClass = result.perClass, let confusion = result.confusion {
                try c.encode(Dictionary(uniqueKeysWithValues: zip(labels, perClass)), forKey: NamedKey("per_class"))
                try c.encode(labels, forKey: NamedKey("labels"))
                try c.encode(confusion, forKey: NamedKey("confusion_matrix"))
            }
        }
    }

    /// The confusion matrix and the per-class figures as a table.
    static func table(_ r: EvaluationResult, labels: [String]) -> String {
        guard let m = r.confusion, let perClass = r.perClass else { return "" }
        let width = max(9, (labels.map(\.count).max() ?? 0) + 2)
        func pad(_ s: String) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
        var lines = [pad("") + "  precision   recall       f1  support"]
        for (label, f) in zip(labels, perClass) {
            lines.append(pad(label) + String(format: "  %9.4f %8.4f %8.4f %8d", f.precision, f.recall, f.f1, f.support))
        }
        lines.append("confusion matrix (rows: true, columns: predicted):")
        lines.append(pad("") + labels.map(pad).joined())
        for (label, row) in zip(labels, m) { lines.append(pad(label) + row.map { pad(String($0)) }.joined()) }
        return lines.joined(separator: "\n")
    }

    func run() throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator() } catch { exitOnError(error, comm: nil) }
        do {
            // Every rank reads the model and the data; a bad file fails on all of them alike.
            let (bundle, dataset) = try comm.agree("loading the model and data") {
                let bundle = try ModelFolder.load(model)
                let masks = try bundle.enableMasking(probability: mlmProbability ?? TrainingConfiguration.defaults.mlmProbability, wholeWord: wholeWordMask)
                if !masks && (mlmProbability != nil || wholeWordMask) {
                    throw FineTuneError("--mlm-probability and --whole-word-mask apply to a masked-language model; \(model) is not one")
                }
                let tokenCache = cacheDir.map { TokenCacheSettings(folder: $0, comm: comm, note: { if comm.isRoot { printError($0) } }) }
                return (bundle, try DataLoading.load(data, for: bundle, maxLength: maxLength, requireLabels: true, tokenCache: tokenCache))
            }
            let display = comm.isRoot ? PassProgress(mode: progress, verb: "evaluating") : nil
            let r = try Evaluation.run(model: bundle.model, data: dataset, batchSize: batchSize, comm: comm,
                                       progress: display.map { d in { d.update(done: $0, total: $1) } })
            display?.finish()
            if r.maskedLM && r.examples == 0 {
                // Every rank has the same (summed) count: all say it alike, rank 0 aloud.
                let message = "\(data): no token of its \(dataset.count) window(s) was masked, so there is no loss, accuracy or perplexity " +
                              "to report (use longer texts, a larger --max-length or --mlm-probability)"
                throw comm.isRoot ? AgreedFailure(underlying: FineTuneError(message)) as Error : PeerFailure(phase: message, rank: 0)
            }
            guard comm.isRoot else { comm.finalize(); return }
            let labels = bundle.model.task.labels
            let object = try lineEncoder().encode(Report(model: model, data: data, result: r, labels: labels))
            if let report { try AtomicFiles.write(object + Data("\n".utf8), to: report) }
            if json {
                print(String(decoding: object, as: UTF8.self))
            } else {
                let figures = r.figures.filter { $0.0 != "mse" || r.accuracy == nil }.filter { $0.0 != "loss" || r.accuracy != nil }
                let counted = r.maskedLM ? (bundle.decoder != nil ? "scored tokens in \(dataset.count) documents" : "masked tokens in \(dataset.count) windows") : r.retrieval != nil ? "queries" : "examples"
                print("\(model) on \(data): \(r.examples) \(counted), " +
                      figures.map { name, value in "\(name.replacingOccurrences(of: "_", with: "-")) \(value.map { String(format: "%.6f", $0) } ?? "n/a")" }
                          .joined(separator: ", "))
                if let labels { print(Eval.table(r, labels: labels)) }
            }
            comm.finalize()
        } catch { exitOnError(error, comm: comm) }
    }
}

/// One-line JSON with sorted keys; a non-finite number becomes null (strict JSON has no NaN).
func lineEncoder() -> JSONEncoder {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return e
}

/// A number for strict JSON: nil (null) when not finite.
func finite(_ x: Float) -> Double? { x.isFinite ? Double(x) : nil }

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one prediction per input line: {\"label\": best, \"probabilities\": {label: p}}, {\"value\": x}, a sentence embedding {\"embedding\": [...]}, or a masked-language model's fill-mask candidates.",
        discussion: "Input: JSON Lines or CSV with the model's inputs (\"features\" for an MLP, \"text\" and optional \"text_pair\" for a text model); labels, if present, are ignored. Output: JSON Lines in input order; a value that is not finite (a model with NaN weights) is written as null. A sentence-embedding model (a train --task embedding folder, any sentence-transformers folder without a head) writes {\"embedding\": [...]} per input text, as sentence-transformers' encode (normalised when the folder has a Normalize module). A masked-language model (a train --task mlm folder, bert-base-uncased) fills masks: each input (also plain text, one per line) writes [MASK] where a token is to be guessed, and its line is {\"masks\": [[{\"token\": id, \"token_str\": piece, \"score\": p}, ... --top-k of them], one list per [MASK]]}, the scores softmax probabilities over the vocabulary as transformers' fill-mask pipeline gives them. Under mpirun every rank predicts a contiguous slice and rank 0 writes them in input order (the same file as one process).")

    @OptionGroup var inference: InferenceOptions
    @Option(help: "Input data: JSON Lines or CSV (a masked-language model: also plain text, one input per line).") var input: String
    @Option(help: "Output JSON Lines file.") var output: String
    @Flag(help: "Also write the raw outputs of the head as \"logits\" (to compare with other frameworks; a masked-language model: the vocabulary's logits at each [MASK]).") var withLogits = false
    @Option(help: "Masked-language models: candidates written per [MASK], most probable first.") var topK: Int = 5
    @Option(help: "Decoders: tokens generated at most per prompt (generation also stops after the end-of-text token).") var maxNewTokens: Int = 64
    @Option(help: "Decoders: sampling temperature; 0 (the default) is greedy decoding.") var temperature: Double = 0
    @Option(help: "Decoders: nucleus sampling, the smallest set of tokens whose probability reaches P (with --temperature above 0).") var topP: Double = 1
    @Option(help: "Decoders: the sampling seed (each prompt's draws depend on it and the prompt's line only, not on the rank count).") var seed: UInt64 = 0

    var model: String { inference.model }
    var batchSize: Int { inference.batchSize }
    var maxLength: Int? { inference.maxLength }
    var progress: ProgressMode { inference.progress }

    func validate() throws {
        guard topK > 0 else { throw ValidationError("--top-k must be positive") }
        guard maxNewTokens > 0 else { throw ValidationError("--max-new-tokens must be positive") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 (greedy) or positive") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
    }

    struct Line: Encodable {
        var label: String?
        var probabilities: [String: Double?]?
        var value: Double??
        var masks: [[FillMask.Candidate]]?
        var logits: [Double?]?
        var maskLogits: [[Double?]]?
        var embedding: [Double?]?
        enum CodingKeys: String, CodingKey { case label, probabilities, value, masks, logits, embedding }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(label, forKey: .label)
            try c.encodeIfPresent(probabilities, forKey: .probabilities)
            if let value { try c.encode(value, forKey: .value) }
            try c.encodeIfPresent(masks, forKey: .masks)
            try c.encodeIfPresent(logits, forKey: .logits)
            try c.encodeIfPresent(maskLogits, forKey: .logits)
            try c.encodeIfPresent(embedding, forKey: .embedding)
        }
    }

    func run() throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator() } catch { exitOnError(error, comm: nil) }
        do {
            let (bundle, loaded) = try comm.agree("loading the model and data") { () -> (ModelBundle, ExampleSet?) in
                if comm.isRoot { try Self.checkOutputFile(output) }
                let bundle = try ModelFolder.load(model)
                if bundle.decoder != nil { return (bundle, nil) }
                if bundle.model.task == .maskedLanguageModel {
                    return (bundle, try DataLoading.fillMaskInputs(input, for: bundle, maxLength: maxLength))
                }
                return (bundle, try DataLoading.load(input, for: bundle, maxLength: maxLength, requireLabels: false))
            }
            if let decoder = bundle.decoder, let model = bundle.decoderModel {
                try generate(decoder: decoder, model: model, comm: comm)
                comm.finalize()
                return
            }
            let dataset = loaded!
            let m = bundle.model
            let encoder = lineEncoder()
            var out = Data()
            var nonFinite = 0
            // This rank's contiguous slice: concatenated in rank order, the slices are the input order.
            let mine = Sharding.batchAlignedSlice(count: dataset.count, batchSize: batchSize, rank: comm.rank, size: comm.size)
            let display = comm.isRoot ? PassProgress(mode: progress, verb: "predicting") : nil
            var start = mine.lowerBound
            while start < mine.upperBound {
                display?.update(done: dataset.count * (start - mine.lowerBound) / max(mine.count, 1), total: dataset.count)
                let end = min(start + batchSize, mine.upperBound)
                let batch = dataset.batch(Array(start..<end)[...])
                if m.task == .maskedLanguageModel, let text = m as? TextModel, let tokenizer = bundle.tokenizer, let maskID = tokenizer.maskID {
                    for prediction in FillMask.predict(text, batch: batch, maskID: maskID, tokens: tokenizer.tokens, topK: topK) {
                        let line = Line(masks: prediction.candidates, maskLogits: withLogits ? prediction.logits.map { $0.map(finite) } : nil)
                        nonFinite += prediction.logits.filter { $0.contains { !$0.isFinite } }.count
                        out.append(try encoder.encode(line))
                        out.append(UInt8(ascii: "\n"))
                    }
                    start = end
                    continue
                }
                if m.task == .embedding {
                    // As sentence-transformers' encode: the pooled (and projected) output, normalised when the folder says so.
                    for embedding in bundle.sentenceEmbeddings(batch) {
                        if embedding.contains(where: { !$0.isFinite }) { nonFinite += 1 }
                        out.append(try encoder.encode(Line(embedding: embedding.map(finite))))
                        out.append(UInt8(ascii: "\n"))
                    }
                    start = end
                    continue
                }
                let outputs = m.predict(batch)
                let logits = withLogits ? m.logits(batch) : []
                for (i, output) in outputs.enumerated() {
                    var line = Line()
                    switch m.task {
                    case .classification(let labels):
                        line.label = labels[argmax(output, output.count)]
                        line.probabilities = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($0.element, finite(output[$0.offset])) })
                    case .regression:
                        line.value = .some(finite(output[0]))
                    case .maskedLanguageModel, .embedding, .causalLanguageModel:
                        break  // fillMask and embeddings above; decoders are not read by predict yet
                    }
                    if withLogits { line.logits = logits[i].map(finite) }
                    if output.contains(where: { !$0.isFinite }) { nonFinite += 1 }
                    out.append(try encoder.encode(line))
                    out.append(UInt8(ascii: "\n"))
                }
                start = end
            }
            display?.update(done: dataset.count, total: dataset.count)
            display?.finish()
            let slices = try comm.allgather(string: String(decoding: out, as: UTF8.self))
            var counts = [Int64(nonFinite)]
            try comm.allreduce(&counts, op: .sum)
            try comm.agree("writing \(output)") {
                guard comm.isRoot else { return }
                try AtomicFiles.write(Data(slices.joined().utf8), to: output)
            }
            if comm.isRoot {
                if counts[0] > 0 { printError("finetune-dist: warning: \(counts[0]) prediction(s) are not finite (written as null): the model's weights may be NaN") }
                print("wrote \(dataset.count) predictions to \(output)")
            }
            comm.finalize()
        } catch { exitOnError(error, comm: comm) }
    }
}

extension Predict {
    /// A decoder: one {"completion": text, "tokens": n, "stop": "eos" | "length"} per prompt, each
    /// rank generating a contiguous slice with the key/value cache.
    func generate(decoder: DecoderDescription, model: DecoderModel, comm: MPICommunicator) throws {
        let prompts = try comm.agree("reading the prompts") { () -> [(ids: [Int32], line: Int)] in
            let prompts = try CausalLMDataset.prompts(path: input, tokenizer: decoder.tokenizer)
            if let long = prompts.first(where: { $0.ids.count >= model.config.maxPositions }) {
                throw FineTuneError("\(input):\(long.line): a prompt of \(long.ids.count) tokens leaves no room within the model's \(model.config.maxPositions) positions")
            }
            return prompts
        }
        let longest = prompts.map(\.ids.count).max() ?? 0
        let mine = Sharding.batchAlignedSlice(count: prompts.count, batchSize: 1, rank: comm.rank, size: comm.size)
        let generator = DecoderGenerator(model: model, capacity: min(model.config.maxPositions, longest + maxNewTokens))
        let stop = Set(model.config.eosTokenIDs.map(Int32.init))
        let display = comm.isRoot ? PassProgress(mode: progress, verb: "generating") : nil
        struct Completion: Encodable { let completion: String; let tokens: Int; let stop: String }
        let encoder = lineEncoder()
        var out = Data()
        for i in mine {
            display?.update(done: prompts.count * (i - mine.lowerBound) / max(mine.count, 1), total: prompts.count)
            let sampling = SamplingSettings(temperature: temperature, topP: topP, seed: combineKey(seed, UInt64(prompts[i].line)))
            let ids = generator.generate(prompt: prompts[i].ids, maxNewTokens: maxNewTokens, stop: stop, sampling: sampling)
            let ended = ids.last.map(stop.contains) ?? false
            let text = decoder.tokenizer.bpe.decode(ended ? Array(ids.dropLast()) : ids)
            out.append(try encoder.encode(Completion(completion: text, tokens: ids.count, stop: ended ? "eos" : "length")))
            out.append(UInt8(ascii: "\n"))
        }
        display?.update(done: prompts.count, total: prompts.count)
        display?.finish()
        let slices = try comm.allgather(string: String(decoding: out, as: UTF8.self))
        try comm.agree("writing \(output)") {
            guard comm.isRoot else { return }
            try AtomicFiles.write(Data(slices.joined().utf8), to: output)
        }
        if comm.isRoot { print("wrote \(prompts.count) completions to \(output)") }
    }

    /// The output file can be written: said before any work, in a user's terms.
    static func checkOutputFile(_ path: String) throws {
        guard !path.isEmpty else { throw FineTuneError("--output is empty: name a file") }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            throw FineTuneError("--output \(path): is a folder; name a file (e.g. \(path)/predictions.jsonl)")
        }
        let parent = AtomicFiles.parentFolder(of: path)
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isFolder) else {
            throw FineTuneError("--output \(path): the folder \(parent) does not exist")
        }
        guard isFolder.boolValue else { throw FineTuneError("--output \(path): \(parent) is a file, not a folder") }
    }
}

struct SelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check the MPI and BLAS set-up: every rank reports its host, CPUs, threads and OpenBLAS kernels, each host its sgemm rate, then allreduce and broadcast results are verified.",
        discussion: "Run it under mpirun with the same hostfile as a training run, e.g. `launch/cluster.sh hostfiles/cluster selftest`.")

    @Option(help: "Elements per MPI call (small values exercise the chunking of large buffers).") var chunkElements: Int = Int(Int32.max)
    @Option(help: "Elements in the test buffers.") var elements: Int = 1_000_003
    @Option(help: "How the Float sum runs: ring, mpi or auto (see train --help).") var allreduce: AllreduceAlgorithm = .auto

    func validate() throws {
        guard chunkElements > 0, elements > 0 else { throw ValidationError("--chunk-elements and --elements must be positive") }
    }

    func run() throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator(chunkElements: chunkElements) } catch { exitOnError(error, comm: nil) }
        do {
            let budget = try ThreadBudget.apply(comm)
            let ranks = try RankRecord.gather(budget: budget, comm: comm)
            if comm.isRoot {
                for r in ranks {
                    print("rank \(r.rank)/\(comm.size) on \(r.host): cpus \(r.cpus), OpenBLAS threads \(r.openblasThreads) (\(r.threadsFrom)), kernels \(r.blasCore)")
                }
                RankRecord.blasLines(ranks).forEach { print($0) }
                if let warning = BLASSetup.selection.warning { print("WARNING: \(warning)") }
                print(comm.libraryVersion.split(separator: "\n").first.map(String.init) ?? "")
            }
            // Sum of (rank + 1) * (i % 7 + 1) over ranks = (i % 7 + 1) * size(size+1)/2, exact in Float here.
            var floats = (0..<elements).map { Float((comm.rank + 1) * ($0 % 7 + 1)) }
            try floats.withUnsafeMutableBufferPointer { try comm.wait(comm.startAllreduceSum($0, algorithm: allreduce)) }
            let ranksSum = comm.size * (comm.size + 1) / 2
            var errors = 0
            for i in 0..<elements where floats[i] != Float((i % 7 + 1) * ranksSum) { errors += 1 }
            var doubles = (0..<elements).map { Double(comm.rank) + Double($0) * 0.5 }
            try doubles.withUnsafeMutableBufferPointer { try comm.allreduceSum($0) }
            for i in 0..<elements where doubles[i] != Double(comm.size * (comm.size - 1) / 2) + Double(comm.size) * Double(i) * 0.5 { errors += 1 }
            var bytes = (0..<elements).map { UInt8(truncatingIfNeeded: comm.rank == 0 ? $0 * 31 : 0) }
            try bytes.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
            for i in 0..<elements where bytes[i] != UInt8(truncatingIfNeeded: i * 31) { errors += 1 }
            var total = [Int64(errors)]
            try comm.allreduce(&total, op: .sum)
            if comm.isRoot {
                print(total[0] == 0
                      ? "ok: allreduce (Float, \(allreduce.rawValue); Double) and broadcast of \(elements) elements in chunks of \(min(chunkElements, elements)) agree on \(comm.size) rank(s)"
                      : "FAILED: \(total[0]) wrong elements")
            }
            comm.finalize()
            if total[0] != 0 { throw ExitCode(2) }
        } catch let e as ExitCode { throw e } catch { exitOnError(error, comm: comm) }
    }
}
