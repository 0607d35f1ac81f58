"""Every call recorded in stereo: left the caller as received, right the agent as heard.

- :mod:`.core`     :class:`StereoRecorder`, sans-I/O: which sample goes where, from marks and clears.
- :mod:`.wavfile`  :class:`StereoWav`, an incrementally written WAV that is always playable.
- :mod:`.sinks`    a local folder, Google Cloud Storage, S3.
- :mod:`.service`  :class:`RecordingService` and :class:`CallRecording`: per call, retention, recovery.
"""

from .core import StereoRecorder
from .service import CallRecording, RecordingService, opted_out
from .wavfile import StereoWav, write_stereo

__all__ = ["StereoRecorder", "StereoWav", "write_stereo", "CallRecording", "RecordingService", "opted_out"]
