import FineTuneKernels
import Foundation
import XCTest

/// Bad input through the real command line, as users meet it: data files, model folders, options,
/// output folders, resumed runs, hostfiles. Every case asserts the exit status, that the run ends
/// within seconds with no rank left behind, the words of the message (file and line, or option,
/// and what is wrong), and that nothing is left or changed on disk: a fresh output folder is not
/// created, an existing run folder stays byte for byte as it was.
final class BadInputTests: XCTestCase {
    /// Where the output goes: a folder that must not appear, the existing reference run (which
    /// must stay untouched), or a path that already holds something else (which must stay too).
    enum Output { case fresh, referenceRun, existing(String) }

    struct Case {
        var name: String
        var ranks = 1
        var arguments: [String]
        var words: [String]
        var status: Int32 = 1
        var output = Output.fresh
        var environment: [String: String] = [:]
        /// A script under launch/ instead of the binary.
        var script: String? = nil
    }

    static var fixtures = ""
    static let outputToken = "@OUT"

    override class func setUp() {
        super.setUp()
        fixtures = FileManager.default.temporaryDirectory.appendingPathComponent("bad-inputs-\(UUID())").path
        do { try BadInputFixtures.make(in: fixtures) } catch { fatalError("fixtures: \(error)") }
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(atPath: fixtures)
        super.tearDown()
    }

    var fx: String { Self.fixtures }

    /// `train` of the tiny BERT on `data`, one step.
    func text(_ data: String, _ extra: [String] = [], model: String = "base") -> [String] {
        ["train", "--model", "\(fx)/\(model)", "--train", "\(fx)/\(data)", "--output", Self.outputToken, "--max-steps", "1"] + extra
    }
    /// `train` of the MLP on `data`, one step.
    func mlp(_ data: String, _ extra: [String] = []) -> [String] {
        ["train", "--model", "\(fx)/mlp", "--train", "\(fx)/\(data)", "--output", Self.outputToken, "--max-steps", "1"] + extra
    }
    /// `train` of a damaged copy of the tiny BERT.
    func model(_ folder: String) -> [String] { text("good.jsonl", model: folder) }
    /// `train` of the tiny BERT with a (bad) option.
    func option(_ extra: String...) -> [String] { text("good.jsonl", extra) }
    /// Continuing the reference run.
    func resume(_ extra: [String], model: String = "base", data: String = "good.jsonl") -> [String] {
        ["train", "--model", "\(fx)/\(model)", "--train", "\(fx)/\(data)", "--output", Self.outputToken, "--max-steps", "3",
         "--batch-size", "16", "--save-every", "1", "--resume"] + extra
    }

