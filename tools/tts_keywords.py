#!/usr/bin/env python3
"""Spoken keywords from a text-to-speech engine, as calibration / distillation audio.

Keyword-spotting models are fitted (pruned, fine-tuned by distillation from the float model)
on whatever audio the user has. When that audio holds no keywords, as the 10 s of read speech
in ../shared/data do not, distillation teaches the student that keywords never occur. This
script writes what a user without keyword recordings can make on any Linux machine: the ten
MLPerf Tiny KWS keywords spoken by espeak-ng (apt package `espeak-ng`) in many voices, speeds
and pitches, each after 0.5-1 s of silence, as one 16-kHz 16-bit mono WAV file, the format
`mote fit --calibration` reads. Synthesized speech for training keyword spotters: Lin et al.,
"Training Keyword Spotters with Limited and Synthesized Speech Data", ICASSP 2020.

Deterministic for a given espeak-ng version and seed. Standard library only.

    python3 tools/tts_keywords.py --words 120 --seed 2 -o /tmp/kws_tts.wav
"""

import argparse
import io
import random
import struct
import subprocess
import sys
import wave

# The keywords of the MLPerf Tiny KWS model (its classes 0-9; 10 is silence, 11 unknown).
KEYWORDS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"]
# espeak-ng's English voices (no mbrola) and voice variants.
VOICES = [
    "en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
]
VARIANTS = [
    "", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5",
    "+klatt", "+Annie", "+Andy", "+Alex", "+anika",
]
RATE = 16000


def speak(word, voice, speed, pitch):
    """One utterance as floats in [-1, 1) and its sample rate."""
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
        capture_output=True,
        check=True,
    ).stdout
    w = wave.open(io.BytesIO(out))
    raw = w.readframes(w.getnframes())
    samples = struct.unpack("<%dh" % (len(raw) // 2), raw)
    return [s / 32768.0 for s in samples], w.getframerate()


def resample(x, rate):
    """Linear interpolation from `rate` to 16 kHz."""
    step = rate / RATE
    n = int((len(x) - 1) / step)
    out = []
    for i in range(n):
        p = i * step
        k = int(p)
        out.append(x[k] + (p - k) * (x[k + 1] - x[k]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--words", type=int, default=120, help="utterances (keywords in turn)")
    ap.add_argument("--seed", type=int, default=2, help="voice / speed / pitch draws")
    ap.add_argument("-o", "--output", required=True, help="16-kHz WAV file to write")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    audio = []
    for k in range(a.words):
        word = KEYWORDS[k % len(KEYWORDS)]
        voice = rng.choice(VOICES) + rng.choice(VARIANTS)
        speed, pitch = rng.randint(110, 220), rng.randint(20, 80)
        x, rate = speak(word, voice, speed, pitch)
        audio += [0.0] * rng.randint(RATE // 2, RATE)
        audio += resample(x, rate)
    audio += [0.0] * RATE
    with wave.open(a.output, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        pcm = [max(-32768, min(32767, round(v * 32767))) for v in audio]
        w.writeframes(struct.pack("<%dh" % len(pcm), *pcm))
    print(f"{a.output}: {a.words} keywords, {len(audio) / RATE:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
