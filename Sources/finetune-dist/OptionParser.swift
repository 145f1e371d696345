import FineTuneTrainer
import Foundation

/// A command whose options are `OptionSpec`s (train, bench): parses its command line and
/// `--config` file onto a configuration and writes its --help, both read off the declarations.
/// Messages and --help look like ArgumentParser's, which the other commands use.
struct OptionCommand<Root> {
    let name: String
    let abstract: String
    let discussion: String
    let specs: [OptionSpec<Root>]
    /// Every option at its default, for --help.
    let defaults: Root

    /// A refused command line (a value from a config file: its place leads the message).
    struct Refusal: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// One value to set: from the command line (place nil) or a config file ("run.yaml:3").
    struct Setting {
        let spec: OptionSpec<Root>
        let value: String
        let place: String?
    }

    var usage: String {
        "finetune-dist \(name) [<options>]" + specs.filter(\.isRequired).map { " --\($0.name) <\($0.name)>" }.joined()
    }

    func spec(named name: String) -> OptionSpec<Root>? { specs.first { $0.name == name } }

    /// The words a shell completes after the command: every visible option (and `--no-` form).
    var completionWords: [String] {
        specs.filter { !$0.isHidden }.flatMap { spec -> [String] in
            spec.form == .flag(invertible: true) ? ["--\(spec.name)", "--no-\(spec.name)"] : ["--\(spec.name)"]
        } + ["--help"]
    }

