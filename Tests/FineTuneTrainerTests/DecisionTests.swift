import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
@testable import FineTuneTrainer
import FineTuneTestSupport
import XCTest

final class EarlyStoppingTests: XCTestCase {
    func testLossImprovesDownwardAndPatienceCountsEvaluationsWithout() {
        let rule = EarlyStopping(monitor: .valLoss, patience: 2, minDelta: 0.01)
        var state = TrainerState()
        var decisions: [EarlyStopping.Decision] = []
        for (step, loss) in [(1, 1.0), (2, 0.995), (3, 0.9), (4, 0.95), (5, 0.89)].map({ ($0.0, $0.1) }) {
            state.step = step
            let d = rule.decide(loss, best: state.bestMetric, evaluationsWithoutImprovement: state.evaluationsWithoutImprovement)
            rule.apply(d, value: loss, to: &state)
            decisions.append(d)
        }
        // 0.995 is within min-delta of 1.0; 0.9 improves; 0.95 does not; 0.89 is within 0.01 of 0.9: the second miss stops.
        XCTAssertEqual(decisions.map(\.improved), [true, false, true, false, false])
        XCTAssertEqual(decisions.map(\.stop), [false, false, false, false, true])
        XCTAssertEqual(state.bestStep, 3)
        XCTAssertEqual(state.bestMetric, 0.9)
        XCTAssertTrue(state.earlyStopped)
    }

    func testAccuracyImprovesUpwardAndNaNNeverImproves() {
        let rule = EarlyStopping(monitor: .valAccuracy, patience: nil, minDelta: 0)
        XCTAssertTrue(rule.decide(0.5, best: nil, evaluationsWithoutImprovement: 0).improved)
        XCTAssertTrue(rule.decide(0.6, best: 0.5, evaluationsWithoutImprovement: 0).improved)
        XCTAssertFalse(rule.decide(0.4, best: 0.5, evaluationsWithoutImprovement: 0).improved)
        XCTAssertFalse(rule.decide(.nan, best: nil, evaluationsWithoutImprovement: 0).improved)
        XCTAssertFalse(rule.decide(0.1, best: 0.5, evaluationsWithoutImprovement: 1000).stop, "no patience: never stops")
    }
}

final class NonFiniteReportTests: XCTestCase {
    func testEveryRankLearnsTheLowestFailingRankAndTheCount() throws {
        for failing in [Set<Int>(), [2], [1, 3]] {
            let reports = try InProcessGroup.run(size: 4) { comm in
                try NonFiniteReport.gather(localProblem: failing.contains(comm.rank), comm: comm)
            }
            let expected = NonFiniteReport(firstRank: failing.min(), ranks: failing.count)
            XCTAssertEqual(reports, [expected, expected, expected, expected])
        }
        XCTAssertEqual(NonFiniteReport(firstRank: 1, ranks: 2).describe(step: 7), "step 7: non-finite loss or gradients on rank 1 and 1 other rank(s)")
        XCTAssertTrue(NonFiniteReport(firstRank: nil, ranks: 0).describe(step: 3).contains("overflowed"))
    }
}

/// The training step on 1, 2 and 3 ranks run as threads: the same global batches give the same
/// weights (results do not depend on the rank count), with and without optimizer-state sharding.
final class TrainingStepTests: XCTestCase {
    func train(ranks: Int, shard: Bool, steps: Int = 4) throws -> [Float] {
        let results = try InProcessGroup.run(size: ranks) { comm -> [Float] in
            let config = MLPConfig(inputSize: 5, hiddenSizes: [7], activation: .gelu, dropout: 0.2, task: .classification(labels: ["a", "b", "c"]))
            let model = MLP(config: config)
            model.initialize(seed: 1)
            var settings = GradientExchange.Settings()
            settings.shardOptimizer = shard
            settings.bucketBytes = 64
            let step = TrainingStep(model: model, optimizer: OptimizerSettings(), comm: comm, exchange: settings)
            var rng = SplitMix64(seed: 9)
            let features = (0..<(12 * 5)).map { _ in Float(rng.nextNormal()) }
            for s in 0..<steps {
                // Global batch of 12 examples, this rank's contiguous slice of it.
                let mine = Sharding.slice(count: 12, rank: comm.rank, size: comm.size)
                var batch = Batch(exampleIndices: Array(mine), featureWidth: 5)
                for i in mine { batch.features += features[(i * 5)..<(i * 5 + 5)]; batch.classTargets.append(Int32((i + s) % 3)) }
                let outcome = try step.run(batch, dropoutSeed: 3, step: s, learningRate: 1e-2, preempted: false)
                XCTAssertTrue(outcome.updated)
                XCTAssertEqual(outcome.exchanged.examples, 12)
            }
            return model.parameters.array
        }
        XCTAssertTrue(results.allSatisfy { $0 == results[0] }, "replicas identical")
        return results[0]
    }

    func testOneTwoAndThreeRanksGiveTheSameWeights() throws {
        let one = try train(ranks: 1, shard: false)
        for (ranks, shard) in [(2, false), (3, false), (2, true), (3, true)] {
            let other = try train(ranks: ranks, shard: shard)
            for i in one.indices { XCTAssertEqual(other[i], one[i], accuracy: 1e-6, "\(ranks) ranks, sharded \(shard), parameter \(i)") }
        }
    }
}
