import FineTuneKernels

/// A text encoder's body: embeddings and transformer layers over token ids, up to the hidden
/// states x [N, C] a task head reads. A model family (BERT, MPNet, ...) is a body, its config
/// and its tensor-name map; the heads and everything above them are shared.
public protocol EncoderBody: AnyObject {
    /// What a head needs to know of the body.
    var facts: EncoderFacts { get }
    var maxPositions: Int { get }
    var transformerShape: (layers: Int, hidden: Int, intermediate: Int) { get }
    var lora: LoRASettings? { get }
    var hiddenDropout: Double { get set }
    var attentionDropout: Double { get set }
    /// The config's dropout before a classifier.
    var defaultClassifierDropout: Double { get }
    /// The first tensor of each group from the input up (embeddings, layers, adapters): the head follows.
    var groupStarts: [(ParameterGroup.Kind, TensorSpec)] { get }
    var activationBytes: Int { get }
    func sparseGradientTensors(tiedDecoder: Bool) -> [TensorSpec]
    func touchedRows(in tensor: TensorSpec, batch: Batch) -> [Int]
    func initializeAdapters(_ parameters: FlatBuffer<Float>, seed: UInt64)
    func mergedWeight(_ spec: TensorSpec, parameters: FlatBuffer<Float>) -> [Float]?
    /// The last layer's output x [N, C] for `batch` (B > 0).
    func forward(_ batch: Batch, training: Bool, key: (Int) -> DropoutKey, parameters p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float>
    /// Where the head writes d x [N, C] before `backward`.
    var outputGradient: UnsafeMutablePointer<Float> { get }
    func backward(_ batch: Batch, trainableFrom: Int, headStart: Int, parameters p: UnsafeMutablePointer<Float>,
                  gradients g: UnsafeMutablePointer<Float>, gradientsReady: (Int) -> Void)
}

/// An encoder body with a task head, trained end to end: what the trainer, the exchange,
/// checkpoints, eval/predict and bench see of a text model. One flat parameter buffer holds the
/// body's tensors, then its LoRA adapters, then the head's (the head and adapters are one suffix).
/// Heads: sequence classification or regression (`SequenceHead`), masked-language modelling
/// (`MaskedLMHead`), sentence embeddings (`EmbeddingHead`).
public final class EncoderModel<Body: EncoderBody>: TextModel {
    public let body: Body
    public let head: any EncoderHead
    public let pooling: Pooling
    public var task: TaskKind { head.task }
    public let layout: ParameterLayout
    public let parameters: FlatBuffer<Float>
    public let gradients: FlatBuffer<Float>
    public var lora: LoRASettings? { body.lora }
    public var trainableFrom = 0
    public var objective = TrainingObjective()
    /// Masked-language modelling: how inputs are masked (a batch that carries its own masked
    /// positions, as the golden tests give them, is used as it is).
    public var masking: MaskingSettings? = nil
    /// Evaluations mask with this seed, whatever the run's: every evaluation, before and after
    /// adaptation, scores the same positions.
    public static var evaluationMaskSeed: UInt64 { 0x5EED_E7A1 }

    /// `makeBody` adds the body's tensors to the empty layout; the head's follow.
    public init(task: TaskKind, pooling: Pooling, projection: EmbeddingProjection? = nil, makeBody: (inout ParameterLayout) -> Body) {
        var layout = ParameterLayout()
        body = makeBody(&layout)
        if task == .maskedLanguageModel {
            head = MaskedLMHead(facts: body.facts, layout: &layout)
        } else if task == .embedding {
            head = EmbeddingHead(pooling: pooling, facts: body.facts, projection: projection, layout: &layout)
        } else {
            head = SequenceHead(task: task, pooling: pooling, facts: body.facts, classifierDropout: body.defaultClassifierDropout,
                                projection: projection, layout: &layout)
        }
        self.pooling = pooling
        self.layout = layout
        parameters = FlatBuffer(count: layout.count)
        gradients = FlatBuffer(count: layout.count)
    }

    public var dropout: DropoutRates {
        get { DropoutRates(hidden: body.hiddenDropout, attention: body.attentionDropout, classifier: head.classifierDropout) }
        set {
            body.hiddenDropout = newValue.hidden
            if let p = newValue.attention { body.attentionDropout = p }
            if let p = newValue.classifier { head.classifierDropout = p }
        }
    }
    public var defaultLearningRate: Double { 5e-5 }
    public var vocabularySize: Int { body.facts.vocabularySize }
    public var maxPositions: Int { body.maxPositions }
    public var transformerShape: (layers: Int, hidden: Int, intermediate: Int) { body.transformerShape }
    public var inputKind: InputKind { .text }
    public var activationBytes: Int { body.activationBytes + head.activationBytes }
    public var parameterGroups: [ParameterGroup] {
        ParameterGroup.split(layout, starts: body.groupStarts + [(.head, head.firstTensor)])
    }
    public var sparseGradientTensors: [TensorSpec] { body.sparseGradientTensors(tiedDecoder: head.touchesEveryWordEmbedding) }
    public func touchedRows(in tensor: TensorSpec) -> [Int] {
        guard let pass = last, pass.training else { return [] }
        return body.touchedRows(in: tensor, batch: pass.batch)
    }