    /// The settings a command line stands for, in order (`arguments` without the command's name).
    func settings(_ arguments: [String]) throws -> [Setting] {
        var result: [Setting] = []
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            i += 1
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw Refusal(message: "Unexpected argument '\(argument)'")
            }
            let body = argument.dropFirst(2)
            let name = String(body.prefix { $0 != "=" })
            let attached = body.contains("=") ? String(body.drop { $0 != "=" }.dropFirst()) : nil
            if let spec = spec(named: name) {
                switch spec.form {
                case .value:
                    if let attached { result.append(Setting(spec: spec, value: attached, place: nil)); continue }
                    guard i < arguments.count else { throw Refusal(message: "Missing value for '--\(name) <\(name)>'") }
                    result.append(Setting(spec: spec, value: arguments[i], place: nil))
                    i += 1
                case .flag(_, let optionalValues):
                    if let attached {
                        guard optionalValues.contains(attached) else { throw Refusal(message: "--\(name) is a switch and takes no value ('\(attached)')") }
                        result.append(Setting(spec: spec, value: attached, place: nil))
                    } else if i < arguments.count, optionalValues.contains(arguments[i]) {
                        result.append(Setting(spec: spec, value: arguments[i], place: nil))
                        i += 1
                    } else {
                        result.append(Setting(spec: spec, value: "true", place: nil))
                    }
                }
            } else if name.hasPrefix("no-"), let spec = spec(named: String(name.dropFirst(3))), spec.form == .flag(invertible: true), attached == nil {
                result.append(Setting(spec: spec, value: "false", place: nil))
            } else {
                let names = specs.filter { !$0.isHidden }.map(\.name)
                let nearest = names.map { ($0, ConfigFile.editDistance(name, $0)) }.min { ($0.1, $0.0) < ($1.1, $1.0) }
                let hint = nearest.flatMap { $0.1 <= max(2, name.count / 3) ? "; did you mean '--\($0.0)'?" : nil } ?? ""
                throw Refusal(message: "Unknown option '--\(name)'" + hint)
            }
        }
        return result
    }

    /// `arguments` (and the `--config` file they name, whose values the command line overrides)
    /// applied to `root`; returns the names of the options set. A value from the file is refused
    /// with its place.
    func parse(_ arguments: [String], into root: inout Root) throws -> Set<String> {
        let fromCommandLine = try settings(arguments)
        var all: [Setting] = []
        if let config = fromCommandLine.last(where: { $0.spec.name == "config" }) {
            let given = Set(fromCommandLine.map(\.spec.name))
            for entry in try ConfigFile.entries(fromFile: config.value, specs: specs) where !given.contains(entry.spec.name) {
                all.append(entry)
            }
        }
        all += fromCommandLine
        for setting in all {
            do { try setting.spec.assign(&root, setting.value) } catch {
                let place = setting.place.map { "\($0): \(setting.spec.key): " } ?? ""
                throw Refusal(message: place + "\(error)")
            }
        }
        let given = Set(all.map(\.spec.name))
        for spec in specs where spec.isRequired && !given.contains(spec.name) {
            throw Refusal(message: "Missing expected argument '--\(spec.name) <\(spec.name)>'")
        }
        return given
    }

    // MARK: --help

    func help(columns: Int = Self.terminalColumns) -> String {
        var out = wrap("OVERVIEW: " + abstract, columns: columns, indent: 0) + "\n\n"
        if !discussion.isEmpty {
            out += discussion.split(separator: "\n", omittingEmptySubsequences: false).map { wrap(String($0), columns: columns, indent: 0) }
                .joined(separator: "\n") + "\n\n"
        }
        out += wrap("USAGE: " + usage, columns: columns, indent: 2) + "\n\n"
        let visible = specs.filter { !$0.isHidden }
        var groups: [String] = []
        for spec in visible where !groups.contains(spec.group) { groups.append(spec.group) }
        // The general options come last, with -h/--help, as ArgumentParser places them.
        if let general = groups.firstIndex(of: OptionGroups.general) { groups.append(groups.remove(at: general)) }
        for (index, group) in groups.enumerated() {
            out += group.uppercased() + ":\n"
            for spec in visible where spec.group == group { out += entry(label(spec), text: helpText(spec), columns: columns) }
            if group == OptionGroups.general { out += entry("-h, --help", text: "Show help information.", columns: columns) }
            if index < groups.count - 1 { out += "\n" }
        }
        if !groups.contains(OptionGroups.general) { out += "\nOPTIONS:\n" + entry("-h, --help", text: "Show help information.", columns: columns) }
        return out
    }

    private func label(_ spec: OptionSpec<Root>) -> String {
        switch spec.form {
        case .value: return "--\(spec.name) <\(spec.name)>"
        case .flag(let invertible, _): return invertible ? "--\(spec.name)/--no-\(spec.name)" : "--\(spec.name)"
        }
    }

    private func helpText(_ spec: OptionSpec<Root>) -> String {
        var notes: [String] = []
        if !spec.choices.isEmpty { notes.append("values: " + spec.choices.joined(separator: ", ")) }
        if let shown = defaultText(spec) { notes.append("default: " + shown) }
        return notes.isEmpty ? spec.help : spec.help + " (\(notes.joined(separator: "; ")))"
    }

    /// The default as --help shows it: a value's, or which of an invertible flag's two forms.
    private func defaultText(_ spec: OptionSpec<Root>) -> String? {
        guard !spec.isRequired else { return nil }
        switch spec.form {
        case .value:
            guard let text = spec.text(defaults), !text.isEmpty else { return nil }
            return text
        case .flag(let invertible, _):
            guard invertible else { return nil }
            return spec.text(defaults) == "true" ? "--\(spec.name)" : "--no-\(spec.name)"
        }
    }

    private func entry(_ label: String, text: String, columns: Int) -> String {
        let column = 26
        let body = wrap(text, columns: columns - column + 1, indent: 0).split(separator: "\n").map { String(repeating: " ", count: column) + $0 }
        let head = "  " + label
        if head.count < column, let first = body.first {
            return ([head + String(repeating: " ", count: column - head.count) + first.dropFirst(column)] + body.dropFirst()).joined(separator: "\n") + "\n"
        }
        return ([head] + body).joined(separator: "\n") + "\n"
    }

    /// Words of `text` in lines shorter than `columns` characters (as ArgumentParser's); continuation lines indented.
    private func wrap(_ text: String, columns: Int, indent: Int) -> String {
        let columns = columns - 1
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            if !line.isEmpty, line.count + 1 + word.count > columns {
                lines.append(line)
                line = String(repeating: " ", count: indent) + word
            } else {
                line += (line.isEmpty ? "" : " ") + word
            }
        }
        lines.append(line)
        return lines.joined(separator: "\n")
    }

    static var terminalColumns: Int {
        if let text = ProcessInfo.processInfo.environment["COLUMNS"], let columns = Int(text), columns > 40 { return columns }
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 40 { return Int(size.ws_col) }
        return 80
    }
}
