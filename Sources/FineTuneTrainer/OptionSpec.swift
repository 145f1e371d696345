import FineTuneDistributed
import FineTuneJSON
import FineTuneModels

/// One option of a command, declared once: its name (`batch-size`, which is also its
/// `--config` and training_config.json key `batch_size`), help, where its value lives in the
/// configuration, its range check and whether it changes the mathematics of a run. The command
/// line, `--help`, config files, training_config.json and the resume check are all read off
/// these declarations, so an option written here exists everywhere at once.
public struct OptionSpec<Root>: @unchecked Sendable {
    public typealias Form = OptionForm

    /// Whether resuming with a changed value is refused. The newer options count only when set,
    /// so checkpoints written before they existed stay resumable.
    public enum Mathematics {
        case no
        case always
        /// When the value is not the default.
        case whenSet
        /// When the rest of the configuration makes the value matter.
        case when((Root) -> Bool)
    }

    public let name: String
    public let group: String
    public let help: String
    public let form: Form
    /// The values an option of a fixed set accepts, for --help and the refusal message.
    public let choices: [String]
    public let isRequired: Bool
    public let isHidden: Bool
    public let mathematics: Mathematics
    /// Sets the option from its text (a flag: "true" or "false"); throws `OptionValueError`.
    public let assign: (inout Root, String) throws -> Void
    /// The value as training_config.json records it (an Optional's nil: null).
    public let recorded: (Root) -> any Encodable
    /// The value as text (nil: not set), for --help's default and the resume check.
    public let text: (Root) -> String?
    /// What the resume check says for an unset value of an option that always counts.
    public let absentText: String

    public init(name: String, group: String, help: String, form: Form = .value, choices: [String] = [], isRequired: Bool = false,
                isHidden: Bool = false, mathematics: Mathematics, absentText: String = "none",
                assign: @escaping (inout Root, String) throws -> Void, recorded: @escaping (Root) -> any Encodable,
                text: @escaping (Root) -> String?) {
        self.name = name; self.group = group; self.help = help; self.form = form; self.choices = choices
        self.isRequired = isRequired; self.isHidden = isHidden; self.mathematics = mathematics; self.absentText = absentText
        self.assign = assign; self.recorded = recorded; self.text = text
    }

    /// The `--config` and training_config.json key.
    public var key: String { name.replacingOccurrences(of: "-", with: "_") }

    /// The same option on a configuration that holds `Root` at `path` (a command that shares it).
    public func lifted<Outer>(_ path: WritableKeyPath<Outer, Root>) -> OptionSpec<Outer> {
        let assign = self.assign, recorded = self.recorded, text = self.text
        let mathematics: OptionSpec<Outer>.Mathematics
        switch self.mathematics {
        case .no: mathematics = .no
        case .always: mathematics = .always
        case .whenSet: mathematics = .whenSet
        case .when(let counts): mathematics = .when { counts($0[keyPath: path]) }
        }
        return OptionSpec<Outer>(name: name, group: group, help: help, form: form, choices: choices, isRequired: isRequired,
                                 isHidden: isHidden, mathematics: mathematics, absentText: absentText,
                                 assign: { try assign(&$0[keyPath: path], $1) }, recorded: { recorded($0[keyPath: path]) },
                                 text: { text($0[keyPath: path]) })
    }
}

/// How an option is written.
public enum OptionForm: Equatable, Sendable {
    /// `--name VALUE` (or `--name=VALUE`).
    case value
    /// `--name` sets it; an invertible flag also has `--no-name`. `optionalValues`: words
    /// that may follow the flag as its value (`--resume auto`).
    case flag(invertible: Bool, optionalValues: [String] = [])
}

/// A value the option refuses: "--batch-size must be positive", or text that is not a value of its type.
public struct OptionValueError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A type an option's value can have: read from and written as text.
public protocol OptionValue: Encodable {
    init?(optionText: String)
    var optionText: String { get }
    /// The accepted values when they are a fixed set.
    static var optionChoices: [String] { get }
}
extension OptionValue { public static var optionChoices: [String] { [] } }
extension Int: OptionValue {
    public init?(optionText: String) { self.init(optionText) }
    public var optionText: String { String(self) }
}
extension UInt64: OptionValue {
    public init?(optionText: String) { self.init(optionText) }
    public var optionText: String { String(self) }
}
extension Double: OptionValue {
    public init?(optionText: String) { self.init(optionText) }
    public var optionText: String { String(self) }
}
extension String: OptionValue {
    public init?(optionText: String) { self = optionText }
    public var optionText: String { self }
}
extension OptionValue where Self: RawRepresentable & CaseIterable, RawValue == String {
    public init?(optionText: String) { self.init(rawValue: optionText) }
    public var optionText: String { rawValue }
    public static var optionChoices: [String] { allCases.map(\.rawValue) }
}
extension ScheduleKind: OptionValue {}
extension OptimizerKind: OptionValue {}
extension MonitoredMetric: OptionValue {}
extension TaskChoice: OptionValue {}
extension Pooling: OptionValue {}
extension NonFinitePolicy: OptionValue {}
extension AllreduceAlgorithm: OptionValue {}

