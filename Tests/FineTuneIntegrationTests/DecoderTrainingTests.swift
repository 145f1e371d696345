import FineTuneIO
import FineTuneKernels
import Foundation
import XCTest

/// Decoders through the real command line, on the tiny Llama of Tests/Fixtures/tiny-llama (a
/// complete folder: weights, byte-level BPE, ChatML template): full fine-tuning and LoRA on 1 and 2
/// ranks, a bitwise resume, freezing, the export (transformers' folder, PEFT's adapter in
/// adapter/), eval and predict (generation) of what was exported.
final class DecoderTrainingTests: IntegrationTestCase {
    var tinyLlama: String { "\(repositoryRoot)/Tests/Fixtures/tiny-llama/llama" }

    /// Conversations, prompt/completion pairs and plain texts about packages.
    func writeInstructions(_ path: String, count: Int, seed: UInt64) {
        let packages = [("vim", "editors"), ("curl", "web"), ("gcc", "devel"), ("bash", "shells"), ("git", "vcs"), ("nano", "editors")]
        var rng = SplitMix64(seed: seed)
        var lines: [String] = []
        for i in 0..<count {
            let (name, section) = packages[Int(rng.next() % UInt64(packages.count))]
            let object: [String: Any]
            switch i % 3 {
            case 0: object = ["messages": [["role": "user", "content": "Which section is package \(name) in?"], ["role": "assistant", "content": section]]]
            case 1: object = ["prompt": "Section of \(name):", "completion": " \(section)"]
            default: object = ["text": "the package \(name) is in section \(section) of the system"]
            }
            lines.append(String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        }
        FileManager.default.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    func train(_ ranks: Int, _ output: String, _ extra: [String]) throws -> Harness.Result {
        try Harness.mpirun(ranks, ["train", "--model", tinyLlama, "--train", "\(dir)/train.jsonl", "--valid", "\(dir)/valid.jsonl",
                                   "--output", "\(dir)/\(output)", "--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--save-every", "4",
                                   "--progress", "none"] + extra)
    }

    func testFullFineTuningOnOneAndTwoRanksResumesBitwiseAndExports() throws {
        writeInstructions("\(dir)/train.jsonl", count: 40, seed: 1)
        writeInstructions("\(dir)/valid.jsonl", count: 12, seed: 2)
        let one = try train(1, "one", [])
        XCTAssertEqual(one.status, 0, one.output)
        let evaluations = Harness.metrics("\(dir)/one").filter { $0["type"] as? String == "eval" }
        let losses = evaluations.compactMap { $0["val_loss"] as? Double }
        XCTAssertEqual(losses.count, 2)
        XCTAssertLessThan(losses[1], losses[0], "validation loss falls")
        XCTAssertEqual(evaluations[0]["val_perplexity"] as! Double, exp(losses[0]), accuracy: 1e-9 * exp(losses[0]))
        let two = try train(2, "two", [])
        XCTAssertEqual(two.status, 0, two.output)
        assertCloseByTensor(try Harness.weights("\(dir)/two/final"), try Harness.weights("\(dir)/one/final"), relative: 1e-5)
        // Stopped after step 3 and resumed on 2 ranks: bitwise the uninterrupted 2-rank run.
        let stopped = try train(2, "resumed", ["--stop-after-steps", "3"])
        XCTAssertEqual(stopped.status, 0, stopped.output)
        let resumed = try train(2, "resumed", ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertEqual(try Harness.weights("\(dir)/resumed/final"), try Harness.weights("\(dir)/two/final"))

        // The export is a LlamaForCausalLM folder: the fixture's tensor names (tied: no lm_head), tokenizer and template.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/one/final/config.json"))) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], ["LlamaForCausalLM"])
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, true)
        XCTAssertEqual(Set(try SafetensorsFile(path: "\(dir)/one/final/model.safetensors").names), Set(try SafetensorsFile(path: "\(tinyLlama)/model.safetensors").names))
        for file in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/one/final/\(file)"), file)
        }
        // eval of best/ scores what the run's evaluation scored, with the same loss.
        let evaluated = try Harness.finetune(["eval", "--model", "\(dir)/one/best", "--data", "\(dir)/valid.jsonl", "--json", "--progress", "none"])
        XCTAssertEqual(evaluated.status, 0, evaluated.output)
        let figures = try JSONSerialization.jsonObject(with: Data(evaluated.stdout.utf8)) as! [String: Any]
        let best = evaluations.min { ($0["val_loss"] as! Double) < ($1["val_loss"] as! Double) }!
        XCTAssertEqual(figures["eval_examples"] as? Int, best["val_examples"] as? Int)
        XCTAssertEqual(figures["eval_loss"] as! Double, best["val_loss"] as! Double, accuracy: 1e-5)
    }

    func testLoRATrainsOnlyAdaptersFreezingKeepsLayersAndPredictGenerates() throws {
        writeInstructions("\(dir)/train.jsonl", count: 32, seed: 3)
        writeInstructions("\(dir)/valid.jsonl", count: 8, seed: 4)
        let lora = ["--lora-rank", "4", "--lora-targets", "all", "--lora-alpha", "8"]
        let one = try train(1, "lora1", lora)
        XCTAssertEqual(one.status, 0, one.output)
        XCTAssertTrue(one.output.contains("LoRA r 4 on q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"), one.output)
        let two = try train(2, "lora2", lora)
        XCTAssertEqual(two.status, 0, two.output)
        assertCloseByTensor(try Harness.weights("\(dir)/lora2/final"), try Harness.weights("\(dir)/lora1/final"), relative: 1e-5)
        // The adapter as PEFT saves it, on the base's names; the merged folder differs from the base only in adapted weights.
        let adapter = try SafetensorsFile(path: "\(dir)/lora1/final/adapter/adapter_model.safetensors")
        XCTAssertEqual(adapter.names.count, 2 * 7 * 2)
        XCTAssertTrue(adapter.names.contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"))
        let adapterConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/lora1/final/adapter/adapter_config.json"))) as! [String: Any]
        XCTAssertEqual(adapterConfig["task_type"] as? String, "CAUSAL_LM")
        let base = try Harness.weights(tinyLlama), merged = try Harness.weights("\(dir)/lora1/final")
        XCTAssertEqual(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
        XCTAssertEqual(merged["model.layers.0.input_layernorm.weight"], base["model.layers.0.input_layernorm.weight"])
        XCTAssertNotEqual(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
        // LoRA resumes bitwise.
        XCTAssertEqual(try train(2, "lora-resumed", lora + ["--stop-after-steps", "3"]).status, 0)
        let resumed = try train(2, "lora-resumed", lora + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertEqual(try Harness.weights("\(dir)/lora-resumed/final"), try Harness.weights("\(dir)/lora2/final"))

        // Freezing the lowest layer: its weights and the embeddings stay bitwise.
        let frozen = try train(1, "frozen", ["--freeze-layers", "1", "--max-steps", "2"])
        XCTAssertEqual(frozen.status, 0, frozen.output)
        let f = try Harness.weights("\(dir)/frozen/final")
        for (name, values) in base where name.hasPrefix("model.layers.0.") || name == "model.embed_tokens.weight" { XCTAssertEqual(f[name], values, name) }
        XCTAssertNotEqual(f["model.layers.1.mlp.up_proj.weight"], base["model.layers.1.mlp.up_proj.weight"])

        // predict generates: one completion per prompt, greedy the same on 1 and 2 ranks, sampling repeatable by seed.
        // (A system message of our own: the tiny tokenizer spends most of the 64 positions on the default one.)
        let prompts = [#"{"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "vim?"}]}"#, #"{"prompt": "Section of git:"}"#, "the package"]
        FileManager.default.createFile(atPath: "\(dir)/prompts.txt", contents: Data((prompts[2] + "\n").utf8))
        FileManager.default.createFile(atPath: "\(dir)/prompts.jsonl", contents: Data((prompts[0..<2].joined(separator: "\n") + "\n").utf8))
        func predict(_ ranks: Int, _ input: String, _ output: String, _ extra: [String] = []) throws -> [[String: Any]] {
            let r = try Harness.mpirun(ranks, ["predict", "--model", "\(dir)/lora1/final", "--input", "\(dir)/\(input)", "--output", "\(dir)/\(output)",
                                               "--max-new-tokens", "6", "--progress", "none"] + extra)
            XCTAssertEqual(r.status, 0, r.output)
            return try String(contentsOfFile: "\(dir)/\(output)", encoding: .utf8).split(separator: "\n")
                .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        }
        let greedy1 = try predict(1, "prompts.jsonl", "g1.jsonl"), greedy2 = try predict(2, "prompts.jsonl", "g2.jsonl")
        XCTAssertEqual(greedy1.count, 2)
        XCTAssertEqual(greedy1.map { $0["completion"] as? String }, greedy2.map { $0["completion"] as? String })
        for line in greedy1 { XCTAssertTrue(["eos", "length"].contains(line["stop"] as? String ?? ""), "\(line)") }
        XCTAssertEqual(try predict(1, "prompts.txt", "plain.jsonl").count, 1)
        let sampled = ["--temperature", "1.2", "--top-p", "0.9", "--seed", "5"]
        let s1 = try predict(1, "prompts.jsonl", "s1.jsonl", sampled), s2 = try predict(2, "prompts.jsonl", "s2.jsonl", sampled)
        XCTAssertEqual(s1.map { $0["completion"] as? String }, s2.map { $0["completion"] as? String })
    }

    func testBadDecoderInputIsRefusedWithItsPlace() throws {
        writeInstructions("\(dir)/valid.jsonl", count: 4, seed: 5)
        let cases: [(String, String)] = [
            (#"{"messages": [{"role": "user", "content": "hi"}]}"#, "train.jsonl:1: no assistant message"),
            (#"{"completion": "x"}"#, "train.jsonl:1: \"completion\" needs a \"prompt\""),
            (#"{"label": "a"}"#, "train.jsonl:1: needs \"text\""),
            (#"{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}"#, "role \"robot\""),
        ]
        for (line, expected) in cases {
            FileManager.default.createFile(atPath: "\(dir)/train.jsonl", contents: Data((line + "\n").utf8))
            let r = try train(2, "bad", ["--overwrite"])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.output.contains(expected), "\(expected) in: \(r.output)")
        }
        writeInstructions("\(dir)/train.jsonl", count: 8, seed: 6)
        let wrongTargets = try train(1, "bad", ["--overwrite", "--lora-rank", "2", "--lora-targets", "query,value"])
        XCTAssertNotEqual(wrongTargets.status, 0)
        XCTAssertTrue(wrongTargets.output.contains("q_proj"), wrongTargets.output)
        let dropout = try train(1, "bad", ["--overwrite", "--dropout", "0.1"])
        XCTAssertNotEqual(dropout.status, 0)
        XCTAssertTrue(dropout.output.contains("has no dropout"), dropout.output)
    }
}
