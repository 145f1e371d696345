import FineTuneJSON
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

/// libFuzzer targets for the readers of untrusted files: JSON, JSON Lines, CSV, safetensors, model
/// configs and tokenizers. A reader may reject any input with an error; it must never crash, hang
/// or read out of bounds.
///
/// Built two ways. `launch/fuzz.sh` compiles with `-sanitize=fuzzer -D FUZZING` (libFuzzer supplies
/// `main` and calls `LLVMFuzzerTestOneInput`; FINETUNE_FUZZ_TARGET picks the reader). A plain
/// `swift build` makes a replayer instead: `finetune-fuzz TARGET FILE...` runs the files through the
/// same reader, which is how regression inputs under Tests/Fixtures/fuzz are checked by the tests.
enum FuzzTargets {
    static let names = ["json", "jsonl", "csv", "safetensors", "gguf", "config", "tokenizer"]

    /// A small vocabulary for the tokenizer target.
    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "##s", "##ing", "run", "data", "é", "##é", "中", "!", ","]

    static func run(_ target: String, _ data: Data) {
        switch target {
        case "json":
            _ = try? StrictJSON.parse(data)
        case "jsonl":
            try? JSONLines.forEachObject(in: data, path: "fuzz.jsonl") { _, object in
                _ = object["text"]?.string
                if case .array(let list)? = object["features"] { _ = list.map(\.number) }
            }
        case "csv":
            _ = try? CSV.parse(data, path: "fuzz.csv")
        case "safetensors":
            guard let file = try? SafetensorsFile(data: data, path: "fuzz.safetensors") else { return }
            for name in file.names { _ = try? file.floats(name) }
        case "gguf":
            guard let file = try? GGUFFile(data: data, path: "fuzz.gguf") else { return }
            for t in file.tensors { _ = try? file.floats(t.name) }
        case "config":
            // A model folder whose config.json is the input, with a vocabulary beside it.
            let files = ["config.json": data, "vocab.txt": Data(vocabulary.joined(separator: "\n").utf8)]
            _ = try? ModelFolder.describe(MemorySource(files, name: "fuzz"))
        case "tokenizer":
            _ = try? WordPieceTokenizer.load(files: ["tokenizer.json": data], source: "fuzz")
            if let tokenizer = try? WordPieceTokenizer(tokens: vocabulary, lowercase: true) {
                let text = String(decoding: data, as: UTF8.self)
                let half = text.index(text.startIndex, offsetBy: text.count / 2)
                _ = tokenizer.encode(String(text[..<half]), pair: String(text[half...]), maxLength: 16)
                _ = tokenizer.encode(text)
            }
        default:
            fatalError("unknown fuzz target \(target); known: \(names.joined(separator: ", "))")
        }
    }
}

#if FUZZING
nonisolated(unsafe) var fuzzTarget = ProcessInfo.processInfo.environment["FINETUNE_FUZZ_TARGET"] ?? "json"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    FuzzTargets.run(fuzzTarget, Data(bytes: bytes, count: count))
    return 0
}

/// libFuzzer's driver, entered from the executable's main (SwiftPM links an executable's `main` to
/// `<module>_main`, so libFuzzer's own `main` is not the one that runs).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("finetune_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput)
}
#else
@main
struct Replay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard let target = arguments.first, FuzzTargets.names.contains(target) else {
            FileHandle.standardError.write(Data("usage: finetune-fuzz \(FuzzTargets.names.joined(separator: "|")) FILE...\n".utf8))
            exit(64)
        }
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("finetune-fuzz: cannot read \(path)\n".utf8))
                exit(1)
            }
            FuzzTargets.run(target, data)
        }
        print("finetune-fuzz \(target): \(arguments.count - 1) input(s) read without a crash")
    }
}
#endif
