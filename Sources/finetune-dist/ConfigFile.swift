import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import FineTuneTrainer
import Foundation
import Yams

/// `train --config run.yaml`: a YAML (or JSON) file of `train` options, keys named as the options
/// (`batch_size` or `batch-size`). Options on the command line win over the file. A run's
/// training_config.json is such a file too (its "options"), so
/// `--config runs/exp1/training_config.json --output runs/exp2` repeats a run.
enum ConfigFile {
    /// Names users bring from the Hugging Face Trainer, with the option that does the same here.
    static let trainerNames: [String: String] = [
        "learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size",
        "train_batch_size": "batch_size", "max_seq_length": "max_length", "output_dir": "output",
        "gradient_accumulation_steps": "grad_accum", "lr_scheduler_type": "lr_schedule", "logging_steps": "log_every",
        "save_steps": "save_every", "eval_steps": "eval_every", "early_stopping_patience": "patience",
        "label_smoothing_factor": "label_smoothing", "metric_for_best_model": "monitor", "model_name_or_path": "model",
        "train_file": "train", "validation_file": "valid", "test_file": "test", "warmup_ratio": "warmup_ratio",
        "save_total_limit": "keep_checkpoints", "adam_epsilon": "adam_epsilon", "per_device_eval_batch_size": "eval_batch_size",
    ]

    /// Each key of the file as the option it sets, its value as text and its place ("run.yaml:3"),
    /// in the file's order.
    static func entries<Root>(fromFile path: String, specs: [OptionSpec<Root>]) throws -> [OptionCommand<Root>.Setting] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FineTuneError("--config \(path): cannot read the file (missing or unreadable)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw FineTuneError("\(path): not UTF-8 text") }
        // A top-level key given twice is found here first, with the line of its second use (Yams
        // would place it at the start of the mapping).
        if let place = duplicateKey(in: text, path: path) { throw FineTuneError(place) }
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw FineTuneError("\(path): empty; it should map option names to values") }
            root = node
        } catch let error as YamlError {
            throw FineTuneError("\(path): not valid YAML or JSON: \(error)")
        }
        guard var mapping = root.mapping else { throw FineTuneError("\(path): the top level should map option names to values") }
        // A run's training_config.json: its options.
        let runRecord = mapping["options"]?.mapping != nil && mapping["resolved"] != nil
        if runRecord, let options = mapping["options"]?.mapping { mapping = options }
        let known = Dictionary(uniqueKeysWithValues: specs.filter { !$0.isHidden }.map { ($0.key, $0) })
        var result: [OptionCommand<Root>.Setting] = []
        var seen: [String: (raw: String, line: Int)] = [:]
        for (keyNode, value) in mapping {
            let line = keyNode.mark?.line ?? 0
            let place = "\(path):\(line)"
            guard let raw = keyNode.string else { throw FineTuneError("\(place): a key that is not a name") }
            let key = raw.replacingOccurrences(of: "-", with: "_")
            if let earlier = seen[key] {
                throw FineTuneError("\(place): \"\(raw)\" is the option of \"\(earlier.raw)\" on line \(earlier.line) again; one value per option")
            }
            seen[key] = (raw, line)
            if key == "config" {
                // A run records the file it was given; a file of one's own does not nest another.
                if runRecord { continue }
                throw FineTuneError("\(place): a config file cannot name another (\"\(raw)\"); put the options here, or give --config once on the command line")
            }
            guard let spec = known[key] else {
                throw FineTuneError("\(place): unknown key \"\(raw)\"" + suggestion(for: key, among: Set(known.keys)))
            }
            switch value {
            case .scalar(let scalar):
                if value.null != nil && scalar.style == .plain { continue }  // recorded as absent
                if case .flag(_, let optionalValues) = spec.form {
                    if optionalValues.contains(scalar.string) { result.append(.init(spec: spec, value: scalar.string, place: place)); continue }
                    guard let on = value.bool else { throw FineTuneError("\(place): \(raw) is a switch: true or false") }
                    result.append(.init(spec: spec, value: String(on), place: place))
                } else {
                    if scalar.style == .plain, value.bool != nil, Double(scalar.string) == nil {
                        throw FineTuneError("\(place): \(raw) takes a value, not \(scalar.string)")
                    }
                    result.append(.init(spec: spec, value: scalar.string, place: place))
                }
            case .sequence(let items):
                let values = items.compactMap(\.string)
                guard values.count == items.count else { throw FineTuneError("\(place): \(raw) takes a list of plain values") }
                if !values.isEmpty { result.append(.init(spec: spec, value: values.joined(separator: ","), place: place)) }
            default:
                throw FineTuneError("\(place): \(raw) takes a value, not a mapping")
            }
        }
        return result
    }

    /// "path:line: ..." for the first top-level key written twice: YAML by its unindented `key:`
    /// lines; JSON through the strict reader, which also names any syntax error by line and column.
    static func duplicateKey(in text: String, path: String) -> String? {
        if text.drop(while: { $0.isWhitespace }).first == "{" {
            do { _ = try StrictJSON.parse(text) } catch let error as StrictJSON.SyntaxError {
                let before = text.utf8.prefix(max(0, error.column - 1))
                let line = before.filter { $0 == UInt8(ascii: "\n") }.count + 1
                let column = before.count - (before.lastIndex(of: UInt8(ascii: "\n")).map { before.distance(from: before.startIndex, to: $0) + 1 } ?? 0) + 1
                return "\(path):\(line): column \(column): \(error.message)"
            } catch {}
            return nil
        }
        var first: [String: Int] = [:]
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard let c = line.first, !c.isWhitespace, c != "#", c != "-", let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if let earlier = first[key] {
                return "\(path):\(number + 1): \"\(key)\" is given twice (first on line \(earlier)); one value per option"
            }
            first[key] = number + 1
        }
        return nil
    }

    static func suggestion(for key: String, among known: Set<String>) -> String {
        if let same = trainerNames[key] { return "; the Hugging Face Trainer's \(key) is \"\(same)\" here" }
        let nearest = known.map { ($0, editDistance(key, $0)) }.min { ($0.1, $0.0) < ($1.1, $1.0) }
        if let (name, distance) = nearest, distance <= max(2, key.count / 3) { return "; did you mean \"\(name)\"?" }
        return " (the keys are the options of `finetune-dist train --help`)"
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return a.isEmpty ? b.count : previous[b.count]
    }
}
