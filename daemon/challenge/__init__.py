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
Content check: speaker-dependent MFCC + DTW against the person's own two enrolment takes of each
digit (daemon/challenge/digits.py), not pocketsphinx. Measured on the free-spoken-digit recordings
of /work/shared/data/voices/fsdd (3 speakers; takes 0-1 enrol, takes 2-9 test: 240 isolated
digits): DTW 96.7 % right with two takes (george 97.5, lucas 95.0, theo 97.5; 90.0 % with one take),
0.01 s CPU per second of audio on this VM; pocketsphinx 5.1.1 (its en-US model, a JSGF grammar of
the ten digits, level-normalised input) 74.3 % of all 300 digits, 0.018 s CPU per second. Requiring
both to agree can only reject more genuine answers than DTW alone; DTW needs no new dependency and is
bound to the enrolled voice. Deltas added to the MFCCs changed nothing (96.7 %). The prompted digit
passes when it is within max_distance 7.0 and at most max_ratio 1.1 times as far as the nearest
digit: 98.3 % of right answers pass, a take of another digit 1.3 % (0.4 % at ratio 1.0).
Answers are single digits, prompted one at a time, so there is no segmentation of digit strings to
get wrong (the issue's measurement: 50-100 ms pauses in strings raised BPCER to 9-13 %); three of
four answers must be right.

Mouth per answer: the mouth opening must vary by min_mouth_movement 0.05 (90th minus 10th
percentile) from 0.3 s before the answer to its end. On the utterances of the av/ clips that follow
a pause, 1 of 29 varied less (3.4 %); on 280 random segments of the hand-held photo attacks 11.4 %
varied more (0.04: 3.4 % / 21.8 %; the opening at rest before the answer against the opening
during it: 24-35 % of genuine answers failed). With the challenge the still-face rule applies to the
answers' frames, not the whole attempt (a live face mostly waits for prompts with the mouth at
rest), and the sync correlation is not used: its bona fide rejections (4.2 %) would add to the
challenge's, and the answers' timing does its job against replayed audio."""

__all__ = ["CHOICE", "Challenge", "ChallengeParams", "ChallengeResult", "DigitTemplates", "Prompt",
           "judge_challenge", "new_challenge", "recognise", "template_content"]
