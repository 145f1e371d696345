import FineTuneIO
import FineTuneJSON
import FineTuneModels
import Foundation
import XCTest

/// SmolLM2-135M-Instruct's tokenizer (as transformers builds it from the GGUF) against transformers
/// on 1,200 texts (code, digits, emoji, CJK, hostile ones, special tokens in the text) and 40
/// conversations through the chat template (Tests/fixture-scripts/make_smollm2_tokenizer_fixture.py).
final class DecoderTokenizerTests: XCTestCase {
    struct Reference: Decodable {
        struct Text: Decodable { let text: String; let ids: [Int32] }
        struct Chat: Decodable { let messages: [ChatMessage]; let add_generation_prompt: Bool; let rendered: String; let ids: [Int32] }
        let texts: [Text]; let chats: [Chat]
    }
    var folder: String { fixturesDirectory + "/smollm2-tokenizer" }

    func load() throws -> (DecoderTokenizer, Reference) {
        let template = try String(contentsOfFile: folder + "/chat_template.jinja", encoding: .utf8)
        let tokenizer = try DecoderTokenizer(json: Data(contentsOf: URL(fileURLWithPath: folder + "/tokenizer.json")), chatTemplate: template, source: "tokenizer.json")
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/reference.json")))
        return (tokenizer, reference)
    }

    func testTextsAsTransformers() throws {
        let (tokenizer, reference) = try load()
        XCTAssertEqual(tokenizer.bpe.tokens.count, 49_152)
        XCTAssertGreaterThanOrEqual(reference.texts.count, 1_000)
        var failures = 0
        for case_ in reference.texts where tokenizer.bpe.tokenize(case_.text) != case_.ids {
            failures += 1
            if failures <= 5 { XCTFail("\(case_.text.debugDescription): \(tokenizer.bpe.tokenize(case_.text)) vs \(case_.ids)") }
        }
        XCTAssertEqual(failures, 0)
        // Decoding gives the text back (every text here is valid UTF-8 and BPE is lossless).
        for case_ in reference.texts { XCTAssertEqual(tokenizer.bpe.decode(case_.ids), case_.text) }
        // Nothing is added around a text (no BOS/EOS: transformers' add_special_tokens adds none for this model).
        XCTAssertEqual(tokenizer.bpe.encode("hello").ids, tokenizer.bpe.tokenize("hello"))
    }

    func testChatTemplateAsTransformers() throws {
        let (tokenizer, reference) = try load()
        let chat = try XCTUnwrap(tokenizer.chat)
        XCTAssertEqual(chat.defaultSystem, "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        for case_ in reference.chats {
            XCTAssertEqual(chat.render(case_.messages, addGenerationPrompt: case_.add_generation_prompt), case_.rendered)
            let (ids, scored) = chat.tokenize(case_.messages, addGenerationPrompt: case_.add_generation_prompt) { tokenizer.bpe.tokenize($0) }
            XCTAssertEqual(ids, case_.ids, case_.rendered.debugDescription)
            // Scored: exactly the assistant turns' contents and their <|im_end|>.
            let scoredText = zip(ids, scored).filter(\.1).map(\.0)
            let expected = case_.messages.filter { $0.role == "assistant" }.map { $0.content + "<|im_end|>" }.joined()
            XCTAssertEqual(tokenizer.bpe.decode(scoredText).replacingOccurrences(of: "\n", with: ""), expected.replacingOccurrences(of: "\n", with: ""),
                           case_.rendered.debugDescription)
        }
        XCTAssertThrowsError(try ChatTemplate(template: "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}", source: "t.json")) {
            XCTAssertTrue("\($0)".contains("t.json") && "\($0)".contains("ChatML"), "\($0)")
        }
    }
}
