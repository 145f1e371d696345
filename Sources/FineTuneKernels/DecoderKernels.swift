import Foundation

// The kernels of a Llama-architecture decoder besides linear layers and attention (shape legend
// in Linear.swift; here also NKV key/value heads, HS head size, F the MLP's width, P positions).

/// out[N, C] = inp · rstd · weight per row, rstd[N] = 1 / √(mean(inp²) + eps)  (LlamaRMSNorm)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func rmsNormForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, rstd: UnsafeMutablePointer<T>, inp: UnsafePointer<T>,
                                            weight: UnsafePointer<T>, eps: T, N: Int, C: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .layerNorm) }
    for n in 0..<N {
        let x = inp + n * C, o = out + n * C
        let s = 1 / (rowDot(x, x, C) / T(C) + eps).squareRoot()
        for c in 0..<C { o[c] = weight[c] * (x[c] * s) }
        rstd[n] = s
    }
}

/// dinp[N, C] += ∂/∂inp (= with `overwritingInput`);  dweight[C] += Σ_n dout · inp · rstd (nil: frozen).
/// With x̂ = inp · rstd and g = weight ⊙ dout: ∂/∂inp = rstd · (g − x̂ · mean(g ⊙ x̂)).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func rmsNormBackward<T: KernelScalar>(dinp: UnsafeMutablePointer<T>?, dweight: UnsafeMutablePointer<T>?, dout: UnsafePointer<T>,
                                             inp: UnsafePointer<T>, weight: UnsafePointer<T>, rstd: UnsafePointer<T>, N: Int, C: Int,
                                             overwritingInput: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .layerNorm) }
    for n in 0..<N {
        let x = inp + n * C, d = dout + n * C, s = rstd[n]
        if let dweight { for c in 0..<C { dweight[c] += d[c] * x[c] * s } }
        guard let dinp else { continue }
        var dot: T = 0
        for c in 0..<C { dot += weight[c] * d[c] * x[c] }
        // mean(g ⊙ x̂) = s · Σ(g ⊙ x) / C, and x̂ = s · x.
        let k = s * s * dot / T(C)
        let dx = dinp + n * C
        if overwritingInput {
            for c in 0..<C { dx[c] = s * (weight[c] * d[c] - x[c] * k) }
        } else {
            for c in 0..<C { dx[c] += s * (weight[c] * d[c] - x[c] * k) }
        }
    }
}

/// The rotary embedding's cos and sin [P, HS/2] as transformers' LlamaRotaryEmbedding computes
/// them in float32: inv_freq_i = 1 / theta^(2i/HS), angle = position · inv_freq_i (a float32
/// product), then cos and sin of that angle; `frequencyScale` multiplies inv_freq_i (rope
/// scaling of type "linear" is 1/factor; "llama3" passes its per-frequency factors).
public func rotaryTable(positions P: Int, headSize HS: Int, theta: Double, frequencyScale: (Int) -> Double = { _ in 1 }) -> (cos: [Float], sin: [Float]) {
    let half = HS / 2
    var cosines = [Float](repeating: 0, count: P * half), sines = [Float](repeating: 0, count: P * half)
    for i in 0..<half {
        let exponent = Float(2 * i) / Float(HS)
        let inverse = Float(Double(1 / Float(pow(theta, Double(exponent)))) * frequencyScale(i))
        for p in 0..<P {
            let angle = Double(Float(p) * inverse)
            cosines[p * half + i] = Float(cos(angle))
            sines[p * half + i] = Float(sin(angle))
        }
    }
    return (cosines, sines)
}

/// Rotary position embedding in place on x[N, H·HS] (H heads; the rotate_half convention: channel
/// i pairs with i + HS/2): x_i' = x_i cos − x_{i+HS/2} sin, x_{i+HS/2}' = x_{i+HS/2} cos + x_i sin,
/// at the token's position in its sequence (n − starts[b]). cos, sin [P, HS/2].
/// `inverse` rotates back (the transpose): the backward pass of the same rotation, on the gradient.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func rotaryForward<T: KernelScalar>(_ x: UnsafeMutablePointer<T>, cos: UnsafePointer<T>, sin: UnsafePointer<T>, starts: UnsafePointer<Int>,
                                           B: Int, H: Int, HS: Int, inverse: Bool = false) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .attention) }
    let half = HS / 2, width = H * HS
    for b in 0..<B {
        for n in starts[b]..<starts[b + 1] {
            let c = cos + (n - starts[b]) * half, s = sin + (n - starts[b]) * half
            let row = x + n * width
            for h in 0..<H {
                let v = row + h * HS
                for i in 0..<half {
                    let a = v[i], z = v[i + half], sn = inverse ? -s[i] : s[i]
                    v[i] = a * c[i] - z * sn
                    v[i + half] = z * c[i] + a * sn
                }
            }
        }
    }
}