    /// Initialises the tensors a base model may lack (the head, a pooler) as transformers does:
    /// weights ~ N(0, initializer_range), biases 0.
    public func initializeHead(seed: UInt64, includePooler: Bool) { head.initialize(parameters, seed: seed, includePooler: includePooler) }
    public func initializeAdapters(seed: UInt64) { body.initializeAdapters(parameters, seed: seed) }
    /// A base weight with its adapter merged in; nil for a tensor LoRA does not adapt.
    public func mergedWeight(_ spec: TensorSpec) -> [Float]? { body.mergedWeight(spec, parameters: parameters) }

    /// The last forward pass: the batch (as masked), whether it trained, its dropout keys.
    private struct Pass {
        var batch: Batch
        var training: Bool
        var seed: UInt64, step: Int
        func key(_ site: Int) -> DropoutKey { DropoutKey(seed: seed, step: step, site: site) }
        var head: HeadPass { HeadPass(batch: batch, training: training, dropoutKey: key) }
    }
    private var last: Pass? = nil

    public func forward(_ batch: Batch, mode: ForwardMode) -> BatchStatistics {
        last = nil
        guard batch.count > 0 else { return BatchStatistics() }
        var pass = Pass(batch: batch, training: false, seed: 0, step: 0)
        if case .training(let seed, let step) = mode { pass.training = true; pass.seed = seed; pass.step = step }
        if task == .maskedLanguageModel, batch.maskedPositions.isEmpty, let masking {
            pass.batch = pass.training ? masking.mask(batch, seed: pass.seed, step: pass.step)
                                       : masking.mask(batch, seed: Self.evaluationMaskSeed, step: MaskingSettings.evaluationStep)
        }
        let x = body.forward(pass.batch, training: pass.training, key: pass.key, parameters: parameters.base)
        last = pass
        return head.forward(x, pass: pass.head, objective: pass.training ? objective : nil, parameters: parameters.base)
    }

    public func backward(gradientsReady: (Int) -> Void) {
        guard let pass = last, pass.training else { gradientsReady(0); return }
        let p = parameters.base, g = gradients.base
        let headStart = head.firstTensor.offset
        let headOnly = trainableFrom >= headStart
        let words = body.facts.wordEmbeddings
        let wordGradient = words.offset >= trainableFrom ? g + words.offset : nil
        let continues = head.backward(dx: headOnly ? nil : body.outputGradient, pass: pass.head, objective: objective, parameters: p,
                                      gradients: g, wordEmbeddingGradient: wordGradient)
        guard continues else { gradientsReady(0); return }
        body.backward(pass.batch, trainableFrom: trainableFrom, headStart: headStart, parameters: p, gradients: g, gradientsReady: gradientsReady)
    }

    public func lastLogits() -> [[Float]] {
        guard let batch = last?.batch else { return [] }
        return head.lastLogits(count: batch.count)
    }

    /// Masked-language modelling: the vocabulary logits [M][V] at the masked positions of the last
    /// forward pass (backward overwrites them with their gradient), and that batch as masked.
    public func lastMaskedLogits() -> (logits: [[Float]], batch: Batch)? {
        guard let batch = last?.batch, let logits = head.lastMaskedLogits(count: batch.maskedPositions.count) else { return nil }
        return (logits, batch)
    }

    public var embeddingWidth: Int? { (head as? EmbeddingHead)?.embeddingSize }
    public func copyLastEmbeddings(to out: UnsafeMutablePointer<Float>) {
        guard let head = head as? EmbeddingHead, let batch = last?.batch else { preconditionFailure("embeddings of a forward pass of an embedding model") }
        out.update(from: head.embeddings, count: batch.count * head.embeddingSize)
    }
    public func setEmbeddingGradient(_ gradient: UnsafePointer<Float>) {
        guard let head = head as? EmbeddingHead, let batch = last?.batch else { preconditionFailure("embeddings of a forward pass of an embedding model") }
        head.embeddingGradient.update(from: gradient, count: batch.count * head.embeddingSize)
    }

    /// The sentence embeddings [B][C] of a batch as sentence-transformers pools them (the mean, or
    /// the first token's hidden state; after a Dense module of the model's own, [B][D]).
    public func pooledOutput(_ batch: Batch) -> [[Float]] {
        guard batch.count > 0 else { return [] }
        _ = forward(batch, mode: .evaluation)
        return head.lastPooled(count: batch.count)
    }
}

/// A BERT-architecture encoder (any `EncoderFamily`: BERT, MPNet, RoBERTa, DistilBERT) with a task head.
public typealias BertModel = EncoderModel<TransformerEncoder>

extension EncoderModel where Body == TransformerEncoder {
    /// `projection`: a sentence-transformers Dense module after the mean pooling (sequence tasks).
    public convenience init(config: EncoderConfig, pooling: Pooling, task: TaskKind, lora: LoRASettings? = nil, projection: EmbeddingProjection? = nil) {
        self.init(task: task, pooling: pooling, projection: task == .maskedLanguageModel ? nil : projection) {
            TransformerEncoder(config: config, lora: lora, layout: &$0)
        }
    }
    public var config: EncoderConfig { body.config }
    public var tensors: EncoderParameters { body.tensors }
}
