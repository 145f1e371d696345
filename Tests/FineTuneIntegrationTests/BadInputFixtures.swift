
import FineTuneIO
import FineTuneKernels
import Foundation

/// The files BadInputTests feeds the command line: good ones to start from, each bad one a copy
/// with one thing wrong, and a reference run with two checkpoints.
enum BadInputFixtures {
    static func make(in dir: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func write(_ name: String, _ text: String) { _ = fm.createFile(atPath: "\(dir)/\(name)", contents: Data(text.utf8)) }
        func lines(_ name: String, _ body: [String]) { write(name, body.joined(separator: "\n") + "\n") }
        let tinyBert = "\(repositoryRoot)/Tests/Fixtures/tiny-bert"
        try fm.copyItem(atPath: "\(tinyBert)/base", toPath: "\(dir)/base")
        try fm.copyItem(atPath: "\(tinyBert)/classifier", toPath: "\(dir)/classifier")
        try fm.copyItem(atPath: "\(tinyBert)/mlm", toPath: "\(dir)/mlm")

        // Text data: 24 good lines, labels yes/no; each bad file is good lines with one line changed.
        let words = ["the", "a", "model", "data", "train", "fast", "slow", "cpu", "mpi", "rank"]
        var rng = SplitMix64(seed: 5)
        let good = (0..<24).map { i -> String in
            let sentence = (0..<5).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ")
            return "{\"text\": \"\(sentence)\", \"label\": \"\(i % 2 == 0 ? "yes" : "no")\"}"
        }
        lines("good.jsonl", good)
        lines("good-other.jsonl", Array(good.reversed().dropFirst(2)))
        func variant(_ name: String, line: Int, _ replacement: String) {
            var copy = good
            copy[line - 1] = replacement
            lines(name, copy)
        }
        variant("malformed.jsonl", line: 3, "{\"text\": \"the data\", \"label\": \"yes\"")
        variant("notext.jsonl", line: 2, "{\"sentence\": \"the data\", \"label\": \"no\"}")
        variant("textnum.jsonl", line: 2, "{\"text\": 12345, \"label\": \"no\"}")
        variant("nolabel.jsonl", line: 4, "{\"text\": \"the data\"}")
        variant("boollabel.jsonl", line: 2, "{\"text\": \"the data\", \"label\": true}")
        variant("listlabel.jsonl", line: 2, "{\"text\": \"the data\", \"label\": [\"no\"]}")
        variant("dupkeys.jsonl", line: 2, "{\"text\": \"the data\", \"label\": \"no\", \"label\": \"zzz\"}")
        variant("mixed.jsonl", line: 2, "{\"text\": \"the data\", \"label\": 1}")
        variant("pairnum.jsonl", line: 2, "{\"text\": \"the data\", \"text_pair\": 7, \"label\": \"no\"}")
        variant("array.jsonl", line: 2, "[\"the data\", \"no\"]")
        variant("trailing.jsonl", line: 2, "{\"text\": \"the data\", \"label\": \"no\"} extra")
        variant("unclosed.jsonl", line: 2, "{\"label\": \"no\", \"text\": \"the data}")
        variant("newlabel.jsonl", line: 2, "{\"text\": \"the data\", \"label\": \"maybe\"}")
        lines("onelabel.jsonl", good.map { $0.replacingOccurrences(of: "\"no\"", with: "\"yes\"") })
        lines("fractions.jsonl", (0..<12).map { "{\"text\": \"the cpu\", \"label\": \(Double($0) / 4)}" })
        lines("numbers.jsonl", (0..<12).map { "{\"text\": \"the cpu \(words[$0 % 10])\", \"label\": \(Double($0) * 0.3)}" })
        write("empty.jsonl", "")
        write("blank.jsonl", "\n\n  \n")
        write("header.csv", "text,label\n")
        write("ragged.csv", "text,label\nthe data,yes\nthe cpu,no,extra\n")
        write("csv-as.txt", "text,label\nthe data,yes\nthe cpu,no\n")
        write("jsonl-as.csv", "{\"text\": \"the data\", \"label\": \"yes\"}\n{\"text\": \"the cpu\", \"label\": \"no\"}\n")
        write("notextcol.csv", "sentence,label\nthe data,yes\n")
        write("quote.csv", "text,label\nthe data,yes\n\"the cpu,no\n")
        write("midquote.csv", "text,label\nthe \"data\",yes\n")
        var latin1 = Data((good[0] + "\n" + good[1] + "\n").utf8)
        latin1.append(contentsOf: Array("{\"text\": \"caf".utf8) + [0xE9] + Array("\", \"label\": \"no\"}\n".utf8))
        _ = fm.createFile(atPath: "\(dir)/latin1.jsonl", contents: latin1)
        try fm.createDirectory(atPath: "\(dir)/afolder", withIntermediateDirectories: true)

        // Unlabelled text for masked-language modelling.
        lines("corpus.txt", good.map { $0.replacingOccurrences(of: "{\"text\": \"", with: "").components(separatedBy: "\"").first! })
        write("blank-corpus.txt", "\n   \n\n")
        write("control-corpus.txt", "the data train\n\u{01}\u{02}\u{07}\nthe cpu\n")

        // Feature data for a 6-input, 3-class MLP.
        let init_ = try Harness.finetune(["init", "--input-size", "6", "--hidden", "8", "--labels", "red,green,blue", "--output", "\(dir)/mlp"])
        guard init_.status == 0 else { throw FineTuneError("init: \(init_.output)") }
        let features = (0..<12).map { i in "{\"features\": [0.1, 0.2, 0.3, 0.4, 0.5, \(Double(i) / 10)], \"label\": \"\(["red", "green", "blue"][i % 3])\"}" }
        lines("features.jsonl", features)
        func featureVariant(_ name: String, _ replacement: String) {
            var copy = features
            copy[2] = replacement
            lines(name, copy)
        }
        featureVariant("nan.jsonl", "{\"features\": [0.1, NaN, 0.3, 0.4, 0.5, 0.6], \"label\": \"red\"}")
        featureVariant("inf.jsonl", "{\"features\": [Infinity, 0.2, 0.3, 0.4, 0.5, 0.6], \"label\": \"red\"}")
        featureVariant("neginf.jsonl", "{\"features\": [-Infinity, 0.2, 0.3, 0.4, 0.5, 0.6], \"label\": \"red\"}")
        featureVariant("huge.jsonl", "{\"features\": [1e999, 0.2, 0.3, 0.4, 0.5, 0.6], \"label\": \"red\"}")
        featureVariant("float-overflow.jsonl", "{\"features\": [1e39, 0.2, 0.3, 0.4, 0.5, 0.6], \"label\": \"red\"}")
        featureVariant("featstr.jsonl", "{\"features\": [\"0.1\", 0.2, 0.3, 0.4, 0.5, 0.6], \"label\": \"red\"}")
        featureVariant("featnull.jsonl", "{\"features\": [0.1, 0.2, null, 0.4, 0.5, 0.6], \"label\": \"red\"}")
        featureVariant("nofeat.jsonl", "{\"inputs\": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], \"label\": \"red\"}")
        featureVariant("short.jsonl", "{\"features\": [0.1, 0.2, 0.3], \"label\": \"red\"}")
        featureVariant("classid.jsonl", "{\"features\": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], \"label\": 5}")
        write("nan.csv", "f1,f2,f3,f4,f5,f6,label\n0,0,0,0,0,0,red\nnan,0,0,0,0,0,blue\n")
        write("word.csv", "f1,f2,f3,f4,f5,f6,label\n0,0,0,0,0,0,red\n0,abc,0,0,0,0,blue\n")

        // Damaged model folders: copies of the base model with one thing wrong.
        func copyBase(_ name: String) throws -> String {
            try fm.copyItem(atPath: "\(dir)/base", toPath: "\(dir)/\(name)")
            return "\(dir)/\(name)"
        }
        let weights = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/base/model.safetensors"))
        let headerLength = Int(weights.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        let header = try JSONSerialization.jsonObject(with: weights.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
        let tensorData = weights.subdata(in: (8 + headerLength)..<weights.count)
        func withHeader(_ text: String) -> Data {
            var out = Data()
            withUnsafeBytes(of: UInt64(text.utf8.count).littleEndian) { out.append(contentsOf: $0) }
            out.append(Data(text.utf8)); out.append(tensorData)
            return out
        }
        func headerText(_ h: [String: Any]) throws -> String {
            String(decoding: try JSONSerialization.data(withJSONObject: h, options: [.sortedKeys]), as: UTF8.self)
        }
        func editWeights(_ name: String, _ edit: (inout [String: Any]) -> Void) throws {
            var h = header
            edit(&h)
            try withHeader(try headerText(h)).write(to: URL(fileURLWithPath: "\(try copyBase(name))/model.safetensors"))
        }
        func writeWeights(_ name: String, _ data: Data) throws {
            try data.write(to: URL(fileURLWithPath: "\(try copyBase(name))/model.safetensors"))
        }
        func editConfig(_ name: String, _ edit: (inout [String: Any]) -> Void) throws {
            let folder = try copyBase(name)
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/config.json"))) as! [String: Any]
            edit(&config)
            try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: "\(folder)/config.json"))
        }
        func rewriteTensors(_ name: String, _ edit: (inout [String: (shape: [Int], values: [Float])]) -> Void) throws {
            let file = try SafetensorsFile(data: weights)
            var tensors: [String: (shape: [Int], values: [Float])] = [:]
            for n in file.names { tensors[n] = (file.entries[n]!.shape, try file.floats(n)) }
            edit(&tensors)
            var writer = SafetensorsWriter()
            for n in tensors.keys.sorted() { writer.add(n, shape: tensors[n]!.shape, floats: tensors[n]!.values) }
            try writeWeights(name, writer.serialized())
        }
        try fm.removeItem(atPath: "\(try copyBase("m-noconfig"))/config.json")
        try fm.removeItem(atPath: "\(try copyBase("m-noweights"))/model.safetensors")
        try writeWeights("m-truncated", weights.prefix(weights.count / 2))
        var hugeLength = weights
        hugeLength.replaceSubrange(0..<8, with: withUnsafeBytes(of: (UInt64(1) << 60).littleEndian) { Data($0) })
        try writeWeights("m-headerlength", hugeLength)
        var junk = weights
        junk.replaceSubrange(8..<(8 + headerLength), with: Data(repeating: 0, count: headerLength))
        try writeWeights("m-headerjunk", junk)
        try writeWeights("m-zero", Data())
        try editWeights("m-q4") { h in
            var e = h["embeddings.LayerNorm.weight"] as! [String: Any]; e["dtype"] = "Q4_K"; h["embeddings.LayerNorm.weight"] = e
        }
        try editWeights("m-i32") { h in
            var e = h["embeddings.LayerNorm.weight"] as! [String: Any]; e["dtype"] = "I32"; h["embeddings.LayerNorm.weight"] = e
        }
        let duplicated = try headerText(["embeddings.LayerNorm.bias": header["embeddings.LayerNorm.bias"]!]).dropFirst().dropLast()
        try writeWeights("m-duptensor", withHeader("{" + duplicated + "," + (try headerText(header)).dropFirst()))
        try editWeights("m-overlap") { h in
            // The LayerNorm weight claims the bytes of the tensor stored first.
            let first = h.compactMap { ($0.value as? [String: Any])?["data_offsets"] as? [Int] }.min { $0[0] < $1[0] }!
            var e = h["embeddings.LayerNorm.weight"] as! [String: Any]
            let size = (e["data_offsets"] as! [Int])[1] - (e["data_offsets"] as! [Int])[0]
            e["data_offsets"] = [first[0], first[0] + size]
            h["embeddings.LayerNorm.weight"] = e
        }
        try editConfig("m-hidden") { $0["hidden_size"] = 64 }
        try editConfig("m-xlmr") { $0["model_type"] = "xlm-roberta" }
        try editConfig("m-notype") { $0["model_type"] = nil }
        try editConfig("m-heads") { $0["num_attention_heads"] = 5 }
        try editConfig("m-swish") { $0["hidden_act"] = "swish" }
        try editConfig("m-hiddenstr") { $0["hidden_size"] = "32" }
        let configText = try String(contentsOfFile: "\(dir)/base/config.json", encoding: .utf8)
        try String(configText.prefix(configText.count / 2)).write(toFile: "\(try copyBase("m-configjunk"))/config.json", atomically: true, encoding: .utf8)
        try ("{\"hidden_size\": 32, " + configText.drop { $0 != "{" }.dropFirst())
            .write(toFile: "\(try copyBase("m-configdup"))/config.json", atomically: true, encoding: .utf8)
        let vocab = try String(contentsOfFile: "\(dir)/base/vocab.txt", encoding: .utf8)
        try vocab.replacingOccurrences(of: "[UNK]\n", with: "[UNKNOWN]\n")
            .write(toFile: "\(try copyBase("m-nounk"))/vocab.txt", atomically: true, encoding: .utf8)
        try fm.removeItem(atPath: "\(try copyBase("m-novocab"))/vocab.txt")
        try "{\"model\": {\"vocab\": ".write(toFile: "\(try copyBase("m-badtokenizer"))/tokenizer.json", atomically: true, encoding: .utf8)
        try vocab.replacingOccurrences(of: "[MASK]\n", with: "[MASKED]\n")
            .write(toFile: "\(try copyBase("m-nomask"))/vocab.txt", atomically: true, encoding: .utf8)
        try (vocab + "extra1\nextra2\n").write(toFile: "\(try copyBase("m-longvocab"))/vocab.txt", atomically: true, encoding: .utf8)
        try rewriteTensors("m-nan") { $0["encoder.layer.0.attention.self.query.weight"]!.values[3] = .nan }
        try rewriteTensors("m-missingtensor") { $0["encoder.layer.1.output.dense.bias"] = nil }
        try rewriteTensors("m-nowordembeddings") { $0["embeddings.word_embeddings.weight"] = nil }
        try rewriteTensors("m-extratensor") { $0["encoder.layer.9.extra.weight"] = ([2], [1, 2]) }

        // Output paths that hold something else.
        write("a-file", "not a folder\n")

        // A run with checkpoints after steps 1 and 2.
        let run = try Harness.finetune(["train", "--model", "\(dir)/base", "--train", "\(dir)/good.jsonl", "--output", "\(dir)/reference-run",
                                        "--max-steps", "2", "--batch-size", "16", "--save-every", "1"])
        guard run.status == 0 else { throw FineTuneError("reference run: \(run.output)") }
        // The same run after its checkpoints were deleted to save space: still a run.
        try fm.copyItem(atPath: "\(dir)/reference-run", toPath: "\(dir)/run-without-checkpoints")
        try fm.removeItem(atPath: "\(dir)/run-without-checkpoints/checkpoints")

        // A folder whose tokenizer.json (what transformers reads) disagrees with its vocab.txt.
        try fm.copyItem(atPath: "\(dir)/base", toPath: "\(dir)/m-vocabdisagree")
        var tokens = try String(contentsOfFile: "\(dir)/base/vocab.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        tokens.swapAt(40, 41)
        let vocabulary = tokens.enumerated().map { "\"\($0.element)\": \($0.offset)" }.joined(separator: ", ")
        write("m-vocabdisagree/tokenizer.json", "{\"normalizer\": {\"type\": \"BertNormalizer\", \"lowercase\": true}, " +
                                                "\"model\": {\"type\": \"WordPiece\", \"vocab\": {\(vocabulary)}}}")

        // Config files with one mistake each.
        write("twice.yaml", "batch_size: 8\nbatch-size: 16\n")
        write("nested.yaml", "lr: 1e-4\nconfig: other.yaml\n")
        write("fast.yaml", "epochs: 1\nlr: fast\n")
        write("negative.yaml", "epochs: 1\nlr: -1\n")
        // One short line: at --max-length 3 and a tiny --mlm-probability nothing is masked.
        write("one-word.txt", "model\n")

        // Hostfiles with one mistake each.
        write("hosts-colon", "localhost:2\n")
        write("hosts-zero", "# two lines\nlocalhost slots=0\n")
        write("hosts-dup", "localhost slots=1\nlocalhost slots=1\n")
        write("hosts-word", "localhost slots=two\n")
        write("hosts-max", "localhost slots=2 max_slots=1\n")
        write("hosts-comments", "# nothing here\n\n")
        write("hosts-unresolvable", "nosuchhost.invalid slots=1\n")
        write("hosts-unreachable", "10.255.255.1 slots=1\n")
        write("hosts-crlf", "localhost slots=2\r\n")
    }

    /// Every file under `folder` (relative path -> size and SHA-256); empty when it does not exist.
    /// A single file is listed under its own name.
    static func snapshot(_ folder: String) throws -> [String: String] {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isFolder) else { return [:] }
        func digest(_ path: String) throws -> String {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return "\(data.count) " + Digest.sha256(data)
        }
        guard isFolder.boolValue else { return [(folder as NSString).lastPathComponent: try digest(folder)] }
        var result: [String: String] = [:]
        for case let relative as String in fm.enumerator(atPath: folder)! {
            var isDir: ObjCBool = false
            _ = fm.fileExists(atPath: "\(folder)/\(relative)", isDirectory: &isDir)
            result[relative] = isDir.boolValue ? "folder" : try digest("\(folder)/\(relative)")
        }
        return result
    }
}
