import FineTuneKernels
import Foundation

/// How the next token is chosen: greedy (temperature 0) or sampled from the softmax of
/// logits / temperature, restricted to the smallest set of tokens whose probability reaches
/// `topP` (nucleus sampling), from a seeded generator, so a run repeats.
public struct SamplingSettings: Equatable, Sendable {
    public var temperature: Double
    public var topP: Double
    public var seed: UInt64
    public init(temperature: Double = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature; self.topP = topP; self.seed = seed
    }
    public static let greedy = SamplingSettings()
}

/// Incremental decoding with a key/value cache: the prompt runs through once as a batch (its keys
/// and values kept per layer), then each new token costs one row through every layer, attending
/// over the cached keys. One sequence at a time; LoRA adapters, when present, are applied as in training.
public final class DecoderGenerator {
    public let model: DecoderModel
    private let C: Int, F: Int, Cq: Int, Ckv: Int, V: Int
    /// Per layer [capacity, NKV·HS] keys (rotated) and values.
    private var keys: [[Float]], values: [[Float]]
    private var length = 0
    private let capacity: Int
    // One row of each activation.
    private var x: [Float], normed: [Float], q: [Float], k: [Float], v: [Float], context: [Float], projected: [Float]
    private var gate: [Float], up: [Float], scores: [Float], loraH: [Float], logits: [Float], rstd: [Float] = [0]

    public init(model: DecoderModel, capacity: Int) {
        self.model = model
        let config = model.config
        C = config.hiddenSize; F = config.intermediateSize; Cq = config.queryWidth; Ckv = config.keyValueWidth; V = config.vocabSize
        self.capacity = min(capacity, config.maxPositions)
        keys = Array(repeating: [Float](repeating: 0, count: self.capacity * Ckv), count: config.layers)
        values = keys
        x = [Float](repeating: 0, count: C); normed = x; projected = x
        q = [Float](repeating: 0, count: Cq); context = q
        k = [Float](repeating: 0, count: Ckv); v = k
        gate = [Float](repeating: 0, count: F); up = gate
        scores = [Float](repeating: 0, count: self.capacity)
        loraH = [Float](repeating: 0, count: max(1, model.decoderLoRA?.rank ?? 1))
        logits = [Float](repeating: 0, count: V)
    }

    /// Continues `prompt` by up to `maxNewTokens` tokens, stopping after a token of `stop` (which is
    /// included) or when the cache is full. Returns the new tokens.
    public func generate(prompt: [Int32], maxNewTokens: Int, stop: Set<Int32>, sampling: SamplingSettings = .greedy) -> [Int32] {
        precondition(!prompt.isEmpty, "generation needs at least one prompt token")
        prefill(prompt)
        var rng = SplitMix64(seed: combineKey(sampling.seed, 0x6E4E))
        var generated: [Int32] = []
        var next: Int32 = -1
        while generated.count < maxNewTokens {
            next = choose(sampling, &rng)
            generated.append(next)
            if stop.contains(next) || length >= capacity || generated.count == maxNewTokens { break }
            step(next)
        }
        return generated
    }

    /// The logits [V] after the tokens fed so far (for tests: equal to the training forward's).
    public var lastLogits: [Float] { logits }

    /// Feeds `prompt` from an empty cache; `lastLogits` is then the next token's distribution. The
    /// prompt runs as one batch through the training forward (matrix products over all its tokens
    /// instead of one vector product per token), its keys and values copied into the cache.
    public func prefill(_ prompt: [Int32]) {
        let tokens = Array(prompt.prefix(capacity))
        var batch = Batch(exampleIndices: [0])
        batch.tokenIDs = tokens
        batch.sequenceStarts = [0, tokens.count]
        logits = model.logits(batch)[0]
        for l in 0..<model.config.layers {
            keys[l].withUnsafeMutableBufferPointer { k in
                values[l].withUnsafeMutableBufferPointer { v in model.copyKeysValues(layer: l, keys: k.baseAddress!, values: v.baseAddress!) }
            }
        }
        length = tokens.count
    }

    private func choose(_ sampling: SamplingSettings, _ rng: inout SplitMix64) -> Int32 {
        guard sampling.temperature > 0 else { return Int32(logits.withUnsafeBufferPointer { argmax($0.baseAddress!, V) }) }
        // Softmax of logits / T in Double, then the nucleus: most likely first, until topP is reached.
        let top = Double(logits.max()!)
        var weights = logits.map { exp((Double($0) - top) / sampling.temperature) }
        let total = weights.reduce(0, +)
        for i in weights.indices { weights[i] /= total }
        let order = weights.indices.sorted { weights[$0] > weights[$1] || (weights[$0] == weights[$1] && $0 < $1) }
        var kept: [Int] = [], mass = 0.0
        for i in order {
            kept.append(i); mass += weights[i]
            if mass >= sampling.topP { break }
        }
        var u = rng.nextUnit() * mass
        for i in kept {
            u -= weights[i]
            if u <= 0 { return Int32(i) }
        }
        return Int32(kept.last!)
    }

