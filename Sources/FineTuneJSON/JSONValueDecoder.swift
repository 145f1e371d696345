import Foundation

/// Decodes a `Decodable` type from a `JSONValue` that StrictJSON has read: the bytes are parsed
/// once, by the strict reader, and the typed struct comes from its values (JSONDecoder would read
/// them a second time, by rules of its own: a duplicate key, NaN or 1e999 would pass there).
/// Numbers convert as JSONDecoder converts them: an integer type takes an exact whole number only.
public struct JSONValueDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try ValueDecoder(value: value, codingPath: []).decodeValue(T.self)
    }
}

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        if T.self == JSONValue.self { return value as! T }  // a kept raw value: no conversion
        return try T(from: self)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else {
            throw DecodingError.typeMismatch([String: JSONValue].self, .init(codingPath: codingPath, debugDescription: "not an object"))
        }
        return KeyedDecodingContainer(KeyedContainer<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case .array(let items) = value else {
            throw DecodingError.typeMismatch([JSONValue].self, .init(codingPath: codingPath, debugDescription: "not a list"))
        }
        return UnkeyedContainer(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { SingleContainer(value: value, codingPath: codingPath) }
}

/// A coding key of a list position or a dictionary key.
private struct IndexKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ index: Int) { stringValue = String(index); intValue = index }
    init?(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    init?(intValue: Int) { self.init(intValue) }
}

/// The scalar conversions, shared by the three containers.
private func scalar<T>(_ value: JSONValue, as type: T.Type, codingPath: [CodingKey]) throws -> T {
    func mismatch() -> DecodingError {
        if value == .null { return .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "null")) }
        return .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "found \(value)"))
    }
    switch type {
    case is Bool.Type:
        guard case .bool(let b) = value else { throw mismatch() }
        return b as! T
    case is String.Type:
        guard case .string(let s) = value else { throw mismatch() }
        return s as! T
    case is Double.Type:
        guard let n = value.number else { throw mismatch() }
        return n as! T
    case is Float.Type:
        guard let n = value.number else { throw mismatch() }
        return Float(n) as! T
    default:
        break
    }
    // Integer types: an exact whole number in range.
    let whole: Int64
    switch value {
    case .integer(let i): whole = i
    case .double(let d) where d == d.rounded() && abs(d) < 9.2e18: whole = Int64(d)
    default: throw mismatch()
    }
    func fit<I: FixedWidthInteger>(_: I.Type) throws -> T {
        guard let v = I(exactly: whole) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(whole) does not fit in \(I.self)"))
        }
        return v as! T
    }
    switch type {
    case is Int.Type: return try fit(Int.self)
    case is Int64.Type: return try fit(Int64.self)
    case is Int32.Type: return try fit(Int32.self)
    case is UInt64.Type: return try fit(UInt64.self)
    case is UInt32.Type: return try fit(UInt32.self)
    case is UInt.Type: return try fit(UInt.self)
    default: throw mismatch()
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: [String: JSONValue]
    let codingPath: [CodingKey]
    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    private func value(_ key: Key) throws -> JSONValue {
        guard let v = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool { try value(key) == .null }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let path = codingPath + [key]
        let v = try value(key)
        if let scalarType = T.self as? any ScalarDecodable.Type { return try scalarType.scalar(v, codingPath: path) as! T }
        return try ValueDecoder(value: v, codingPath: path).decodeValue(T.self)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(value: try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        try ValueDecoder(value: try value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> Decoder { ValueDecoder(value: .object(object), codingPath: codingPath) }
    func superDecoder(forKey key: Key) throws -> Decoder { ValueDecoder(value: try value(key), codingPath: codingPath + [key]) }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [JSONValue], codingPath: [CodingKey]) { self.items = items; self.codingPath = codingPath }

    private mutating func next() throws -> (JSONValue, [CodingKey]) {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(JSONValue.self, .init(codingPath: codingPath, debugDescription: "the list ends here"))
        }
        defer { currentIndex += 1 }
        return (items[currentIndex], codingPath + [IndexKey(currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (v, path) = try next()
        if let scalarType = T.self as? any ScalarDecodable.Type { return try scalarType.scalar(v, codingPath: path) as! T }
        return try ValueDecoder(value: v, codingPath: path).decodeValue(T.self)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (v, path) = try next()
        return try ValueDecoder(value: v, codingPath: path).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
        let (v, path) = try next()
        return try ValueDecoder(value: v, codingPath: path).unkeyedContainer()
    }

    mutating func superDecoder() throws -> Decoder {
        let (v, path) = try next()
        return ValueDecoder(value: v, codingPath: path)
    }
}

private struct SingleContainer: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [CodingKey]
    func decodeNil() -> Bool { value == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if let scalarType = T.self as? any ScalarDecodable.Type { return try scalarType.scalar(value, codingPath: codingPath) as! T }
        return try ValueDecoder(value: value, codingPath: codingPath).decodeValue(T.self)
    }
}

/// The types read straight from a scalar JSON value.
private protocol ScalarDecodable {}
extension ScalarDecodable {
    static func scalar(_ value: JSONValue, codingPath: [CodingKey]) throws -> Self {
        try FineTuneJSON.scalar(value, as: Self.self, codingPath: codingPath)
    }
}
extension Bool: ScalarDecodable {}
extension String: ScalarDecodable {}
extension Double: ScalarDecodable {}
extension Float: ScalarDecodable {}
extension Int: ScalarDecodable {}
extension Int64: ScalarDecodable {}
extension Int32: ScalarDecodable {}
extension UInt64: ScalarDecodable {}
extension UInt32: ScalarDecodable {}
extension UInt: ScalarDecodable {}