    var cases: [Case] {
        let f = fx
        return [
            // Text data files.
            Case(name: "malformed line", arguments: text("malformed.jsonl"), words: ["malformed.jsonl:3:", "not valid JSON", "column"]),
            Case(name: "no text field", arguments: text("notext.jsonl"), words: ["notext.jsonl:2:", "missing \"text\""]),
            Case(name: "text is a number", arguments: text("textnum.jsonl"), words: ["textnum.jsonl:2:", "\"text\" is not a string"]),
            Case(name: "no label", arguments: text("nolabel.jsonl"), words: ["nolabel.jsonl:4:", "missing \"label\""]),
            Case(name: "boolean label", arguments: text("boollabel.jsonl"), words: ["boollabel.jsonl:2:", "a boolean"]),
            Case(name: "list label", arguments: text("listlabel.jsonl"), words: ["listlabel.jsonl:2:", "must be a string or a number"]),
            Case(name: "duplicate keys", arguments: text("dupkeys.jsonl"), words: ["dupkeys.jsonl:2:", "duplicate key \"label\""]),
            Case(name: "names and numbers", arguments: text("mixed.jsonl"), words: ["mixed.jsonl:2:", "labels mix names and numbers"]),
            Case(name: "text_pair number", arguments: text("pairnum.jsonl"), words: ["pairnum.jsonl:2:", "\"text_pair\" is not a string"]),
            Case(name: "line is a list", arguments: text("array.jsonl"), words: ["array.jsonl:2:", "a list, not a JSON object"]),
            Case(name: "empty file", arguments: text("empty.jsonl"), words: ["empty.jsonl", "no examples"]),
            Case(name: "blank lines only", arguments: text("blank.jsonl"), words: ["blank.jsonl", "no examples"]),
            Case(name: "CSV header only", arguments: text("header.csv"), words: ["header.csv", "no examples"]),
            Case(name: "CSV ragged row", arguments: text("ragged.csv"), words: ["ragged.csv:3:", "3 fields, the header has 2"]),
            Case(name: "CSV without text column", arguments: text("notextcol.csv"), words: ["notextcol.csv:1:", "no \"text\" column"]),
            Case(name: "CSV unterminated quote", arguments: text("quote.csv"), words: ["quote.csv:3:", "unterminated quoted field"]),
            Case(name: "CSV quote in field", arguments: text("midquote.csv"), words: ["midquote.csv:2:", "a quote inside an unquoted field"]),
            Case(name: "invalid UTF-8", arguments: text("latin1.jsonl"), words: ["latin1.jsonl:3:", "not UTF-8"]),
            Case(name: "data is a folder", arguments: text("afolder"), words: ["afolder", "is a folder, not a data file"]),
            Case(name: "data missing", arguments: text("nosuch.jsonl"), words: ["nosuch.jsonl", "cannot read the file"]),
            Case(name: "one label only", arguments: text("onelabel.jsonl"), words: ["onelabel.jsonl", "at least two distinct labels"]),
            Case(name: "text after the object", arguments: text("trailing.jsonl"), words: ["trailing.jsonl:2:", "unexpected text after the JSON value"]),
            Case(name: "unclosed string", arguments: text("unclosed.jsonl"), words: ["unclosed.jsonl:2:", "never closed"]),
            Case(name: "valid has a new label", arguments: text("good.jsonl", ["--valid", "\(f)/newlabel.jsonl"]),
                 words: ["newlabel.jsonl:2:", "unknown label \"maybe\"", "yes"]),
            Case(name: "valid missing", arguments: text("good.jsonl", ["--valid", "\(f)/nosuch.jsonl"]), words: ["nosuch.jsonl", "cannot read"]),
            Case(name: "test malformed", arguments: text("good.jsonl", ["--test", "\(f)/malformed.jsonl"]), words: ["malformed.jsonl:3:"]),
            Case(name: "regression asked of names", arguments: text("good.jsonl", ["--task", "regression"]),
                 words: ["good.jsonl:1:", "is a name; --task regression needs numbers"]),
            Case(name: "classification of fractions", arguments: text("fractions.jsonl", ["--task", "classification"]),
                 words: ["fractions.jsonl", "not a whole number"]),
            Case(name: "task against the head", arguments: text("good.jsonl", ["--task", "regression"], model: "classifier"),
                 words: ["--task regression", "already has a classification head"]),
            Case(name: "label the head lacks", arguments: text("good.jsonl", model: "classifier"),
                 words: ["good.jsonl:1:", "unknown label", "neg, neu, pos"]),

            // Masked-language modelling corpora and settings.
            Case(name: "empty corpus", arguments: text("blank-corpus.txt", ["--task", "mlm"]), words: ["blank-corpus.txt", "no text (an empty corpus)"]),
            Case(name: "corpus line without tokens", arguments: text("control-corpus.txt", ["--task", "mlm"]),
                 words: ["control-corpus.txt:2:", "no tokens after tokenisation"]),
            Case(name: "mlm on an MLP", arguments: mlp("features.jsonl", ["--task", "mlm"]), words: ["--task mlm trains a text encoder", "MLP"]),
            Case(name: "mlm without word embeddings to tie", arguments: text("corpus.txt", ["--task", "mlm"], model: "m-nowordembeddings"),
                 words: ["m-nowordembeddings/model.safetensors", "missing tensor embeddings.word_embeddings.weight"]),
            Case(name: "mlm without [MASK]", arguments: text("corpus.txt", ["--task", "mlm"], model: "m-nomask"), words: ["the vocabulary has no mask token"]),
            Case(name: "--mlm-probability 0", arguments: text("corpus.txt", ["--task", "mlm", "--mlm-probability", "0"]),
                 words: ["--mlm-probability must be in (0, 1)"], status: 64),
            Case(name: "--whole-word-mask without mlm", arguments: option("--whole-word-mask"), words: ["need --task mlm"], status: 64),
            Case(name: "--monitor macro-F1 for mlm", arguments: text("corpus.txt", ["--task", "mlm", "--valid", "\(f)/corpus.txt", "--monitor", "val_macro_f1"]),
                 words: ["--monitor val_macro_f1 is not a metric of a masked-language model", "val_perplexity"]),
            Case(name: "2 ranks: empty corpus", ranks: 2, arguments: text("blank-corpus.txt", ["--task", "mlm"]), words: ["no text"]),

            // Feature data for the MLP.
            Case(name: "NaN feature", arguments: mlp("nan.jsonl"), words: ["nan.jsonl:3:", "features[1] is NaN, not a finite number"]),
            Case(name: "Infinity feature", arguments: mlp("inf.jsonl"), words: ["inf.jsonl:3:", "features[0] is Infinity"]),
            Case(name: "-Infinity feature", arguments: mlp("neginf.jsonl"), words: ["neginf.jsonl:3:", "features[0] is -Infinity"]),
            Case(name: "1e999 feature", arguments: mlp("huge.jsonl"), words: ["huge.jsonl:3:", "is Infinity, not a finite number"]),
            Case(name: "1e39 feature", arguments: mlp("float-overflow.jsonl"), words: ["float-overflow.jsonl:3:", "32-bit floating point"]),
            Case(name: "feature as text", arguments: mlp("featstr.jsonl"), words: ["featstr.jsonl:3:", "features[0] is a string, not a number"]),
            Case(name: "feature null", arguments: mlp("featnull.jsonl"), words: ["featnull.jsonl:3:", "features[2] is null"]),
            Case(name: "no features", arguments: mlp("nofeat.jsonl"), words: ["nofeat.jsonl:3:", "missing \"features\""]),
            Case(name: "too few features", arguments: mlp("short.jsonl"), words: ["short.jsonl:3:", "3 features, the model takes 6"]),
            Case(name: "class id out of range", arguments: mlp("classid.jsonl"), words: ["classid.jsonl:3:", "not a class id in 0..<3"]),
            Case(name: "CSV nan cell", arguments: mlp("nan.csv"), words: ["nan.csv:3:", "not a finite number"]),
            Case(name: "CSV word cell", arguments: mlp("word.csv"), words: ["word.csv:3:", "column \"f2\" is not a number"]),
            Case(name: "text data for an MLP", arguments: mlp("good.jsonl"), words: ["good.jsonl:1:", "missing \"features\""]),
            Case(name: "--max-length on an MLP", arguments: mlp("features.jsonl", ["--max-length", "16"]), words: ["--max-length", "MLP"]),
            Case(name: "--pooling on an MLP", arguments: mlp("features.jsonl", ["--pooling", "cls"]), words: ["--pooling", "MLP"]),
            Case(name: "LoRA on an MLP", arguments: mlp("features.jsonl", ["--lora-rank", "2"]), words: ["LoRA", "MLP"]),

            // Model folders.
            Case(name: "no config.json", arguments: model("m-noconfig"), words: ["m-noconfig/config.json", "missing"]),
            Case(name: "no weights", arguments: model("m-noweights"), words: ["m-noweights/model.safetensors", "missing"]),
            Case(name: "truncated weights", arguments: model("m-truncated"), words: ["model.safetensors", "runs past the end"]),
            Case(name: "huge header length", arguments: model("m-headerlength"), words: ["model.safetensors", "over 100 MB"]),
            Case(name: "header not JSON", arguments: model("m-headerjunk"), words: ["model.safetensors", "header is not valid JSON"]),
            Case(name: "empty weights file", arguments: model("m-zero"), words: ["model.safetensors", "shorter than the 8-byte header"]),
            Case(name: "unknown dtype", arguments: model("m-q4"), words: ["model.safetensors", "unsupported dtype Q4_K"]),
            Case(name: "integer dtype", arguments: model("m-i32"), words: ["model.safetensors", "dtype I32, not a floating-point type"]),
            Case(name: "duplicate tensor in header", arguments: model("m-duptensor"), words: ["model.safetensors", "duplicate key"]),
            Case(name: "overlapping tensors", arguments: model("m-overlap"), words: ["model.safetensors", "overlaps"]),
            Case(name: "config hidden size", arguments: model("m-hidden"), words: ["word_embeddings.weight", "the model needs [120, 64]"]),
            Case(name: "model type xlm-roberta", arguments: model("m-xlmr"), words: ["config.json", "model_type \"xlm-roberta\" is not supported"]),
            Case(name: "no model type", arguments: model("m-notype"), words: ["config.json", "missing \"model_type\""]),
            Case(name: "heads do not divide", arguments: model("m-heads"), words: ["config.json", "not a multiple of num_attention_heads 5"]),
            Case(name: "activation swish", arguments: model("m-swish"), words: ["config.json", "hidden_act \"swish\" is not supported"]),
            Case(name: "hidden size as text", arguments: model("m-hiddenstr"), words: ["config.json", "\"hidden_size\" must be a positive integer"]),
            Case(name: "config cut short", arguments: model("m-configjunk"), words: ["m-configjunk/config.json", "not valid JSON"]),
            Case(name: "config duplicate key", arguments: model("m-configdup"), words: ["m-configdup/config.json", "duplicate key \"hidden_size\""]),
            Case(name: "vocabulary without [UNK]", arguments: model("m-nounk"), words: ["vocab.txt", "the unknown token [UNK] is not in the vocabulary"]),
            Case(name: "no vocabulary", arguments: model("m-novocab"), words: ["m-novocab", "no vocab.txt or tokenizer.json"]),
            Case(name: "corrupt tokenizer.json", arguments: model("m-badtokenizer"), words: ["m-badtokenizer/tokenizer.json", "not valid JSON"]),
            Case(name: "NaN weight", arguments: model("m-nan"), words: ["m-nan", "query.weight holds NaN", "damaged"]),
            Case(name: "missing tensor", arguments: model("m-missingtensor"), words: ["missing tensor encoder.layer.1.output.dense.bias"]),
            Case(name: "extra tensor", arguments: model("m-extratensor"), words: ["tensors the model does not use", "encoder.layer.9.extra.weight"]),
            Case(name: "vocabulary too long", arguments: model("m-longvocab"), words: ["122 tokens, more than vocab_size 120"]),
            Case(name: "--model is a file", arguments: model("base/config.json"), words: ["base/config.json", "is a file; a model is a folder"]),
            Case(name: "--model missing", arguments: model("nosuch-model"), words: ["nosuch-model", "does not exist"]),

            // Options: range checks before anything runs (ArgumentParser's status 64).
            Case(name: "--lr 0", arguments: option("--lr", "0"), words: ["--lr must be a positive number"], status: 64),
            Case(name: "--lr -1 (a negative number after an option)", arguments: option("--lr", "-1"), words: ["--lr must be a positive number"], status: 64),
            Case(name: "--lr nan", arguments: option("--lr", "nan"), words: ["--lr must be a positive number"], status: 64),
            Case(name: "--lr abc", arguments: option("--lr", "abc"), words: ["'abc' is invalid for '--lr"], status: 64),
            Case(name: "--batch-size 0", arguments: option("--batch-size", "0"), words: ["--batch-size must be positive"], status: 64),
            Case(name: "--epochs 0", arguments: option("--epochs", "0"), words: ["--epochs must be positive"], status: 64),
            Case(name: "--adam-beta1 1.5", arguments: option("--adam-beta1", "1.5"), words: ["--adam-beta1"], status: 64),
            Case(name: "--adam-epsilon 0", arguments: option("--adam-epsilon", "0"), words: ["--adam-epsilon must be positive"], status: 64),
            Case(name: "--momentum -1", arguments: option("--optimizer", "sgd", "--momentum=-1"), words: ["--momentum"], status: 64),
            Case(name: "--min-delta -1", arguments: option("--min-delta=-1"), words: ["--min-delta"], status: 64),
            Case(name: "--warmup-ratio 2", arguments: option("--warmup-ratio", "2"), words: ["--warmup-ratio must be in [0, 1)"], status: 64),
            Case(name: "--bucket-mb 0", arguments: option("--bucket-mb", "0"), words: ["--bucket-mb must be"], status: 64),
            Case(name: "--keep-checkpoints 0", arguments: option("--keep-checkpoints", "0"), words: ["--keep-checkpoints must be positive"], status: 64),
            Case(name: "--weight-decay -1", arguments: option("--weight-decay=-1"), words: ["--weight-decay must not be negative"], status: 64),
            Case(name: "--monitor unknown", arguments: option("--monitor", "val_f1"), words: ["'val_f1' is invalid for '--monitor"], status: 64),
            Case(name: "--pooling unknown", arguments: option("--pooling", "max"), words: ["'max' is invalid for '--pooling"], status: 64),
            Case(name: "--patience without --valid", arguments: option("--patience", "2"), words: ["--patience needs --valid"], status: 64),
            Case(name: "unknown option", arguments: option("--learning-rate", "1e-4"), words: ["Unknown option '--learning-rate'"], status: 64),
            Case(name: "--seed -1", arguments: option("--seed=-1"), words: ["'-1' is invalid for '--seed"], status: 64),
            Case(name: "--dropout 1.5", arguments: option("--dropout", "1.5"), words: ["--dropout must be in [0, 1)"], status: 64),
            Case(name: "--label-smoothing 1.5", arguments: option("--label-smoothing", "1.5"), words: ["--label-smoothing must be in [0, 1)"], status: 64),
            Case(name: "--grad-accum 0", arguments: option("--grad-accum", "0"), words: ["--grad-accum must be positive"], status: 64),
            Case(name: "--lora-rank 0", arguments: option("--lora-rank", "0"), words: ["--lora-rank must be positive"], status: 64),
            Case(name: "--lora-targets unknown", arguments: option("--lora-rank", "2", "--lora-targets", "foo"),
                 words: ["--lora-targets", "\"foo\" names no layer"], status: 64),
            Case(name: "--layer-lr-decay 0", arguments: option("--layer-lr-decay", "0"), words: ["--layer-lr-decay must be in (0, 1]"], status: 64),
            Case(name: "--max-grad-norm 0", arguments: option("--max-grad-norm", "0"), words: ["--max-grad-norm must be a positive number"], status: 64),
            Case(name: "--collective-timeout 0", arguments: option("--collective-timeout", "0"), words: ["--collective-timeout"], status: 64),
            Case(name: "--log-every 0", arguments: option("--log-every", "0"), words: ["--log-every must be positive"], status: 64),
            Case(name: "--task unknown", arguments: option("--task", "ranking"), words: ["'ranking' is invalid for '--task"], status: 64),
            Case(name: "--train-only unknown", arguments: option("--train-only", "classifier"), words: ["'classifier' is invalid for '--train-only", "'head'"], status: 64),
            Case(name: "--freeze unknown", arguments: option("--freeze", "encoder"), words: ["'encoder' is invalid for '--freeze", "'embeddings'"], status: 64),
            Case(name: "--monitor without --valid", arguments: option("--monitor", "val_accuracy"), words: ["--monitor val_accuracy needs --valid"], status: 64),
            Case(name: "2 ranks: --monitor without --valid", ranks: 2, arguments: option("--monitor", "val_accuracy"), words: ["--monitor val_accuracy needs --valid"],
                 status: 64),
            Case(name: "2 ranks: --freeze unknown", ranks: 2, arguments: option("--freeze", "encoder"), words: ["'encoder' is invalid for '--freeze"], status: 64),
            Case(name: "--save-every-minutes -1", arguments: option("--save-every-minutes=-1"), words: ["--save-every-minutes must not be negative"], status: 64),
            Case(name: "config key twice", arguments: option("--config", "\(f)/twice.yaml"), words: ["twice.yaml:2:", "\"batch_size\" on line 1"], status: 64),
            Case(name: "config names a config", arguments: option("--config", "\(f)/nested.yaml"), words: ["nested.yaml:2:", "cannot name another"], status: 64),
            Case(name: "config value of the wrong type", arguments: option("--config", "\(f)/fast.yaml"), words: ["fast.yaml:2: lr:", "'fast' is invalid for '--lr"],
                 status: 64),
            Case(name: "config value out of range", arguments: option("--config", "\(f)/negative.yaml"), words: ["negative.yaml:2: lr:", "--lr must be a positive number"],
                 status: 64),
            Case(name: "2 ranks: config value of the wrong type", ranks: 2, arguments: option("--config", "\(f)/fast.yaml"), words: ["fast.yaml:2: lr:"], status: 64),
            // Options checked against the model and data.
            Case(name: "--max-length 1", arguments: option("--max-length", "1"), words: ["--max-length 1 must be in 3...40"]),
            Case(name: "--max-length 2 for a classifier", arguments: option("--max-length", "2"), words: ["--max-length 2 must be in 3...40", "at least one token"]),
            Case(name: "mlm --max-length 2", arguments: text("corpus.txt", ["--task", "mlm", "--max-length", "2"]), words: ["--max-length 2 must be in 3...40"]),
            Case(name: "2 ranks: mlm --max-length 2", ranks: 2, arguments: text("corpus.txt", ["--task", "mlm", "--max-length", "2"]),
                 words: ["--max-length 2 must be in 3...40"]),
            Case(name: "eval --max-length 2 of a masked-language model", arguments: ["eval", "--model", "\(f)/mlm", "--data", "\(f)/corpus.txt", "--max-length", "2"],
                 words: ["--max-length 2 must be in 3...40"]),
            Case(name: "eval with no masked token", arguments: ["eval", "--model", "\(f)/mlm", "--data", "\(f)/one-word.txt", "--max-length", "3",
                                                                "--mlm-probability", "0.01"],
                 words: ["one-word.txt", "no token of its 1 window(s) was masked"]),
            Case(name: "2 ranks: eval with no masked token", ranks: 2, arguments: ["eval", "--model", "\(f)/mlm", "--data", "\(f)/one-word.txt",
                                                                                  "--max-length", "3", "--mlm-probability", "0.01"],
                 words: ["no token of its 1 window(s) was masked"]),
            Case(name: "--grad-accum above the per-rank batch", arguments: option("--grad-accum", "8", "--batch-size", "4"),
                 words: ["--grad-accum 8", "4 example(s)", "at most 4"]),
            Case(name: "2 ranks: --grad-accum above the per-rank batch", ranks: 2, arguments: option("--grad-accum", "8", "--batch-size", "8"),
                 words: ["--grad-accum 8", "over 2 rank(s): 4 example(s)"]),
            Case(name: "--lora-rank larger than the layer", arguments: option("--lora-rank", "1000"), words: ["--lora-rank 1000", "not smaller than the 32 x 32 weight"]),
            Case(name: "2 ranks: --lora-rank larger than the layer", ranks: 2, arguments: option("--lora-rank", "16"), words: ["--lora-rank 16", "not smaller"]),
            Case(name: "vocab.txt and tokenizer.json disagree", arguments: model("m-vocabdisagree"),
                 words: ["m-vocabdisagree: vocab.txt and tokenizer.json disagree", "token id 40"]),
            Case(name: "2 ranks: vocab.txt and tokenizer.json disagree", ranks: 2, arguments: model("m-vocabdisagree"), words: ["vocab.txt and tokenizer.json disagree"]),
            Case(name: "2 ranks: --max-length 2 for a classifier", ranks: 2, arguments: option("--max-length", "2"), words: ["--max-length 2 must be in 3...40"]),
            Case(name: "--max-length 41", arguments: option("--max-length", "41"), words: ["--max-length 41 must be in 3...40"]),
            Case(name: "warm-up longer than the run", arguments: option("--warmup-steps", "100"), words: ["--warmup-steps 100 is not shorter than the run"]),
            Case(name: "--lr-end above --lr", arguments: option("--lr-schedule", "polynomial", "--lr", "1e-4", "--lr-end", "1e-3"),
                 words: ["--lr-end 0.001 is not below the peak learning rate 0.0001"]),
            Case(name: "--freeze-layers beyond the model", arguments: option("--freeze-layers", "9"), words: ["--freeze-layers 9", "2 layers"]),
            Case(name: "--class-weights count", arguments: option("--class-weights", "1,2,3"), words: ["--class-weights gives 3 weights", "2 labels"]),
            Case(name: "--monitor for the other task", arguments: text("numbers.jsonl", ["--valid", "\(f)/numbers.jsonl", "--monitor", "val_accuracy"]),
                 words: ["--monitor val_accuracy is not a metric of a regression model"]),

            // Output folders.
            Case(name: "--output is a file", arguments: option(), words: ["--output", "is a file, not a folder"], output: .existing("a-file")),
            Case(name: "--output under a file", arguments: option(), words: ["--output", "a-file is a file, not a folder"], output: .existing("a-file/run")),
            Case(name: "--output empty", arguments: text("good.jsonl").map { $0 == Self.outputToken ? "" : $0 }, words: ["--output is empty"]),
            Case(name: "--output not creatable", arguments: text("good.jsonl").map { $0 == Self.outputToken ? "/proc/finetune-dist-run" : $0 },
                 words: ["--output /proc/finetune-dist-run", "cannot create the folder"]),

            // The existing reference run (2 checkpoints): refused changes leave it as it was.
            Case(name: "fresh run into a run", arguments: text("good.jsonl"), words: ["already holds a run", "checkpoints (newest: step 2)", "--resume", "--overwrite"],
                 output: .referenceRun),
            Case(name: "fresh run into a run without checkpoints", arguments: text("good.jsonl"),
                 words: ["already holds a run (final, metrics.jsonl", "--overwrite"], output: .existing("run-without-checkpoints")),
            Case(name: "2 ranks: fresh run into a run", ranks: 2, arguments: text("good.jsonl"), words: ["already holds a run"],
                 output: .existing("run-without-checkpoints")),
            Case(name: "--output is the model folder", arguments: text("good.jsonl"), words: ["is the model folder --model"], output: .existing("base")),
            Case(name: "--output inside the model folder", arguments: text("good.jsonl"), words: ["lies inside the model folder"], output: .existing("base/run")),
            Case(name: "2 ranks: --output is the model folder", ranks: 2, arguments: text("good.jsonl"), words: ["is the model folder --model"],
                 output: .existing("base")),
            Case(name: "--overwrite with --resume", arguments: resume(["--overwrite"]), words: ["--overwrite replaces the run", "give one of them"],
                 status: 64, output: .referenceRun),
            Case(name: "--overwrite deleting the model", arguments: ["train", "--model", "\(f)/reference-run/final", "--train", "\(f)/good.jsonl",
                                                                   "--output", Self.outputToken, "--overwrite"],
                 words: ["reference-run/final", "which --overwrite would delete"], output: .referenceRun),
            Case(name: "no --model without --resume", arguments: ["train", "--train", "\(f)/good.jsonl", "--output", Self.outputToken],
                 words: ["--model is needed to start a run"], status: 64),
            Case(name: "resume from another model", arguments: resume([], model: "classifier"), words: ["started from --model", "--accept-changed model"], output: .referenceRun),
            Case(name: "resume with another lr", arguments: resume(["--lr", "0.01"]), words: ["--lr was", "now 0.01", "--accept-changed lr"], output: .referenceRun),
            Case(name: "resume on other data", arguments: resume([], data: "good-other.jsonl"), words: ["not the training data of the checkpoint"], output: .referenceRun),
            Case(name: "resume with a malformed valid", ranks: 2, arguments: resume(["--valid", "\(f)/malformed.jsonl"]),
                 words: ["malformed.jsonl:3:"], output: .referenceRun),
            Case(name: "resume with unknown labels", ranks: 2, arguments: resume([], data: "newlabel.jsonl"),
                 words: ["newlabel.jsonl:2:", "unknown label \"maybe\""], output: .referenceRun),
            Case(name: "resume with a malformed test", ranks: 2, arguments: resume(["--test", "\(f)/malformed.jsonl"]),
                 words: ["malformed.jsonl:3:"], output: .referenceRun),

            // Two ranks: the error once, every rank gone.
            Case(name: "2 ranks: malformed line", ranks: 2, arguments: text("malformed.jsonl"), words: ["malformed.jsonl:3:", "not valid JSON"]),
            Case(name: "2 ranks: invalid UTF-8 valid", ranks: 2, arguments: text("good.jsonl", ["--valid", "\(f)/latin1.jsonl"]), words: ["latin1.jsonl:3:"]),
            Case(name: "2 ranks: duplicate keys", ranks: 2, arguments: text("dupkeys.jsonl"), words: ["dupkeys.jsonl:2:", "duplicate key"]),
            Case(name: "2 ranks: NaN feature", ranks: 2, arguments: mlp("nan.jsonl"), words: ["nan.jsonl:3:", "NaN"]),
            Case(name: "2 ranks: NaN weight", ranks: 2, arguments: model("m-nan"), words: ["query.weight holds NaN"]),
            Case(name: "2 ranks: missing test", ranks: 2, arguments: text("good.jsonl", ["--test", "\(f)/nosuch.jsonl"]), words: ["nosuch.jsonl", "cannot read"]),
            Case(name: "CSV in a .txt file", arguments: text("csv-as.txt"), words: ["csv-as.txt:1: not valid JSON", "CSV needs a .csv name"]),
            Case(name: "JSON Lines in a .csv file", arguments: text("jsonl-as.csv"), words: ["jsonl-as.csv:1:", "name it .jsonl"]),
            Case(name: "2 ranks: CSV ragged", ranks: 2, arguments: text("ragged.csv"), words: ["ragged.csv:3:"]),
            Case(name: "2 ranks: empty file", ranks: 2, arguments: text("empty.jsonl"), words: ["empty.jsonl", "no examples"]),
            Case(name: "2 ranks: truncated weights", ranks: 2, arguments: model("m-truncated"), words: ["runs past the end"]),
            Case(name: "2 ranks: --freeze-layers", ranks: 2, arguments: option("--freeze-layers", "9"), words: ["--freeze-layers 9"]),
            Case(name: "2 ranks: --lora-targets unknown", ranks: 2, arguments: option("--lora-rank", "2", "--lora-targets", "foo"),
                 words: ["\"foo\" names no layer"], status: 64),
            Case(name: "2 ranks: a misspelt option", ranks: 2, arguments: option("--learning-rate", "1e-4"), words: ["Unknown option '--learning-rate'"], status: 64),

            // eval and predict.
            Case(name: "eval --batch-size 0", arguments: ["eval", "--model", "\(f)/classifier", "--data", "\(f)/good.jsonl", "--batch-size", "0"],
                 words: ["--batch-size must be positive"], status: 64),
            Case(name: "predict --batch-size -1", arguments: ["predict", "--model", "\(f)/classifier", "--input", "\(f)/good.jsonl",
                                                              "--output", Self.outputToken, "--batch-size=-1"],
                 words: ["--batch-size must be positive"], status: 64),
            Case(name: "eval --whole-word-mask on a classifier", arguments: ["eval", "--model", "\(f)/reference-run/final", "--data", "\(f)/good.jsonl", "--whole-word-mask"],
                 words: ["--mlm-probability and --whole-word-mask apply to a masked-language model"]),
            Case(name: "eval --mlm-probability 1", arguments: ["eval", "--model", "\(f)/reference-run/final", "--data", "\(f)/good.jsonl", "--mlm-probability", "1"],
                 words: ["--mlm-probability must be in (0, 1)"], status: 64),
            Case(name: "predict --top-k 0", arguments: ["predict", "--model", "\(f)/classifier", "--input", "\(f)/good.jsonl", "--output", Self.outputToken, "--top-k", "0"],
                 words: ["--top-k must be positive"], status: 64),
            Case(name: "eval a missing model", arguments: ["eval", "--model", "\(f)/nosuch", "--data", "\(f)/good.jsonl"], words: ["nosuch", "does not exist"]),
            Case(name: "eval without labels", arguments: ["eval", "--model", "\(f)/reference-run/final", "--data", "\(f)/nolabel.jsonl"], words: ["nolabel.jsonl:4:", "missing \"label\""]),
            Case(name: "predict with a base model", arguments: ["predict", "--model", "\(f)/base", "--input", "\(f)/good.jsonl", "--output", Self.outputToken],
                 words: ["no classification, regression or masked-language head"]),
            Case(name: "predict into a folder", arguments: ["predict", "--model", "\(f)/classifier", "--input", "\(f)/good.jsonl",
                                                            "--output", "\(f)/afolder"], words: ["--output", "afolder: is a folder; name a file"]),
            Case(name: "predict into a missing folder", arguments: ["predict", "--model", "\(f)/classifier", "--input", "\(f)/good.jsonl",
                                                                    "--output", "\(f)/nodir/sub/p.jsonl"], words: ["the folder", "nodir/sub does not exist"]),
            Case(name: "predict malformed input", arguments: ["predict", "--model", "\(f)/classifier", "--input", "\(f)/malformed.jsonl",
                                                              "--output", Self.outputToken], words: ["malformed.jsonl:3:"]),

            // Hostfiles, checked by launch/cluster.sh before mpirun starts.
            Case(name: "hostfile MPICH syntax", arguments: ["\(f)/hosts-colon"] + text("good.jsonl"), words: ["hosts-colon:1:", "localhost slots=2"],
                 status: 2, script: "cluster.sh"),
            Case(name: "hostfile slots=0", arguments: ["\(f)/hosts-zero"] + text("good.jsonl"), words: ["hosts-zero:2:", "slots=0 gives"],
                 status: 2, script: "cluster.sh"),
            Case(name: "hostfile duplicate host", arguments: ["\(f)/hosts-dup"] + text("good.jsonl"), words: ["hosts-dup:2:", "listed again (first on line 1)"],
                 status: 2, script: "cluster.sh"),
            Case(name: "hostfile slots word", arguments: ["\(f)/hosts-word"] + text("good.jsonl"), words: ["hosts-word:1:", "slots=two is not a whole number"],
                 status: 2, script: "cluster.sh"),
            Case(name: "hostfile max_slots", arguments: ["\(f)/hosts-max"] + text("good.jsonl"), words: ["hosts-max:1:", "max_slots=1 is less than slots=2"],
                 status: 2, script: "cluster.sh"),
            Case(name: "hostfile only comments", arguments: ["\(f)/hosts-comments"] + text("good.jsonl"), words: ["lists no hosts"],
                 status: 2, script: "cluster.sh"),
            Case(name: "hostfile with Windows line endings", arguments: ["\(f)/hosts-crlf"] + text("good.jsonl"),
                 words: ["hosts-crlf:1:", "Windows line ending", "dos2unix"], status: 2, script: "cluster.sh"),
            Case(name: "hostfile missing", arguments: ["\(f)/hosts-nosuch"] + text("good.jsonl"), words: ["cannot read hostfile"],
                 status: 2, script: "cluster.sh"),
            Case(name: "hostfile unresolvable host", arguments: ["\(f)/hosts-unresolvable"] + text("good.jsonl"),
                 words: ["cannot reach nosuchhost.invalid"], status: 2, script: "cluster.sh"),
            Case(name: "hostfile unreachable host", arguments: ["\(f)/hosts-unreachable"] + text("good.jsonl"),
                 words: ["cannot reach 10.255.255.1", "within 2 s"], status: 2, environment: ["FINETUNE_DIST_CONNECT_TIMEOUT": "2"], script: "cluster.sh"),
        ]
    }

