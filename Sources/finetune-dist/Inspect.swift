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
            if let t = i.tokenizer { print("tokenizer: \(t["vocabulary"] ?? "?") tokens, lowercase \(t["lowercase"] ?? "?")") }
            if let l = i.lora { print("LoRA: r \(l.rank), alpha \(l.alpha), dropout \(l.dropout), targets \(l.targets.map(\.rawValue).joined(separator: ","))") }
            if let step = i.checkpointStep {
                print("checkpoint: step \(step), epoch \(i.checkpointEpoch ?? 0)")
                for (k, v) in (i.checkpointOptions ?? [:]).sorted(by: { $0.key < $1.key }) { print("  --\(k) \(v)") }
            }
        } catch { exitOnError(error, comm: nil) }
    }
}
