// Losses, summed (not averaged) over the B rows: the trainer divides the allreduced gradient sum
// by the global example count (shape legend in Linear.swift).

/// Softmax cross-entropy against the target smoothed by ε (`smoothing`, torch's label_smoothing):
/// losses[B] = -((1 − ε)·log p[b][target[b]] + ε/K·Σ_k log p[b][k]), with probs[B, K] = p = softmax(logits).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func softmaxCrossEntropyForward<T: KernelScalar>(losses: UnsafeMutablePointer<T>, probs: UnsafeMutablePointer<T>,
                                                        logits: UnsafePointer<T>, targets: UnsafePointer<Int32>,
                                                        B: Int, K: Int, smoothing: T = 0) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for b in 0..<B {
        let row = logits + b * K, p = probs + b * K
        var maxLogit = row[0]
        for k in 1..<K where row[k] > maxLogit { maxLogit = row[k] }
        var sum: T = 0
        for k in 0..<K { p[k] = T.kernelExp(row[k] - maxLogit); sum += p[k] }
        for k in 0..<K { p[k] /= sum }
        let t = Int(targets[b])
        let logSum = T.log(sum)
        losses[b] = -(row[t] - maxLogit - logSum)
        if smoothing != 0 {
            var logProbabilitySum: T = 0
            for k in 0..<K { logProbabilitySum += row[k] - maxLogit - logSum }
            losses[b] = (1 - smoothing) * losses[b] - smoothing / T(K) * logProbabilitySum
        }
    }
}

/// dlogits[B, K] += dlosses[b] · (probs − ((1 − ε)·onehot(target) + ε/K))
@_specialize(where T == Float)
@_specialize(where T == Double)
public func softmaxCrossEntropyBackward<T: KernelScalar>(dlogits: UnsafeMutablePointer<T>, dlosses: UnsafePointer<T>,
                                                         probs: UnsafePointer<T>, targets: UnsafePointer<Int32>,
                                                         B: Int, K: Int, smoothing: T = 0) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    let spread = smoothing / T(K)
    for b in 0..<B {
        let t = Int(targets[b])
        for k in 0..<K {
            let target: T = (k == t ? 1 - smoothing : 0) + spread
            dlogits[b * K + k] += dlosses[b] * (probs[b * K + k] - target)
        }
    }
}

/// Squared error per row: losses[B] = Σ_k (pred[b, k] - target[b, k])²  (K outputs, usually 1)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func squaredErrorForward<T: KernelScalar>(losses: UnsafeMutablePointer<T>, predictions: UnsafePointer<T>,
                                                 targets: UnsafePointer<T>, B: Int, K: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for b in 0..<B {
        var sum: T = 0
        for k in 0..<K { let d = predictions[b * K + k] - targets[b * K + k]; sum += d * d }
        losses[b] = sum
    }
}

/// dpredictions[B, K] += dlosses[b] · 2 (pred - target)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func squaredErrorBackward<T: KernelScalar>(dpredictions: UnsafeMutablePointer<T>, dlosses: UnsafePointer<T>,
                                                  predictions: UnsafePointer<T>, targets: UnsafePointer<T>,
                                                  B: Int, K: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for b in 0..<B {
        for k in 0..<K { dpredictions[b * K + k] += dlosses[b] * 2 * (predictions[b * K + k] - targets[b * K + k]) }
    }
}

/// The index of the largest of p[0..<n] (the first on ties).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func argmax<T: KernelScalar>(_ p: UnsafePointer<T>, _ n: Int) -> Int {
    var best = 0
    for i in 1..<max(n, 1) where p[i] > p[best] { best = i }
    return best
}