/// A range check: nil when the value is fine, else what is wrong, completing "--name ...".
public typealias OptionCheck<V> = (V) -> String?

public enum Checks {
    public static func positive<V: Comparable & Numeric>(_ why: String = "") -> OptionCheck<V> {
        { $0 > 0 && isFinite($0) ? nil : "must be positive" + why }
    }
    public static func nonNegative<V: Comparable & Numeric>(_ why: String = "") -> OptionCheck<V> {
        { $0 >= 0 && isFinite($0) ? nil : "must not be negative" + why }
    }
    /// [0, 1): probabilities of dropping, smoothing, momentum, betas.
    public static let belowOne: OptionCheck<Double> = { $0 >= 0 && $0 < 1 ? nil : "must be in [0, 1)" }
    /// (0, 1).
    public static let openUnit: OptionCheck<Double> = { $0 > 0 && $0 < 1 ? nil : "must be in (0, 1)" }
    private static func isFinite<V>(_ v: V) -> Bool { (v as? Double)?.isFinite ?? true }
}

extension OptionSpec {
    /// `--name VALUE` into a value with a default (the configuration's initial value).
    public static func value<V: OptionValue>(_ name: String, _ path: WritableKeyPath<Root, V>, group: String, math: Mathematics,
                                             required: Bool = false, check: OptionCheck<V>? = nil, help: String) -> OptionSpec {
        OptionSpec(name: name, group: group, help: help, choices: V.optionChoices, isRequired: required, mathematics: math,
                   assign: { root, text in root[keyPath: path] = try parse(text, name: name, check: check) },
                   recorded: { $0[keyPath: path] }, text: { $0[keyPath: path].optionText })
    }

    /// `--name VALUE` into an optional value (unset: nil).
    public static func value<V: OptionValue>(_ name: String, _ path: WritableKeyPath<Root, V?>, group: String, math: Mathematics,
                                             absentText: String = "none", required: Bool = false,
                                             check: OptionCheck<V>? = nil, help: String) -> OptionSpec {
        OptionSpec(name: name, group: group, help: help, choices: V.optionChoices, isRequired: required, mathematics: math,
                   absentText: absentText,
                   assign: { root, text in root[keyPath: path] = try parse(text, name: name, check: check) },
                   recorded: { $0[keyPath: path] }, text: { $0[keyPath: path]?.optionText })
    }

    /// `--name` (and `--no-name` when invertible).
    public static func flag(_ name: String, _ path: WritableKeyPath<Root, Bool>, invertible: Bool = false, hidden: Bool = false,
                            group: String, math: Mathematics, help: String) -> OptionSpec {
        OptionSpec(name: name, group: group, help: help, form: .flag(invertible: invertible), isHidden: hidden, mathematics: math,
                   assign: { root, text in root[keyPath: path] = text == "true" },
                   recorded: { $0[keyPath: path] }, text: { String($0[keyPath: path]) })
    }

    static func parse<V: OptionValue>(_ text: String, name: String, check: OptionCheck<V>?) throws -> V {
        guard let value = V(optionText: text) else {
            let choices = V.optionChoices
            throw OptionValueError("The value '\(text)' is invalid for '--\(name) <\(name)>'"
                + (choices.isEmpty ? "" : ": give one of " + choices.map { "'\($0)'" }.joined(separator: ", ")))
        }
        if let problem = check?(value) { throw OptionValueError("--\(name) \(problem)") }
        return value
    }
}

extension Array {
    /// The options that change the mathematics, each with its value as text (see `Mathematics`).
    public func mathematicalOptions<Root>(of root: Root, defaults: Root) -> [String: String] where Element == OptionSpec<Root> {
        var result: [String: String] = [:]
        for spec in self {
            let value = spec.text(root)
            switch spec.mathematics {
            case .no: continue
            case .always: result[spec.name] = value ?? spec.absentText
            case .whenSet: if let value, value != spec.text(defaults) { result[spec.name] = value }
            case .when(let counts): if counts(root) { result[spec.name] = value ?? spec.absentText }
            }
        }
        return result
    }
}

/// The options of `root` as a JSON object, one key per (visible) option: training_config.json's
/// "options". An absent value is null, so every option has its key.
public struct OptionRecord<Root>: Encodable {
    public let specs: [OptionSpec<Root>]
    public let root: Root
    public init(specs: [OptionSpec<Root>], root: Root) { self.specs = specs; self.root = root }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: NamedKey.self)
        for spec in specs where !spec.isHidden {
            try c.encode(AnyEncodable(spec.recorded(root)), forKey: NamedKey(spec.key))
        }
    }

    /// An `any Encodable` encoded as what it holds.
    private struct AnyEncodable: Encodable {
        let value: any Encodable
        init(_ value: any Encodable) { self.value = value }
        func encode(to encoder: Encoder) throws { try value.encode(to: encoder) }
    }
}
