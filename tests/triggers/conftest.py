from __future__ import annotations

from tests.triggers.emulated_uploads import emulator_fixture

#: Processing finishes within a fraction of a second.
emulator = emulator_fixture(processing_delay=0.05)
#: Processing that outlasts any test: the upload stays queued/running.
slow_emulator = emulator_fixture(processing_delay=120.0)
