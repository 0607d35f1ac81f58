#!/bin/sh
# Short non-turn sounds over agent speech, for the barge-in false-alarm tests and benchmark
# (benchmarks/bargein.py --false-alarms, tests/test_barge_end_to_end.py). Raw G.711 mu-law,
# 8 kHz, mono: what Twilio carries. Rendered (not recorded), reproducibly:
#   cough.ulaw  a cough-like burst: 40 ms explosive onset + 180 ms turbulent tail, band-limited
#               pink noise (300-3000 Hz), about -14 dBFS RMS over its 220 ms
#   mhm.ulaw    a short "hmm" backchannel from espeak-ng, silence trimmed, normalised to -20 dBFS
#               RMS (a caller's speaking level)
# Needs sox and espeak-ng (only to re-render; the tests read the committed files).
set -e
cd "$(dirname "$0")"
tmp=$(mktemp -d)
sox -n -r 8000 -c 1 -b 16 "$tmp/onset.wav" synth 0.04 pinknoise fade q 0.005 0.04 0.01 gain -n -8
sox -n -r 8000 -c 1 -b 16 "$tmp/tail.wav" synth 0.18 pinknoise fade q 0.01 0.18 0.12 gain -n -14
sox "$tmp/onset.wav" "$tmp/tail.wav" "$tmp/c.wav" sinc 300-3000 gain -n -6
sox "$tmp/c.wav" -t raw -e mu-law -b 8 cough.ulaw
espeak-ng -v en-us -s 200 -w "$tmp/m.wav" "hmm"
sox "$tmp/m.wav" -r 8000 -c 1 -b 16 "$tmp/m8.wav" silence 1 0.01 1% reverse silence 1 0.01 1% reverse
sox "$tmp/m8.wav" "$tmp/m9.wav" gain -n -11
sox "$tmp/m9.wav" -t raw -e mu-law -b 8 mhm.ulaw
rm -r "$tmp"
