import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// BERT's WordPiece tokenizer, as Hugging Face's BertTokenizerFast (the `tokenizers` library's
/// BertNormalizer + BertPreTokenizer + WordPiece + the [CLS] A [SEP] B [SEP] template):
///
/// 1. clean-up: drop NUL, U+FFFD and control/format/unassigned/private-use characters (tab, newline
///    and carriage return count as whitespace); every whitespace character becomes a space;
/// 2. a space on each side of every CJK ideograph;
/// 3. uncased models: strip accents (NFD, drop non-spacing marks) and lower-case, character by character;
/// 4. split on whitespace, and every punctuation character (Unicode P*, or ASCII punctuation) alone;
/// 5. each word: [UNK] if over 100 characters, else greedy longest-match pieces, continuations
///    prefixed with "##"; a word that cannot be covered becomes [UNK].
/// Vocabulary look-ups compare exact Unicode scalar sequences (as Rust compares bytes), not
/// Swift's canonically-equivalent strings. Before all that, the special tokens written in the text
/// ([CLS], [SEP], [PAD], [UNK], [MASK], case-sensitive, as the tokenizer's added tokens match the raw
/// text) are cut out as single tokens: a fill-mask input says "[MASK]".
public final class WordPieceTokenizer {
    public let lowercase: Bool
    public let maxInputCharsPerWord = 100
    private let vocabulary: [[UInt8]: Int32]
    public let tokens: [String]
    public let clsID: Int32, sepID: Int32, padID: Int32, unkID: Int32
    /// The special tokens the vocabulary has, as UTF-8 bytes with their ids (matched in raw text).
    private let specialTokens: [(bytes: [UInt8], id: Int32)]

