/// An error a user can act on: says what went wrong and where (file, line, tensor, option).
public struct FineTuneError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
