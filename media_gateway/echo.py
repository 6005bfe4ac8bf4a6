"""Echo cancellation: the bot's own voice coming back on the caller's line is not the caller speaking.

A caller on speakerphone sends back what they hear: the reply, attenuated and 100-300 ms late (their phone's playout
and the network both ways). To the VAD that echo is speech, so it took it for the caller talking over the reply and
stopped it: the bot interrupted itself. Each call has an `EchoCanceller` between the caller's audio and the VAD:

- The output stage tells it every frame it sends (`played`) and every StopAudio (`stopped`). It keeps the last
  second of that audio on a timeline as the phone plays it: a stretch's frames back to back from when its first
  frame left (the phone queues the lead burst), a gap where nothing played, and nothing after a StopAudio.
- Caller audio passes through `clean` before the VAD hears it. While something was played in the last `MAX_LAG`
  (+0.1 s), it finds the echo: the lag (0-400 ms) and gain at which the caller's last 200 ms best match what was
  played (cross-correlation with FFTs at 8 kHz, then to the sample at the call's rate). A lag is taken only for a
  close match (normalised correlation >= `MIN_MATCH`), so a line with no echo (a handset, a phone that cancels its
  own) is left as it is.
- With a lag, it subtracts the played audio at that lag times that gain, and decides per 20 ms frame whether what
  is left is the caller or only echo (a residual echo suppressor): echo when the residual is no louder than the
  echo would leave, by how well the subtraction has been doing (its echo return loss enhancement, measured on
  frames that were only echo), with a `MARGIN`. Echo frames go on as silence (the VAD does not even run its model
  on them); the caller's frames go on without the echo, to the VAD and to speech-to-text.
- Each stretch of reply is placed on the timeline by the clock, which may put it a little off where the phone put
  it (its playout starts on its own 20 ms tick), so until the lag is found again for it, the subtraction is not
  trusted: a frame is echo when it is no louder than the echo could be at about that lag (the suppressor alone), and
  the caller's voice over it, louder than an echo of the bot, still goes through.
- The caller's samples are tied to the clock by the frame that came soonest after them (`_settle`): frames held
  up by a busy event loop come late, and an echo measured against one of them looks later than it is.

The model is a delay and a gain. A phone that colours its echo (a room, a loudspeaker) leaves more behind after the
subtraction; the measured enhancement is lower, so the suppressor decides more of it, at the cost of a quiet
caller's first syllables over a loud echo. docs/voice.md, "The bot's own voice".

Cost: nothing but two comparisons a frame when nothing was played lately. While playing, a subtraction and three dot
products on the whole 20 ms frame (numpy, no per-sample Python), and a search (three FFTs of 8192 points) at the
start of each stretch, when the caller's level jumps, and every half second.
"""

from __future__ import annotations

import math
import time

import numpy as np

#: The longest echo delay looked for: the phone's playout buffer and the network both ways.
MAX_LAG = 0.4
#: How much of the caller's latest audio is matched against what was played.
SEARCH_WINDOW = 0.2
#: The least normalised correlation at the best lag for the caller's audio to count as an echo.
MIN_MATCH = 0.6
#: The loudest an echo can be against what was played (-3 dB): a phone's echo path loses at least that much (ITU-T
#: G.168 plans for 6 dB). A "match" as loud as the bot or louder is the caller's own voice, alike enough to the bot's at
#: some lag (the benchmark's caller is the same synthetic voice): taking it for echo muted the start of their barge-in.
MAX_GAIN = 10 ** (-3 / 20)
#: A frame is echo while its residual is at most this many times the echo's expected residual energy (9 dB).
MARGIN = 8.0
#: The subtraction is trusted once it takes at least this much off the echo (6 dB), the suppressor decides before.
TRUST = 4.0
#: Before the lag is checked for a stretch: echo while no louder than this many times the echo could be (3 dB).
SUPPRESS_MARGIN = 2.0
#: The subtraction is not credited with more than this (30 dB): the margin stays above quantisation noise.
MAX_ENHANCEMENT = 1000.0
#: While the echo is found, it is looked for again this often (the phone's gain or the path may change).
RECHECK = 0.5
#: A search that finds no echo is tried again after 1, 2, 4 ... frames, at most this many.
MAX_BACKOFF_FRAMES = 16
#: Consecutive searches that find no echo after which the lag is let go (the caller took them off speaker).
FORGET_AFTER = 12
#: Frames in a row in which the subtraction added energy (about the echo's) rather than removing it: the lag moved.
WORSE_FRAMES = 3
#: The caller's level rising this many times above its recent average is an onset: an echo beginning, say.
ONSET = 4.0

