import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation
import XCTest

/// AdamW and SGD against trajectories recorded from torch.optim (Tests/fixture-scripts/make_optimizer_fixture.py).
final class OptimizerTests: XCTestCase {
    func loadFixture() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(fixturesDirectory)/optimizer_reference.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    func floats(_ any: Any?) -> [Float] { (any as! [NSNumber]).map { $0.floatValue } }

    func replay(_ name: String, settings configure: (inout OptimizerSettings, [String: Double]) -> Void) throws {
        let fixture = try loadFixture()
        let cases = fixture["cases"] as! [String: Any]
        let c = cases[name] as! [String: Any]
        let s = (c["settings"] as! [String: NSNumber]).mapValues { $0.doubleValue }
        var layout = ParameterLayout()
        layout.add("weight", shape: [3, 5], decays: true)
        layout.add("bias", shape: [3], decays: false)
        let parameters = FlatBuffer<Float>(count: layout.count), gradients = FlatBuffer<Float>(count: layout.count)
        func put(_ values: [Float], _ tensor: String, _ buffer: FlatBuffer<Float>) {
            for (i, v) in values.enumerated() { buffer[layout[tensor].offset + i] = v }
        }
        func get(_ tensor: String) -> [Float] {
            let spec = layout.spec(tensor)!
            return (0..<spec.count).map { parameters[spec.offset + $0] }
        }
        put(floats(fixture["weight0"]), "weight", parameters)
        put(floats(fixture["bias0"]), "bias", parameters)
        var settings = OptimizerSettings()
        configure(&settings, s)
        let optimizer = Optimizer(settings: settings, layout: layout)
        let grads = fixture["grads"] as! [[String: Any]]
        let trajectory = c["trajectory"] as! [[String: Any]]
        for (step, expected) in trajectory.enumerated() {
            put(floats(grads[step]["weight"]), "weight", gradients)
            put(floats(grads[step]["bias"]), "bias", gradients)
            optimizer.step(parameters: parameters, gradients: gradients, learningRate: s["lr"]!)
            for tensor in ["weight", "bias"] {
                let want = floats(expected[tensor]), got = get(tensor)
                for i in want.indices {
                    XCTAssertEqual(got[i], want[i], accuracy: 2e-6 * max(1, abs(want[i])), "\(name) step \(step + 1) \(tensor)[\(i)]")
                }
            }
        }
    }

    func testAdamWMatchesTorchStepForStep() throws {
        try replay("adamw") { settings, s in
            settings.kind = .adamw
            settings.weightDecay = s["weight_decay"]!
            settings.beta1 = s["beta1"]!; settings.beta2 = s["beta2"]!; settings.epsilon = s["eps"]!
        }
    }

    func testSGDWithMomentumMatchesTorchStepForStep() throws {
        try replay("sgd") { settings, s in
            settings.kind = .sgd
            settings.weightDecay = s["weight_decay"]!
            settings.momentum = s["momentum"]!
        }
    }

