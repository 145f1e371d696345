import FineTuneKernels
import Foundation

/// Any JSON value, typed: config files keep the fields this program does not use in one of these,
/// to write them back unchanged.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case integer(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .integer(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .integer(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public var number: Double? {
        switch self {
        case .integer(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var object: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }

    /// Any Encodable value as a JSONValue (to merge typed fields into a kept object).
    public init<T: Encodable>(encoding value: T) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }
}

/// Pretty, key-sorted JSON (config files, records): written by an encoder, never by hand.
public func prettyJSON<T: Encodable>(_ value: T) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(value)
}

/// Reads `data` with the strict reader and decodes `type` from what it read: the one way JSON
/// files become typed values (errors: StrictJSON.SyntaxError or DecodingError; `userMessage` words them).
public func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    try JSONValueDecoder().decode(T.self, from: StrictJSON.parse(data))
}

/// The message of a decoding error in a user's terms: which field, what is wrong.
public func userMessage(for error: Error) -> String {
    switch error {
    case let e as FineTuneError: return e.message
    case let e as StrictJSON.SyntaxError: return "not valid JSON: \(e)"
    case DecodingError.keyNotFound(let key, let context):
        return "missing \(fieldPath(context.codingPath + [key]))"
    case DecodingError.typeMismatch(let type, let context):
        return "\(fieldPath(context.codingPath)) is not \(typeName(type))"
    case DecodingError.valueNotFound(let type, let context):
        return "\(fieldPath(context.codingPath)) is null, expected \(typeName(type))"
    case DecodingError.dataCorrupted(let context):
        if context.codingPath.isEmpty {
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return "not valid JSON" + (underlying.map { " (\($0))" } ?? "")
        }
        return "\(fieldPath(context.codingPath)): \(context.debugDescription)"
    default:
        return String(describing: error)
    }
}

private func fieldPath(_ path: [CodingKey]) -> String {
    guard !path.isEmpty else { return "the top level" }
    return "\"" + path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "\""
}

private func typeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Int.Type, is Int64.Type, is Int32.Type: return "an integer"
    case is Double.Type, is Float.Type: return "a number"
    case is Bool.Type: return "true or false"
    default:
        let name = String(describing: type)
        if name.hasPrefix("Array") || name.hasPrefix("[") { return "a list" }
        if name.hasPrefix("Dictionary") { return "an object" }
        return "a valid \(name)"
    }
}

/// A coding key named at run time (JSON objects whose keys are data: per-class figures, metrics).
public struct NamedKey: CodingKey {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ name: String) { stringValue = name }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}