    public init(tokens: [String], lowercase: Bool, source: String = "vocabulary") throws {
        self.tokens = tokens
        self.lowercase = lowercase
        var vocabulary: [[UInt8]: Int32] = [:]
        for (i, t) in tokens.enumerated() where vocabulary[Array(t.utf8)] == nil { vocabulary[Array(t.utf8)] = Int32(i) }
        self.vocabulary = vocabulary
        func special(_ name: String) throws -> Int32 {
            guard let id = vocabulary[Array(name.utf8)] else { throw FineTuneError("\(source): no \(name) token in the vocabulary") }
            return id
        }
        clsID = try special("[CLS]"); sepID = try special("[SEP]"); padID = try special("[PAD]"); unkID = try special("[UNK]")
        specialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].compactMap { name in
            vocabulary[Array(name.utf8)].map { (Array(name.utf8), $0) }
        }
    }

    /// The id of a token of the vocabulary, if it has it.
    public func id(of token: String) -> Int32? { vocabulary[Array(token.utf8)] }

    /// What masked-language modelling needs of the vocabulary: [MASK], the special tokens never
    /// masked, and which tokens continue a word (`##...`, for whole-word masking).
    public func maskingSettings(probability: Double, wholeWord: Bool, vocabularySize: Int) throws -> MaskingSettings {
        guard let mask = id(of: "[MASK]") else {
            throw FineTuneError("the vocabulary has no [MASK] token, which masked-language modelling needs")
        }
        return MaskingSettings(probability: probability, wholeWord: wholeWord, maskID: mask, vocabularySize: vocabularySize,
                               specialIDs: [clsID, sepID, padID, unkID, mask], continuation: tokens.map { $0.hasPrefix("##") })
    }

    /// The files a tokenizer is read from (and carried into checkpoints and exports).
    public static let fileNames = ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

    /// The tokenizer of a model folder's files (`fileNames`, as bytes; `source` names the folder in
    /// errors): the vocabulary from vocab.txt (or tokenizer.json's WordPiece vocabulary), casing from
    /// tokenizer.json's normalizer or tokenizer_config.json's do_lower_case (default: lower-case, as
    /// bert-base-uncased).
    public static func load(files: [String: Data], source: String) throws -> WordPieceTokenizer {
        var lowercase: Bool? = nil
        var tokens: [String]? = nil
        var vocabularySource = "\(source)/vocab.txt"
        if let data = files["tokenizer.json"] {
            let json: TokenizerJSON
            do { json = try decodeJSON(TokenizerJSON.self, from: data) } catch {
                throw FineTuneError("\(source)/tokenizer.json: \(userMessage(for: error))")
            }
            lowercase = json.normalizer?.lowercase
            // transformers tokenises with tokenizer.json when a folder has it: so does this tool, and
            // a vocab.txt beside it must say the same (else the folder tokenises two ways).
            if let model = json.model, files["vocab.txt"] == nil || model.type == "WordPiece" {
                guard model.type == "WordPiece", let vocab = model.vocab else {
                    throw FineTuneError("\(source)/tokenizer.json: not a WordPiece tokenizer (only BERT WordPiece is supported)")
                }
                var list = [String?](repeating: nil, count: vocab.count)
                for (token, id) in vocab {
                    guard id >= 0, id < list.count, list[id] == nil else {
                        throw FineTuneError("\(source)/tokenizer.json: vocabulary ids are not 0..<\(vocab.count)")
                    }
                    list[id] = token
                }
                tokens = list.map { $0! }
                vocabularySource = "\(source)/tokenizer.json"
            }
        }
        if lowercase == nil, let data = files["tokenizer_config.json"] {
            do { lowercase = try decodeJSON(TokenizerConfigJSON.self, from: data).doLowerCase } catch {
                throw FineTuneError("\(source)/tokenizer_config.json: \(userMessage(for: error))")
            }
        }
        if let fromJSON = tokens, let data = files["vocab.txt"], let text = String(data: data, encoding: .utf8) {
            let listed = vocabularyLines(text)
            if listed != fromJSON {
                let id = zip(listed, fromJSON).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(listed.count, fromJSON.count)
                let say = { (list: [String]) in id < list.count ? "\"\(list[id])\"" : "nothing (it ends there)" }
                throw FineTuneError("\(source): vocab.txt and tokenizer.json disagree (token id \(id): vocab.txt has \(say(listed)), " +
                                    "tokenizer.json \(say(fromJSON)); \(listed.count) and \(fromJSON.count) tokens): transformers would tokenise " +
                                    "with tokenizer.json; fix or remove the one that is wrong")
            }
        }
        if tokens == nil {
            guard let data = files["vocab.txt"] else {
                throw FineTuneError("\(source): no vocab.txt or tokenizer.json (a text model needs its vocabulary)")
            }
            guard let text = String(data: data, encoding: .utf8) else { throw FineTuneError("\(source)/vocab.txt: not UTF-8 text") }
            tokens = vocabularyLines(text)
        }
        return try WordPieceTokenizer(tokens: tokens!, lowercase: lowercase ?? true, source: vocabularySource)
    }

    /// vocab.txt's tokens, one a line (a final newline and Windows line ends dropped).
    static func vocabularyLines(_ text: String) -> [String] {
        var list = text.components(separatedBy: "\n")
        if list.last == "" { list.removeLast() }
        return list.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
    }

    /// The tokenizer of a model folder on disk.
    public static func load(folder: String) throws -> WordPieceTokenizer {
        var files: [String: Data] = [:]
        for name in fileNames { files[name] = FileManager.default.contents(atPath: "\(folder)/\(name)") }
        return try load(files: files, source: folder)
    }

    // MARK: Character classes (as the Rust `tokenizers` crate defines them)

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .unassigned, .privateUse, .surrogate: return true
        default: return false
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII {
            let v = s.value
            if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    static func isChineseCharacter(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        default: return false
        }
    }

    // MARK: Pipeline

    /// Steps 1-3: the normalised text as Unicode scalars.
    func normalize(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            if s.value == 0 || s.value == 0xFFFD || WordPieceTokenizer.isControl(s) { continue }
            if WordPieceTokenizer.isWhitespace(s) { out.append(" "); continue }
            if WordPieceTokenizer.isChineseCharacter(s) { out.append(" "); out.append(s); out.append(" "); continue }
            out.append(s)
        }
        guard lowercase else { return out }
        // Strip accents: canonical decomposition, then drop non-spacing marks; then lower-case each scalar.
        var stripped: [Unicode.Scalar] = []
        stripped.reserveCapacity(out.count)
        for s in out {
            if s.isASCII {
                stripped.append(s.value >= 65 && s.value <= 90 ? Unicode.Scalar(s.value + 32)! : s)
                continue
            }
            for d in String(s).decomposedStringWithCanonicalMapping.unicodeScalars where d.properties.generalCategory != .nonspacingMark {
                stripped.append(contentsOf: d.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return stripped
    }

    /// Step 4: words of the normalised text.
    func preTokenize(_ scalars: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var start = 0
        for (i, s) in scalars.enumerated() {
            if WordPieceTokenizer.isWhitespace(s) {
                if start < i { words.append(scalars[start..<i]) }
                start = i + 1
            } else if WordPieceTokenizer.isPunctuation(s) {
                if start < i { words.append(scalars[start..<i]) }
                words.append(scalars[i...i])
                start = i + 1
            }
        }
        if start < scalars.count { words.append(scalars[start...]) }
        return words
    }

    /// Step 5 for one word.
    func wordPieces(_ word: ArraySlice<Unicode.Scalar>, into ids: inout [Int32]) {
        if word.count > maxInputCharsPerWord { ids.append(unkID); return }
        let utf8 = word.map { Array(String($0).utf8) }
        var pieces: [Int32] = []
        var start = word.startIndex
        while start < word.endIndex {
            var end = word.endIndex
            var found: Int32? = nil
            while start < end {
                var key: [UInt8] = start > word.startIndex ? Array("##".utf8) : []
                for k in start..<end { key.append(contentsOf: utf8[k - word.startIndex]) }
                if let id = vocabulary[key] { found = id; break }
                end -= 1
            }
            guard let id = found else { ids.append(unkID); return }
            pieces.append(id)
            start = end
        }
        ids.append(contentsOf: pieces)
    }

    /// Token ids of a text, without the [CLS] and [SEP] around it.
    public func tokenize(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        func words(_ part: String) { for word in preTokenize(normalize(part)) { wordPieces(word, into: &ids) } }
        let bytes = Array(text.utf8)
        // Every special token begins with "[": text without one (nearly all) takes the plain path.
        guard bytes.contains(UInt8(ascii: "[")) else { words(text); return ids }
        var start = 0, i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "["),
               let special = specialTokens.first(where: { bytes[i...].starts(with: $0.bytes) }) {
                // Cutting at ASCII "[" and "]" keeps both sides valid UTF-8.
                if start < i { words(String(decoding: bytes[start..<i], as: UTF8.self)) }
                ids.append(special.id)
                i += special.bytes.count
                start = i
            } else {
                i += 1
            }
        }
        if start < bytes.count { words(String(decoding: bytes[start...], as: UTF8.self)) }
        return ids
    }

    /// [CLS] A [SEP] (B [SEP]) with token type ids 0 for the first part and 1 for the second,
    /// truncated to `maxLength` tokens in all (longest-first for pairs, as `tokenizers` does).
    public func encode(_ text: String, pair: String? = nil, maxLength: Int? = nil) -> (ids: [Int32], typeIDs: [Int32]) {
        var (a, b) = (tokenize(text), pair.map(tokenize))
        if let maxLength { (a, b) = truncateLongestFirst(a, b, budget: max(0, maxLength - (b == nil ? 2 : 3))) }
        var ids = [clsID] + a + [sepID]
        var types = [Int32](repeating: 0, count: ids.count)
        if let b {
            ids += b + [sepID]
            types += [Int32](repeating: 1, count: b.count + 1)
        }
        return (ids, types)
    }
}

/// The parts of tokenizer.json this tokenizer reads.
private struct TokenizerJSON: Decodable {
    struct Normalizer: Decodable { var lowercase: Bool? }
    struct Model: Decodable {
        var type: String?
        var vocab: [String: Int]?
        enum CodingKeys: String, CodingKey { case type, vocab }
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            type = try c.decodeIfPresent(String.self, forKey: .type)
            // Only a WordPiece model's vocabulary is a token -> id object (Unigram's is a list).
            vocab = type == "WordPiece" ? try c.decodeIfPresent([String: Int].self, forKey: .vocab) : nil
        }
    }
    var normalizer: Normalizer?
    var model: Model?
}

private struct TokenizerConfigJSON: Decodable {
    var doLowerCase: Bool?
    enum CodingKeys: String, CodingKey { case doLowerCase = "do_lower_case" }
}
