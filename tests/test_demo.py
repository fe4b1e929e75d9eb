"""`avid demo` end to end: the real pipeline on the bundled clips, mock GPIO."""

from daemon.cli import main


def test_demo_accepts_enrolled_denies_stranger_and_photo(capsys, monkeypatch):
    monkeypatch.delenv("AVID_STATE_DIR", raising=False)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "DEMO OK" in out
    assert out.count("ACCEPT") == 3 and out.count("DENY") == 3
    assert "reason=liveness_failed" in out and "reason=no_match" in out
    assert "reason=challenge_failed" in out and "REPLAY REFUSED" in out
    assert out.count("door asks: say") == 4
    timeline = [line for line in out.splitlines() if "ENERGISED" in line]
    assert len(timeline) == 3


def test_fast_demo_prints_the_same_decisions(capsys, monkeypatch):
    # Replayed on a media clock, as fast as this machine computes: same outcomes, same reasons.
    monkeypatch.delenv("AVID_STATE_DIR", raising=False)
    assert main(["demo", "--fast"]) == 0
    out = capsys.readouterr().out
    assert "DEMO OK" in out and "media time" in out
    decisions = [line.split(": ", 1)[1].split(" face=")[0] for line in out.splitlines()
                 if line.startswith("  t=") and "attempt" in line]
    assert [" ".join(d.split()) for d in decisions] == [
        "ACCEPT person=alice reason=match", "ACCEPT person=bob reason=match",
        "DENY person=- reason=no_match", "DENY person=- reason=liveness_failed",
        "ACCEPT person=alice reason=match"]
    assert len([line for line in out.splitlines() if "ENERGISED" in line]) == 3
