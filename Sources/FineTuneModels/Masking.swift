import FineTuneKernels

/// Masked-language-model inputs as BERT's pre-training (and transformers'
/// DataCollatorForLanguageModeling) makes them: each non-special token is chosen with probability
/// `probability`; a chosen token becomes [MASK] 80 % of the time, a random token 10 %, and stays
/// itself 10 %; the model must predict the original token at every chosen position.
///
/// The draws are keyed by (seed, step, global example index), like dropout: an example is masked
/// the same whichever rank computes it, so a run gives the same weights on any number of ranks.
/// Evaluation uses one fixed key, so every evaluation scores the same positions.
public struct MaskingSettings: Equatable, Sendable {
    public var probability: Double
    /// Choose whole words (a token and the `##` pieces after it) rather than single tokens.
    public var wholeWord: Bool
    public var maskID: Int32
    public var vocabularySize: Int
    /// Tokens never chosen: [CLS], [SEP], [PAD], [UNK], [MASK].
    public var specialIDs: Set<Int32>
    /// Per vocabulary id: whether the token continues a word (`##ing`); whole-word masking only.
    public var continuation: [Bool]

    public init(probability: Double = 0.15, wholeWord: Bool = false, maskID: Int32, vocabularySize: Int,
                specialIDs: Set<Int32>, continuation: [Bool] = []) {
        self.probability = probability; self.wholeWord = wholeWord; self.maskID = maskID
        self.vocabularySize = vocabularySize; self.specialIDs = specialIDs; self.continuation = continuation
    }

    /// The step key of evaluations (no training step reaches it).
    public static let evaluationStep = Int.max

    /// The masked copy of `batch`: tokens replaced where chosen, and the positions (into the packed
    /// tokens) with the original tokens as targets.
    public func mask(_ batch: Batch, seed: UInt64, step: Int) -> Batch {
        var masked = batch
        masked.maskedPositions = []
        masked.maskedTargets = []
        for b in 0..<batch.count {
            var rng = SplitMix64(seed: combineKey(seed, UInt64(bitPattern: Int64(step)), UInt64(batch.exampleIndices[b]), 0x4D4C4D))
            let range = batch.sequenceStarts[b]..<batch.sequenceStarts[b + 1]
            var chosen = false
            for position in range {
                let id = batch.tokenIDs[position]
                if specialIDs.contains(id) { continue }
                // A word's first token decides for its pieces under whole-word masking.
                let continues = wholeWord && Int(id) < continuation.count && continuation[Int(id)] && position > range.lowerBound
                    && !specialIDs.contains(batch.tokenIDs[position - 1])
                if !continues { chosen = rng.nextUnit() < probability }
                guard chosen else { continue }
                masked.maskedPositions.append(Int32(position))
                masked.maskedTargets.append(id)
                let replacement = rng.nextUnit()
                if replacement < 0.8 {
                    masked.tokenIDs[position] = maskID
                } else if replacement < 0.9 {
                    masked.tokenIDs[position] = Int32(rng.next() % UInt64(vocabularySize))
                }
            }
        }
        return masked
    }
}
