"""Gradient matching (DC) on spoken commands (log spectrograms, 1 x 64 x 64) for a DDiF (2-D fields over
frequency and time), FreD (2-D DCT) or pixel set.

    python Audio/main_DC.py --synset ddif --dataset MiniSpeechCommands --ipc 10
Defaults: dataset MiniSpeechCommands (the offline stand-in: `python -m common.data.espeak_commands --out data`),
model ConvNetD4 (the audio domain's). Flags left unset take their value from hyper_params.py (audio: no
augmentation, as IDC's speech experiments); see --help. TM runs on spectrograms through TM/main_TM.py with the same
--dataset (experts from TM/buffer.py).
"""
from common.cli import run_main
from common.distill import main as distill


def main(argv=None):
    return distill("DC", argv, __doc__, dataset="MiniSpeechCommands")


if __name__ == "__main__":
    run_main(main)
