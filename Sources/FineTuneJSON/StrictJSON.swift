import FineTuneKernels
import Foundation

/// A JSON reader for files users write: data lines, config files, safetensors headers.
///
/// Foundation's decoder lets the last of two equal keys win silently, rejects the `NaN` and
/// `Infinity` that Python's `json.dumps` writes by default with no more than "not valid JSON", and
/// says nothing about where. This reader refuses duplicate keys by name, reads `NaN`, `Infinity`
/// and `-Infinity` as numbers (so the caller can say which value is not finite), turns a literal
/// too large for a Double into infinity for the same reason, and places every syntax error at a
/// byte column. Nesting is limited to `maximumDepth`, so hostile input cannot exhaust the stack.
public enum StrictJSON {
    public static let maximumDepth = 256

    public struct SyntaxError: Error, CustomStringConvertible {
        /// 1-based byte column within the parsed text.
        public var column: Int
        public var message: String
        public var description: String { "column \(column): \(message)" }
    }

    public static func parse(_ data: Data) throws -> JSONValue {
        try data.withUnsafeBytes { raw in
            var reader = Reader(bytes: raw.bindMemory(to: UInt8.self))
            reader.skipWhitespace()
            let value = try reader.value(depth: 0)
            reader.skipWhitespace()
            if reader.position < reader.bytes.count { throw reader.error("unexpected text after the JSON value") }
            return value
        }
    }

    public static func parse(_ text: String) throws -> JSONValue { try parse(Data(text.utf8)) }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        func error(_ message: String, at offset: Int? = nil) -> SyntaxError {
            SyntaxError(column: (offset ?? position) + 1, message: message)
        }

        var current: UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func skipWhitespace() {
            while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { position += 1 }
        }

        mutating func expect(_ word: String) -> Bool {
            let utf8 = Array(word.utf8)
            guard position + utf8.count <= bytes.count else { return false }
            for (i, b) in utf8.enumerated() where bytes[position + i] != b { return false }
            position += utf8.count
            return true
        }

