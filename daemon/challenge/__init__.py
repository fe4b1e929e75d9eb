"""Challenge-response against replayed video: the door prompts random digits one at a time, and the
enrolled person must speak each one, in time, with a mouth that opens for it.

A recording cannot know the digits nor when they will be asked. The stage's interface:

- :func:`~daemon.challenge.prompts.new_challenge` draws a :class:`~daemon.challenge.prompts.Challenge`
  (digits from :mod:`secrets`, random times, an answer window per prompt);
- a prompt device presents it (:mod:`daemon.challenge.present`: none, log, speaker, display);
- :func:`~daemon.challenge.verify.judge_challenge` judges the attempt's audio and mouth track into a
  :class:`~daemon.challenge.verify.ChallengeResult`, which the decision reads
  (:func:`daemon.decide.decision.decide`, reason ``challenge_failed``).
"""

from daemon.challenge.digits import DigitTemplates, recognise
from daemon.challenge.prompts import Challenge, ChallengeParams, Prompt, new_challenge
from daemon.challenge.result import ChallengeResult
from daemon.challenge.verify import judge_challenge, template_content

CHOICE = """\
The content check is speaker-dependent MFCC + DTW against the person's own two enrolment takes of
each digit (daemon/challenge/digits.py), not pocketsphinx. Measured on the free-spoken-digit
recordings of /work/shared/data/voices/fsdd (3 speakers, takes 0-1 enrol, takes 2-9 test, 240
isolated digits): DTW 96.7 % right with two takes (george 97.5, lucas 95.0, theo 97.5; 90.0 % with
one take), at 0.01 s CPU per second of audio on this VM; pocketsphinx 5.1.1 (its en-US model, a JSGF
grammar of the ten digits, level-normalised input) 74.3 % of all 300 digits, 0.018 s CPU per second.
Requiring both to agree can only reject more genuine answers than DTW alone, and DTW needs no new
dependency and is bound to the enrolled voice. Answers are single digits, prompted one at a time, so
there is no segmentation of digit strings to get wrong (the issue's measurement: 50-100 ms pauses in
strings raised BPCER to 9-13 %). Three of four answers must be right: at 96.7 % per digit that is
99.4 % of genuine challenges on content alone."""

__all__ = ["CHOICE", "Challenge", "ChallengeParams", "ChallengeResult", "DigitTemplates", "Prompt",
           "judge_challenge", "new_challenge", "recognise", "template_content"]