    func testLearningRateSchedulesMatchTransformers() {
        // transformers.get_linear_schedule_with_warmup(num_warmup_steps=3, num_training_steps=10), lr 1:
        // lambda(step) = step/3 while step < 3, else max(0, (10 - step) / 7)
        let linear = LearningRateSchedule(kind: .linear, peak: 1, warmupSteps: 3, totalSteps: 10)
        let expected: [Double] = [0, 1.0 / 3, 2.0 / 3, 1, 6.0 / 7, 5.0 / 7, 4.0 / 7, 3.0 / 7, 2.0 / 7, 1.0 / 7]
        for (step, want) in expected.enumerated() { XCTAssertEqual(linear.rate(atStep: step), want, accuracy: 1e-12, "step \(step)") }
        let constant = LearningRateSchedule(kind: .constant, peak: 0.5, warmupSteps: 2, totalSteps: 10)
        XCTAssertEqual(constant.rate(atStep: 1), 0.25)
        XCTAssertEqual(constant.rate(atStep: 7), 0.5)
        let cosine = LearningRateSchedule(kind: .cosine, peak: 1, warmupSteps: 0, totalSteps: 10)
        XCTAssertEqual(cosine.rate(atStep: 5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(cosine.rate(atStep: 0), 1, accuracy: 1e-12)
    }

    /// Every schedule at every step of 23 (kind, warm-up, length, power) cases against transformers'
    /// own schedulers driving a torch optimizer (Tests/fixture-scripts/make_schedule_fixture.py).
    func testEveryScheduleMatchesTheTransformersFixtureAtEveryStep() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(fixturesDirectory)/schedule_reference.json"))
        let cases = (try JSONSerialization.jsonObject(with: data) as! [String: Any])["cases"] as! [[String: Any]]
        XCTAssertEqual(Set(cases.map { $0["kind"] as! String }), Set(ScheduleKind.allCases.map(\.rawValue)), "the fixture covers every schedule")
        for c in cases {
            let kind = ScheduleKind(rawValue: c["kind"] as! String)!
            let schedule = LearningRateSchedule(kind: kind, peak: c["peak"] as! Double, warmupSteps: c["warmup_steps"] as! Int,
                                                totalSteps: c["total_steps"] as! Int, end: c["lr_end"] as? Double ?? 1e-7,
                                                power: c["power"] as? Double ?? 1)
            for (step, want) in (c["rates"] as! [Double]).enumerated() {
                XCTAssertEqual(schedule.rate(atStep: step), want, accuracy: 1e-15, "\(kind) warm-up \(schedule.warmupSteps) of \(schedule.totalSteps), step \(step)")
            }
        }
    }

    /// AdamW runs 16 lanes at a time with a scalar tail; both must give what the one-element
    /// formula gives, bit for bit, at every tensor length and offset.
    func testAdamWVectorAndTailMatchTheScalarFormula() {
        var layout = ParameterLayout()
        for (i, n) in [1, 15, 16, 17, 40, 3].enumerated() { layout.add("t\(i)", shape: [n], decays: i % 2 == 0) }
        let p = FlatBuffer<Float>(count: layout.count), g = FlatBuffer<Float>(count: layout.count)
        var rng = SplitMix64(seed: 11)
        for i in 0..<layout.count { p[i] = Float(rng.nextNormal()); g[i] = Float(rng.nextNormal()) }
        var settings = OptimizerSettings()
        settings.weightDecay = 0.01
        let optimizer = Optimizer(settings: settings, layout: layout)
        var expected = (0..<layout.count).map { p[$0] }, m = [Float](repeating: 0, count: layout.count), v = m
        let lr = 1e-3
        // The optimizer's own constants, in Float as it forms them.
        let b1 = Float(settings.beta1), b2 = Float(settings.beta2)
        for step in 1...3 {
            let bc1 = 1 - Foundation.pow(settings.beta1, Double(step)), bc2 = 1 - Foundation.pow(settings.beta2, Double(step))
            for spec in layout.tensors {
                let decay = spec.decays ? Float(1 - lr * settings.weightDecay) : 1
                for i in spec.offset..<(spec.offset + spec.count) {
                    let grad = g[i] * 0.5
                    m[i] = m[i] + (1 - b1) * (grad - m[i])
                    v[i] = b2 * v[i] + (1 - b2) * grad * grad
                    expected[i] = expected[i] * decay - Float(lr / bc1) * m[i] / (v[i].squareRoot() * Float(1 / bc2.squareRoot()) + Float(settings.epsilon))
                }
            }
            optimizer.step(parameters: p, gradients: g, gradientScale: 0.5, learningRate: lr)
            for spec in layout.tensors {
                for i in spec.offset..<(spec.offset + spec.count) { XCTAssertEqual(p[i], expected[i], "step \(step) \(spec.name)[\(i - spec.offset)]") }
            }
        }
    }
}
