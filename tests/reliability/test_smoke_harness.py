"""The catalogue's harness itself: a wrong command is classified and a protected file is watched."""

from reliability.harness import Case, check, classify, Outcome, snapshot


def test_missing_recording_is_a_clear_error(tmp_path):
    check(Case("info-missing-file", ["evdet-data", "info", str(tmp_path / "nope.dat")], names=["nope.dat"]))


def test_classification(tmp_path):
    case = Case("x", ["evdet-data"], names=["key"])
    f = tmp_path / "a.txt"
    f.write_text("1")
    before = snapshot([f])
    assert classify(case, Outcome(2, "", "evdet: error: key bad\n"), before, before) == "clear_error"
    assert classify(case, Outcome(0, "", ""), before, before) == "silent"
    assert classify(case, Outcome(1, "", "Traceback (most recent call last):\n x\n"), before, before) == "traceback"
    assert classify(case, Outcome(2, "", "something else\n"), before, before) == "unclear"
    f.write_text("2")
    assert classify(case, Outcome(2, "", "key\n"), before, snapshot([f])) == "data_loss"
