import ArgumentParser
import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneTrainer
import Foundation

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build the token cache of text data files ahead of a run (under mpirun, the ranks each tokenize a slice).",
        discussion: "Tokenizes each --data file once into binary token files with an offsets index in --cache-dir, as `train` with the same --model, --task and --max-length reads it (plain text, JSON Lines or CSV; labels kept for classification and regression). A later `train --cache-dir` (or `eval --cache-dir`) with the same file, tokenizer and --max-length starts from it without reading the text. An entry is keyed by the file (size, modification time, its first and last MiB), the tokenizer and --max-length: a changed file gets a new one. Run it before `sbatch`, in a Slurm array, or on each host of a cluster without a shared filesystem.")

    @Option(help: "Model folder whose tokenizer is used (the folder train will start from).") var model: String
    @Option(help: "A data file to tokenize (repeat for several: train, valid, test).") var data: [String]
    @Option(help: "Folder of the token cache (train's --cache-dir).") var cacheDir: String
    @Option(help: "mlm: a corpus for masked-language modelling (windows of --max-length tokens, labels not read); classification or regression (the default): one example per record, cut to --max-length, with its label.") var task: String = "classification"
    @Option(help: "Tokens per example, as train's --max-length (default: the model's limit, at most 128).") var maxLength: Int?

    func validate() throws {
        guard ["mlm", "classification", "regression"].contains(task) else { throw ValidationError("--task must be mlm, classification or regression") }
        guard !data.isEmpty else { throw ValidationError("give at least one --data file") }
    }

    func run() throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator() } catch { exitOnError(error, comm: nil) }
        do {
            let settings = TokenCacheSettings(folder: cacheDir, comm: comm, note: { if comm.isRoot { printError($0) } })
            let built = try DataLoading.buildTokenCache(data, model: model, maskedLM: task == "mlm", maxLength: maxLength, settings: settings)
            if comm.isRoot {
                for b in built { print("\(b.path): \(b.meta.examples) examples, \(b.meta.tokens) tokens -> \(b.entry)") }
            }
            comm.finalize()
        } catch { exitOnError(error, comm: comm) }
    }
}
