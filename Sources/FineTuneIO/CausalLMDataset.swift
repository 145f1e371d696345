import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// Training data of a causal language model, one document per example, each a run of tokens and
/// which of them the loss scores:
/// - plain text (a file not named .jsonl/.json/.csv: each non-blank line), or JSON Lines with
///   `"text"`: every token is scored (domain adaptation); a text longer than --max-length becomes
///   several examples of at most that many tokens;
/// - `{"prompt": ..., "completion": ...}`: the completion's tokens and an end-of-text token are
///   scored, the prompt's are context (cut at --max-length from the end of the completion side);
/// - `{"messages": [{"role", "content"}, ...]}`: the model's chat template renders the turns and
///   only the assistant turns (content and end marker) are scored.
/// A batch packs its documents one after another: attention stays inside each (CausalAttention.swift),
/// positions restart, and no padding is computed. Position i of a document is scored when token
/// i + 1 is (it predicts it).
public struct CausalLMDataset: ExampleSet {
    public let path: String
    /// Packed tokens of every example and where each starts (count + 1 entries).
    public private(set) var tokens: [Int32] = []
    public private(set) var scored: [Bool] = []
    public private(set) var starts: [Int] = [0]
    /// The 1-based line of each example.
    public private(set) var lines: [Int] = []
    /// Things the user should know about how the file was read.
    public private(set) var notices: [String] = []
    public var count: Int { lines.count }

    public init(path: String, tokenizer: DecoderTokenizer, maxLength: Int, endOfText: Int32?) throws {
        self.path = path
        let bpe = tokenizer.bpe
        var truncated = 0, unscored = 0
        func add(_ ids: [Int32], _ mask: [Bool], line: Int) {
            tokens += ids; scored += mask; starts.append(tokens.count); lines.append(line)
        }
        // A long text becomes consecutive windows; a prompt/completion or conversation is cut to its first maxLength tokens.
        func addDocument(_ ids: [Int32], _ mask: [Bool], line: Int, windows: Bool) {
            guard ids.count > maxLength else {
                if mask.dropFirst().contains(true) { add(ids, mask, line: line) } else { unscored += 1 }
                return
            }
            if windows {
                for s in stride(from: 0, to: ids.count, by: maxLength) where min(ids.count, s + maxLength) - s >= 2 {
                    add(Array(ids[s..<min(ids.count, s + maxLength)]), Array(mask[s..<min(ids.count, s + maxLength)]), line: line)
                }
                return
            }
            truncated += 1
            let cut = Array(mask[..<maxLength])
            if cut.dropFirst().contains(true) { add(Array(ids[..<maxLength]), cut, line: line) } else { unscored += 1 }
        }
        if TextDataset.isPlainText(path: path) {
            for line in try textLines(try readDataFile(path), path: path) where !line.text.trimmingCharacters(in: .whitespaces).isEmpty {
                let ids = bpe.tokenize(line.text)
                addDocument(ids, Array(repeating: true, count: ids.count), line: line.number, windows: true)
            }
        } else if path.lowercased().hasSuffix(".csv") {
            throw FineTuneError("\(path): a causal language model reads plain text or JSON Lines (\"text\", \"prompt\"/\"completion\" or \"messages\"), not CSV")
        } else {
            try JSONLines.forEachObject(in: try readDataFile(path), path: path) { number, object in
                func fail(_ why: String) -> FineTuneError { FineTuneError("\(path):\(number): \(why)") }
                func string(_ key: String) throws -> String? {
                    guard let value = object[key], value != .null else { return nil }
                    guard let s = value.string else { throw fail("\"\(key)\" must be a string") }
                    return s
                }
                if let messages = object["messages"], messages != .null {
                    guard let chat = tokenizer.chat else {
                        throw fail("\"messages\" needs the model's chat template, and this model has none (give \"prompt\" and \"completion\", or \"text\")")
                    }
                    guard let list = messages.array, !list.isEmpty else { throw fail("\"messages\" must be a non-empty list of {\"role\", \"content\"}") }
                    let turns = try list.enumerated().map { i, item -> ChatMessage in
                        guard let o = item.object, let role = o["role"]?.string, let content = o["content"]?.string else {
                            throw fail("message \(i + 1) must be {\"role\": ..., \"content\": ...} with two strings")
                        }
                        guard ["system", "user", "assistant"].contains(role) else { throw fail("message \(i + 1): role \"\(role)\" is not system, user or assistant") }
                        return ChatMessage(role: role, content: content)
                    }
                    guard turns.contains(where: { $0.role == "assistant" }) else { throw fail("no assistant message: nothing to learn from (only assistant turns are scored)") }
                    let (ids, mask) = chat.tokenize(turns, addGenerationPrompt: false) { bpe.tokenize($0) }
                    addDocument(ids, mask, line: number, windows: false)
                } else if let completion = try string("completion") {
                    guard let prompt = try string("prompt") else { throw fail("\"completion\" needs a \"prompt\" beside it") }
                    let context = bpe.tokenize(prompt)
                    let answer = bpe.tokenize(completion) + (endOfText.map { [$0] } ?? [])
                    addDocument(context + answer, Array(repeating: false, count: context.count) + Array(repeating: true, count: answer.count),
                                line: number, windows: false)
                } else if let text = try string("text") {
                    let ids = bpe.tokenize(text)
                    addDocument(ids, Array(repeating: true, count: ids.count), line: number, windows: true)
                } else {
                    throw fail("needs \"text\", \"prompt\" and \"completion\", or \"messages\"")
                }
            }
        }
        if truncated > 0 { notices.append("\(path): \(truncated) example(s) longer than --max-length \(maxLength) tokens were cut to it") }
        if unscored > 0 { notices.append("\(path): \(unscored) example(s) had nothing to score within --max-length \(maxLength) tokens (or one token only) and were left out") }
        guard count > 0 else { throw FineTuneError("\(path): no examples (no line with text to learn from)") }
    }

