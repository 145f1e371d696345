import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// RoBERTa against transformers' RobertaModel / ...ForSequenceClassification / ...ForMaskedLM on a
/// tiny random model with the byte-level BPE vocabulary of Tests/Fixtures/bpe (2,000 tokens):
/// positions from padding_idx + 1, one token type, the classification head's two dropouts and
/// dense layer, lm_head.* (`EncoderGoldenFixture`).
final class RobertaGoldenTests: XCTestCase {
    let fixture = EncoderGoldenFixture(family: .roberta)

    func testSequenceClassifierMatchesTransformers() throws {
        let model = try fixture.checkSequenceClassifier()
        XCTAssertEqual(model.config.positionOffset, 2)
        XCTAssertEqual(model.config.typeVocabSize, 1)
        XCTAssertEqual(model.layout.tensors.suffix(4).map(\.name), ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"])
    }

    func testMeanPoolingMatchesTransformers() throws {
        try fixture.checkMeanPooling(passthrough: ["pooler.dense.bias", "pooler.dense.weight"])
    }

    func testMaskedLMMatchesTransformers() throws {
        try fixture.checkMaskedLM(headTensors: ["lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight", "lm_head.layer_norm.bias", "lm_head.bias"])
    }

    func testPackingEqualsOneSequenceAtATime() throws {
        try fixture.checkPackingEqualsOneSequenceAtATime()
    }

    /// transformers' RobertaLMHead (and MPNet's) applies erf GELU whatever hidden_act says; BERT's
    /// and DistilBERT's masked-LM transform follow the config.
    func testTheMaskedLMActivationFollowsEachFamilysHead() throws {
        for (family, tanh) in [("roberta", false), ("mpnet", false), ("bert", true)] {
            let config = try EncoderConfig.decode(Data(#"{"model_type": "\#(family)", "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu_new"}"#.utf8), path: "c")
            XCTAssertTrue(config.usesTanhGELU, "the encoder's own layers use the config's activation")
            let model = BertModel(config: config, pooling: .mean, task: .maskedLanguageModel)
            XCTAssertEqual(model.body.facts.usesTanhGELU, tanh, family)
        }
    }

    /// A folder with the slow tokenizer's files only: the message says how to write tokenizer.json.
    func testVocabJSONAndMergesWithoutTokenizerJSONAreRefused() throws {
        XCTAssertThrowsError(try WordPieceTokenizer.load(files: ["vocab.json": Data("{}".utf8), "merges.txt": Data()], source: "m")) { error in
            XCTAssertTrue("\(error)".contains("m: vocab.json and merges.txt but no tokenizer.json"), "\(error)")
        }
    }

    /// RoBERTa's token-type table has one row: a tokenizer that gives a pair's second text type 1
    /// (BERT's BertProcessing) is refused when the folder is read, not an out-of-range row later.
    func testATokenizerWithASecondTokenTypeIsRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("roberta-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.copyItem(atPath: "\(fixture.dir)/base", toPath: folder)
        try FileManager.default.removeItem(atPath: "\(folder)/tokenizer.json")
        try FileManager.default.copyItem(atPath: "\(fixturesDirectory)/tiny-distilbert/base/tokenizer.json", toPath: "\(folder)/tokenizer.json")
        XCTAssertThrowsError(try ModelFolder.describe(FolderSource(folder))) { error in
            XCTAssertTrue("\(error)".contains("tokenizer.json: its post-processor gives token type 1, but type_vocab_size is 1"), "\(error)")
        }
    }
}

/// DistilBERT against transformers' DistilBertModel / ...ForSequenceClassification / ...ForMaskedLM
/// on a tiny random model (`EncoderGoldenFixture`): its config names (dim, n_layers, ...),
/// `transformer.layer.{l}` modules, no token types, no pooler, pre_classifier + ReLU, vocab_*.
final class DistilBertGoldenTests: XCTestCase {
    let fixture = EncoderGoldenFixture(family: .distilbert)

    func testSequenceClassifierMatchesTransformers() throws {
        let model = try fixture.checkSequenceClassifier()
        XCTAssertEqual(model.config.positionOffset, 0)
        XCTAssertEqual(model.config.hiddenSize, 32)
        XCTAssertEqual(model.config.classifierDropout, 0.2, "seq_classif_dropout")
        XCTAssertNil(model.layout.spec("embeddings.token_type_embeddings.weight"))
        XCTAssertEqual(model.layout.tensors.suffix(4).map(\.name), ["pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"])
        XCTAssertFalse(model.layout.spec("transformer.layer.1.sa_layer_norm.weight")!.decays, "LayerNorm weights take no weight decay, whatever their name")
    }

    func testMeanPoolingMatchesTransformers() throws {
        try fixture.checkMeanPooling(passthrough: [])
    }

    /// Fixed sinusoidal positions are not learned embeddings: refused, naming the field.
    func testSinusoidalPositionsAreRefused() throws {
        var config = try String(contentsOfFile: "\(fixture.dir)/base/config.json", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"sinusoidal_pos_embds\": false", with: "\"sinusoidal_pos_embds\": true")
        XCTAssertThrowsError(try EncoderConfig.decode(Data(config.utf8), path: "x/config.json")) { error in
            XCTAssertTrue("\(error)".contains("x/config.json: sinusoidal_pos_embds true is not supported"), "\(error)")
        }
    }

    func testMaskedLMMatchesTransformers() throws {
        try fixture.checkMaskedLM(headTensors: ["vocab_transform.weight", "vocab_transform.bias", "vocab_layer_norm.weight", "vocab_layer_norm.bias", "vocab_projector.bias"])
    }

    func testPackingEqualsOneSequenceAtATime() throws {
        try fixture.checkPackingEqualsOneSequenceAtATime()
    }
}
