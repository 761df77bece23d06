"""Record what a headless viewer played: init segment + played chunks = one playable fMP4 file.

The pipeline guarantees that the init segment followed by any run of chunks is a valid fragmented
MP4, so a recording with skipped chunks still plays (with a jump where a chunk was missed).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from streamer.errors import UserError


class Mp4Recorder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - held open
        except OSError as error:
            raise UserError(f"cannot write {self.path}: {error.strerror}") from None
        self._init_segment: bytes | None = None
        self.chunks_written = 0
        self.bytes_written = 0

    def write_init(self, init_segment: bytes) -> bool:
        """Write the init segment once; a different one later (new codec) stops the recording."""
        if self._file is None:
            return False
        if self._init_segment is None:
            self._init_segment = init_segment
            self._write(init_segment)
            return True
        if init_segment != self._init_segment:
            self.close()  # chunks of another stream would not decode after this init
        return False

    def write_chunk(self, data: bytes) -> None:
        if self._file is None or self._init_segment is None:
            return
        self._write(data)
        self.chunks_written += 1

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self.bytes_written += len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
