"""Fine-tune Resemblyzer's GE2E speaker encoder on half of the development speakers.

    python tools/modelbuild/speaker_finetune.py ../shared/data --out WORK_DIR [--steps 30] [--seed 1]

Writes ``WORK_DIR/speaker_finetuned.pt`` (Resemblyzer's checkpoint format: ``model_state`` with
the ``lstm.*`` and ``linear.*`` tensors) and ``WORK_DIR/speaker_finetuned.json`` (the recipe, the
checkpoint's sha256 and the speakers it was trained on). ``tools/modelbuild/speaker_encoder.py
--fine-tune DATA_DIR --out DIR`` runs this and converts the result into ``DIR/speaker_encoder.tflite``
with the recipe and the speaker list in its manifest entry (``fine_tuned``). The shipped
``models/`` still holds the pretrained weights: docs/results.md ("A fine-tuned speaker encoder")
has the measurement and why it is not shipped yet.

Why: the pretrained network (trained by Resemblyzer's author on LibriSpeech, VoxCeleb and VCTK)
confuses non-native speakers most (speechocean762: one-shot EER 4.4 % against 3.1 % overall), and
no other speaker-encoder weights ship in a registry package. A short GE2E fine-tune (the loss the
network was trained with) on development speakers, measured on *other* development speakers,
lowers the one-shot EER a little and worsens the low-FMR tail: ``tools/evaluate.py`` with this
model and with the pretrained one on the same held-out speakers (docs/results.md, "fine-tuned on
development speakers").

Which speakers: of every sentence source whose licence allows a derived model to be redistributed
(:data:`TRAINING_SOURCES`: CC BY 4.0, ODC-By, BSD-style notices), half of the speakers, chosen by
a seeded shuffle per source (:func:`training_speakers`). The other half are never shown to the
network; the offline tools (``tools/evaluate.py``, ``avid calibrate``, ``tools/fit_voice_backend.py``)
read the list from the manifest and score only voices the model has not seen
(:meth:`daemon.offline.dataset.DataSet.without_voices`), so every voice figure stays a figure on
unseen speakers. Research-only sources (EMO-DB, the Urdu talk shows) and short-word sources are
never trained on.

What a training example is: a random 1.6 s window (one encoder window) of an utterance's voiced
audio (the daemon's VAD at its default settings), through the door's own window front end
(:func:`daemon.embed.voice_windows.window_mel`: the window volume-normalised on its own, numpy mel). A batch holds
:data:`SPEAKERS_PER_BATCH` speakers with :data:`UTTERANCES_PER_SPEAKER` crops each (from distinct
utterances where the speaker has enough), and the loss is GE2E's softmax loss with its learnable
scale and bias (Wan et al. 2018), as Resemblyzer was trained. Adam, a small learning rate and a few
dozen steps (10, 30 and 90 measured: docs/results.md; 90 overfits the development speakers).

Needs ``torch`` (``tools/requirements-build-speaker.txt``); one CPU thread and fixed seeds make
the run repeatable on one machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from daemon.capture.audio import SAMPLE_RATE_HZ, read_wav  # noqa: E402
from daemon.detect.vad import VadSettings, voiced_audio  # noqa: E402
from daemon.embed.voice_windows import WINDOW_SAMPLES, warped, window_mel  # noqa: E402
from daemon.offline.dataset import SEGMENT_SECONDS, scan  # noqa: E402
from daemon.inference.tflite import sha256_of  # noqa: E402
from daemon.offline.embeddings import segments_of  # noqa: E402
from tools.modelbuild import speaker_encoder  # noqa: E402

log = logging.getLogger("speaker_finetune")

#: Sentence sources a redistributed model may be derived from (the licence column of
#: ``../shared/data/manifest.csv``): LibriSpeech, VCTK, speechocean762, SDAP (CC BY 4.0), VCC 2016
#: (ODC-By), CMU ARCTIC and AN4 (BSD-style notices).
TRAINING_SOURCES = frozenset({
    "librispeech_test-other", "librispeech_train-clean-100_singletons", "vctk", "speechocean762",
    "sdap_voice_actors", "vcc2016", "cmu_arctic", "an4"})
SPEAKERS_PER_BATCH = 32
UTTERANCES_PER_SPEAKER = 3
DEFAULT_STEPS = 30
DEFAULT_LEARNING_RATE = 3e-5
GRADIENT_CLIP = 3.0
CHECKPOINT_NAME = "speaker_finetuned.pt"
RECIPE_NAME = "speaker_finetuned.json"


def training_speakers(voices: dict[str, dict[str, list[str]]], seed: int) -> list[str]:
    """Half of the speakers (rounded down) of every training source, as ``source/speaker``."""
    chosen = []
    for source in sorted(TRAINING_SOURCES & set(voices)):
        speakers = sorted(voices[source])
        random.Random(f"finetune-{seed}-{source}").shuffle(speakers)
        chosen += [f"{source}/{s}" for s in sorted(speakers[:len(speakers) // 2])]
    return chosen


def utterance_audio(data_root: Path, files: list[str]) -> list[np.ndarray]:
    """A speaker's training utterances: the voiced audio (the door's VAD) of each file, or, when
    the speaker has one long recording, its :data:`SEGMENT_SECONDS` segments as the evaluation cuts
    them (:func:`daemon.offline.embeddings.segments_of`); utterances under 1 s of speech are dropped,
    as the door drops them. Each is returned frequency-warped (:func:`daemon.embed.voice_windows.warped`),
    once, as the encoder reads speech at the door."""
    vad = VadSettings()
    found = []
    for key in files:
        utterances = voiced_audio(read_wav(data_root / key), vad.segmenter())
        if not utterances:
            continue
        voiced = np.concatenate(utterances)
        found += segments_of(voiced, SEGMENT_SECONDS) if len(files) == 1 else [voiced]
    return [warped(u) for u in found if u.size >= SAMPLE_RATE_HZ]


def random_window(audio: np.ndarray, rng: random.Random) -> np.ndarray:
    """A random window of a (warped) utterance as the encoder sees it at the door
    (:func:`daemon.embed.voice_windows.window_mel`); a shorter utterance is zero-padded, as the door
    pads its last window."""
    if audio.size > WINDOW_SAMPLES:
        start = rng.randrange(audio.size - WINDOW_SAMPLES + 1)
        audio = audio[start:start + WINDOW_SAMPLES]
    elif audio.size < WINDOW_SAMPLES:
        audio = np.pad(audio, (0, WINDOW_SAMPLES - audio.size))
    return window_mel(audio).astype(np.float32)


def ge2e_loss(embeddings, speakers: int, per_speaker: int, scale, bias):
    """GE2E softmax loss: each embedding against every speaker's centroid (its own centroid
    without itself), scaled and shifted, cross-entropy towards its own speaker."""
    import torch

    e = embeddings.view(speakers, per_speaker, -1)
    centroids = torch.nn.functional.normalize(e.mean(1), dim=1)
    own = torch.nn.functional.normalize((e.sum(1, keepdim=True) - e) / (per_speaker - 1), dim=2)
    similarity = torch.einsum("nmd,kd->nmk", e, centroids)
    index = torch.arange(speakers)
    similarity[index, :, index] = (e * own).sum(2)
    logits = (similarity * scale + bias).reshape(speakers * per_speaker, speakers)
    return torch.nn.functional.cross_entropy(logits, index.repeat_interleave(per_speaker))


def fine_tune(checkpoint: Path, by_speaker: dict[str, list[np.ndarray]], steps: int, seed: int):
    """Fine-tune the checkpoint's network (Resemblyzer's own ``VoiceEncoder`` module) on
    ``by_speaker`` (voiced audio per utterance, at least two utterances each); return the model and
    the loss of every step."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = speaker_encoder.torch_encoder(checkpoint)
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-5.0, requires_grad=True)
    parameters = list(model.parameters())
    optimiser = torch.optim.Adam(parameters + [scale, bias], lr=DEFAULT_LEARNING_RATE)
    speakers = sorted(by_speaker)
    losses = []
    model.train()
    for _ in range(steps):
        batch = []
        chosen = rng.sample(speakers, min(SPEAKERS_PER_BATCH, len(speakers)))
        for speaker in chosen:
            utterances = by_speaker[speaker]
            picks = (rng.sample(range(len(utterances)), UTTERANCES_PER_SPEAKER)
                     if len(utterances) >= UTTERANCES_PER_SPEAKER
                     else [rng.randrange(len(utterances)) for _ in range(UTTERANCES_PER_SPEAKER)])
            batch += [random_window(utterances[index], rng) for index in picks]
        loss = ge2e_loss(model(torch.from_numpy(np.stack(batch))), len(chosen), UTTERANCES_PER_SPEAKER,
                         scale, bias)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, GRADIENT_CLIP)
        optimiser.step()
        with torch.no_grad():
            scale.clamp_(min=1e-6)
        losses.append(float(loss.detach()))
    model.eval()
    return model, losses


