"""Fuzzing ``parse_config``: any text gives a Config or an InvalidConfig, never another exception.

The default run tries 2000 structured documents (and a quarter as many mutated documents and raw
texts); the long run is::

    AVID_FUZZ_EXAMPLES=10000 pytest tests/test_config_fuzz.py
"""

from __future__ import annotations

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import Config, InvalidConfig, backend_models, parse_config

EXAMPLES = int(os.environ.get("AVID_FUZZ_EXAMPLES", "2000"))
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
# The structured documents get the full budget; mutations and raw text explore less structure and
# need fewer examples to cover it (a quarter each keeps the default run near half a minute).
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
FUZZ_SIDE = settings(max_examples=max(1, EXAMPLES // 4), deadline=None, suppress_health_check=HEALTH)

SECTIONS = list(Config.model_fields)
# A backend-keyed section (camera, microphone) has one model per backend.
SECTION_MODELS = [model for section in SECTIONS for model in
                  (backend_models(Config.model_fields[section].annotation).values()
                   or [Config.model_fields[section].annotation])]
FIELDS = sorted({name for model in SECTION_MODELS for name in model.model_fields})
# Values the schema accepts somewhere, so that the fuzzer also reaches valid documents.
PLAUSIBLE = ["replay", "opencv", "sounddevice", "gpiozero", "mock", "lgpio", "deny", "face_only",
             "voice_only", "info", "debug", "/tmp/x.wav", "video.mpg", "", "yes", "no", "~"]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-10, max_value=100), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(PLAUSIBLE), text,
)
keys = st.one_of(st.sampled_from(SECTIONS), st.sampled_from(FIELDS), text,
                 st.integers(), st.none(), st.booleans())
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(keys, children, max_size=3)),
    max_leaves=6,
)
sections = st.dictionaries(st.sampled_from(FIELDS) | text, values, max_size=4)
documents = st.one_of(
    st.dictionaries(st.sampled_from(SECTIONS), sections, max_size=4),
    st.dictionaries(keys, values, max_size=4),
    values,
)


def _check(text_in: str) -> None:
    try:
        config = parse_config(text_in)
    except InvalidConfig as exc:
        assert exc.problems, "InvalidConfig without problems"
        for problem in exc.problems:
            assert problem.message.strip(), problem
            assert str(problem)
        assert exc.report().count("\n") == len(exc.problems) + 1
    else:
        assert isinstance(config, Config)


@FUZZ
@given(documents)
def test_structured_documents(document):
    _check(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


@FUZZ_SIDE
@given(documents, st.data())
def test_mutated_documents(document, data):
    dumped = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    start = data.draw(st.integers(0, len(dumped)))
    end = data.draw(st.integers(start, min(len(dumped), start + 10)))
    insert = data.draw(st.one_of(text, st.sampled_from(
        ["\t", ":", "- ", "  ", "\n  ", "&a ", "*a", "[", "{", "!!python/object:os.system", "%YAML 1.1\n",
         "? ", "|", ">-\n", "'", '"', "\x00", "\ufeff"])))
    _check(dumped[:start] + insert + dumped[end:])


@FUZZ_SIDE
@given(text | st.text(max_size=200).map(lambda s: s.replace("\ud800", "")))
def test_random_text(raw):
    _check(raw)
