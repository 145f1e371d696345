import FineTuneKernels
import Foundation

/// A multilayer perceptron: [Linear → activation → dropout] × hidden layers → Linear head, with a
/// softmax cross-entropy loss (classification) or squared error (regression).
///
/// Tensors (row-major, PyTorch layout): `layers.{l}.weight` [H_l, H_{l-1}], `layers.{l}.bias` [H_l],
/// `classifier.weight` [K, H_last], `classifier.bias` [K].
/// Shapes below: B local batch rows, I input features, H_l hidden widths, K outputs.
public final class MLP: FineTunableModel {
    public var config: MLPConfig
    public var dropout: DropoutRates {
        get { DropoutRates(hidden: config.dropout) }
        set { config.dropout = newValue.hidden }
    }
    public var defaultLearningRate: Double { 1e-3 }
    public let layout: ParameterLayout
    public let parameters: FlatBuffer<Float>
    public let gradients: FlatBuffer<Float>
    /// widths[0] = I, widths[1...] = hidden sizes, widths.last = K
    public let widths: [Int]
    /// Linear layer l: weight [widths[l + 1], widths[l]] and bias [widths[l + 1]] (the last is the classifier).
    let linears: [(weight: TensorSpec, bias: TensorSpec)]

    /// Activations of linear layer l (l = 0 is the input), all [B, widths[l]].
    struct LayerActivations {
        /// x_l: the layer's input (x_0 the features; x_l = dropout(act(z_l)) after a hidden layer).
        var input: ArenaRegion<Float>
        /// z_l and act(z_l) before dropout (hidden layers only).
        var preActivation: ArenaRegion<Float>, activated: ArenaRegion<Float>
        var dropoutMask: ArenaRegion<UInt8>
        /// Backward: d x_l and d z_l.
        var dInput: ArenaRegion<Float>, dPreActivation: ArenaRegion<Float>
    }
    struct Activations {
        var layers: [LayerActivations] = []
        /// [B, K], [B, K], [B], [B] (ones: d loss / d per-example loss), [B, K]
        var logits = ArenaRegion<Float>.empty, probabilities = ArenaRegion<Float>.empty, losses = ArenaRegion<Float>.empty
        var ones = ArenaRegion<Float>.empty, dLogits = ArenaRegion<Float>.empty
    }

    /// The arena's regions for `rows` examples.
    static func activationLayout(widths: [Int], rows B: Int) -> (ArenaLayout, Activations) {
        var arena = ArenaLayout(), a = Activations()
        let L = widths.count - 2
        for l in 0...L {
            let n = B * widths[l], hidden = l > 0 ? n : 0
            a.layers.append(LayerActivations(input: arena.floats(n), preActivation: arena.floats(hidden), activated: arena.floats(hidden),
                                             dropoutMask: arena.bytes(hidden), dInput: arena.floats(n), dPreActivation: arena.floats(hidden)))
        }
        let K = widths.last!
        a.logits = arena.floats(B * K); a.probabilities = arena.floats(B * K); a.losses = arena.floats(B)
        a.ones = arena.floats(B); a.dLogits = arena.floats(B * K)
        return (arena, a)
    }

    private var capacity = 0
    private var arena = ActivationArena(ArenaLayout())
    private var acts = Activations()
    /// The last forward pass, for backward.
    private var last: (batch: Batch, dropoutSeed: UInt64, step: Int?)? = nil

    public init(config: MLPConfig) {
        self.config = config
        widths = [config.inputSize] + config.hiddenSizes + [config.task.outputCount]
        var layout = ParameterLayout()
        var linears: [(TensorSpec, TensorSpec)] = []
        for l in 0..<(widths.count - 1) {
            let prefix = l == widths.count - 2 ? "classifier" : "layers.\(l)"
            linears.append((layout.add("\(prefix).weight", shape: [widths[l + 1], widths[l]], decays: true),
                            layout.add("\(prefix).bias", shape: [widths[l + 1]], decays: false)))
        }
        self.linears = linears
        self.layout = layout
        parameters = FlatBuffer(count: layout.count)
        gradients = FlatBuffer(count: layout.count)
    }

    /// PyTorch's default nn.Linear initialisation: weight and bias ~ U(-1/√fan_in, 1/√fan_in).
    public func initialize(seed: UInt64) {
        var rng = SplitMix64(seed: combineKey(seed, 0x1217))
        parameters.zero()
        for (l, linear) in linears.enumerated() {
            let bound = 1 / Double(widths[l]).squareRoot()
            for spec in [linear.weight, linear.bias] {
                for i in 0..<spec.count { parameters[spec.offset + i] = Float((rng.nextUnit() * 2 - 1) * bound) }
            }
        }
    }

    public var activationBytes: Int { arena.byteCount }
    public var trainableFrom = 0
    public var objective = TrainingObjective()
    /// Each hidden linear layer a group; the classifier the head.
    public var parameterGroups: [ParameterGroup] {
        ParameterGroup.split(layout, starts: linears.enumerated().map { l, linear in (l == linears.count - 1 ? .head : .layer(l), linear.weight) })
    }

