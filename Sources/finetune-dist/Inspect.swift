import ArgumentParser
import FineTuneTrainer
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model folder, a checkpoint or a LoRA adapter folder without loading it for training.",
        discussion: "Prints the architecture, the task and labels, the parameters per group (embeddings, each layer, LoRA adapters, head), the tensors by dtype, the tokenizer, and for a checkpoint its step, epoch and the options that shaped it.")

    @Argument(help: "The folder: a model folder (best/, final/, a Hugging Face folder), checkpoints/step-N, or an adapter folder.") var folder: String
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func run() throws {
        do {
            let i = try Inspection.inspect(folder)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(i), as: UTF8.self))
                return
            }
            print("\(i.path): \(i.kind)")
            print("architecture: " + i.architecture.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            print("task: \(i.task)" + (i.labels.map { " (\($0.count) labels: \($0.joined(separator: ", ")))" } ?? ""))
            print("parameters: \(i.parameters)")
            for g in i.groups { print("  \(g.name): \(g.parameters)") }
            print("tensors: " + i.tensorsByDType.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
            if let t = i.tokenizer { print("tokenizer: \(t["kind"] ?? "?")") }
            if let l = i.lora { print("LoRA: r \(l.rank), alpha \(l.alpha), dropout \(l.dropout), targets \(l.targets.map(\.rawValue).joined(separator: ","))") }
            if let step = i.checkpointStep {
                print("checkpoint: step \(step), epoch \(i.checkpointEpoch ?? 0)")
                for (k, v) in (i.checkpointOptions ?? [:]).sorted(by: { $0.key < $1.key }) { print("  --\(k) \(v)") }
            }
        } catch { exitOnError(error, comm: nil) }
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a run folder as one self-contained HTML page (train writes it at the end of every run).",
        discussion: "report.html holds the learning curves (training loss, validation loss, and the training subset's with --train-eval-examples), the monitored metric, the learning rate and each rank's throughput as inline SVG, with the best evaluation and early stopping marked, and a summary table. No scripts, no network: it opens in any browser.")

    @Argument(help: "The run folder (holds metrics.jsonl).") var runFolder: String
    @Option(help: "Where to write it (default RUN_FOLDER/report.html).") var output: String?

    func run() throws {
        do { print("wrote \(try RunReport.write(runFolder: runFolder, output: output))") } catch { exitOnError(error, comm: nil) }
    }
}
