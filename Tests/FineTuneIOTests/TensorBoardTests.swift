import FineTuneIO
import Foundation
import XCTest

/// TensorBoard event files: the framing, CRCs and protobufs equal, byte for byte, what
/// TensorBoard's own RecordWriter and protobuf classes write for the same events
/// (Tests/fixture-scripts/make_tensorboard_fixture.py).
final class TensorBoardTests: XCTestCase {
    func testCRC32CKnownAnswers() {
        // RFC 3720 B.4 and the classic check value.
        XCTAssertEqual(CRC32C.checksum(Data("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum(Data(repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum(Data(repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum(Data((0..<32).map { UInt8($0) })), 0x46DD_794E)
    }

    func testEventsEqualTensorBoardsOwnBytes() throws {
        let expected = try Data(contentsOf: URL(fileURLWithPath: "\(fixturesDirectory)/tensorboard_events.bin"))
        var written = Data()
        written.append(TensorBoardEvent.record(TensorBoardEvent.fileVersion(wallTime: 1_700_000_000.5)))
        written.append(TensorBoardEvent.record(TensorBoardEvent.sessionStart(wallTime: 1_700_000_001.25, step: 41)))
        written.append(TensorBoardEvent.record(TensorBoardEvent.scalar(tag: "train/loss", value: 0.6931, step: 42, wallTime: 1_700_000_002)))
        written.append(TensorBoardEvent.record(TensorBoardEvent.scalar(tag: "val/accuracy", value: 0.875, step: 300, wallTime: 1_700_000_003)))
        XCTAssertEqual(written.count, expected.count)
        XCTAssertEqual(written, expected)
    }

    /// The writer's file: records that frame and check, the first the file version, one event per
    /// finite scalar (a NaN is left out rather than plotted), a resumed run's session start.
    func testWriterFramesEveryRecord() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let writer = try TensorBoardWriter(folder: folder, wallTime: 1_700_000_000, host: "h", resumingAtStep: 11)
        try writer.scalars([("train/loss", 0.5), ("train/lr", 1e-4), ("val/r2", .nan)], step: 12, wallTime: 1_700_000_001)
        XCTAssertTrue(writer.path.hasSuffix("/events.out.tfevents.1700000000.h"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: writer.path))
        var records: [Data] = []
        var offset = 0
        while offset < bytes.count {
            let lengthBytes = bytes.subdata(in: offset..<(offset + 8))
            let length = Int(lengthBytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
            let lengthCRC = bytes.subdata(in: (offset + 8)..<(offset + 12)).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
            XCTAssertEqual(lengthCRC, CRC32C.masked(lengthBytes))
            let data = bytes.subdata(in: (offset + 12)..<(offset + 12 + length))
            let dataCRC = bytes.subdata(in: (offset + 12 + length)..<(offset + 16 + length)).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
            XCTAssertEqual(dataCRC, CRC32C.masked(data))
            records.append(data)
            offset += 16 + length
        }
        XCTAssertEqual(offset, bytes.count)
        XCTAssertEqual(records.count, 4, "version, session start, two finite scalars")
        XCTAssertEqual(records[0], TensorBoardEvent.fileVersion(wallTime: 1_700_000_000))
        XCTAssertEqual(records[1], TensorBoardEvent.sessionStart(wallTime: 1_700_000_000, step: 11))
        XCTAssertEqual(records[3], TensorBoardEvent.scalar(tag: "train/lr", value: 1e-4, step: 12, wallTime: 1_700_000_001))
        // A second writer in the same second gets a file of its own.
        let second = try TensorBoardWriter(folder: folder, wallTime: 1_700_000_000, host: "h")
        XCTAssertNotEqual(second.path, writer.path)
    }
}
