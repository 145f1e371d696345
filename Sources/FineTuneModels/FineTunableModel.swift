import FineTuneKernels
/// How a forward pass runs: training draws dropout from (seed, step, global example index).
public enum ForwardMode: Sendable {
    case training(seed: UInt64, step: Int)
    case evaluation
}

public enum InputKind: Equatable, Sendable {
    case features(width: Int)
    case text
}

/// Dropout probabilities in training (zero turns one off); nil where a model has no such dropout
/// (an MLP has no attention and no separate classifier dropout).
public struct DropoutRates: Equatable, Sendable {
    /// After the embeddings and each sublayer (BERT's hidden_dropout_prob), an MLP's hidden layers.
    public var hidden: Double
    /// On the attention probabilities.
    public var attention: Double?
    /// Before the classifier.
    public var classifier: Double?
    public init(hidden: Double, attention: Double? = nil, classifier: Double? = nil) {
        self.hidden = hidden; self.attention = attention; self.classifier = classifier
    }
}

/// What the trainer needs of a model: flat parameter and gradient buffers of one layout, and a
/// forward and a backward pass over a local batch (llm.c's model_forward / model_backward).
/// Everything a caller outside the model's module asks of a model is a requirement here (or of
/// `MaskedLanguageModel`), so no caller downcasts to a concrete model.
public protocol FineTunableModel: AnyObject {
    var layout: ParameterLayout { get }
    var parameters: FlatBuffer<Float> { get }
    /// Same layout as `parameters`; backward ADDS into it (the trainer zeroes it once per step).
    var gradients: FlatBuffer<Float> { get }
    var task: TaskKind { get }
    var inputKind: InputKind { get }
    /// Tensors [rows, width] of which a step touches few rows (embedding tables: the batch's tokens),
    /// so the other rows' gradients are exactly zero on every rank and need not be summed.
    var sparseGradientTensors: [TensorSpec] { get }
    /// The rows of one of `sparseGradientTensors` that the last backward wrote (sorted, no repeats):
    /// every other row's gradient is exactly zero.
    func touchedRows(in tensor: TensorSpec) -> [Int]
    /// The parameters from the input up, in contiguous groups (embeddings, layers, head).
    var parameterGroups: [ParameterGroup] { get }
    /// Parameters below this offset (a prefix of whole groups) are frozen: backward writes no
    /// gradient for them and stops at the lowest trainable group, computing no input gradient there.
    var trainableFrom: Int { get set }
    /// Label smoothing and class weights of the training loss (evaluation reports the plain loss).
    var objective: TrainingObjective { get set }
    /// Bytes of the activations and backward scratch as allocated (one arena).
    var activationBytes: Int { get }
    /// The dropout probabilities training uses.
    var dropout: DropoutRates { get set }
    /// LoRA adapters on the model (nil: none); the base weights are frozen then.
    var lora: LoRASettings? { get }
    /// The learning rate when the user gives none: 5e-5 for a pre-trained encoder (the Hugging Face
    /// Trainer's), 1e-3 for an MLP (usually trained from scratch).
    var defaultLearningRate: Double { get }
    /// The forward pass of a local batch: fills the logits and, when the batch has targets, returns
    /// its summed loss statistics (else only the count).
    func forward(_ batch: Batch, mode: ForwardMode) -> BatchStatistics
    /// The backward pass of the last training forward: ADDS the gradient of the summed loss into
    /// `gradients` from `trainableFrom` on. As it finishes tensors (last layers first) it calls `gradientsReady(offset)`:
    /// every gradient from `offset` to the end of the buffer is final (its exchange can start).
    func backward(gradientsReady: (Int) -> Void)
    /// The head's raw outputs [B][K] of the last forward pass.
    func lastLogits() -> [[Float]]
    /// Sentence-embedding models (task `.embedding`): the embedding's width D; nil for other heads.
    var embeddingWidth: Int? { get }
    /// The embeddings [B, D] of the last forward pass, copied into `out`.
    func copyLastEmbeddings(to out: UnsafeMutablePointer<Float>)
    /// d loss / d embeddings [B, D] of the last forward pass, which the next backward pass starts from.
    func setEmbeddingGradient(_ gradient: UnsafePointer<Float>)
}

extension FineTunableModel {
    public var sparseGradientTensors: [TensorSpec] { [] }
    public func touchedRows(in tensor: TensorSpec) -> [Int] { Array(0..<(tensor.shape.first ?? 0)) }
    public var lora: LoRASettings? { nil }
    public var embeddingWidth: Int? { nil }
    public func copyLastEmbeddings(to out: UnsafeMutablePointer<Float>) { preconditionFailure("not a sentence-embedding model") }
    public func setEmbeddingGradient(_ gradient: UnsafePointer<Float>) { preconditionFailure("not a sentence-embedding model") }
    /// The parameters that train: from `trainableFrom` to the end.
    public var trainableRange: Range<Int> { trainableFrom..<layout.count }

    /// Forward and backward of one training batch, gradients added.
    @discardableResult
    public func trainStep(_ batch: Batch, dropoutSeed: UInt64, step: Int, gradientsReady: (Int) -> Void = { _ in }) -> BatchStatistics {
        let stats = forward(batch, mode: .training(seed: dropoutSeed, step: step))
        backward(gradientsReady: gradientsReady)
        return stats
    }

    /// Summed loss and correct count of a labelled batch (no dropout).
    public func evaluate(_ batch: Batch) -> BatchStatistics { forward(batch, mode: .evaluation) }

    /// Class probabilities (classification) or predicted values (regression), one row per example.
    public func predict(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        _ = forward(batch, mode: .evaluation)
        return predictions(task: task, logits: lastLogits())
    }

    /// The head's raw outputs [B][K] (no softmax).
    public func logits(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        _ = forward(batch, mode: .evaluation)
        return lastLogits()
    }
}

/// A model over token ids (a text encoder), with or without a masked-language-modelling head.
public protocol TextModel: FineTunableModel {
    /// Tokens in the vocabulary (the word embeddings' rows; the masked-language head predicts among them).
    var vocabularySize: Int { get }
    /// The longest input in tokens its position embeddings allow.
    var maxPositions: Int { get }
    /// The transformer's size (for FLOP counts): layers L, hidden width C, intermediate width F.
    var transformerShape: (layers: Int, hidden: Int, intermediate: Int) { get }
    /// Masked-language modelling: how inputs are masked in training and evaluation (a batch
    /// carrying its own masked positions is used as it is).
    var masking: MaskingSettings? { get set }
    /// The vocabulary logits [M][V] at the M masked positions of the last forward pass, with the
    /// batch as it was masked; nil without a masked-language head.
    func lastMaskedLogits() -> (logits: [[Float]], batch: Batch)?
}
