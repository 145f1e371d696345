import ArgumentParser
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a model folder with freshly initialised weights (config.json + model.safetensors).",
        discussion: "For tabular data: an MLP whose config.json follows Hugging Face conventions (model_type, hidden_act, id2label, label2id, problem_type).")

    @Option(help: "Model type. Supported: mlp.") var type: String = "mlp"
    @Option(help: "Number of input features.") var inputSize: Int
    @Option(help: "Hidden layer widths, comma-separated (\"\" for none).") var hidden: String = "64"
    @Option(help: "Class names, comma-separated, in class-id order. Omit with --regression.") var labels: String?
    @Flag(help: "A regression model with one output (mean-squared error) instead of a classifier.") var regression = false
    @Option(help: "Hidden activation: relu or gelu (erf form).") var activation: String = "relu"
    @Option(help: "Dropout probability after each hidden activation during training.") var dropout: Double = 0
    @Option(help: "Seed of the initial weights.") var seed: UInt64 = 0
    @Option(help: "Folder to create.") var output: String
    @Flag(help: "Replace --output if it exists.") var force = false

    func validate() throws {
        guard type == "mlp" else { throw ValidationError("--type \(type) is not supported by init; supported: mlp") }
        guard inputSize > 0 else { throw ValidationError("--input-size must be positive") }
        guard Activation(rawValue: activation) != nil else { throw ValidationError("--activation must be relu or gelu") }
        guard dropout >= 0 && dropout < 1 else { throw ValidationError("--dropout must be in [0, 1)") }
        guard regression != (labels != nil) else { throw ValidationError("give either --labels (a classifier) or --regression") }
    }

    func run() throws {
        let hiddenSizes = try parseList(hidden, option: "--hidden") { Int($0).flatMap { $0 > 0 ? $0 : nil } }
        let task: TaskKind
        if let labels {
            let names = try parseList(labels, option: "--labels") { $0.isEmpty ? nil : $0 }
            guard names.count >= 2 else { throw ValidationError("--labels needs at least two classes") }
            guard Set(names).count == names.count else { throw ValidationError("--labels has duplicates") }
            task = .classification(labels: names)
        } else {
            task = .regression
        }
        if FileManager.default.fileExists(atPath: output) && !force {
            throw ValidationError("\(output) exists; pass --force to replace it")
        }
        let model = MLP(config: MLPConfig(inputSize: inputSize, hiddenSizes: hiddenSizes,
                                          activation: Activation(rawValue: activation)!, dropout: dropout, task: task))
        model.initialize(seed: seed)
        do { try AtomicFiles.writeFolder(output, files: ModelFiles.files(of: model)) } catch { exitOnError(error, comm: nil) }
        print("wrote \(output): mlp \(([inputSize] + hiddenSizes + [task.outputCount]).map(String.init).joined(separator: "-")), \(model.layout.count) parameters")
    }
}