    /// One token through every layer at position `length`, its key and value appended to the cache.
    private func step(_ token: Int32) {
        let config = model.config, t = model.tensors, p = model.parameters.base
        let NH = config.heads, NKV = config.keyValueHeads, HS = config.headSize, group = NH / NKV
        let position = length, eps = Float(config.rmsNormEps)
        x.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: p + t.embeddings.offset + Int(token) * C, count: C) }
        let starts = [0, 1]
        for (l, layer) in t.layers.enumerated() {
            rmsNormForward(out: &normed, rstd: &rstd, inp: x, weight: p + layer.inputNorm.offset, eps: eps, N: 1, C: C)
            linear(l, .q, out: &q, inp: normed)
            linear(l, .k, out: &k, inp: normed)
            linear(l, .v, out: &v, inp: normed)
            // Rotate at the token's position: the table row `position` is the first row of a one-token sequence's view.
            model.withRotaryRow(position) { cos, sin in
                rotaryForward(&q, cos: cos, sin: sin, starts: starts, B: 1, H: NH, HS: HS)
                rotaryForward(&k, cos: cos, sin: sin, starts: starts, B: 1, H: NKV, HS: HS)
            }
            keys[l].withUnsafeMutableBufferPointer { ($0.baseAddress! + position * Ckv).update(from: k, count: Ckv) }
            values[l].withUnsafeMutableBufferPointer { ($0.baseAddress! + position * Ckv).update(from: v, count: Ckv) }
            let n = position + 1, scale = 1 / Float(HS).squareRoot()
            for h in 0..<NH {
                let g = h / group
                keys[l].withUnsafeBufferPointer { K in
                    Float.gemm(transA: false, transB: true, m: 1, n: n, k: HS, alpha: scale, a: q.withUnsafeBufferPointer { $0.baseAddress! + h * HS },
                               lda: Cq, b: K.baseAddress! + g * HS, ldb: Ckv, beta: 0, c: &scores, ldc: n)
                }
                let top = scores[0..<n].max()!
                var sum: Float = 0
                for j in 0..<n { scores[j] = Float.kernelExp(scores[j] - top); sum += scores[j] }
                for j in 0..<n { scores[j] /= sum }
                values[l].withUnsafeBufferPointer { Vc in
                    context.withUnsafeMutableBufferPointer { out in
                        Float.gemm(transA: false, transB: false, m: 1, n: HS, k: n, alpha: 1, a: scores, lda: n, b: Vc.baseAddress! + g * HS, ldb: Ckv,
                                   beta: 0, c: out.baseAddress! + h * HS, ldc: Cq)
                    }
                }
            }
            linear(l, .o, out: &projected, inp: context)
            for c in 0..<C { x[c] += projected[c] }
            rmsNormForward(out: &normed, rstd: &rstd, inp: x, weight: p + layer.postAttentionNorm.offset, eps: eps, N: 1, C: C)
            linear(l, .gate, out: &gate, inp: normed)
            linear(l, .up, out: &up, inp: normed)
            swigluForward(out: &gate, gate: gate, up: up, N: F)
            linear(l, .down, out: &projected, inp: gate)
            for c in 0..<C { x[c] += projected[c] }
        }
        rmsNormForward(out: &normed, rstd: &rstd, inp: x, weight: p + t.finalNorm.offset, eps: eps, N: 1, C: C)
        linearForward(out: &logits, inp: normed, weight: p + t.outputEmbeddings.offset, bias: nil, B: 1, C: C, OC: V)
        length += 1
    }

    private func linear(_ l: Int, _ projection: DecoderProjection, out: inout [Float], inp: [Float]) {
        let layer = model.tensors.layers[l], p = model.parameters.base
        let (outputs, inputs) = projection.shape(model.config)
        linearForward(out: &out, inp: inp, weight: p + layer.weights[projection]!.offset, bias: layer.biases[projection].map { p + $0.offset },
                      B: 1, C: inputs, OC: outputs)
        guard let lora = model.decoderLoRA, let adapter = model.tensors.adapters[l][projection] else { return }
        loraForward(out: &out, h: &loraH, inp: inp, a: p + adapter.a.offset, b: p + adapter.b.offset, scale: Float(lora.scale),
                    B: 1, C: inputs, OC: outputs, R: lora.rank)
    }
}