    func testEveryBadInputGetsAClearMessageAndLeavesNothingBehind() throws {
        let all = cases
        XCTAssertGreaterThanOrEqual(all.count, 80)
        XCTAssertEqual(Set(all.map(\.name)).count, all.count, "case names are unique")
        let reference = "\(fx)/reference-run"
        let referenceBefore = try BadInputFixtures.snapshot(reference)
        XCTAssertTrue(referenceBefore.keys.contains("checkpoints/step-00000002/model.safetensors"), "\(referenceBefore.keys.sorted())")
        var failures: [String] = []
        for (index, c) in all.enumerated() {
            let output: String
            switch c.output {
            case .fresh: output = "\(fx)/out-\(index)"
            case .referenceRun: output = reference
            case .existing(let path): output = "\(fx)/\(path)"
            }
            let existingBefore = try BadInputFixtures.snapshot(output)
            let arguments = c.arguments.map { $0 == Self.outputToken ? output : $0 }
            var environment = Harness.mpiEnvironment
            environment["FINETUNE_DIST_BIN"] = Harness.binary
            environment.merge(c.environment) { $1 }
            let r: Harness.Result
            if let script = c.script {
                r = try Harness.run("\(repositoryRoot)/launch/\(script)", arguments, timeout: 60, environment: environment)
            } else if c.ranks > 1 {
                r = try Harness.run("/usr/bin/env", ["mpirun", "-n", String(c.ranks), "--bind-to", "none", Harness.binary] + arguments,
                                    timeout: 60, environment: environment)
            } else {
                r = try Harness.run(Harness.binary, arguments, timeout: 60, environment: environment)
            }
            var problems: [String] = []
            if r.timedOut { problems.append("did not end within 60 s") }
            if r.status != c.status { problems.append("status \(r.status), expected \(c.status)") }
            for word in c.words where !r.stderr.contains(word) { problems.append("message lacks \"\(word)\"") }
            if c.ranks > 1, let word = c.words.first, r.stderr.components(separatedBy: word).count > 2 {
                problems.append("said \(r.stderr.components(separatedBy: word).count - 1) times, not once")
            }
            if r.output.contains("Fatal error") || r.output.contains("Swift runtime failure") || r.output.contains("NSCocoaErrorDomain") {
                problems.append("crash or raw error text")
            }
            if r.seconds > 30 { problems.append("took \(Int(r.seconds)) s") }
            // No rank (nor an ssh of the launcher) outlives the command.
            let leftovers = try Harness.run("/usr/bin/env", ["pgrep", "-f", c.script == nil ? output : (c.arguments.first ?? output)], timeout: 10)
            if leftovers.status == 0 && c.output.isFresh { problems.append("processes left: \(leftovers.stdout)") }
            if case .existing = c.output {
                if try BadInputFixtures.snapshot(output) != existingBefore { problems.append("\(output) changed") }
            } else if case .fresh = c.output, FileManager.default.fileExists(atPath: output) {
                problems.append("left \(output) behind")
            }
            if try BadInputFixtures.snapshot(reference) != referenceBefore { problems.append("the reference run changed") }
            if !problems.isEmpty {
                let message = r.stderr.split(separator: "\n").first(where: { $0.contains("rror") }) ?? Substring(r.stderr.prefix(300))
                failures.append("[\(c.name)] \(problems.joined(separator: "; ")) -- stderr: \(message)")
            }
        }
        XCTAssertTrue(failures.isEmpty, "\(failures.count) of \(all.count) cases:\n" + failures.joined(separator: "\n"))
        XCTAssertFalse(try Harness.run("/usr/bin/env", ["pgrep", "-f", "10.255.255.1"], timeout: 10).status == 0, "no ssh left behind")
    }
}

