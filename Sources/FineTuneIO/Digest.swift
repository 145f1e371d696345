import FineTuneKernels
import FineTuneModels
import Crypto
import Foundation

/// SHA-256 (swift-crypto) in hex, for checkpoint manifests and data fingerprints.
public struct Digest {
    private var hasher = SHA256()
    public init() {}
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
    public mutating func update<T>(array: [T]) { array.withUnsafeBytes { hasher.update(bufferPointer: $0) } }
    public mutating func update(data: Data) { hasher.update(data: data) }
    public func hex() -> String { hasher.finalize().map { String(format: "%02x", $0) }.joined() }

    public static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
