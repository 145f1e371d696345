import FineTuneJSON
import FineTuneKernels
import Foundation

/// A config.json field by name (the configs' coding key).
struct ConfigField: CodingKey {
    let stringValue: String
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}

/// Validating reads of config fields: a field of the wrong type or out of range is an error that
/// names the field, in the words a user needs (the caller adds the file).
extension KeyedDecodingContainer {
    func positiveInteger(_ key: Key, default value: Int? = nil) throws -> Int {
        guard contains(key), let raw = try? decodeIfPresent(JSONValue.self, forKey: key), raw != .null else {
            if let value { return value }
            throw FineTuneError("missing \"\(key.stringValue)\" (a positive integer)")
        }
        guard let n = raw.number, n == n.rounded(), n > 0, n < Double(Int32.max) else {
            throw FineTuneError("\"\(key.stringValue)\" must be a positive integer")
        }
        return Int(n)
    }

    func nonNegativeInteger(_ key: Key, default value: Int) throws -> Int {
        guard let raw = try? decodeIfPresent(JSONValue.self, forKey: key), raw != .null else { return value }
        guard let n = raw.number, n == n.rounded(), n >= 0, n < Double(Int32.max) else {
            throw FineTuneError("\"\(key.stringValue)\" must be a non-negative integer")
        }
        return Int(n)
    }

    func number(_ key: Key, default value: Double) throws -> Double {
        guard let raw = try? decodeIfPresent(JSONValue.self, forKey: key), raw != .null else { return value }
        guard let n = raw.number, n.isFinite else { throw FineTuneError("\"\(key.stringValue)\" must be a number") }
        return n
    }

    /// A probability in [0, 1); null or absent gives `value`.
    func probability(_ key: Key, default value: Double) throws -> Double {
        guard let raw = try? decodeIfPresent(JSONValue.self, forKey: key), raw != .null else { return value }
        guard let n = raw.number, n >= 0, n < 1 else { throw FineTuneError("\"\(key.stringValue)\" must be in [0, 1)") }
        return n
    }

    func string(_ key: Key, default value: String) throws -> String {
        guard let raw = try? decodeIfPresent(JSONValue.self, forKey: key), raw != .null else { return value }
        guard let s = raw.string else { throw FineTuneError("\"\(key.stringValue)\" must be a string") }
        return s
    }

    /// `id2label` as label names in id order, nil when absent or empty.
    func labels(_ key: Key) throws -> [String]? {
        guard let raw = try? decodeIfPresent(JSONValue.self, forKey: key), raw != .null else { return nil }
        guard let object = raw.object else { throw FineTuneError("\"\(key.stringValue)\" must map ids to label names") }
        if object.isEmpty { return nil }
        var names: [String: String] = [:]
        for (id, value) in object {
            guard let name = value.string else { throw FineTuneError("\"\(key.stringValue)\" must map ids to label names; \"\(id)\" does not") }
            names[id] = name
        }
        let labels = try labelsFromID2Label(names)
        guard Set(labels).count == labels.count else { throw FineTuneError("\"\(key.stringValue)\" has duplicate label names") }
        return labels
    }
}

/// Decodes a config file's typed struct and its whole object (kept to write unknown keys back);
/// errors name the file and the field.
public func decodeConfig<T: Decodable>(_ type: T.Type, from data: Data, path: String) throws -> (T, [String: JSONValue]) {
    do {
        // Read once, strictly (a duplicate key or a syntax error is reported with its place), then
        // typed from the values read.
        let value = try StrictJSON.parse(data)
        guard case .object(let raw) = value else { throw FineTuneError("not a JSON object") }
        return (try JSONValueDecoder().decode(T.self, from: value), raw)
    } catch let syntax as StrictJSON.SyntaxError {
        throw FineTuneError("\(path): not valid JSON: \(syntax)")
    } catch {
        throw FineTuneError("\(path): \(userMessage(for: error))")
    }
}