extension BadInputTests {
    /// Inputs that load but may not be what the user meant: the run goes on and says so once.
    func testInputsThatLoadButLookWrongAreSaid() throws {
        let integers = "\(fx)/integers.jsonl"
        try (0..<12).map { "{\"text\": \"the cpu\", \"label\": \($0 % 3)}" }.joined(separator: "\n").write(toFile: integers, atomically: true, encoding: .utf8)
        let regression = try Harness.finetune(["train", "--model", "\(fx)/base", "--train", integers, "--output", "\(fx)/notice-1", "--max-steps", "1"])
        XCTAssertEqual(regression.status, 0, regression.output)
        XCTAssertTrue(regression.stdout.contains("note: \(integers): the labels are numbers (3 whole values: 0, 1, 2), so this trains a regression model"), regression.stdout)
        XCTAssertTrue(regression.stdout.contains("pass --task classification"))
        let classifier = try Harness.finetune(["train", "--model", "\(fx)/base", "--train", integers, "--output", "\(fx)/notice-2", "--max-steps", "1",
                                               "--task", "classification"])
        XCTAssertEqual(classifier.status, 0, classifier.output)
        XCTAssertFalse(classifier.stdout.contains("regression"), classifier.stdout)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(fx)/notice-2/final/config.json"))) as! [String: Any]
        XCTAssertEqual(config["id2label"] as? [String: String], ["0": "0", "1": "1", "2": "2"])

        try FileManager.default.copyItem(atPath: "\(fx)/base", toPath: "\(fx)/m-shortvocab")
        let vocabulary = try String(contentsOfFile: "\(fx)/base/vocab.txt", encoding: .utf8).split(separator: "\n").prefix(60)
        try (vocabulary.joined(separator: "\n") + "\n").write(toFile: "\(fx)/m-shortvocab/vocab.txt", atomically: true, encoding: .utf8)
        let short = try Harness.finetune(["train", "--model", "\(fx)/m-shortvocab", "--train", "\(fx)/good.jsonl", "--output", "\(fx)/notice-3", "--max-steps", "1"])
        XCTAssertEqual(short.status, 0, short.output)
        XCTAssertTrue(short.stdout.contains("the vocabulary has 60 tokens, fewer than vocab_size 120"), short.stdout)

        let labelled = try Harness.finetune(["train", "--task", "mlm", "--model", "\(fx)/base", "--train", "\(fx)/good.jsonl", "--output", "\(fx)/notice-4",
                                             "--max-steps", "1"])
        XCTAssertEqual(labelled.status, 0, labelled.output)
        XCTAssertEqual(labelled.stdout.components(separatedBy: "the labels are not read").count, 2, "said once: \(labelled.stdout)")

        // One-token windows: some global batches have no masked token; such a step has no loss, said once.
        let oneToken = try Harness.finetune(["train", "--task", "mlm", "--model", "\(fx)/base", "--train", "\(fx)/corpus.txt", "--output", "\(fx)/notice-5",
                                          "--max-length", "3", "--batch-size", "2", "--max-steps", "12"])
        XCTAssertEqual(oneToken.status, 0, oneToken.output)
        XCTAssertEqual(oneToken.stdout.components(separatedBy: "no token of the global batch was masked").count, 2, "said once: \(oneToken.stdout)")
        XCTAssertFalse(oneToken.output.contains("overflowed"), oneToken.output)

        // An empty second text is no second text (transformers' tokenizer(text, "") gives [CLS] text [SEP]).
        let pairs = "\(fx)/empty-pair.jsonl", plain = "\(fx)/no-pair.jsonl"
        try "{\"text\": \"the cpu\", \"text_pair\": \"\", \"label\": \"yes\"}\n{\"text\": \"a rank\", \"label\": \"no\"}\n"
            .write(toFile: pairs, atomically: true, encoding: .utf8)
        try "{\"text\": \"the cpu\", \"label\": \"yes\"}\n{\"text\": \"a rank\", \"label\": \"no\"}\n".write(toFile: plain, atomically: true, encoding: .utf8)
        let withEmpty = try Harness.finetune(["predict", "--model", "\(fx)/classifier", "--input", pairs, "--output", "\(fx)/p1.jsonl", "--with-logits"])
        let without = try Harness.finetune(["predict", "--model", "\(fx)/classifier", "--input", plain, "--output", "\(fx)/p2.jsonl", "--with-logits"])
        XCTAssertEqual(withEmpty.status, 0, withEmpty.output)
        XCTAssertEqual(without.status, 0, without.output)
        func logits(_ path: String) throws -> [[Double]] {
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
                ((try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["logits"] as? [Double]) ?? []
            }
        }
        XCTAssertEqual(try logits("\(fx)/p1.jsonl"), try logits("\(fx)/p2.jsonl"))
        XCTAssertEqual(try logits("\(fx)/p1.jsonl").count, 2)
        XCTAssertFalse(try logits("\(fx)/p1.jsonl")[0].isEmpty)
    }
}

extension BadInputTests.Output {
    var isFresh: Bool { if case .fresh = self { return true } else { return false } }
}