        mutating func value(depth: Int) throws -> JSONValue {
            guard depth < StrictJSON.maximumDepth else { throw error("nested deeper than \(StrictJSON.maximumDepth) levels") }
            guard let c = current else { throw error("the text ends where a value should be") }
            switch c {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): if expect("true") { return .bool(true) }
            case UInt8(ascii: "f"): if expect("false") { return .bool(false) }
            case UInt8(ascii: "n"): if expect("null") { return .null }
            case UInt8(ascii: "N"): if expect("NaN") { return .double(.nan) }
            case UInt8(ascii: "I"): if expect("Infinity") { return .double(.infinity) }
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: break
            }
            throw error("unexpected \(describe(c)) where a value should be")
        }

        func describe(_ c: UInt8) -> String {
            if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
            return String(format: "byte 0x%02X", c)
        }

        mutating func object(depth: Int) throws -> JSONValue {
            position += 1
            var result: [String: JSONValue] = [:]
            skipWhitespace()
            if current == UInt8(ascii: "}") { position += 1; return .object(result) }
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else {
                    throw current.map { error("expected a key in quotes, found \(describe($0))") } ?? error("the text ends inside an object")
                }
                let keyStart = position
                let key = try string()
                if result[key] != nil { throw error("duplicate key \"\(key)\" (the object names it twice)", at: keyStart) }
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { throw error("expected ':' after the key \"\(key)\"") }
                position += 1
                skipWhitespace()
                result[key] = try value(depth: depth + 1)
                skipWhitespace()
                switch current {
                case UInt8(ascii: ",")?: position += 1
                case UInt8(ascii: "}")?: position += 1; return .object(result)
                case let c?: throw error("expected ',' or '}' in an object, found \(describe(c))")
                case nil: throw error("the text ends inside an object (a '}' is missing)")
                }
            }
        }

        mutating func array(depth: Int) throws -> JSONValue {
            position += 1
            var result: [JSONValue] = []
            skipWhitespace()
            if current == UInt8(ascii: "]") { position += 1; return .array(result) }
            while true {
                skipWhitespace()
                result.append(try value(depth: depth + 1))
                skipWhitespace()
                switch current {
                case UInt8(ascii: ",")?: position += 1
                case UInt8(ascii: "]")?: position += 1; return .array(result)
                case let c?: throw error("expected ',' or ']' in a list, found \(describe(c))")
                case nil: throw error("the text ends inside a list (a ']' is missing)")
                }
            }
        }

        mutating func string() throws -> String {
            let start = position
            position += 1
            var scalars = String.UnicodeScalarView()
            var runStart = position
            func flushRun(_ end: Int) throws {
                guard end > runStart else { return }
                guard let text = String(bytes: UnsafeBufferPointer(rebasing: bytes[runStart..<end]), encoding: .utf8) else {
                    throw error("a string holds bytes that are not UTF-8", at: runStart)
                }
                scalars.append(contentsOf: text.unicodeScalars)
            }
            while true {
                guard let c = current else { throw error("the string that starts here is never closed", at: start) }
                if c == UInt8(ascii: "\"") {
                    try flushRun(position)
                    position += 1
                    return String(scalars)
                }
                if c < 0x20 { throw error("a control character (\(describe(c))) inside a string; write it escaped") }
                if c != UInt8(ascii: "\\") { position += 1; continue }
                try flushRun(position)
                position += 1
                guard let e = current else { throw error("the string that starts here is never closed", at: start) }
                position += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        // A UTF-16 surrogate pair spelled as two escapes.
                        guard expect("\\u") else { throw error("an unpaired UTF-16 surrogate in a \\u escape") }
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("an unpaired UTF-16 surrogate in a \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("an unpaired UTF-16 surrogate in a \\u escape") }
                    scalars.append(scalar)
                default:
                    throw error("unknown escape \\\(Character(Unicode.Scalar(e))) in a string", at: position - 2)
                }
                runStart = position
            }
        }

        mutating func hex4() throws -> UInt32 {
            var code: UInt32 = 0
            for _ in 0..<4 {
                guard let c = current, let digit = hexValue(c) else { throw error("a \\u escape needs four hexadecimal digits") }
                code = code << 4 | digit
                position += 1
            }
            return code
        }

        func hexValue(_ c: UInt8) -> UInt32? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
        }

        mutating func number() throws -> JSONValue {
            let start = position
            if current == UInt8(ascii: "-") {
                position += 1
                if expect("Infinity") { return .double(-.infinity) }
            }
            func digits() -> Int {
                var n = 0
                while let c = current, c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { position += 1; n += 1 }
                return n
            }
            let integerStart = position
            let integerDigits = digits()
            guard integerDigits > 0 else { throw error("a number needs digits", at: start) }
            if integerDigits > 1 && bytes[integerStart] == UInt8(ascii: "0") { throw error("a number with a leading zero", at: start) }
            var isInteger = true
            if current == UInt8(ascii: ".") {
                position += 1
                isInteger = false
                guard digits() > 0 else { throw error("a number needs digits after its decimal point", at: start) }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                position += 1
                isInteger = false
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
                guard digits() > 0 else { throw error("a number needs digits in its exponent", at: start) }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            if isInteger, let i = Int64(text) { return .integer(i) }
            // Literals beyond Double's range read as ±infinity, which callers reject as not finite.
            guard let d = Double(text) else { throw error("the number \(text) cannot be read", at: start) }
            // As Foundation: a whole number written with a fraction or exponent (2.0, 1e3) is an integer.
            if d == d.rounded(), abs(d) < 9.2e18 { return .integer(Int64(d)) }
            return .double(d)
        }
    }
}

extension JSONValue {
    /// The value as a caller's message names it: `NaN`, `Infinity`, or the JSON kind.
    public var kindDescription: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .integer: return "an integer"
        case .double(let d): return d.isNaN ? "NaN" : d.isInfinite ? (d > 0 ? "Infinity" : "-Infinity") : "a number"
        case .string: return "a string"
        case .array: return "a list"
        case .object: return "an object"
        }
    }
}
