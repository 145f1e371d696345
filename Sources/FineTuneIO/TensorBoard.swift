import FineTuneKernels
import Foundation

/// TensorBoard event files, written without TensorFlow: TFRecord framing around hand-encoded
/// `Event` protobufs (tensorflow/core/util/event.proto, summary.proto).
///
/// A TFRecord is: length (UInt64, little endian), masked CRC-32C of those 8 bytes, the data, masked
/// CRC-32C of the data. The first event of a file carries `file_version = "brain.Event:2"`; scalars
/// are `Event{wall_time, step, summary{value{tag, simple_value}}}`. A resumed run starts its file
/// with `session_log{status: START}` at the first step it redoes: TensorBoard then drops what an
/// interrupted run had logged from that step on, as metrics.jsonl is cut back on resume.
public final class TensorBoardWriter {
    public let path: String
    private let handle: FileHandle

    /// Opens a new event file in `folder` (created if needed), named as TensorFlow names them.
    public init(folder: String, wallTime: Double = Date().timeIntervalSince1970, host: String = localHostName(),
                resumingAtStep: Int? = nil) throws {
        try AtomicFiles.createFolder(folder)
        var name = "events.out.tfevents.\(Int(wallTime)).\(host)"
        // Two processes starting in the same second on one host must not share a file.
        var n = 1
        while FileManager.default.fileExists(atPath: "\(folder)/\(name)") { n += 1; name = "events.out.tfevents.\(Int(wallTime)).\(host).\(n)" }
        path = "\(folder)/\(name)"
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw FineTuneError("\(path): cannot create the TensorBoard event file")
        }
        self.handle = handle
        try append(TensorBoardEvent.fileVersion(wallTime: wallTime))
        if let step = resumingAtStep { try append(TensorBoardEvent.sessionStart(wallTime: wallTime, step: step)) }
    }

    deinit { try? handle.close() }

    /// Writes scalars of one step, one event per scalar (as tf.summary does), and flushes them.
    public func scalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        var bytes = Data()
        for (tag, value) in values where value.isFinite {
            bytes.append(TensorBoardEvent.record(TensorBoardEvent.scalar(tag: tag, value: Float(value), step: step, wallTime: wallTime)))
        }
        try handle.write(contentsOf: bytes)
        try handle.synchronize()
    }

    private func append(_ event: Data) throws {
        try handle.write(contentsOf: TensorBoardEvent.record(event))
    }
}

/// The encoding, separate from the file so that tests can check it byte for byte.
public enum TensorBoardEvent {
    /// A TFRecord around `data`.
    public static func record(_ data: Data) -> Data {
        var out = Data()
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Data($0) }
        out.append(lengthBytes)
        appendLittleEndian(&out, CRC32C.masked(lengthBytes))
        out.append(data)
        appendLittleEndian(&out, CRC32C.masked(data))
        return out
    }

    public static func fileVersion(wallTime: Double) -> Data {
        var e = Protobuf()
        e.double(field: 1, wallTime)
        e.bytes(field: 3, Data("brain.Event:2".utf8))
        return e.data
    }

    /// `Event{session_log{status: START}}`: TensorBoard discards earlier events at `step` and after.
    public static func sessionStart(wallTime: Double, step: Int) -> Data {
        var log = Protobuf()
        log.varint(field: 1, 1)  // SessionLog.START
        var e = Protobuf()
        e.double(field: 1, wallTime)
        e.varint(field: 2, UInt64(step))
        e.bytes(field: 7, log.data)
        return e.data
    }

    public static func scalar(tag: String, value: Float, step: Int, wallTime: Double) -> Data {
        var v = Protobuf()
        v.bytes(field: 1, Data(tag.utf8))
        v.float(field: 2, value)
        var summary = Protobuf()
        summary.bytes(field: 1, v.data)
        var e = Protobuf()
        e.double(field: 1, wallTime)
        e.varint(field: 2, UInt64(step))
        e.bytes(field: 5, summary.data)
        return e.data
    }

    static func appendLittleEndian(_ data: inout Data, _ value: UInt32) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { data.append(contentsOf: $0) }
    }
}

/// The protobuf wire format, for the few field kinds events use.
struct Protobuf {
    var data = Data()

    mutating func key(_ field: Int, _ wireType: UInt64) { appendVarint(UInt64(field) << 3 | wireType) }

    mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { data.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        data.append(UInt8(v))
    }

    mutating func varint(field: Int, _ value: UInt64) { key(field, 0); appendVarint(value) }

    mutating func double(field: Int, _ value: Double) {
        key(field, 1)
        var bits = value.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { data.append(contentsOf: $0) }
    }

    mutating func float(field: Int, _ value: Float) {
        key(field, 5)
        var bits = value.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { data.append(contentsOf: $0) }
    }

    mutating func bytes(field: Int, _ value: Data) {
        key(field, 2)
        appendVarint(UInt64(value.count))
        data.append(value)
    }
}

/// CRC-32C (Castagnoli), as TFRecord uses it, and its masked form.
public enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord stores CRCs masked, so that a CRC of data that itself holds CRCs stays well mixed.
    public static func masked(_ data: Data) -> UInt32 {
        let crc = checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
