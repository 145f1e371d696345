"""Writes Tests/Fixtures/tensorboard_events.bin with TensorBoard's own record writer and protobufs:
the events finetune-dist's TensorBoardWriter must reproduce byte for byte (TensorBoardTests).

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard==2.21.0
    /tmp/tb/bin/python Tests/fixture-scripts/make_tensorboard_fixture.py
"""
import io
import os

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

events = [
    event_pb2.Event(wall_time=1700000000.5, file_version="brain.Event:2"),
    event_pb2.Event(wall_time=1700000001.25, step=41, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)),
    event_pb2.Event(wall_time=1700000002.0, step=42,
                    summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="train/loss", simple_value=0.6931)])),
    event_pb2.Event(wall_time=1700000003.0, step=300,
                    summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="val/accuracy", simple_value=0.875)])),
]
buffer = io.BytesIO()
writer = RecordWriter(buffer)
for e in events:
    writer.write(e.SerializeToString())
path = os.path.join(os.path.dirname(__file__), "..", "Fixtures", "tensorboard_events.bin")
with open(path, "wb") as f:
    f.write(buffer.getvalue())
print(path, len(buffer.getvalue()), "bytes")
