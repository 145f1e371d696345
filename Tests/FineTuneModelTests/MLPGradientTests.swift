import FineTuneKernels
import FineTuneModels
import XCTest

final class MLPGradientTests: XCTestCase {
    func randomArray(_ n: Int, seed: UInt64) -> [Double] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in rng.nextUnit() * 2 - 1 }
    }

    /// The whole MLP (Float): its summed-loss gradient against finite differences of its own loss.
    /// Float forward passes limit the precision, so the tolerance is 2e-2 relative here; the
    /// per-kernel checks above are the exact ones.
    func testMLPGradientMatchesFiniteDifferencesInFloat() {
        for (activation, task) in [(Activation.gelu, TaskKind.classification(labels: ["x", "y", "z"])), (.relu, .regression)] {
            let model = MLP(config: MLPConfig(inputSize: 5, hiddenSizes: [7, 6], activation: activation, dropout: 0.2, task: task))
            model.initialize(seed: 3)
            var batch = Batch(exampleIndices: [3, 8, 1, 9], featureWidth: 5)
            batch.features = randomArray(20, seed: 50).map(Float.init)
            batch.classTargets = [0, 2, 1, 2]
            batch.regressionTargets = [0.5, -1, 2, 0]
            model.gradients.zero()
            _ = model.trainStep(batch, dropoutSeed: 4, step: 2)
            let analytic = model.gradients.array
            model.gradients.zero()
            let centre = model.trainStep(batch, dropoutSeed: 4, step: 2).lossSum
            var checked = 0
            for spec in model.layout.tensors {
                for i in stride(from: spec.offset, to: spec.offset + spec.count, by: 3) {
                    let saved = model.parameters[i]
                    let step: Float = 2e-3
                    model.parameters[i] = saved + step
                    model.gradients.zero(); let plus = model.trainStep(batch, dropoutSeed: 4, step: 2).lossSum
                    model.parameters[i] = saved - step
                    model.gradients.zero(); let minus = model.trainStep(batch, dropoutSeed: 4, step: 2).lossSum
                    model.parameters[i] = saved
                    let numeric = (plus - minus) / (2 * Double(step))
                    // A ReLU kink inside [x - h, x + h] makes the one-sided slopes disagree: skip it.
                    let right = (plus - centre) / Double(step), left = (centre - minus) / Double(step)
                    if abs(right - left) > 0.05 * max(1, abs(numeric)) { continue }
                    XCTAssertEqual(Double(analytic[i]), numeric, accuracy: 2e-2 * max(1, abs(numeric)), "\(spec.name) element \(i - spec.offset)")
                    checked += 1
                }
            }
            XCTAssertGreaterThan(checked, 30)
        }
    }
}
