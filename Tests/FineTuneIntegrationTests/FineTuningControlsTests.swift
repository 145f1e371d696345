import FineTuneIO
import Foundation
import XCTest

/// The fine-tuning controls through the command line, under real mpirun, on the tiny
/// BertForSequenceClassification (2 layers): what trains, gradient accumulation, clipping,
/// gradual unfreezing, resuming across a change of them, the objective and the metrics.
final class FineTuningControlsTests: IntegrationTestCase {
    var classifier: String { "\(tinyBert)/classifier" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        writeText("\(dir)/train.jsonl", count: 120, seed: 11)
        writeText("\(dir)/valid.jsonl", count: 40, seed: 12)
    }

    func common(_ output: String) -> [String] {
        ["train", "--model", classifier, "--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl", "--output", "\(dir)/\(output)",
         "--epochs", "2", "--batch-size", "16", "--lr", "1e-3", "--max-length", "12", "--log-every", "4"]
    }

    func lastTrainLine(_ run: String) -> [String: Any] { Harness.metrics("\(dir)/\(run)").last { $0["type"] as? String == "train" }! }

    /// Tensors of the newest checkpoint's optimizer.safetensors, and its size.
    func optimizerState(_ run: String) throws -> (names: Set<String>, bytes: Int) {
        let folder = "\(dir)/\(run)/checkpoints"
        let newest = try FileManager.default.contentsOfDirectory(atPath: folder).sorted().last!
        let path = "\(folder)/\(newest)/optimizer.safetensors"
        let file = try SafetensorsFile(data: FileManager.default.contents(atPath: path)!, path: path)
        return (Set(file.entries.keys), try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int)
    }

    /// --freeze-layers 1 (with and without optimizer-state sharding): the embeddings and layer 0 end
    /// bitwise as loaded, the rest trains; the exchange and the optimizer state shrink; the sharded
    /// run gives the unsharded one's weights.
    func testFrozenLayersStayBitwiseWhileExchangeAndStateShrink() throws {
        let full = try Harness.mpirun(2, common("full"))
        XCTAssertEqual(full.status, 0, full.output)
        let frozen = try Harness.mpirun(2, common("frozen") + ["--freeze-layers", "1"])
        XCTAssertEqual(frozen.status, 0, frozen.output)
        XCTAssertTrue(frozen.stdout.contains("frozen: layers<1"), frozen.output)
        let sharded = try Harness.mpirun(2, common("sharded") + ["--freeze-layers", "1", "--shard-optimizer"])
        XCTAssertEqual(sharded.status, 0, sharded.output)

        let initial = try Harness.weights(classifier), trained = try Harness.weights("\(dir)/frozen/final")
        var frozenNames = 0, movedNames = 0
        for (name, values) in trained {
            if name.hasPrefix("bert.embeddings.") || name.hasPrefix("bert.encoder.layer.0.") {
                XCTAssertEqual(values, initial[name]!, "\(name) is frozen: bitwise unchanged"); frozenNames += 1
            } else if values != initial[name]! { movedNames += 1 }
        }
        XCTAssertEqual(frozenNames, 5 + 16)
        XCTAssertGreaterThan(movedNames, 15, "layer 1, the pooler and the classifier train")
        assertCloseByTensor(try Harness.weights("\(dir)/sharded/final"), trained, relative: 1e-5)

        let fullBytes = lastTrainLine("full")["bytes_exchanged_per_step"] as! Int
        let frozenBytes = lastTrainLine("frozen")["bytes_exchanged_per_step"] as! Int
        let record = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/frozen/training_config.json")!) as! [String: Any]
        let resolved = record["resolved"] as! [String: Any]
        let trainable = resolved["trainable_parameters"] as! Int
        XCTAssertLessThan(trainable, resolved["parameters"] as! Int)
        // Exactly the trainable parameters (and 4 control values) go into the sums; the full run
        // sends those, layer 0 and the embedding rows the batch touched.
        XCTAssertEqual(frozenBytes, 4 * (trainable + 5), "frozen gradients are not exchanged")
        XCTAssertLessThan(frozenBytes, fullBytes)
        let fullState = try optimizerState("full"), frozenState = try optimizerState("frozen")
        XCTAssertFalse(frozenState.names.contains { $0.contains("embeddings") || $0.contains("layer.0.") }, "no state for frozen tensors")
        XCTAssertTrue(frozenState.names.contains("exp_avg.encoder.layer.1.output.dense.weight"))
        XCTAssertLessThan(Double(frozenState.bytes), 0.6 * Double(fullState.bytes))
        let shardedState = try optimizerState("sharded")
        XCTAssertEqual(shardedState.names, frozenState.names, "a sharded run's checkpoint holds the same tensors")

        XCTAssertEqual((record["options"] as! [String: Any])["freeze_layers"] as? Int, 1)
    }

