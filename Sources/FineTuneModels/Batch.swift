import FineTuneKernels
/// A local batch: the examples one rank computes in one step.
public struct Batch: Sendable {
    /// Global indices (in the data file) of the examples: they key dropout, so a batch computes the
    /// same whichever rank holds it.
    public var exampleIndices: [Int]
    public var featureWidth: Int
    /// Tabular input [B, featureWidth].
    public var features: [Float] = []
    /// Text input, packed: example b's tokens are [sequenceStarts[b], sequenceStarts[b + 1]).
    public var tokenIDs: [Int32] = []
    public var tokenTypeIDs: [Int32] = []
    public var sequenceStarts: [Int] = [0]
    public var classTargets: [Int32] = []
    public var regressionTargets: [Float] = []
    /// Masked-language modelling: positions into the packed tokens whose original token is to be
    /// predicted, and those tokens (set by `MaskingSettings.mask`, or given as they are by tests).
    public var maskedPositions: [Int32] = []
    public var maskedTargets: [Int32] = []
    /// Causal language modelling: positions into the packed tokens whose logits are scored, and the
    /// token that follows each (the next token of its own document; a document's last token and
    /// prompt tokens are not scored).
    public var nextTokenPositions: [Int32] = []
    public var nextTokenTargets: [Int32] = []
    public var count: Int { exampleIndices.count }
    /// Whether the batch carries targets (training and evaluation do, prediction does not).
    public var hasTargets: Bool { !classTargets.isEmpty || !regressionTargets.isEmpty || !nextTokenTargets.isEmpty }
    /// Compute units of the batch: tokens for text, examples for tabular data.
    public var workUnits: Int { tokenIDs.isEmpty ? count : tokenIDs.count }
    public init(exampleIndices: [Int], featureWidth: Int = 0) {
        self.exampleIndices = exampleIndices
        self.featureWidth = featureWidth
    }
}

/// Per-batch results, as sums over the batch's examples (the trainer reduces them across ranks).
public struct BatchStatistics: Sendable, Equatable {
    public var lossSum: Double = 0
    /// Correct predictions (classification) or the squared-error sum (regression: equals lossSum).
    public var correct: Double = 0
    public var count: Double = 0
    public init(lossSum: Double = 0, correct: Double = 0, count: Double = 0) {
        self.lossSum = lossSum; self.correct = correct; self.count = count
    }
    public static func += (a: inout BatchStatistics, b: BatchStatistics) {
        a.lossSum += b.lossSum; a.correct += b.correct; a.count += b.count
    }
}
