"""The study's second real labelled data set, built from drum kits that Debian ships (recordings of acoustic kits,
each hit labelled by the instrument it sounds).

    python -m modeling_eat.study.data drum_hits --drumkits_dir DIR [DIR ...] --output_dir drum-hits

`--drumkits_dir` names folders holding Hydrogen drum kits (`<kit>/drumkit.xml` beside its samples), as the Debian
packages `hydrogen-drumkits` and `hydrogen-data` install them under `usr/share/hydrogen/data/drumkits`. Every sample
of an acoustic kit's kick, snare, hi-hat, tom and cymbal instruments (each velocity layer a clip) becomes a 16 kHz
mono WAV; the kits of `DRUM_TEST_KITS` make the test split, the others the train split, so that no kit (recording
session, drums, microphones) is on both sides. FIDELITY.md says where the packages come from and their licences.
"""

import argparse
import csv
import re
import wave
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..audio import SAMPLING_RATE, AudioDecodingError, decode_audio


# The acoustic kits (recorded drums; the electronic and effect kits of the same packages are left out) and their split.
# Test: two kits by two authors whose work is nowhere in the train split, holding every class.
DRUM_TRAIN_KITS = (
    "BJA_Pacific",
    "GMRockKit",
    "Millo-Drums_v.1",
    "Millo_MultiLayered2",
    "Millo_MultiLayered3",
    "The Black Pearl 1.0",
    "rumpf_kit_z01_h2",
)
DRUM_TEST_KITS = ("ColomboAcousticDrumkit", "ForzeeStereo")
# An instrument's class from its name in drumkit.xml, the first pattern that matches; instruments that match none
# (claps, cowbells, side sticks, rim clicks, kits' loops) are left out.
DRUM_CLASSES = (
    ("kick", r"kick|bass ?drum"),
    ("hihat", r"hat\b|\bhh\b"),
    ("snare", r"snare"),
    ("tom", r"\btom"),
    ("cymbal", r"crash|ride|splash|china|cymbal|(?<!cow)bell"),
)


def drum_class(instrument_name: str) -> str | None:
    """The class of a kit's instrument from its name, or None for an instrument outside the five classes."""
    name = instrument_name.lower()
    return next((label for label, pattern in DRUM_CLASSES if re.search(pattern, name)), None)


def _local_name(tag: str) -> str:
    # Newer drumkit.xml files put their elements in a namespace, older ones do not.
    return tag.rsplit("}", 1)[-1]


def kit_samples(kit_dir: Path) -> list[tuple[Path, str]]:
    """`(sample file, class)` for every sample of the kit's instruments that have a class, each file once, in the
    order of drumkit.xml."""
    root = ElementTree.parse(kit_dir / "drumkit.xml").getroot()
    samples, seen = [], set()
    for instrument in root.iter():
        if _local_name(instrument.tag) != "instrument":
            continue
        name = next((child.text or "" for child in instrument if _local_name(child.tag) == "name"), "")
        label = drum_class(name)
        if label is None:
            continue
        for element in instrument.iter():
            if _local_name(element.tag) == "filename" and element.text and element.text not in seen:
                seen.add(element.text)
                samples.append((kit_dir / element.text, label))
    return samples


def write_wav(path: Path, waveform: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> None:
    """16-bit PCM mono WAV; a peak above full scale is scaled down rather than clipped."""
    peak = float(np.abs(waveform).max()) if waveform.size else 0.0
    if peak > 1.0:
        waveform = waveform / peak
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sampling_rate)
        handle.writeframes((waveform * 32767).round().astype("<i2").tobytes())


def find_kits(drumkits_dirs: Sequence[Path]) -> dict[str, Path]:
    kits = {}
    for folder in map(Path, drumkits_dirs):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder of Hydrogen drum kits")
        kits.update({kit.name: kit for kit in folder.iterdir() if (kit / "drumkit.xml").is_file()})
    return kits


def build_drum_hits(drumkits_dirs: Sequence[Path], output_dir: Path, sampling_rate: int = SAMPLING_RATE) -> dict:
    """Writes the drum-hit audiofolder (`train/` and `test/`, each with `metadata.csv`: file_name, label, kit) and
    returns the number of clips per split and class. Every kit of `DRUM_TRAIN_KITS` and `DRUM_TEST_KITS` must be
    found in `drumkits_dirs`; a sample that cannot be decoded is an error, not a silent gap in the data set."""
    kits = find_kits(drumkits_dirs)
    missing = [kit for kit in DRUM_TRAIN_KITS + DRUM_TEST_KITS if kit not in kits]
    if missing:
        raise FileNotFoundError(
            f"drum kits {missing} not found in {[str(path) for path in drumkits_dirs]}: extract the Debian packages "
            "hydrogen-drumkits and hydrogen-data (FIDELITY.md) and pass their usr/share/hydrogen/data/drumkits folders"
        )
    output_dir = Path(output_dir)
    counts = {}
    for split, split_kits in (("train", DRUM_TRAIN_KITS), ("test", DRUM_TEST_KITS)):
        split_dir = output_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for kit in split_kits:
            kit_slug = re.sub(r"[^A-Za-z0-9]+", "_", kit).strip("_")
            for index, (sample, label) in enumerate(kit_samples(kits[kit])):
                try:
                    waveform = decode_audio(str(sample), sampling_rate)
                except AudioDecodingError as error:
                    raise AudioDecodingError(f"kit {kit!r}: {error}") from error
                file_name = f"{kit_slug}_{index:03d}_{label}.wav"
                write_wav(split_dir / file_name, waveform, sampling_rate)
                rows.append((file_name, label, kit))
        with (split_dir / "metadata.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "label", "kit"])
            writer.writerows(rows)
        counts[split] = dict(sorted(Counter(label for _, label, _ in rows).items()))
    return counts


def data_main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m modeling_eat.study.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    drums = commands.add_parser("drum_hits", help="the drum-hit audiofolder from Debian's Hydrogen drum kits")
    drums.add_argument("--drumkits_dir", nargs="+", required=True,
                       help="folders of Hydrogen drum kits (.../usr/share/hydrogen/data/drumkits of the extracted "
                            "hydrogen-drumkits and hydrogen-data packages)")
    drums.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    counts = build_drum_hits(args.drumkits_dir, Path(args.output_dir))
    for split, per_class in counts.items():
        print(f"{split}: {sum(per_class.values())} clips {per_class}")
    return counts


if __name__ == "__main__":
    data_main()


__all__ = [
    "DRUM_CLASSES",
    "DRUM_TEST_KITS",
    "DRUM_TRAIN_KITS",
    "build_drum_hits",
    "drum_class",
    "kit_samples",
]