/// Backward of `rotaryForward`: the gradient rotated back, in place on dx[N, H·HS].
public func rotaryBackward<T: KernelScalar>(_ dx: UnsafeMutablePointer<T>, cos: UnsafePointer<T>, sin: UnsafePointer<T>, starts: UnsafePointer<Int>,
                                            B: Int, H: Int, HS: Int) {
    rotaryForward(dx, cos: cos, sin: sin, starts: starts, B: B, H: H, HS: HS, inverse: true)
}

/// out[N, F] = silu(gate) ⊙ up, silu(x) = x · σ(x)  (Llama's MLP between gate/up and down)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func swigluForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, gate: UnsafePointer<T>, up: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .gelu) }
    for i in 0..<N {
        let g = gate[i]
        out[i] = g / (1 + T.kernelExp(-g)) * up[i]
    }
}

/// dgate[N] = dout · up · σ(g)(1 + g(1 − σ(g)));  dup[N] = dout · silu(g)  (both WRITTEN: fresh scratch)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func swigluBackward<T: KernelScalar>(dgate: UnsafeMutablePointer<T>, dup: UnsafeMutablePointer<T>, dout: UnsafePointer<T>,
                                            gate: UnsafePointer<T>, up: UnsafePointer<T>, N: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .gelu) }
    for i in 0..<N {
        let g = gate[i], sigma = 1 / (1 + T.kernelExp(-g)), d = dout[i]
        dup[i] = d * g * sigma
        dgate[i] = d * up[i] * sigma * (1 + g * (1 - sigma))
    }
}

/// out[M, C] = inp[rows[m]] (the hidden states of the positions a loss scores).
public func gatherRows<T: KernelScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, rows: UnsafePointer<Int32>, M: Int, C: Int) {
    for m in 0..<M { (out + m * C).update(from: inp + Int(rows[m]) * C, count: C) }
}

/// dinp[rows[m]] += dout[m]  (backward of `gatherRows`; rows may repeat).
public func scatterAddRows<T: KernelScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, rows: UnsafePointer<Int32>, M: Int, C: Int) {
    for m in 0..<M {
        let d = dinp + Int(rows[m]) * C, s = dout + m * C
        for c in 0..<C { d[c] += s[c] }
    }
}

/// Cross-entropy over a large vocabulary, in place: logits[M, V] become the softmax probabilities
/// and losses[M] = −log p[m][targets[m]] (a second [M, V] buffer would double the largest activation).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func vocabularyCrossEntropyForward<T: KernelScalar>(losses: UnsafeMutablePointer<T>, logits: UnsafeMutablePointer<T>,
                                                           targets: UnsafePointer<Int32>, M: Int, V: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for m in 0..<M {
        let row = logits + m * V
        let maxLogit = rowMax(row, V)
        let targetLogit = row[Int(targets[m])]
        for k in 0..<V { row[k] = T.kernelExp(row[k] - maxLogit) }
        let sum = rowDot(row, nil, V)
        let inv = 1 / sum
        for k in 0..<V { row[k] *= inv }
        losses[m] = T.log(sum) - (targetLogit - maxLogit)
    }
}

/// Backward in place: probs[M, V] (from the forward) become dlogits = dlosses[m] · (p − onehot(target)).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func vocabularyCrossEntropyBackward<T: KernelScalar>(probsToGradient p: UnsafeMutablePointer<T>, dlosses: UnsafePointer<T>,
                                                            targets: UnsafePointer<Int32>, M: Int, V: Int) {
    let started = KernelProfiler.start(); defer { KernelProfiler.stop(started, .head) }
    for m in 0..<M {
        let row = p + m * V, d = dlosses[m]
        row[Int(targets[m])] -= 1
        for k in 0..<V { row[k] *= d }
    }
}