    /// The dropout options: recorded as resolved, they change the run, and 1 and 3 ranks still give
    /// the same weights (masks from seed, step and global example index).
    func testDropoutOptionsKeepRankCountIndependence() throws {
        let dropout = ["--dropout", "0.3", "--attention-dropout", "0.2", "--classifier-dropout", "0.4", "--lr", "3e-4"]
        for ranks in [1, 3] {
            let r = try Harness.mpirun(ranks, common("d\(ranks)") + dropout)
            XCTAssertEqual(r.status, 0, r.output)
        }
        let off = try Harness.mpirun(1, common("off") + ["--dropout", "0", "--attention-dropout", "0", "--classifier-dropout", "0", "--lr", "3e-4"])
        XCTAssertEqual(off.status, 0, off.output)
        let one = try Harness.weights("\(dir)/d1/final")
        assertCloseByTensor(try Harness.weights("\(dir)/d3/final"), one, relative: 1e-5)
        XCTAssertNotEqual(try Harness.weights("\(dir)/off/final")["classifier.weight"], one["classifier.weight"])
        let resolved = (try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/d3/training_config.json")!) as! [String: Any])["resolved"] as! [String: Any]
        XCTAssertEqual(resolved["dropout"] as? Double, 0.3)
        XCTAssertEqual(resolved["attention_dropout"] as? Double, 0.2)
        XCTAssertEqual(resolved["classifier_dropout"] as? Double, 0.4)
        let run = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/d3/run.json")!) as! [String: Any]
        XCTAssertEqual(run["trainable_parameters"] as? Int, run["parameters"] as? Int)
    }

    /// --train-only head: only the pooler and the classifier change.
    func testTrainOnlyHeadChangesOnlyTheHead() throws {
        let r = try Harness.mpirun(2, common("head") + ["--train-only", "head"])
        XCTAssertEqual(r.status, 0, r.output)
        let initial = try Harness.weights(classifier)
        for (name, values) in try Harness.weights("\(dir)/head/final") {
            let head = name.hasPrefix("classifier.") || name.hasPrefix("bert.pooler.")
            XCTAssertEqual(values == initial[name]!, !head, "\(name): \(head ? "trains" : "frozen")")
        }
    }

    /// --grad-accum 3 (with dropout on) gives the weights of --grad-accum 1, on 1 and 2 ranks. (At
    /// lr 3e-4: AdamW turns float-rounding differences of near-zero gradients into weight
    /// differences proportional to the rate, as between rank counts.)
    func testGradientAccumulationGivesTheSameWeights() throws {
        var finals: [String: [String: [Float]]] = [:]
        for (ranks, k) in [(1, 1), (2, 1), (2, 3), (1, 4)] {
            let name = "r\(ranks)k\(k)"
            let r = try Harness.mpirun(ranks, common(name) + ["--grad-accum", String(k), "--lr", "3e-4"])
            XCTAssertEqual(r.status, 0, r.output)
            finals[name] = try Harness.weights("\(dir)/\(name)/final")
        }
        for name in ["r2k1", "r2k3", "r1k4"] { assertCloseByTensor(finals[name]!, finals["r1k1"]!, relative: 1e-5) }
    }

    /// --max-grad-norm: the norm before clipping is logged; clipping changes the run, and the sharded
    /// run (one extra scalar sum) clips exactly as the unsharded one.
    func testGradientClippingByTheGlobalNorm() throws {
        let plain = try Harness.mpirun(2, common("plain"))
        XCTAssertEqual(plain.status, 0, plain.output)
        XCTAssertNil(lastTrainLine("plain")["grad_norm"])
        for (name, extra) in [("clipped", [String]()), ("clippedSharded", ["--shard-optimizer"])] {
            let r = try Harness.mpirun(2, common(name) + ["--max-grad-norm", "0.05"] + extra)
            XCTAssertEqual(r.status, 0, r.output)
            let norm = lastTrainLine(name)["grad_norm"] as! Double
            XCTAssertGreaterThan(norm, 0.05, "the logged norm is the one before clipping")
        }
        let clipped = try Harness.weights("\(dir)/clipped/final"), unclipped = try Harness.weights("\(dir)/plain/final")
        XCTAssertNotEqual(clipped["classifier.weight"], unclipped["classifier.weight"])
        assertCloseByTensor(try Harness.weights("\(dir)/clippedSharded/final"), clipped, relative: 1e-5)
    }

    /// --unfreeze-every 1 over 3 epochs (head, then layer 1, then layer 0 train): after one epoch
    /// only the head has moved; with the optimizer state sharded the run ends as unsharded; a run
    /// stopped in epoch 2 and resumed ends bitwise as the whole run.
    func testGradualUnfreezingResumesBitwise() throws {
        let args = ["--epochs", "3", "--unfreeze-every", "1", "--save-every", "3"]
        let one = try Harness.mpirun(2, common("one") + ["--epochs", "1", "--unfreeze-every", "1"])
        XCTAssertEqual(one.status, 0, one.output)
        let initial = try Harness.weights(classifier)
        for (name, values) in try Harness.weights("\(dir)/one/final") {
            XCTAssertEqual(values == initial[name]!, !(name.hasPrefix("classifier.") || name.hasPrefix("bert.pooler.")), name)
        }
        let whole = try Harness.mpirun(2, common("whole") + args)
        XCTAssertEqual(whole.status, 0, whole.output)
        XCTAssertTrue(whole.stdout.contains("epoch 1: unfreezing"), whole.output)
        let final = try Harness.weights("\(dir)/whole/final")
        // Epoch 0 the head, epoch 1 layer 1 too, epoch 2 layer 0 too; the embeddings would come next.
        XCTAssertEqual(final["bert.embeddings.word_embeddings.weight"], initial["bert.embeddings.word_embeddings.weight"])
        XCTAssertNotEqual(final["bert.encoder.layer.0.output.dense.weight"], initial["bert.encoder.layer.0.output.dense.weight"])

        // Sharded, the optimizer state moves to the wider blocks as layers unfreeze.
        let sharded = try Harness.mpirun(2, common("sharded") + args + ["--shard-optimizer"])
        XCTAssertEqual(sharded.status, 0, sharded.output)
        assertCloseByTensor(try Harness.weights("\(dir)/sharded/final"), final, relative: 1e-5)

        let stopped = try Harness.mpirun(2, common("resumed") + args + ["--stop-after-steps", "12"])
        XCTAssertEqual(stopped.status, 0, stopped.output)
        let resumed = try Harness.mpirun(2, common("resumed") + args + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        let differing = try Harness.weights("\(dir)/resumed/final").filter { final[$0.key] != $0.value }.map(\.key)
        XCTAssertEqual(differing, [], "bitwise as the uninterrupted run")
    }

    /// Resuming with another freeze setting is refused, naming the option and the way out; with
    /// --accept-changed it continues, the newly trainable tensors starting without state.
    func testResumingAcrossAFreezeChangeNeedsConsent() throws {
        let first = try Harness.mpirun(2, common("run") + ["--freeze-layers", "2", "--stop-after-steps", "3"])
        XCTAssertEqual(first.status, 0, first.output)
        let refused = try Harness.mpirun(2, common("run") + ["--resume"], timeout: 60)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("--freeze-layers was 2, now unset"), refused.output)
        XCTAssertTrue(refused.output.contains("--accept-changed freeze-layers"), refused.output)
        let accepted = try Harness.mpirun(2, common("run") + ["--resume", "--accept-changed", "freeze-layers"])
        XCTAssertEqual(accepted.status, 0, accepted.output)
        let initial = try Harness.weights(classifier), final = try Harness.weights("\(dir)/run/final")
        XCTAssertNotEqual(final["bert.encoder.layer.0.output.dense.weight"], initial["bert.encoder.layer.0.output.dense.weight"], "trains after the change")
        XCTAssertTrue(try optimizerState("run").names.contains("exp_avg.embeddings.word_embeddings.weight"))
    }

    /// Label smoothing and balanced class weights train (the training loss is the smoothed,
    /// weighted one; validation reports the plain loss); the weights are recorded; a wrong count is an error.
    func testObjectiveOptions() throws {
        let r = try Harness.mpirun(2, common("objective") + ["--label-smoothing", "0.1", "--class-weights", "balanced",
                                                             "--monitor", "val_macro_f1", "--train-eval-examples", "30"])
        XCTAssertEqual(r.status, 0, r.output)
        let record = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/objective/training_config.json")!) as! [String: Any]
        let weights = (record["resolved"] as! [String: Any])["class_weights"] as! [Double]
        XCTAssertEqual(weights.count, 3)
        XCTAssertFalse(weights.allSatisfy { $0 == 1 }, "balanced weights follow the label counts: \(weights)")
        let eval = Harness.metrics("\(dir)/objective").last { $0["type"] as? String == "eval" }!
        for key in ["val_macro_f1", "val_mcc", "train_eval_loss", "train_eval_accuracy"] { XCTAssertNotNil(eval[key], key) }
        let end = Harness.metrics("\(dir)/objective").last { $0["type"] as? String == "end" }!
        XCTAssertEqual(end["monitor"] as? String, "val_macro_f1")
        XCTAssertEqual(end["reason"] as? String, "completed 2 epochs")

        // report.html, written at the end: the four charts, the subset's curve, the best evaluation marked.
        let html = String(decoding: FileManager.default.contents(atPath: "\(dir)/objective/report.html") ?? Data(), as: UTF8.self)
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4, "loss, monitored metric, learning rate, throughput")
        for text in ["Monitored metric: val_macro_f1", "training subset loss (evaluation mode)", "best (step", "rank 1", "completed 2 epochs"] {
            XCTAssertTrue(html.contains(text), text)
        }
        XCTAssertFalse(html.contains("<script"), "self-contained, no scripts")
        let again = try Harness.finetune(["report", "\(dir)/objective", "--output", "\(dir)/again.html"])
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/again.html").map { String(decoding: $0, as: UTF8.self) }, html)
        let notARun = try Harness.finetune(["report", dir])
        XCTAssertNotEqual(notARun.status, 0)
        XCTAssertTrue(notARun.output.contains("\(dir)/metrics.jsonl: missing (is \(dir) a run folder?)"), notARun.output)

        let wrong = try Harness.mpirun(2, common("wrong") + ["--class-weights", "1,2"], timeout: 60)
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.output.contains("--class-weights gives 2 weights; the model has 3 labels (neg, neu, pos"), wrong.output)
    }

    /// Options that name what the model lacks are refused with a message saying so.
    func testControlsThatDoNotFitTheModelAreRefused() throws {
        let cases: [([String], String)] = [
            (["--freeze-layers", "3"], "--freeze-layers 3: the model has 2 layers"),
            (["--monitor", "val_r2"], "--monitor val_r2 is not a metric of a classifier (use val_loss, val_accuracy, val_macro_f1, val_mcc)"),
            (["--layer-lr-decay", "1.5"], "--layer-lr-decay must be in (0, 1]"),
            (["--grad-accum", "0"], "--grad-accum must be positive"),
            (["--train-only", "head", "--unfreeze-every", "1"], "contradict each other"),
            (["--lora-rank=-1"], "--lora-rank must be positive"),
            (["--adam-beta1", "1.5"], "--adam-beta1 must be in [0, 1)"),
            (["--momentum=-1"], "--momentum must be in [0, 1)"),
            (["--min-delta=-1"], "--min-delta must not be negative"),
            (["--adam-epsilon", "0"], "--adam-epsilon must be positive"),
            (["--warmup-steps", "50"], "--warmup-steps 50 is not shorter than the run (16 steps)"),
            (["--lora-rank", "4", "--lora-targets", "query,dense"], "\"dense\" names no layer"),
            (["--lora-rank", "4", "--freeze-layers", "1"], "do not combine with it"),
        ]
        for (extra, message) in cases {
            let r = try Harness.mpirun(2, common("bad") + extra, timeout: 60)
            XCTAssertNotEqual(r.status, 0, "\(extra)")
            XCTAssertTrue(r.output.contains(message), "\(extra): \(r.output)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/bad"), "\(extra): a run that failed at set-up leaves no empty folder")
        }
        let mlp = try makeModel()
        Harness.writeData("\(dir)/tab.jsonl", count: 40, seed: 1)
        let r = try Harness.mpirun(1, ["train", "--model", mlp, "--train", "\(dir)/tab.jsonl", "--output", "\(dir)/mlp", "--freeze", "embeddings"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("--freeze embeddings: this model has no embeddings"), r.output)
        let lora = try Harness.mpirun(1, ["train", "--model", mlp, "--train", "\(dir)/tab.jsonl", "--output", "\(dir)/mlp2", "--lora-rank", "2"], timeout: 60)
        XCTAssertNotEqual(lora.status, 0)
        XCTAssertTrue(lora.output.contains("LoRA adapts the linear layers of a BERT encoder; this model is an MLP"), lora.output)
    }

    /// LoRA on 1 and 2 ranks (LoRA dropout on): only the adapters and the head train and are
    /// exchanged; final/ is the merged model, final/adapter the adapter with exactly the tensor
    /// names, shapes and config fields PEFT writes (Tests/Fixtures/peft_adapter_reference.json, made
    /// by PEFT itself); the adapter folder works as --model for eval (same figures as the merged
    /// folder) and to continue training.
    func testLoRATrainsAdaptersAndExportsWhatPEFTWrites() throws {
        let targets = "query,key,value,attention.output.dense,intermediate.dense"
        let lora = ["--lora-rank", "4", "--lora-alpha", "8", "--lora-dropout", "0.1", "--lora-targets", targets]
        var finals: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2] {
            let r = try Harness.mpirun(ranks, common("lora\(ranks)") + lora + ["--lr", "3e-4"])
            XCTAssertEqual(r.status, 0, r.output)
            finals[ranks] = try Harness.weights("\(dir)/lora\(ranks)/final")
        }
        assertCloseByTensor(finals[2]!, finals[1]!, relative: 1e-5)
        let initial = try Harness.weights(classifier), merged = finals[2]!
        XCTAssertEqual(Set(merged.keys), Set(initial.keys), "the merged folder has the base model's tensors only")
        for (name, values) in merged {
            let adapted = targets.split(separator: ",").contains { name.hasSuffix(".\($0).weight") && name.contains("encoder.layer.") }
                && !(name.contains("attention.output.dense") && !targets.contains("attention.output.dense"))
            let head = name.hasPrefix("classifier.") || name.hasPrefix("bert.pooler.")
            XCTAssertEqual(values == initial[name]!, !(adapted || head), "\(name): \(adapted ? "merged" : head ? "head" : "frozen")")
        }
        let resolved = (try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/lora2/training_config.json")!) as! [String: Any])["resolved"] as! [String: Any]
        XCTAssertEqual(lastTrainLine("lora2")["bytes_exchanged_per_step"] as? Int, 4 * ((resolved["trainable_parameters"] as! Int) + 5),
                       "only the adapters and the head are exchanged")
        XCTAssertTrue(try optimizerState("lora2").names.allSatisfy { $0.contains(".lora_") || $0.contains("classifier.") || $0.contains("pooler.") })

        // The adapter folder against PEFT's own output for the same configuration.
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Tests/Fixtures/peft_adapter_reference.json"))) as! [String: Any]
        let adapter = "\(dir)/lora2/final/adapter"
        let file = try SafetensorsFile(data: FileManager.default.contents(atPath: "\(adapter)/adapter_model.safetensors")!, path: adapter)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: file.entries.map { ($0.key, $0.value.shape) }), fixture["tensors"] as! [String: [Int]])
        let ours = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(adapter)/adapter_config.json")!) as! [String: Any]
        let peft = fixture["adapter_config"] as! [String: Any]
        for key in ["peft_type", "task_type", "r", "bias", "fan_in_fan_out", "inference_mode", "use_rslora", "use_dora"] {
            XCTAssertEqual("\(ours[key]!)", "\(peft[key]!)", key)
        }
        XCTAssertEqual(ours["lora_alpha"] as? Double, peft["lora_alpha"] as? Double)
        XCTAssertEqual(ours["lora_dropout"] as? Double, peft["lora_dropout"] as? Double)
        XCTAssertEqual(Set(ours["target_modules"] as! [String]), Set(peft["target_modules"] as! [String]))
        XCTAssertTrue(Set(peft["modules_to_save"] as! [String]).isSuperset(of: ours["modules_to_save"] as! [String]))
        XCTAssertEqual(ours["base_model_name_or_path"] as? String, classifier)

        // The adapter as --model: the same evaluation as the merged folder; it continues training.
        let viaMerged = try Harness.finetune(["eval", "--model", "\(dir)/lora2/final", "--data", "\(dir)/valid.jsonl", "--json"])
        let viaAdapter = try Harness.finetune(["eval", "--model", adapter, "--data", "\(dir)/valid.jsonl", "--json"])
        XCTAssertEqual(viaAdapter.status, 0, viaAdapter.output)
        let m = try JSONSerialization.jsonObject(with: Data(viaMerged.stdout.utf8)) as! [String: Any]
        let a = try JSONSerialization.jsonObject(with: Data(viaAdapter.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(m["eval_loss"] as! Double, a["eval_loss"] as! Double, accuracy: 1e-5)
        let continued = try Harness.mpirun(2, ["train", "--model", adapter, "--train", "\(dir)/train.jsonl", "--output", "\(dir)/continued",
                                               "--epochs", "1", "--batch-size", "16", "--max-length", "12"])
        XCTAssertEqual(continued.status, 0, continued.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/continued/final/adapter/adapter_model.safetensors"))
        let bad = try Harness.mpirun(2, ["train", "--model", adapter, "--train", "\(dir)/train.jsonl", "--output", "\(dir)/bad",
                                         "--lora-rank", "2"], timeout: 60)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("is a LoRA adapter with r 4"), bad.output)
    }

    /// An adapter trained with [CLS] pooling on a base without a head (whose own pooling would be
    /// mean): read back as --model, the adapter's task type brings back [CLS] pooling and its head.
    func testAdapterOnAHeadlessBaseKeepsItsPooling() throws {
        for pooling in ["cls", "mean"] {
            let r = try Harness.mpirun(2, ["train", "--model", "\(tinyBert)/base", "--train", "\(dir)/train.jsonl", "--output", "\(dir)/\(pooling)",
                                           "--pooling", pooling, "--epochs", "1", "--batch-size", "16", "--max-length", "12", "--lora-rank", "2"])
            XCTAssertEqual(r.status, 0, r.output)
            let merged = try Harness.finetune(["eval", "--model", "\(dir)/\(pooling)/final", "--data", "\(dir)/valid.jsonl", "--json"])
            let adapter = try Harness.finetune(["eval", "--model", "\(dir)/\(pooling)/final/adapter", "--data", "\(dir)/valid.jsonl", "--json"])
            guard pooling == "cls" else {
                // Mean pooling: the head lives in the merged folder's 2_Dense, not in the adapter.
                XCTAssertNotEqual(adapter.status, 0)
                XCTAssertTrue(adapter.output.contains("a FEATURE_EXTRACTION adapter carries no head"), adapter.output)
                continue
            }
            XCTAssertEqual(adapter.status, 0, adapter.output)
            let m = try JSONSerialization.jsonObject(with: Data(merged.stdout.utf8)) as! [String: Any]
            let a = try JSONSerialization.jsonObject(with: Data(adapter.stdout.utf8)) as! [String: Any]
            XCTAssertEqual(m["eval_loss"] as! Double, a["eval_loss"] as! Double, accuracy: 1e-5)
        }
    }

    /// A LoRA run stopped and resumed ends bitwise as the uninterrupted one (the checkpoint
    /// carries the adapters, their optimizer state and the LoRA settings); sharded, it ends the same.
    func testLoRAResumesBitwise() throws {
        let args = ["--lora-rank", "2", "--lora-dropout", "0.1", "--lora-targets", "query,value,output.dense", "--save-every", "5"]
        let straight = try Harness.mpirun(2, common("straight") + args)
        XCTAssertEqual(straight.status, 0, straight.output)
        XCTAssertEqual(try Harness.mpirun(2, common("resumed") + args + ["--stop-after-steps", "7"]).status, 0)
        let resumed = try Harness.mpirun(2, common("resumed") + args + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        let final = try Harness.weights("\(dir)/straight/final")
        XCTAssertEqual(try Harness.weights("\(dir)/resumed/final").filter { final[$0.key] != $0.value }.map(\.key), [])
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/resumed/final/adapter/adapter_model.safetensors"),
                       FileManager.default.contents(atPath: "\(dir)/straight/final/adapter/adapter_model.safetensors"))
        // With the optimizer state sharded (blocks of the adapters and the head), the same weights.
        let sharded = try Harness.mpirun(2, common("sharded") + args + ["--shard-optimizer"])
        XCTAssertEqual(sharded.status, 0, sharded.output)
        assertCloseByTensor(try Harness.weights("\(dir)/sharded/final"), final, relative: 1e-5)
    }

    /// A run with validation data that ends between epochs (--max-steps) is evaluated at its end:
    /// best/ and the best metric exist.
    func testARunEndingMidEpochIsEvaluatedAtItsEnd() throws {
        let r = try Harness.mpirun(2, common("short") + ["--max-steps", "5"])
        XCTAssertEqual(r.status, 0, r.output)
        let records = Harness.metrics("\(dir)/short")
        XCTAssertEqual(records.filter { $0["type"] as? String == "eval" }.map { $0["step"] as! Int }, [5])
        let end = records.last { $0["type"] as? String == "end" }!
        XCTAssertEqual(end["best_step"] as? Int, 5)
        XCTAssertEqual(end["reason"] as? String, "reached --max-steps 5")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/short/best/config.json"))
    }

    /// inspect: a model folder's architecture, labels and parameters per group (summing to the
    /// folder's tensors), a LoRA checkpoint's adapters and options; --version names the commit.
    func testInspectAndVersion() throws {
        let r = try Harness.finetune(["inspect", classifier, "--json"])
        XCTAssertEqual(r.status, 0, r.output)
        let i = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(i["labels"] as? [String], ["neg", "neu", "pos"])
        let groups = i["groups"] as! [[String: Any]]
        XCTAssertEqual(groups.map { $0["name"] as! String }, ["embeddings", "layer 0", "layer 1", "head"])
        let inFile = try Harness.weights(classifier).filter { !$0.key.contains("position_ids") }.values.reduce(0) { $0 + $1.count }
        XCTAssertEqual(i["parameters"] as? Int, inFile, "the groups count every tensor of the folder once")
        XCTAssertEqual(groups.map { $0["parameters"] as! Int }.reduce(0, +), inFile)

        let run = try Harness.mpirun(1, common("lora") + ["--lora-rank", "2", "--max-steps", "2"])
        XCTAssertEqual(run.status, 0, run.output)
        let checkpoint = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/lora/checkpoints").sorted().last!
        let c = try Harness.finetune(["inspect", "\(dir)/lora/checkpoints/\(checkpoint)"])
        XCTAssertEqual(c.status, 0, c.output)
        XCTAssertTrue(c.stdout.contains("checkpoint: step 2"), c.output)
        XCTAssertTrue(c.stdout.contains("LoRA adapters: "), c.output)
        XCTAssertTrue(c.stdout.contains("--lora-rank 2"), c.output)
        let missing = try Harness.finetune(["inspect", "\(dir)/nothing"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.output.contains("\(dir)/nothing: model folder does not exist"), missing.output)

        let v = try Harness.finetune(["--version"])
        XCTAssertEqual(v.status, 0)
        XCTAssertTrue(v.stdout.hasPrefix("finetune-dist 0.6.0 (commit "), v.output)
    }

    /// eval prints and writes per-class precision, recall, F1 and the confusion matrix.
    func testEvalReportsPerClassFiguresAndTheConfusionMatrix() throws {
        let r = try Harness.finetune(["eval", "--model", classifier, "--data", "\(dir)/valid.jsonl", "--report", "\(dir)/report.json"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("confusion matrix (rows: true, columns: predicted)"), r.output)
        let report = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/report.json")!) as! [String: Any]
        let matrix = report["confusion_matrix"] as! [[Int]]
        XCTAssertEqual(matrix.flatMap { $0 }.reduce(0, +), 40)
        let perClass = report["per_class"] as! [String: [String: Any]]
        XCTAssertEqual(Set(perClass.keys), ["neg", "neu", "pos"])
        XCTAssertEqual(perClass.values.map { $0["support"] as! Int }.reduce(0, +), 40)
        let diagonal = (0..<3).map { matrix[$0][$0] }.reduce(0, +)
        XCTAssertEqual(report["eval_accuracy"] as! Double, Double(diagonal) / 40, accuracy: 1e-12)
    }
}
