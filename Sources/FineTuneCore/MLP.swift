import Foundation

/// Per-batch results, as sums over the batch's examples (the trainer reduces them across ranks).
public struct BatchStatistics: Sendable {
    public var lossSum: Double = 0
    /// Correct predictions (classification) or the squared-error sum (regression: equals lossSum).
    public var correct: Double = 0
    public var count: Double = 0
    public init() {}
}

/// A multilayer perceptron: [Linear → activation → dropout] × hidden layers → Linear head, with a
/// softmax cross-entropy loss (classification) or squared error (regression).
///
/// Tensors (row-major, PyTorch layout): `layers.{l}.weight` [H_l, H_{l-1}], `layers.{l}.bias` [H_l],
/// `classifier.weight` [K, H_last], `classifier.bias` [K].
/// Shapes below: B local batch rows, I input features, H_l hidden widths, K outputs.
public final class MLP: FineTunableModel {
    public let config: MLPConfig
    public let layout: ParameterLayout
    public let parameters: FlatBuffer<Float>
    /// The parameters' layout, then `modelControlSlots` floats for the trainer (see FineTunableModel).
    public let gradients: FlatBuffer<Float>
    /// widths[0] = I, widths[1...] = hidden sizes, widths.last = K
    public let widths: [Int]

    /// Activations sized for `capacity` rows, grown on demand (never per step once warm).
    private var capacity = 0
    private var preActivations: [FlatBuffer<Float>] = []   // z_l [B, H_l], l = 1...L
    private var layerOutputs: [FlatBuffer<Float>] = []     // x_l [B, H_l], l = 0...L (x_0 = input)
    private var activated: [FlatBuffer<Float>] = []        // a_l = act(z_l) [B, H_l] (before dropout)
    private var dropoutMasks: [ByteBuffer] = []
    private var logits = FlatBuffer<Float>(count: 0)
    private var probabilities = FlatBuffer<Float>(count: 0)
    private var losses = FlatBuffer<Float>(count: 0)
    private var ones = FlatBuffer<Float>(count: 0)
    private var dLogits = FlatBuffer<Float>(count: 0)
    private var dX: [FlatBuffer<Float>] = []
    private var dZ: [FlatBuffer<Float>] = []

    public init(config: MLPConfig) {
        self.config = config
        widths = [config.inputSize] + config.hiddenSizes + [config.task.outputCount]
        var layout = ParameterLayout()
        for l in 0..<(widths.count - 1) {
            let prefix = l == widths.count - 2 ? "classifier" : "layers.\(l)"
            layout.add("\(prefix).weight", shape: [widths[l + 1], widths[l]], decays: true)
            layout.add("\(prefix).bias", shape: [widths[l + 1]], decays: false)
        }
        self.layout = layout
        parameters = FlatBuffer(count: layout.count)
        gradients = FlatBuffer(count: layout.count + modelControlSlots)
    }

    /// Names of the tensors of linear layer `l` (0-based; the last one is the classifier).
    private func names(_ l: Int) -> (weight: String, bias: String) {
        let prefix = l == widths.count - 2 ? "classifier" : "layers.\(l)"
        return ("\(prefix).weight", "\(prefix).bias")
    }
    private var linearCount: Int { widths.count - 1 }

    /// PyTorch's default nn.Linear initialisation: weight and bias ~ U(-1/√fan_in, 1/√fan_in).
    public func initialize(seed: UInt64) {
        var rng = SplitMix64(seed: combineKey(seed, 0x1217))
        parameters.zero()
        for l in 0..<linearCount {
            let bound = 1 / Double(widths[l]).squareRoot()
            for name in [names(l).weight, names(l).bias] {
                let spec = layout.spec(name)!
                for i in 0..<spec.count { parameters[spec.offset + i] = Float((rng.nextUnit() * 2 - 1) * bound) }
            }
        }
    }

    private func reserve(rows: Int) {
        guard rows > capacity else { return }
        capacity = max(rows, capacity * 2)
        let L = config.hiddenSizes.count
        layerOutputs = (0...L).map { FlatBuffer(count: capacity * widths[$0]) }
        preActivations = (0...L).map { $0 == 0 ? FlatBuffer(count: 0) : FlatBuffer(count: capacity * widths[$0]) }
        activated = (0...L).map { $0 == 0 ? FlatBuffer(count: 0) : FlatBuffer(count: capacity * widths[$0]) }
        dropoutMasks = (0...L).map { ByteBuffer(count: $0 == 0 ? 0 : capacity * widths[$0]) }
        dX = (0...L).map { FlatBuffer(count: capacity * widths[$0]) }
        dZ = (0...L).map { $0 == 0 ? FlatBuffer(count: 0) : FlatBuffer(count: capacity * widths[$0]) }
        let K = config.task.outputCount
        logits = FlatBuffer(count: capacity * K)
        probabilities = FlatBuffer(count: capacity * K)
        dLogits = FlatBuffer(count: capacity * K)
        losses = FlatBuffer(count: capacity)
        ones = FlatBuffer(count: capacity)
        ones.base.update(repeating: 1, count: capacity)
    }

