import FineTuneModels
import Foundation

/// Fill-mask inference with a masked-language model (transformers' fill-mask pipeline): for every
/// [MASK] of an input, the most probable tokens under the softmax of the head's vocabulary logits.
public enum FillMask {
    /// One candidate, named as transformers' fill-mask pipeline names its fields.
    public struct Candidate: Encodable, Equatable, Sendable {
        public var token: Int32
        public var tokenString: String
        /// The softmax probability over the vocabulary; nil when not finite.
        public var score: Double?
        enum CodingKeys: String, CodingKey { case token, tokenString = "token_str", score }
    }

    /// One input's masks, in order: the top candidates and the vocabulary logits [V] at each.
    public struct Prediction: Sendable {
        public var candidates: [[Candidate]] = []
        public var logits: [[Float]] = []
    }

    /// The `k` most probable tokens of `logits` [V] under the softmax, most probable first (ties: lower id first).
    public static func candidates(_ logits: [Float], k: Int, tokens: [String]) -> [Candidate] {
        let top = logits.max() ?? 0
        let total = logits.reduce(0.0) { $0 + exp(Double($1 - top)) }
        let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        return order.prefix(k).map { i in
            let p = exp(Double(logits[i] - top)) / total
            return Candidate(token: Int32(i), tokenString: i < tokens.count ? tokens[i] : "[unused id \(i)]", score: p.isFinite ? p : nil)
        }
    }

    /// The predictions of one batch: the model's logits at every `maskID` of each input, in order.
    public static func predict(_ model: TextModel, batch: Batch, maskID: Int32, tokens: [String], topK: Int) -> [Prediction] {
        var batch = batch
        batch.maskedPositions = batch.tokenIDs.indices.filter { batch.tokenIDs[$0] == maskID }.map(Int32.init)
        batch.maskedTargets = [Int32](repeating: maskID, count: batch.maskedPositions.count)  // no answer to score against
        _ = model.forward(batch, mode: .evaluation)
        let logits = model.lastMaskedLogits()?.logits ?? []
        var predictions: [Prediction] = [], m = 0
        for b in 0..<batch.count {
            var prediction = Prediction()
            while m < batch.maskedPositions.count && Int(batch.maskedPositions[m]) < batch.sequenceStarts[b + 1] {
                prediction.candidates.append(candidates(logits[m], k: topK, tokens: tokens))
                prediction.logits.append(logits[m])
                m += 1
            }
            predictions.append(prediction)
        }
        return predictions
    }
}
