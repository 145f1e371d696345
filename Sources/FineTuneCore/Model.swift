import Foundation

/// What the trainer needs of a model: flat parameter and gradient buffers with one layout, and
/// forward/backward over a local batch. The gradient buffer has `controlSlots` extra floats after
/// the parameters, which the trainer uses to carry per-step figures inside the gradient allreduce.
public protocol FineTunableModel: AnyObject {
    var layout: ParameterLayout { get }
    var parameters: FlatBuffer<Float> { get }
    var gradients: FlatBuffer<Float> { get }
    var task: TaskKind { get }
    /// Forward and backward of one local batch: ADDS the gradient of the summed loss into `gradients`.
    /// Before any backward work it writes the batch's loss sum into control slot 0; as backward
    /// finishes tensors (last layers first), it calls `gradientsReady(offset)`: every gradient from
    /// `offset` to the end of the buffer is final (so its allreduce can start while backward goes on).
    func trainStep(_ batch: Batch, dropoutSeed: UInt64, step: Int, gradientsReady: (Int) -> Void) -> BatchStatistics
    /// Summed loss and correct count of a batch (no dropout).
    func evaluate(_ batch: Batch) -> BatchStatistics
    /// Class probabilities (classification) or predicted values (regression), one row per example.
    func predict(_ batch: Batch) -> [[Float]]
    /// The head's raw outputs [B][K] (no softmax).
    func logits(_ batch: Batch) -> [[Float]]
    /// The files of the model in this program's own format (a loadable model folder): what checkpoints hold.
    func internalFiles() -> [String: Data]
    /// The files of the model as others load it (transformers / sentence-transformers for BERT).
    func exportFiles() -> [String: Data]
    /// Turns a batch-size-independent description of the input into a batch (tabular rows or packed tokens).
    var inputKind: InputKind { get }
    /// Tensors [rows, width] of which a step touches few rows (embedding tables: the batch's tokens),
    /// so the other rows' gradients are exactly zero on every rank and need not be summed.
    var sparseGradientTensors: [String] { get }
}

/// Seconds spent in the forward pass (with the loss) and the backward pass of one step.
public struct StepTimings: Sendable {
    public var forward = 0.0
    public var backward = 0.0
    public init(forward: Double = 0, backward: Double = 0) { self.forward = forward; self.backward = backward }
}

/// The kinds of kernel a BERT step is made of, for `bench`'s per-kernel breakdown.
public enum KernelKind: Int, CaseIterable, Sendable {
    /// The dense layers' matrix products and bias sums (Q, K, V, attention output, feed-forward, pooler, classifier).
    case linear
    /// Q·Kᵀ, softmax, the probabilities' dropout and P·V per sequence and head, and their backward.
    case attention
    case gelu
    case layerNorm
    /// Dropout of the embeddings, the sublayer outputs and the classifier input (not attention's).
    case dropout
    /// Embedding lookups and their gradient scatter.
    case embeddings
    /// Residual sums and the zeroing of backward scratch buffers.
    case elementwise
    /// Pooling, loss and the rest of the head outside `linear`.
    case head

    public var name: String {
        switch self {
        case .linear: return "linear"
        case .attention: return "attention"
        case .gelu: return "gelu"
        case .layerNorm: return "layernorm"
        case .dropout: return "dropout"
        case .embeddings: return "embeddings"
        case .elementwise: return "elementwise"
        case .head: return "head"
        }
    }
}

/// Seconds per kernel kind over one training step (forward and backward).
public struct KernelTimes: Sendable {
    public var seconds = [Double](repeating: 0, count: KernelKind.allCases.count)
    public init() {}
    public subscript(kind: KernelKind) -> Double {
        get { seconds[kind.rawValue] }
        set { seconds[kind.rawValue] = newValue }
    }
}

public enum InputKind: Equatable, Sendable {
    case features(width: Int)
    case text
}

public let modelControlSlots = 8

extension FineTunableModel {
    public var sparseGradientTensors: [String] { [] }

    public func trainStep(_ batch: Batch, dropoutSeed: UInt64, step: Int) -> BatchStatistics {
        trainStep(batch, dropoutSeed: dropoutSeed, step: step, gradientsReady: { _ in })
    }

    /// Control slot 0 holds the local loss sum (see trainStep).
    func recordLossSum(_ stats: BatchStatistics) { gradients[layout.count] = Float(stats.lossSum) }
}

/// Writes a model's export files (best/, final/) atomically.
public func saveModel(_ model: FineTunableModel, to folder: String) throws {
    try AtomicFiles.writeFolder(folder, files: model.exportFiles())
}

/// The task's loss of a batch from its logits [B, K]: fills `losses` [B] and, for a classifier,
/// `probabilities` [B, K]; returns the summed statistics.
func lossStatistics(task: TaskKind, logits: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>,
                    losses: UnsafeMutablePointer<Float>, batch: Batch) -> BatchStatistics {
    let B = batch.count, K = task.outputCount
    var stats = BatchStatistics()
    stats.count = Double(B)
    switch task {
    case .classification:
        softmaxCrossEntropyForward(losses: losses, probs: probabilities, logits: logits, targets: batch.classTargets, B: B, K: K)
        for b in 0..<B {
            stats.lossSum += Double(losses[b])
            if argmax(probabilities + b * K, K) == Int(batch.classTargets[b]) { stats.correct += 1 }
        }
    case .regression:
        squaredErrorForward(losses: losses, predictions: logits, targets: batch.regressionTargets, B: B, K: K)
        for b in 0..<B { stats.lossSum += Double(losses[b]) }
        stats.correct = stats.lossSum
    }
    return stats
}

/// dlogits[B, K] += gradient of the summed loss (after `lossStatistics` on the same batch).
func lossBackward(task: TaskKind, dlogits: UnsafeMutablePointer<Float>, ones: UnsafePointer<Float>, logits: UnsafePointer<Float>,
                  probabilities: UnsafePointer<Float>, batch: Batch) {
    let B = batch.count, K = task.outputCount
    switch task {
    case .classification:
        softmaxCrossEntropyBackward(dlogits: dlogits, dlosses: ones, probs: probabilities, targets: batch.classTargets, B: B, K: K)
    case .regression:
        squaredErrorBackward(dpredictions: dlogits, dlosses: ones, predictions: logits, targets: batch.regressionTargets, B: B, K: K)
    }
}

/// Probabilities [B][K] (classification) or values [B][1] (regression) from logits.
func predictions(task: TaskKind, logits: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>,
                 losses: UnsafeMutablePointer<Float>, B: Int) -> [[Float]] {
    let K = task.outputCount
    switch task {
    case .classification:
        let targets = [Int32](repeating: 0, count: B)
        softmaxCrossEntropyForward(losses: losses, probs: probabilities, logits: logits, targets: targets, B: B, K: K)
        return (0..<B).map { Array(UnsafeBufferPointer(start: probabilities + $0 * K, count: K)) }
    case .regression:
        return (0..<B).map { Array(UnsafeBufferPointer(start: logits + $0 * K, count: K)) }
    }
}

@inline(__always)
func argmax(_ p: UnsafePointer<Float>, _ n: Int) -> Int {
    var best = 0
    for i in 1..<max(n, 1) where p[i] > p[best] { best = i }
    return best
}