    private func reserve(rows: Int) {
        guard rows > capacity else { return }
        capacity = max(rows, capacity * 2)
        let (layout, regions) = MLP.activationLayout(widths: widths, rows: capacity)
        arena = ActivationArena(layout)
        acts = regions
        arena[acts.ones].update(repeating: 1, count: capacity)
    }

    public func forward(_ batch: Batch, mode: ForwardMode) -> BatchStatistics {
        let B = batch.count
        var seed: UInt64 = 0, step: Int? = nil
        if case .training(let s, let t) = mode { seed = s; step = t }
        last = (batch, seed, step)
        guard B > 0 else { return BatchStatistics() }
        reserve(rows: B)
        let L = config.hiddenSizes.count
        let x0 = arena[acts.layers[0].input]
        batch.features.withUnsafeBufferPointer { x0.update(from: $0.baseAddress!, count: B * widths[0]) }
        let p = parameters.base
        let dropping = step != nil && config.dropout > 0
        for l in 0..<L {
            let next = acts.layers[l + 1]
            let C = widths[l], OC = widths[l + 1]
            linearForward(out: arena[next.preActivation], inp: arena[acts.layers[l].input],
                          weight: p + linears[l].weight.offset, bias: p + linears[l].bias.offset, B: B, C: C, OC: OC)
            let target = dropping ? arena[next.activated] : arena[next.input]
            switch config.activation {
            case .relu: reluForward(out: target, inp: arena[next.preActivation], N: B * OC)
            case .gelu: geluForward(out: target, inp: arena[next.preActivation], N: B * OC)
            }
            if dropping, let step {
                let rowStarts = (0...B).map { $0 * OC }
                dropoutForward(out: arena[next.input], mask: arena[next.dropoutMask], inp: arena[next.activated],
                               probability: config.dropout, key: DropoutKey(seed: seed, step: step, site: l),
                               exampleIndices: batch.exampleIndices, segmentStarts: rowStarts, B: B)
            }
        }
        linearForward(out: arena[acts.logits], inp: arena[acts.layers[L].input], weight: p + linears[L].weight.offset,
                      bias: p + linears[L].bias.offset, B: B, C: widths[L], OC: widths[L + 1])
        return lossStatistics(task: config.task, objective: step == nil ? nil : objective, logits: arena[acts.logits], probabilities: arena[acts.probabilities],
                              losses: arena[acts.losses], batch: batch)
    }

    public func backward(gradientsReady: (Int) -> Void) {
        defer { gradientsReady(0) }
        guard let (batch, _, step) = last, step != nil, batch.count > 0 else { return }
        let B = batch.count, K = config.task.outputCount, L = config.hiddenSizes.count
        let dLogits = arena[acts.dLogits]
        zeroFill(dLogits, N: B * K)
        lossBackward(task: config.task, objective: objective, dlogits: dLogits, ones: arena[acts.ones], logits: arena[acts.logits],
                     probabilities: arena[acts.probabilities], batch: batch)
        let p = parameters.base, g = gradients.base
        var dOut = dLogits
        // Frozen layers below the lowest trainable one get no gradients, and need no input gradient.
        let lowest = linears.firstIndex { $0.weight.offset >= trainableFrom } ?? L
        for l in stride(from: L, through: lowest, by: -1) {
            let a = acts.layers[l]
            let C = widths[l], OC = widths[l + 1]
            let dInput: UnsafeMutablePointer<Float>? = l == lowest ? nil : arena[a.dInput]
            linearBackward(dinp: dInput, dweight: g + linears[l].weight.offset, dbias: g + linears[l].bias.offset,
                           dout: dOut, inp: arena[a.input], weight: p + linears[l].weight.offset, B: B, C: C, OC: OC,
                           overwritingInput: true)
            guard l > lowest else { break }
            // x_l = dropout(act(z_l)): back through dropout (in place), then through the activation into dz.
            let dx = arena[a.dInput]
            if config.dropout > 0 { dropoutGradient(dinp: dx, dout: dx, mask: arena[a.dropoutMask], probability: config.dropout, N: B * C) }
            let dz = arena[a.dPreActivation]
            zeroFill(dz, N: B * C)
            switch config.activation {
            case .relu: reluBackward(dinp: dz, dout: dx, inp: arena[a.preActivation], N: B * C)
            case .gelu: geluBackward(dinp: dz, dout: dx, inp: arena[a.preActivation], N: B * C)
            }
            dOut = dz
        }
    }

    public func lastLogits() -> [[Float]] {
        guard let batch = last?.batch, batch.count > 0 else { return [] }
        let K = config.task.outputCount, logits = arena[acts.logits]
        return (0..<batch.count).map { Array(UnsafeBufferPointer(start: logits + $0 * K, count: K)) }
    }

    public var task: TaskKind { config.task }
    public var inputKind: InputKind { .features(width: config.inputSize) }
}