_SCALE = np.float32(1 / 32768)
_QUIET = 1e-9  # mean square below which a stretch of audio carries nothing (-90 dBFS)
_AUDIBLE = 10 ** (-65 / 10)  # the VAD's floor (VadParams.floor_dbfs): an echo below it is not looked for
_SEARCH_RATE = 8000
_FRAME_SECONDS = 0.02


class _Timeline:
    """Samples at absolute indices, the latest `keep` of them; what is older, or not yet written, reads as zeros."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._buffer = np.zeros(2 * keep, np.float32)
        self.start = 0  # the absolute index of _buffer[0]
        self.end = 0  # one past the last sample written

    def write(self, at: int, samples: np.ndarray) -> None:
        """Write `samples` (at most `keep` of them) from index `at`, at or after `end`; zeros fill the gap."""
        at = max(at, self.end)
        new_end = at + len(samples)
        first = max(self.start, new_end - self._keep)  # the oldest index still kept after this write
        if first >= self.end:  # nothing written so far is kept
            self.start = self.end = first
        elif new_end - self.start > len(self._buffer):  # slide the kept samples to the front
            kept = self.end - first
            self._buffer[:kept] = self._buffer[first - self.start : self.end - self.start]
            self.start = first
        gap_from, write_from = self.end - self.start, at - self.start
        self._buffer[gap_from:write_from] = 0.0
        self._buffer[write_from : write_from + len(samples)] = samples
        self.end = new_end

    def truncate(self, at: int) -> None:
        """Forget what was written from `at` on."""
        self.end = max(self.start, min(self.end, at))

    def read(self, begin: int, end: int) -> np.ndarray:
        """Samples [begin, end): a view when all of them are kept, else a copy with zeros for the rest."""
        if begin >= self.start and end <= self.end:
            return self._buffer[begin - self.start : end - self.start]
        out = np.zeros(end - begin, np.float32)
        lo, hi = max(begin, self.start), min(end, self.end)
        if lo < hi:
            out[lo - begin : hi - begin] = self._buffer[lo - self.start : hi - self.start]
        return out


class EchoCanceller:
    """One call's: what the gateway played in (`played`, `stopped`), the caller's audio out without its echo
    (`clean`). Used on the call's event loop only."""

    def __init__(self, sample_rate: int, origin: float | None = None) -> None:
        self._rate = sample_rate
        self._origin = time.monotonic() if origin is None else origin  # the played timeline's index 0
        self._max_lag = int(MAX_LAG * sample_rate)
        self._window = int(SEARCH_WINDOW * sample_rate)
        self._tail = self._max_lag + int(0.1 * sample_rate)
        self._frame = int(_FRAME_SECONDS * sample_rate)
        self._decimate = max(1, sample_rate // _SEARCH_RATE)
        self._played = _Timeline(self._window + self._max_lag + 4 * self._frame + sample_rate // 2)
        self._heard = _Timeline(self._window + 2 * self._frame)
        self._caller_end = 0  # caller samples so far: the caller's own clock
        self._offset: int | None = None  # played index = caller index + offset; set at the caller's next frame
        self._anchor = True
        self._lag: int | None = None  # caller audio at c carries the echo of played audio at c + offset - lag
        self._gain = 0.0  # the echo's, fitted at the lag (what is subtracted)
        self._loudness = 0.0  # the echo's level against what was played (what the suppressor expects)
        self._trusted = False  # the lag was found for the stretch now playing
        self._enhancement = 1.0  # how much the subtraction takes off an echo, smoothed (energy ratio)
        self._level = 0.0  # the caller's recent mean square, for onsets
        self._next_search = 0
        self._misses = 0
        self._worse = 0  # frames in a row the subtraction made worse
        self._suspect = False  # ... enough of them that a lag found elsewhere replaces the trusted one
        self.frames = self.muted = self.searches = self.found = 0  # for the call's summary

    # What was played ------------------------------------------------------------------------------------------

    def played(self, pcm: bytes, sent_at: float) -> None:
        """A frame of reply audio left for the caller at `sent_at` (monotonic seconds)."""
        due = self._index(sent_at)
        if due > self._played.end:  # the phone had nothing left to play: a new stretch starts here
            if due > self._played.end + self._tail and self._lag is None:  # no echo to keep track of: re-read
                self._anchor = True  # the clocks (a lag found stays as good a start, and re-reading adds jitter)
            self._trusted, self._enhancement, self._misses = False, 1.0, 0
            self._next_search = self._caller_end
        self._played.write(due, np.frombuffer(pcm, "<i2") * _SCALE)

    def stopped(self, at: float) -> None:
        """StopAudio left at `at`: the phone drops what it had queued and not yet played."""
        self._played.truncate(self._index(at))

    # The caller's audio ---------------------------------------------------------------------------------------

    def clean(self, pcm: bytes, received_at: float, silent: bool = False) -> bytes:
        """A frame of the caller's audio (PCM16 at the call's rate) with the echo of the bot's voice taken out:
        the same bytes when there is none to take out, silence when it was only echo."""
        count = len(pcm) // 2
        begin = self._caller_end
        end = self._caller_end = begin + count
        tie = self._index(received_at) - end  # the caller's samples and the clock, tied at this frame's arrival
        if self._anchor:
            self._offset, self._anchor = tie, False
        elif tie < self._offset:  # sooner after its samples than any frame before: the earlier ones were held up
            self._settle(tie)
        assert self._offset is not None
        if end + self._offset > self._played.end + self._tail or not count:
            return pcm  # nothing played lately: no echo to look for
        self.frames += 1
        caller = np.frombuffer(pcm, "<i2") * _SCALE
        self._heard.write(begin, caller)
        if silent:
            return pcm
        heard = float(np.dot(caller, caller))
        onset = heard > ONSET * self._level * count
        self._level += 0.2 * (heard / count - self._level)
        if heard >= _AUDIBLE * count and (end >= self._next_search or (onset and self._misses)):
            self._search(end)
        if self._lag is None:
            return pcm
        lagged = begin + self._offset - self._lag
        echo = self._played.read(lagged, lagged + count) * self._gain
        expected = float(np.dot(echo, echo))
        if expected < _QUIET * count:
            return pcm  # the bot was quiet at that lag: nothing to take out
        residual = caller - echo
        left = float(np.dot(residual, residual))
        # Subtracting added about the echo instead of taking it off, frame after frame: has the lag moved? Look now.
        self._worse = self._worse + 1 if left > heard + expected / 2 else 0
        if self._worse >= WORSE_FRAMES and self._trusted and not self._suspect:
            self._suspect, self._next_search = True, end + count
        if not self._trusted:  # not found for this stretch yet: the suppressor alone
            if heard <= SUPPRESS_MARGIN * self._loudest_echo(lagged, count):
                return self._mute(pcm)
            return _pcm16(residual)
        if left <= MARGIN * expected / self._enhancement:
            measured = min(MAX_ENHANCEMENT, max(1.0, heard / max(left, _QUIET * count)))
            self._enhancement = math.exp(0.8 * math.log(self._enhancement) + 0.2 * math.log(measured))
            return self._mute(pcm)
        return _pcm16(residual)

    def summary(self) -> str:
        """For the call's closing log line."""
        if not self.found:
            return f"no echo found ({self.searches} searches over {self.frames * 20 / 1000:.0f} s of replies)"
        lag = f"{self._lag / self._rate * 1000:.0f} ms" if self._lag is not None else "let go"
        gain = f"{20 * math.log10(abs(self._gain)):.0f} dB" if self._gain else "-"
        return (f"echo found {self.found} times (last at {lag}, {gain}); {self.muted} of {self.frames} frames heard "
                f"during replies were only echo")

    def _settle(self, tie: int) -> None:
        """Tie the clocks by a frame that came sooner than the one they were tied by.

        A frame comes no sooner than its samples were spoken (plus the network's least delay), and later whenever
        the event loop was busy: tied by a late one, every echo looked that much later, past `MAX_LAG` after a
        150 ms stall as a reply began. So the soonest frame ties them. A lag already found keeps pointing at the same
        played audio (it was found on the old tie)."""
        assert self._offset is not None
        if self._lag is not None:
            self._lag -= self._offset - tie
        self._offset = tie

    # Finding the echo -----------------------------------------------------------------------------------------

    def _search(self, end: int) -> None:
        """Look for the echo in the caller's last `SEARCH_WINDOW`: its lag and gain, if it is there."""
        assert self._offset is not None
        window, max_lag, d = self._window, self._max_lag, self._decimate
        caller = self._heard.read(end - window, end)
        played = self._played.read(end + self._offset - window - max_lag, end + self._offset)
        caller_energy = float(np.dot(caller, caller))
        if caller_energy < _QUIET * window or float(np.dot(played, played)) < _QUIET * window:
            self._next_search = end + self._frame  # nothing to match yet: no miss
            return
        self.searches += 1
        # Coarse: correlation at every lag at 8 kHz (pairs averaged, a crude low-pass), normalised per lag.
        small_caller, small_played = _decimated(caller, d), _decimated(played, d)
        n, m = len(small_caller), len(small_played)
        size = 1 << (n + m - 1).bit_length()
        spectrum = np.fft.rfft(small_played, size) * np.conj(np.fft.rfft(small_caller, size))
        correlation = np.fft.irfft(spectrum, size)[: m - n + 1]
        energies = np.concatenate(([0.0], np.cumsum(np.square(small_played, dtype=np.float64))))
        sliding = energies[n:] - energies[: m - n + 1]
        small_energy = float(np.dot(small_caller, small_caller))
        match = np.abs(correlation) / np.sqrt(np.maximum(sliding, 1e-12) * small_energy)
        shift = int(np.argmax(match))
        # Fine: the lags around it at the call's rate. `played[max_lag - lag:]` lines up with `caller`.
        best, best_match, best_dot, best_energy = -1, 0.0, 0.0, 0.0
        around = (max_lag // d - shift) * d
        for lag in range(max(0, around - d + 1), min(max_lag, around + d - 1) + 1):
            lined_up = played[max_lag - lag : max_lag - lag + window]
            dot, energy = float(np.dot(caller, lined_up)), float(np.dot(lined_up, lined_up))
            candidate = abs(dot) / math.sqrt(max(energy, 1e-12) * caller_energy)
            if candidate > best_match:
                best, best_match, best_dot, best_energy = lag, candidate, dot, energy
        if best_match < MIN_MATCH or abs(best_dot / best_energy) > MAX_GAIN:
            self._missed(end)
            return
        same = self._lag is not None and abs(best - self._lag) <= d
        if self._trusted and not same and not self._suspect:  # the caller talking over the echo, most likely
            self._missed(end)
            return
        self.found += 1
        self._suspect = False
        lined_up = played[max_lag - best : max_lag - best + window]
        self._lag, self._gain = best, best_dot / best_energy
        # The echo's level whatever the lag's error: on a few voiced frames, a lag some pitch periods off matches too.
        self._loudness = math.sqrt(caller_energy / best_energy)
        if not (same and self._trusted):  # what the subtraction takes off, on this window (less if the caller spoke)
            left = caller - self._gain * lined_up
            self._enhancement = min(MAX_ENHANCEMENT, max(1.0, caller_energy / max(float(np.dot(left, left)), 1e-12)))
        # Trusted once found again at the same lag and taking off enough; until then the suppressor decides.
        self._trusted = same and self._enhancement >= TRUST
        if self._trusted:
            self._misses, self._next_search = 0, end + int(RECHECK * self._rate)
        else:
            self._retry(end)

    def _missed(self, end: int) -> None:
        self._retry(end)
        if self._misses >= FORGET_AFTER:
            self._lag, self._trusted = None, False

    def _retry(self, end: int) -> None:
        self._misses += 1
        self._next_search = end + self._frame * min(MAX_BACKOFF_FRAMES, 1 << (self._misses - 1))

    def _loudest_echo(self, lagged: int, count: int) -> float:
        """The most energy the echo could have in this frame if the lag were up to three frames off."""
        span = self._played.read(lagged - 3 * count, lagged + 4 * count).reshape(7, count)
        return float(np.einsum("ij,ij->i", span, span).max()) * self._loudness * self._loudness

    def _mute(self, pcm: bytes) -> bytes:
        self.muted += 1
        return bytes(len(pcm))

    def _index(self, at: float) -> int:
        return round((at - self._origin) * self._rate)


def _decimated(audio: np.ndarray, factor: int) -> np.ndarray:
    """Every `factor` samples averaged into one (a crude low-pass, enough to find a lag)."""
    usable = len(audio) // factor * factor
    out = audio[0:usable:factor].copy()
    for phase in range(1, factor):
        out += audio[phase:usable:factor]
    return out * np.float32(1 / factor)


def _pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