    /// Forward pass; fills the logits (and probabilities, per-example losses when targets exist).
    /// `dropoutStep` nil means evaluation (no dropout).
    private func forward(_ batch: Batch, dropoutSeed: UInt64, dropoutStep: Int?) {
        let B = batch.count
        reserve(rows: B)
        let L = config.hiddenSizes.count
        batch.features.withUnsafeBufferPointer { layerOutputs[0].base.update(from: $0.baseAddress!, count: B * widths[0]) }
        let p = parameters.base
        for l in 0..<L {
            let (w, b) = names(l)
            let C = widths[l], OC = widths[l + 1]
            linearForward(out: preActivations[l + 1].base, inp: layerOutputs[l].base,
                          weight: p + layout.offset(of: w), bias: p + layout.offset(of: b), B: B, C: C, OC: OC)
            let target = (dropoutStep != nil && config.dropout > 0) ? activated[l + 1].base : layerOutputs[l + 1].base
            switch config.activation {
            case .relu: reluForward(out: target, inp: preActivations[l + 1].base, N: B * OC)
            case .gelu: geluForward(out: target, inp: preActivations[l + 1].base, N: B * OC)
            }
            if let step = dropoutStep, config.dropout > 0 {
                let rowStarts = (0...B).map { $0 * OC }
                dropoutForward(out: layerOutputs[l + 1].base, mask: dropoutMasks[l + 1].base, inp: activated[l + 1].base,
                               probability: config.dropout, key: DropoutKey(seed: dropoutSeed, step: step, site: l),
                               exampleIndices: batch.exampleIndices, segmentStarts: rowStarts, B: B)
            }
        }
        let (w, b) = names(L)
        linearForward(out: logits.base, inp: layerOutputs[L].base, weight: p + layout.offset(of: w),
                      bias: p + layout.offset(of: b), B: B, C: widths[L], OC: widths[L + 1])
    }

    private func loss(_ batch: Batch) -> BatchStatistics {
        lossStatistics(task: config.task, logits: logits.base, probabilities: probabilities.base, losses: losses.base, batch: batch)
    }

    /// Forward and backward of one local batch. ADDS the gradient of the summed loss into
    /// `gradients` (the caller zeroes them once per step and divides by the global example count).
    public func trainStep(_ batch: Batch, dropoutSeed: UInt64, step: Int, gradientsReady: (Int) -> Void) -> BatchStatistics {
        let B = batch.count
        defer { gradientsReady(0) }
        guard B > 0 else { recordLossSum(BatchStatistics()); return BatchStatistics() }
        forward(batch, dropoutSeed: dropoutSeed, dropoutStep: step)
        let stats = loss(batch)
        recordLossSum(stats)
        let K = config.task.outputCount, L = config.hiddenSizes.count
        dLogits.base.update(repeating: 0, count: B * K)
        lossBackward(task: config.task, dlogits: dLogits.base, ones: ones.base, logits: logits.base,
                     probabilities: probabilities.base, batch: batch)
        let p = parameters.base, g = gradients.base
        var dOut = dLogits.base
        for l in stride(from: L, through: 0, by: -1) {
            let (w, b) = names(l)
            let C = widths[l], OC = widths[l + 1]
            let dInput: UnsafeMutablePointer<Float>? = l == 0 ? nil : dX[l].base
            dInput?.update(repeating: 0, count: B * C)
            linearBackward(dinp: dInput, dweight: g + layout.offset(of: w), dbias: g + layout.offset(of: b),
                           dout: dOut, inp: layerOutputs[l].base, weight: p + layout.offset(of: w), B: B, C: C, OC: OC)
            guard l > 0 else { break }
            // x_l = dropout(act(z_l)): back through dropout into da, then through the activation into dz.
            var dActivated = dX[l].base
            if config.dropout > 0 {
                let da = dZ[l].base  // reused as scratch for d(act output) before it holds dz
                da.update(repeating: 0, count: B * C)
                dropoutBackward(dinp: da, dout: dX[l].base, mask: dropoutMasks[l].base, probability: config.dropout, N: B * C)
                dX[l].base.update(from: da, count: B * C)
                dActivated = dX[l].base
            }
            let dz = dZ[l].base
            dz.update(repeating: 0, count: B * C)
            switch config.activation {
            case .relu: reluBackward(dinp: dz, dout: dActivated, inp: preActivations[l].base, N: B * C)
            case .gelu: geluBackward(dinp: dz, dout: dActivated, inp: preActivations[l].base, N: B * C)
            }
            dOut = dz
        }
        return stats
    }

    /// Evaluation forward pass (no dropout): summed statistics of the batch.
    public func evaluate(_ batch: Batch) -> BatchStatistics {
        guard batch.count > 0 else { return BatchStatistics() }
        forward(batch, dropoutSeed: 0, dropoutStep: nil)
        return loss(batch)
    }

    public func predict(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        forward(batch, dropoutSeed: 0, dropoutStep: nil)
        return predictions(task: config.task, logits: logits.base, probabilities: probabilities.base, losses: losses.base, B: batch.count)
    }

    public func logits(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        forward(batch, dropoutSeed: 0, dropoutStep: nil)
        let K = config.task.outputCount
        return (0..<batch.count).map { Array(UnsafeBufferPointer(start: logits.base + $0 * K, count: K)) }
    }

    public var task: TaskKind { config.task }
    public var inputKind: InputKind { .features(width: config.inputSize) }

    public func internalFiles() -> [String: Data] {
        ["config.json": config.jsonData(), "model.safetensors": ModelFolder.safetensors(layout: layout, buffer: parameters)]
    }
    public func exportFiles() -> [String: Data] { internalFiles() }
}