def save_checkpoint(model, path: Path) -> str:
    """Write the model in Resemblyzer's checkpoint format; return the file's sha256."""
    import torch

    torch.save({"model_state": {k: v.detach().clone() for k, v in model.state_dict().items()}}, path)
    return sha256_of(path)


def pretrained_checkpoint(work_dir: Path) -> Path:
    """Resemblyzer's ``pretrained.pt`` from its PyPI wheel (downloaded into ``work_dir``)."""
    return speaker_encoder.fetch_wheel(work_dir) / speaker_encoder.PATH_IN_PACKAGE


def run(data_dir: Path, out_dir: Path, steps: int, seed: int, work_dir: Path | None = None) -> dict:
    """Fine-tune on the training half of ``data_dir``; write the checkpoint and its recipe."""
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="speaker_finetune"))
    pretrained = pretrained_checkpoint(work_dir)
    data = scan(data_dir)
    speakers = training_speakers(data.voices, seed)
    started = time.monotonic()
    by_speaker = {}
    for identity in speakers:
        source, speaker = identity.split("/", 1)
        by_speaker[identity] = utterance_audio(data.root, data.voices[source][speaker])
    # GE2E needs two utterances of a speaker; the others are not trained on, so not listed either.
    by_speaker = {s: u for s, u in by_speaker.items() if len(u) >= 2}
    speakers = sorted(by_speaker)
    log.info("%d training speakers, %d utterances (%.0f s front end)", len(by_speaker),
             sum(len(u) for u in by_speaker.values()), time.monotonic() - started)
    model, losses = fine_tune(pretrained, by_speaker, steps, seed)
    sha = save_checkpoint(model, out_dir / CHECKPOINT_NAME)
    recipe = {
        "tool": "tools/modelbuild/speaker_finetune.py",
        "from": {"package": speaker_encoder.PACKAGE, "version": speaker_encoder.VERSION,
                 "path_in_package": speaker_encoder.PATH_IN_PACKAGE, "sha256": sha256_of(pretrained)},
        "checkpoint_sha256": sha,
        "loss": "GE2E softmax (learnable scale 10 and bias -5 at the start)",
        "steps": steps, "seed": seed, "learning_rate": DEFAULT_LEARNING_RATE, "optimiser": "Adam",
        "gradient_clip": GRADIENT_CLIP, "batch": f"{SPEAKERS_PER_BATCH} speakers x {UTTERANCES_PER_SPEAKER} "
                                                  f"random 1.6 s crops",
        "front_end": "the daemon's VAD (default settings); a random 1.6 s window of each utterance "
                     "through the door's window_mel (volume-normalised window, numpy mel); one long "
                     f"recording cut into {SEGMENT_SECONDS:g} s segments of speech",
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)] if losses else None,
        "data": "../shared/data/voices (development half); licences of the training sources: "
                "CC BY 4.0 (LibriSpeech, VCTK, speechocean762, SDAP), ODC-By (VCC 2016), "
                "BSD-style notices (CMU ARCTIC, AN4)",
        "training_sources": sorted(TRAINING_SOURCES & set(data.voices)),
        "speakers": speakers,
    }
    (out_dir / RECIPE_NAME).write_text(json.dumps(recipe, indent=1) + "\n")
    log.info("wrote %s (sha256 %s), loss %.3f -> %.3f", out_dir / CHECKPOINT_NAME, sha[:12],
             losses[0] if losses else float("nan"), losses[-1] if losses else float("nan"))
    return recipe


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoint and its recipe")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="folder for the downloaded wheel")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = run(args.data_dir, args.out, args.steps, args.seed, args.work)
    print(json.dumps({k: v for k, v in recipe.items() if k != "speakers"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