    public var fingerprint: String {
        var h = Digest()
        h.update(array: tokens); h.update(array: scored.map { $0 ? UInt8(1) : 0 }); h.update(array: starts.map(Int64.init))
        return h.hex()
    }

    public func cost(of i: Int) -> Int? { starts[i + 1] - starts[i] }

    /// The documents packed one after another; position p is scored when its next token is.
    public func batch(_ indices: ArraySlice<Int>) -> Batch {
        var b = Batch(exampleIndices: Array(indices))
        for i in indices {
            let base = Int32(b.tokenIDs.count)
            let range = starts[i]..<starts[i + 1]
            b.tokenIDs += tokens[range]
            b.sequenceStarts.append(b.tokenIDs.count)
            for (k, n) in range.enumerated().dropLast() where scored[n + 1] {
                b.nextTokenPositions.append(base + Int32(k))
                b.nextTokenTargets.append(tokens[n + 1])
            }
        }
        b.tokenTypeIDs = [Int32](repeating: 0, count: b.tokenIDs.count)
        return b
    }
}

extension CausalLMDataset {
    /// Generation inputs, one per line: plain text, or JSON Lines with "prompt" (or "text"), or
    /// "messages" rendered by the chat template with the assistant's header added (the model
    /// continues as the assistant). Returns each prompt's tokens and its line.
    public static func prompts(path: String, tokenizer: DecoderTokenizer) throws -> [(ids: [Int32], line: Int)] {
        var out: [(ids: [Int32], line: Int)] = []
        let bpe = tokenizer.bpe
        if TextDataset.isPlainText(path: path) {
            for line in try textLines(try readDataFile(path), path: path) where !line.text.trimmingCharacters(in: .whitespaces).isEmpty {
                out.append((bpe.tokenize(line.text), line.number))
            }
        } else {
            try JSONLines.forEachObject(in: try readDataFile(path), path: path) { number, object in
                func fail(_ why: String) -> FineTuneError { FineTuneError("\(path):\(number): \(why)") }
                if let messages = object["messages"]?.array {
                    guard let chat = tokenizer.chat else { throw fail("\"messages\" needs the model's chat template, and this model has none") }
                    let turns = try messages.enumerated().map { i, item -> ChatMessage in
                        guard let o = item.object, let role = o["role"]?.string, let content = o["content"]?.string else {
                            throw fail("message \(i + 1) must be {\"role\": ..., \"content\": ...} with two strings")
                        }
                        return ChatMessage(role: role, content: content)
                    }
                    out.append((chat.tokenize(turns, addGenerationPrompt: true) { bpe.tokenize($0) }.ids, number))
                } else if let text = object["prompt"]?.string ?? object["text"]?.string {
                    out.append((bpe.tokenize(text), number))
                } else {
                    throw fail("needs \"prompt\" (or \"text\"), or \"messages\"")
                }
            }
        }
        for (ids, line) in out where ids.isEmpty { throw FineTuneError("\(path):\(line): an empty prompt (generation needs at least one token)") }
        return out
    }
}
