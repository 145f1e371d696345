import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
@testable import FineTuneTrainer
import XCTest

/// The pure parts of the fine-tuning controls: which groups train, the metrics, the fit hint.
final class ControlsTests: XCTestCase {
    /// BERT with 3 layers: groups embeddings, layer 0, 1, 2, head.
    func testFreezeSettingsResolveToTheRightGroup() throws {
        let config = try EncoderConfig.decode(Data(#"{"model_type": "bert", "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 16}"#.utf8), path: "t")
        let model = BertModel(config: config, pooling: .cls, task: .classification(labels: ["a", "b"]))
        let groups = model.parameterGroups
        XCTAssertEqual(groups.map(\.kind), [.embeddings, .layer(0), .layer(1), .layer(2), .head])
        XCTAssertEqual(groups.first!.range.lowerBound, 0)
        XCTAssertEqual(groups.last!.range.upperBound, model.layout.count)
        for (a, b) in zip(groups, groups.dropFirst()) { XCTAssertEqual(a.range.upperBound, b.range.lowerBound, "contiguous") }
        XCTAssertEqual(groups.last!.range.lowerBound, (model.head as! SequenceHead).poolerWeight!.offset, "the pooler belongs to the head")

        func start(_ configure: (inout FreezeSettings) -> Void, epoch: Int = 0) throws -> ParameterGroup.Kind {
            var f = FreezeSettings()
            configure(&f)
            let from = try f.trainableFrom(groups, epoch: epoch)
            return groups.first { $0.range.lowerBound == from }!.kind
        }
        XCTAssertEqual(try start { _ in }, .embeddings)
        XCTAssertEqual(try start { $0.embeddings = true }, .layer(0))
        XCTAssertEqual(try start { $0.layers = 2 }, .layer(2))
        XCTAssertEqual(try start { $0.layers = 3 }, .head)
        XCTAssertEqual(try start { $0.onlyHead = true }, .head)
        // Gradual unfreezing every 2 epochs: head for epochs 0-1, then one more group every 2 epochs.
        XCTAssertEqual(try (0..<12).map { e in try start({ $0.unfreezeEvery = 2 }, epoch: e) },
                       [.head, .head, .layer(2), .layer(2), .layer(1), .layer(1), .layer(0), .layer(0), .embeddings, .embeddings, .embeddings, .embeddings])
        XCTAssertEqual(try start({ $0.unfreezeEvery = 1; $0.layers = 1 }, epoch: 9), .layer(1), "unfreezing stops at what --freeze-layers keeps")
        XCTAssertThrowsError(try start { $0.layers = 4 }) { XCTAssertTrue("\($0)".contains("the model has 3 layers")) }

        let mlp = MLP(config: MLPConfig(inputSize: 4, hiddenSizes: [8, 6], activation: .relu, dropout: 0, task: .classification(labels: ["a", "b"])))
        XCTAssertEqual(mlp.parameterGroups.map(\.kind), [.layer(0), .layer(1), .head])
        XCTAssertThrowsError(try { var f = FreezeSettings(); f.embeddings = true; _ = try f.trainableFrom(mlp.parameterGroups, epoch: 0) }())
    }

    /// A frozen prefix: backward writes no gradient below it (the buffer stays as it was).
    func testBackwardWritesNoGradientToFrozenParameters() throws {
        let config = try EncoderConfig.decode(Data(#"{"model_type": "bert", "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 16}"#.utf8), path: "t")
        for pooling in [Pooling.mean, .cls] {
            let model = BertModel(config: config, pooling: pooling, task: .classification(labels: ["a", "b"]))
            var rng = SplitMix64(seed: 3)
            for i in 0..<model.parameters.count { model.parameters[i] = Float(rng.nextNormal() * 0.1) }
            var batch = Batch(exampleIndices: [0, 1])
            batch.tokenIDs = [2, 7, 9, 3, 2, 11, 3]; batch.tokenTypeIDs = [0, 0, 0, 0, 0, 0, 0]; batch.sequenceStarts = [0, 4, 7]
            batch.classTargets = [0, 1]
            for group in model.parameterGroups {
                model.trainableFrom = group.range.lowerBound
                model.gradients.zero()
                model.trainStep(batch, dropoutSeed: 1, step: 0)
                let below = (0..<group.range.lowerBound).contains { model.gradients[$0] != 0 }
                let here = group.range.contains { model.gradients[$0] != 0 }
                XCTAssertFalse(below, "\(pooling), trainable from \(group.kind): nothing written below")
                XCTAssertTrue(here, "\(pooling), trainable from \(group.kind): its own gradients written")
            }
        }
    }

    /// Classification figures against sklearn 1.x on the same labels (f1_score average="macro",
    /// matthews_corrcoef, precision_recall_fscore_support), regression against r2_score and mean_absolute_error.
    func testMetricsMatchScikitLearn() {
        let truth = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0, 1, 2], predicted = [0, 1, 0, 1, 2, 2, 2, 0, 2, 0, 1, 1]
        var confusion = [[Int]](repeating: [0, 0, 0], count: 3)
        for (t, p) in zip(truth, predicted) { confusion[t][p] += 1 }
        let r = EvaluationResult(loss: 0.5, accuracy: 8.0 / 12, examples: 12, confusion: confusion)
        XCTAssertEqual(r.macroF1!, 0.6626984126984127, accuracy: 1e-12)
        XCTAssertEqual(r.mcc!, 0.5052911526399114, accuracy: 1e-12)
        XCTAssertEqual(r.perClass!.map(\.precision), [0.75, 0.5, 0.75])
        XCTAssertEqual(r.perClass!.map(\.recall)[2], 0.6, accuracy: 1e-12)
        XCTAssertEqual(r.perClass!.map(\.f1)[1], 0.5714285714285714, accuracy: 1e-12)
        XCTAssertEqual(r.perClass!.map(\.support), [4, 3, 5])
        // A label absent from truth and predictions does not count in the macro mean.
        let absent = EvaluationResult(loss: 0, accuracy: 2.0 / 3, examples: 3, confusion: [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
        XCTAssertEqual(absent.macroF1!, 0.6666666666666666, accuracy: 1e-12)
        XCTAssertEqual(absent.mcc!, 0.5, accuracy: 1e-12)
        XCTAssertEqual(EvaluationResult(loss: 0, accuracy: 1, examples: 2, confusion: [[2, 0], [0, 0]]).mcc, 0, "undefined: 0, as sklearn")
        XCTAssertEqual(r.value(of: .valMacroF1), r.macroF1)
        XCTAssertTrue(MonitoredMetric.valMCC.maximize && MonitoredMetric.valR2.maximize && !MonitoredMetric.valMAE.maximize)
        XCTAssertFalse(MonitoredMetric.available(for: .classification(labels: ["a", "b"])).contains(.valR2))
        XCTAssertTrue(MonitoredMetric.available(for: .regression).contains(.valLoss))
        XCTAssertEqual(MonitoredMetric.available(for: .maskedLanguageModel), [.valLoss, .valAccuracy, .valPerplexity])
        XCTAssertFalse(MonitoredMetric.valPerplexity.maximize)
    }

    /// R² and MAE as Evaluation computes them, through a one-rank evaluation of a linear model.
    func testRegressionFiguresMatchScikitLearn() throws {
        let targets: [Float] = [1, 2, 3.5, -1], predictions: [Float] = [1.5, 1, 3, 0]
        // An MLP without hidden layers is y = w·x + b: with x one-hot and b = 0, w holds the predictions.
        let mlp = MLP(config: MLPConfig(inputSize: 4, hiddenSizes: [], activation: .relu, dropout: 0, task: .regression))
        for i in 0..<4 { mlp.parameters[i] = predictions[i] }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("r2-\(UUID()).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let lines = (0..<4).map { i in "{\"features\": [\((0..<4).map { $0 == i ? "1" : "0" }.joined(separator: ","))], \"label\": \(targets[i])}" }
        FileManager.default.createFile(atPath: path, contents: Data(lines.joined(separator: "\n").utf8))
        let data = try TabularDataset(path: path, featureWidth: 4, task: .regression)
        let r = try Evaluation.run(model: mlp, data: data, batchSize: 3, comm: LocalCommunicator())
        XCTAssertEqual(r.r2!, 0.7660818713450293, accuracy: 1e-6)
        XCTAssertEqual(r.meanAbsoluteError!, 0.75, accuracy: 1e-7)
        XCTAssertEqual(r.loss, (0.25 + 1 + 0.25 + 1) / 4, accuracy: 1e-7)
    }

    func point(_ step: Int, val: Double, train: Double) -> FitHistory.Point {
        FitHistory.Point(step: step, validation: EvaluationResult(loss: val, accuracy: nil, examples: 10), training: nil, trainingLoss: train)
    }

    func testFitHintReadsOverAndUnderFitting() {
        let over = FitHistory(points: [point(10, val: 0.6, train: 0.6), point(20, val: 0.5, train: 0.3), point(30, val: 0.62, train: 0.1)], monitor: .valLoss)
        XCTAssertTrue(over.hint?.hasPrefix("over-fitting: validation loss rose from 0.5000 (step 20) to 0.6200") ?? false, over.hint ?? "nil")
        let under = FitHistory(points: [point(10, val: 1.0, train: 1.1), point(20, val: 0.8, train: 0.85)], monitor: .valLoss)
        XCTAssertTrue(under.hint?.hasPrefix("under-fitting") ?? false, under.hint ?? "nil")
        let fine = FitHistory(points: [point(10, val: 0.6, train: 0.6), point(20, val: 0.5, train: 0.45), point(30, val: 0.505, train: 0.4)], monitor: .valLoss)
        XCTAssertNil(fine.hint, "flat at the end, no gap: nothing to say")
        XCTAssertNil(FitHistory(points: [point(10, val: 0.6, train: 0.6)], monitor: .valLoss).hint, "one evaluation says nothing")
    }

    func testClassWeights() throws {
        XCTAssertEqual(try ClassWeights(parsing: "balanced").resolve(counts: [6, 2, 4], labels: ["a", "b", "c"]), [12.0 / 18, 12.0 / 6, 12.0 / 12])
        XCTAssertEqual(try ClassWeights(parsing: "1, 2.5,0").resolve(counts: [1, 1, 1], labels: ["a", "b", "c"]), [1, 2.5, 0])
        for bad in ["", "1,,2", "-1,2", "nan,1", "0,0", "heavy"] { XCTAssertThrowsError(try ClassWeights(parsing: bad), bad) }
    }

    func testLoRATargetsParse() throws {
        XCTAssertEqual(try LoRATarget.parse("value, query,query"), [.query, .value])
        XCTAssertEqual(try LoRATarget.parse("all"), LoRATarget.allCases)
        XCTAssertEqual(try LoRATarget.parse("all-linear"), LoRATarget.allCases)
        for bad in ["", "all,query", "dense", " , "] { XCTAssertThrowsError(try LoRATarget.parse(bad), bad) }
    }
}

/// LoRA's model: the forward pass equals the plain model with merged weights, and the adapters'
/// gradients follow from the merged weight's gradient (W' = W + s·B·A gives dA = s·Bᵀ·dW', dB = s·dW'·Aᵀ):
/// checked against the plain model's backward, itself checked against finite differences and PyTorch.
/// (Within 1e-3 of each tensor's largest gradient: the two compute in Float in different orders,
/// and OpenBLAS's Prescott kernels round differently again; a wrong formula is off by O(1).)
final class LoRAModelTests: XCTestCase {
    func testAdaptersMatchTheMergedModelAndItsGradients() throws {
        let config = try EncoderConfig.decode(Data(#"{"model_type": "bert", "vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 16, "hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0}"#.utf8), path: "t")
        let lora = LoRASettings(rank: 3, alpha: 6, dropout: 0, targets: LoRATarget.allCases)
        let task = TaskKind.classification(labels: ["a", "b", "c"])
        for pooling in [Pooling.mean, .cls] {
            let adapted = BertModel(config: config, pooling: pooling, task: task, lora: lora)
            let plain = BertModel(config: config, pooling: pooling, task: task)
            var rng = SplitMix64(seed: 9)
            for i in 0..<adapted.parameters.count { adapted.parameters[i] = Float(rng.nextNormal() * 0.3) }  // B non-zero too
            for spec in plain.layout.tensors {
                let values = adapted.mergedWeight(adapted.layout[spec.name]) ?? Array(UnsafeBufferPointer(start: adapted.parameters.at(adapted.layout[spec.name]), count: spec.count))
                for i in 0..<spec.count { plain.parameters[spec.offset + i] = values[i] }
            }
            adapted.trainableFrom = try FreezeSettings().trainableFrom(adapted.parameterGroups, epoch: 0)
            XCTAssertEqual(adapted.parameterGroups.map(\.kind).suffix(2), [.adapters, .head])
            var batch = Batch(exampleIndices: [0, 1, 2])
            batch.tokenIDs = [2, 7, 9, 3, 2, 11, 12, 13, 3, 2, 5, 3]; batch.tokenTypeIDs = [Int32](repeating: 0, count: 12)
            batch.sequenceStarts = [0, 4, 9, 12]; batch.classTargets = [0, 2, 1]
            adapted.gradients.zero(); plain.gradients.zero()
            let a = adapted.trainStep(batch, dropoutSeed: 1, step: 0), p = plain.trainStep(batch, dropoutSeed: 1, step: 0)
            XCTAssertEqual(a.lossSum, p.lossSum, accuracy: 1e-5 * abs(p.lossSum), "\(pooling): same loss")
            for (x, y) in zip(adapted.lastLogits().flatMap { $0 }, plain.lastLogits().flatMap { $0 }) { XCTAssertEqual(x, y, accuracy: 1e-5) }
            func grad(_ model: BertModel, _ name: String) -> [Float] {
                let spec = model.layout[name]
                return Array(UnsafeBufferPointer(start: model.gradients.at(spec), count: spec.count))
            }
            for (l, layer) in adapted.tensors.adapters.enumerated() {
                for (target, adapter) in layer {
                    let weight = EncoderFamily.bert.layerPrefix(l) + target.modulePath(in: .bert) + ".weight"
                    let dW = grad(plain, weight)
                    let (outputs, inputs, r) = (adapter.b.shape[0], adapter.a.shape[1], lora.rank)
                    let A = Array(UnsafeBufferPointer(start: adapted.parameters.at(adapter.a), count: adapter.a.count))
                    let B = Array(UnsafeBufferPointer(start: adapted.parameters.at(adapter.b), count: adapter.b.count))
                    var dA = [Float](repeating: 0, count: r * inputs), dB = [Float](repeating: 0, count: outputs * r)
                    for i in 0..<r { for c in 0..<inputs { for o in 0..<outputs { dA[i * inputs + c] += Float(lora.scale) * B[o * r + i] * dW[o * inputs + c] } } }
                    for o in 0..<outputs { for i in 0..<r { for c in 0..<inputs { dB[o * r + i] += Float(lora.scale) * dW[o * inputs + c] * A[i * inputs + c] } } }
                    let scale = max(dA.map(abs).max()!, dB.map(abs).max()!, 1e-6)
                    for (x, y) in zip(grad(adapted, adapter.a.name), dA) { XCTAssertEqual(x, y, accuracy: 1e-3 * scale, "\(pooling) \(adapter.a.name)") }
                    for (x, y) in zip(grad(adapted, adapter.b.name), dB) { XCTAssertEqual(x, y, accuracy: 1e-3 * scale, "\(pooling) \(adapter.b.name)") }
                    XCTAssertTrue(grad(adapted, weight).allSatisfy { $0 == 0 }, "\(weight): frozen, no gradient product")
                }
            }
            for (x, y) in zip(grad(adapted, "classifier.weight"), grad(plain, "classifier.weight")) { XCTAssertEqual(x, y, accuracy: 1e-5) }
            XCTAssertTrue(grad(adapted, "embeddings.word_embeddings.weight").allSatisfy { $0 == 0 })
        }
    }
}
