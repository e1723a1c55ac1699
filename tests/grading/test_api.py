"""grade(): extract and compare, one budget per answer, nothing raises."""

from __future__ import annotations

import time

import pytest
from grading_helpers import LIMIT, _check_normal_comparison_still_works, _garbage, _id

from lm_latent.grading import GradeResult, api, extract_answer, grade, is_equiv, is_equiv_multi
from lm_latent.grading.worker import _WORKER, _Reply

GRADE_CASES = [
    ("... so she makes \\boxed{18} dollars.", "18", True, "18"),
    ("The answer is: 18.", "#### 18", True, "18"),
    ("Janet sells 9 eggs <boLatent><latent_18><eoLatent> making $18.\n#### 18", "18", True, "18"),
    ("<boLatent><latent_5><eoLatent> The answer is 5", "4", False, "5"),
    ("\\boxed{1,234}", "1234", True, "1,234"),
    ("The answer is: True", "True", True, "True"),
    ("no answer at all", "3", False, None),
    ("The answer is: No. Consider $x+y+z=2$ and $x+y+z=1$.", "No. Consider $x+y+z=2$ and $x+y+z=1$.", True, None),
]


@pytest.mark.parametrize("generation,reference,correct,extracted", GRADE_CASES, ids=[_id(c) for c in GRADE_CASES])
def test_grade(generation, reference, correct, extracted):
    res = grade(generation, reference, timeout=10.0)
    assert isinstance(res, GradeResult)
    assert res.correct is correct
    assert res.timed_out is False
    if extracted is not None:
        assert res.extracted == extracted


def test_grade_multiple_and_alternatives():
    assert grade("\\boxed{84, 69}", ["$69$", "$84$"], multiple=True).correct
    assert not grade("\\boxed{84}", ["$69$", "$84$"], multiple=True).correct
    # without `multiple`, a list of references is a list of acceptable alternatives
    assert grade("\\boxed{84}", ["$69$", "$84$"]).correct
    assert not grade("\\boxed{85}", ["$69$", "$84$"]).correct


def test_none_inputs():
    assert extract_answer(None) is None  # type: ignore[arg-type]
    assert not is_equiv(None, "1")  # type: ignore[arg-type]
    assert not is_equiv("1", None)  # type: ignore[arg-type]
    assert not grade("", "1").correct

def test_pathological_grade(caplog):
    _WORKER.ensure_started()  # the process's first start is not part of the budget
    t0 = time.perf_counter()
    with caplog.at_level("WARNING", logger="lm_latent.grading"):
        res = grade("so \\boxed{1000000!}", "1", timeout=LIMIT)
    assert time.perf_counter() - t0 < LIMIT + 3
    assert res.correct is False and res.extracted == "1000000!"
    # whether sympy gives up or the limit hits depends on the machine; the flag must agree
    assert res.timed_out == any("timed out" in r.getMessage() for r in caplog.records)
    _check_normal_comparison_still_works()


def test_grade_reports_timed_out(monkeypatch):
    monkeypatch.setattr(_WORKER, "call", lambda kind, payload, budget, what: _Reply(False, True))
    assert grade("\\boxed{x^2}", "x^3") == GradeResult(False, "x^2", True)
    assert grade("\\boxed{2, 3}", ["(1,2)", "(3,4)"], multiple=True) == GradeResult(False, "2, 3", True)


def test_garbage_input():
    _WORKER.ensure_started()
    garbage = _garbage()
    t0 = time.perf_counter()
    assert extract_answer(garbage + "\n\nThe answer is 42.") == "42"  # garbage before does not matter
    assert is_equiv(garbage, "1", timeout=LIMIT) is False
    assert is_equiv("1", garbage, timeout=LIMIT) is False
    assert grade(garbage, "x+1", timeout=LIMIT).correct is False
    assert grade("\\boxed{" + garbage[:5000] + "}", "1", timeout=LIMIT).correct is False
    assert is_equiv(garbage[:1900], "x+1", timeout=LIMIT) is False  # under the sympy cap
    assert time.perf_counter() - t0 < 4 * (LIMIT + 3)
    _check_normal_comparison_still_works()

# (generation, reference, correct)
READER_GRADE_CASES: list[tuple[str, str, bool]] = [
    ("Hence the probability is $\\frac{10}{9}$.", "\\frac{10}{9}", True),
    ("Hence the probability is $\\frac{10}{9}$.", "9", False),
    ("Solving, so $x = \\frac{1+\\sqrt{5}}{2}$", "2", False),
    ("Solving, so $x = \\frac{1+\\sqrt{5}}{2}$", "\\frac{1+\\sqrt{5}}{2}", True),
    ("The only solution is $(7, 6)$.", "6", False),
    ("The only solution is $(7, 6)$.", "(7,6)", True),
    ("The range is $[0,1)$.", "1", False),
    ("Thus $\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$.", "1", False),
    ("Thus $$f(y) = y$$", "f(y)=y", True),
    # a reduced span is tried whole too, when the reference is itself a statement
    ("So the value is $\\log _{6}\\left(\\frac{1}{36}\\right)=-2$.", "$\\log _{6}\\left(\\frac{1}{36}\\right)=-2$",
     True),
    ("So the value is $\\log _{6}\\left(\\frac{1}{36}\\right)=-2$.", "-2", True),
    ("So the value is $\\log _{6}\\left(\\frac{1}{36}\\right)=-2$.", "-3", False),
    ("So it is $\\approx(2.3217,4.3717)$.", "$\\approx(2.3217,4.3717)$", True),
    ("So $x \\approx 0.01866, x \\approx 1.7115$.", "$x \\approx 0.01866, x \\approx 1.7115$", True),
    # another problem's wrong answer that a last-number or loose reading called right
    ("So the probability is $\\frac{2}{5}$.", "5", False),
    ("So the area is $25\\sqrt{3}$.", "3", False),
    ("So the area is $25\\sqrt{3}$.", "25\\sqrt{3}", True),
    # 14.2 answer sets
    ("The roots are $\\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}$.", "-2, 1", True),
    ("The roots are $\\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}$.", "1, -2", True),
    ("The roots are $\\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}$.", "-2, 3", False),
    ("Since $\\boxed{a=3}$, we get $\\boxed{7}$.", "7", True),  # single-part reference: the last box
    ("So $\\boxed{\\frac{25}{13}}$, or $\\boxed{1\\frac{12}{13}}$.", "\\frac{25}{13}", True),
    ("Hence, $x$ must be $\\boxed{3}$ or $\\boxed{\\frac{2}{5}}$.", "3, \\frac{2}{5}", True),
    ("Hence, $x$ must be $\\boxed{3}$ or $\\boxed{\\frac{2}{5}}$.", "\\frac{2}{5}, 3", True),
    ("Hence, $x$ must be $\\boxed{3}$ or $\\boxed{\\frac{2}{5}}$.", "\\frac{2}{5}, 4", False),
    ("First \\boxed{200}. Then \\boxed{255}. The final answer is $10,455$", "10455", True),
    ("First \\boxed{200}. Then \\boxed{255}. The final answer is $10,455$", "255", False),
    # 14.3 thousands with \! and a space
    ("\\boxed{11,\\! 111,\\! 100}", "11111100", True),
    ("\\boxed{11,\\!111,\\!100}", "11111100", True),
    ("\\boxed{1{,}000{,}000}", "1000000", True),
    # 14.6 an integer reference needs exactly that value
    ("\\boxed{3^{10}}", "59050", False),
    ("\\boxed{3^{10}}", "59049", True),
    ("\\boxed{2^{14}+1}", "16384", False),
    ("\\boxed{2^{14}+1}", "16385", True),
    ("\\boxed{15554+1}", "15554", False),
    ("\\boxed{10^{30}+1}", "1000000000000000000000000000000", False),
    ("\\boxed{17.9999}", "18", False),
    ("\\boxed{18.0}", "18", True),
    # 14.8 rounding: exact reference needs (near-)exact answers; a rounded reference keeps its tolerance
    ("\\boxed{0.333}", "\\frac{1}{3}", False),
    ("\\boxed{6.28}", "2\\pi", False),
    ("\\boxed{0.866}", "\\frac{\\sqrt{3}}{2}", False),
    ("\\boxed{0.8660254}", "\\frac{\\sqrt{3}}{2}", True),
    ("\\boxed{3.1415927}", "\\pi", True),
    ("\\boxed{\\frac{1}{3}}", "0.333", True),
    ("\\boxed{2\\pi}", "6.28", True),
    ("\\boxed{\\pi}", "3.14", True),
    ("\\boxed{3.14}", "3.14159", True),
    ("\\boxed{0.125}", "\\frac{1}{8}", True),
    # smaller ones
    ("\\boxed{y_3 = x\\sin x}", "y_2 = x\\sin x", False),
    ("\\boxed{y_2 = x\\sin x}", "y_2 = x\\sin x", True),
    ("The answer is: the triangle has side \\sqrt3 and height 2.", "the triangle has side \\sqrt{3} and height 2",
     True),
    ("The answer is х = 5.", "5", True),
    ("The answer is ½.", "0.5", True),
    ("The answer is 9\u00a0cm².", "9", True),
    ("The answer is 1\u200b2\u00a0000.", "12000", True),  # issue 30: a (no-break) space groups thousands
    ("The answer is 1\u200b2\u00a000.", "1200", False),  # ... in groups of three only
    ("The answer is 1\u200b2.", "12", True),
    ("\\boxed{x²+1}", "x^2+1", True),
    ("\\boxed{−3}", "-3", True),
]

# Issue 30 (generation, reference, correct): each fix and its near miss
ISSUE30_GRADE_CASES: list[tuple[str, str, bool]] = [
    ("Thus the result is $ \\sqrt{2} $", "\\sqrt{2}", True),
    ("Thus the result is $ \\sqrt{2} $", "2", False),
    ("Thus the result is $\\dfrac{1}{3} $", "\\frac{1}{3}", True),
    ("Thus the result is $\\dfrac{1}{3} $", "3", False),
    ("The answer is $ \\sqrt{2} $", "\\sqrt{2}", True),
    ("We get -\\frac{10}{9}", "-\\frac{10}{9}", True),
    ("We get -\\frac{10}{9}", "9", False),
    ("We get -\\frac{10}{9}", "\\frac{10}{9}", False),
    ("So the area of the circle is 12\\pi.", "12\\pi", True),
    ("So the area of the circle is 12\\pi.", "12", False),
    ("The length of the diagonal is 5\\sqrt{2} cm.", "5\\sqrt{2}", True),
    ("The length of the diagonal is 5\\sqrt{2} cm.", "2", False),
    ("The answer is 1 000.", "1000", True),
    ("The answer is 1 000.", "100", False),
    ("The answer is 2 500.", "2", False),
    ("The answer is 1\\,000.", "1000", True),
    ("The answer is 1{,}000.", "1000", True),
    ("So the total is 1 000 apples.", "1000", True),
    ("She needs 1\\,250 more stickers.", "1250", True),
    ("She needs 1\\,250 more stickers.", "250", False),
    ("The answer is: 12 3 0", "12 3 0", True),  # DeepMind's sorted list stays a list
    ("The answer is: 12 3 0", "1230", False),
    ("Final Answer: The largest $n$ is 34.", "34", True),
    ("Final Answer: The largest $n$ is 34.", "35", False),
    ("Final Answer: Tom has 8 marbles left.", "8", True),
    ("Final Answer: Tom has 8 marbles left.", "9", False),
    ("The answer is: the triangle has side \\sqrt3 and height 2.", "2", False),
    ("The answer is: all real numbers except 3.", "3", False),
    ("The prime factors of 42 are 2, 3 and 7.", "2, 3, 7", True),
    ("The prime factors of 42 are 2, 3 and 7.", "7", False),
    ("Comparing the options, the correct option is (c).", "(c)", True),
    ("Comparing the options, the correct option is (c).", "(a)", False),
    ("The probability of success is 25%.", "0.25", True),
    ("The probability of success is 25%.", "2.5", False),
    ("The answer is: 3.7 m/s", "3.7", True),
    ("The answer is: 3.7 m/s", "37", False),
    ("<think>\nso 36 - 20 = 16", "16", False),
    ("<think>\nmaybe 12\n</think>\n\nThe answer is 14.", "14", True),
    ("<think>\nmaybe 12\n</think>\n\nThe answer is 14.", "12", False),
]

@pytest.mark.parametrize("generation,reference,correct", READER_GRADE_CASES, ids=[_id(c) for c in READER_GRADE_CASES])
def test_reader_grading(generation, reference, correct):
    res = grade(generation, reference, timeout=10.0)
    assert res.correct is correct, res
    assert not res.timed_out and not res.error


@pytest.mark.parametrize("generation,reference,correct", ISSUE30_GRADE_CASES, ids=[_id(c) for c in ISSUE30_GRADE_CASES])
def test_issue30_grading(generation, reference, correct):
    res = grade(generation, reference, timeout=10.0)
    assert res.correct is correct, res
    assert not res.timed_out and not res.error


def test_answer_set_with_multiple_flag():
    gen = "The solutions are $\\boxed{2}$ and $\\boxed{3}$."
    assert grade(gen, ["3", "2"], multiple=True).correct
    assert not grade(gen, ["3", "4"], multiple=True).correct
    assert not grade(gen, ["2"], multiple=True).correct

# 14.4 / 14.5: inputs that used to raise out of grade (and abort an lm_eval run)
NEVER_RAISE_CASES = [
    ("\\boxed{1\\frac{" + "1" * 5000 + "}{" + "2" * 5000 + "}}", ["1", "2"], True),
    ("\\boxed{1\\frac{" + "1" * 5000 + "}{" + "2" * 5000 + "}}", "1", False),
    ("The answer is: " + "7" * 4400, "18", False),
    ("The answer is: " + "7" * 4400, ["1", "2"], True),
    ("The answer is: " + "7" * 4400 + ", 5", ["1", "2"], True),
    ("The answer is 1e400.", "18", False),
    ("The answer is 1e309.", "18", False),
    ("The answer is -1e400.", "0.5", False),
    ("\\boxed{10^{400}}", "0.5", False),
    ("\\boxed{10^{400}}", "1e-400", False),
    ("\\boxed{1e400\\%}", "0.5", False),
    ("\\boxed{[1e400, 2]}", "[0.5, 2]", False),
    ("\\boxed{" + "9" * 5000 + "}", "0.5", False),
    ("\\boxed{0." + "3" * 5000 + "}", "\\frac{1}{3}", False),
]


@pytest.mark.parametrize("generation,reference,multiple", NEVER_RAISE_CASES, ids=[_id(c) for c in NEVER_RAISE_CASES])
def test_never_raises(generation, reference, multiple):
    _WORKER.ensure_started()
    t0 = time.perf_counter()
    res = grade(generation, reference, timeout=LIMIT, multiple=multiple)
    assert res.correct is False
    assert time.perf_counter() - t0 < LIMIT + 1.5


def test_unexpected_exception_is_an_error_not_a_crash(monkeypatch, caplog):
    """Whatever goes wrong inside, grade() returns (wrong, error=True) and logs it."""
    def boom(*args, **kwargs):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(api, "_quick", boom)
    with caplog.at_level("WARNING", logger="lm_latent.grading"):
        res = grade("\\boxed{5}", "5")
    assert res == GradeResult(False, "5", False, True)
    assert any("ZeroDivisionError" in r.getMessage() for r in caplog.records)
    assert is_equiv("5", "5") is False and is_equiv_multi("5, 6", ["5", "6"]) is False


def test_process_results_reports_grading_error(monkeypatch):
    from lm_latent.tasks import scoring

    out = scoring.process_results({"answer": "5"}, ["\\boxed{5}"])
    assert out["acc"] == 1.0 and out["grading_error"] == 0.0 and out["grading_timeout"] == 0.0
    monkeypatch.setattr(api, "_quick", lambda *a: 1 / 0)
    out = scoring.process_results({"answer": "5"}, ["\\boxed{5}"])
    assert out["acc"] == 0.0 and out["grading_error"] == 1.0


# 14.7: one budget per answer
SLOW = "9^{9^{9^{9}}}"


def test_budget_bounds_the_whole_answer():
    """Two "answer is" readings x three alternative references x two readings each used to
    wait `timeout` per worker call (72 s measured); now the whole grade() shares it."""
    _WORKER.ensure_started()
    gen = f"The answer is y = {SLOW} + x. So y = {SLOW} + x"
    budget = 2.0
    t0 = time.perf_counter()
    res = grade(gen, ["y = 2x + 3", "y = 2x + 4", f"y = {SLOW} - x"], timeout=budget)
    elapsed = time.perf_counter() - t0
    assert res.correct is False
    assert elapsed < budget + 1.5, elapsed
    _check_normal_comparison_still_works()

# Parent-side work is bounded too (no regex is quadratic on these)
PARENT_INPUTS = [
    "The answer is 5" + "\n" * 32000,
    "The answer is 5" + " \n" * 16000,
    "The answer is " + ". " * 50000,
    "$" * 100000,
    "$x" * 50000,
    "\\boxed{" * 20000,
    "\\boxed{1}" * 20000,
    "1," * 50000,
    " " * 100000 + "5",
    "\\(" * 50000,
    "answer is " * 20000,
    "#### " * 20000,
]


@pytest.mark.parametrize("generation", PARENT_INPUTS, ids=[repr(g[:20]) + f"..{len(g)}" for g in PARENT_INPUTS])
def test_parent_work_is_bounded(generation):
    _WORKER.ensure_started()
    t0 = time.perf_counter()
    grade(generation, "5", timeout=LIMIT)
    assert time.perf_counter() - t0 < LIMIT + 1.0


class _ScriptedLM:
    """A real lm-eval LM whose generations are fixed per (task, reference): what a model could write."""

    def __new__(cls, outputs: dict[tuple[str, str], str]):
        from lm_eval.api.model import LM

        class Scripted(LM):
            def generate_until(self, requests):
                return [outputs[(req.task_name, req.doc["answer"])] for req in requests]

            def loglikelihood(self, requests):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

        return Scripted()


def test_adversarial_answers_do_not_abort_an_lm_eval_run(tmp_path):
    """14.4/14.5 end to end: these answers used to make `lm_eval` exit 1 after generation."""
    from lm_eval import simple_evaluate
    from builders import PROBLEMS, write_data_dir
    from builders import plugin_task_manager as _task_manager

    data_dir = write_data_dir(tmp_path / "data")
    assert sorted({a for _, a in PROBLEMS}) == ["30", "7"]
    outputs = {
        ("latent_math_gsm8k", "7"): "So the answer is 1e400.",  # OverflowError in the parent before
        ("latent_math_math", "7"): "\\boxed{1\\frac{" + "1" * 5000 + "}{" + "2" * 5000 + "}}",  # int() digit cap before
        ("latent_math_gsm8k", "30"): "Thus \\boxed{30}.",
        ("latent_math_math", "30"): "So it is $30$.",
    }
    out = simple_evaluate(model=_ScriptedLM(outputs), tasks=["latent_math_gsm8k", "latent_math_math"], limit=3,
                          task_manager=_task_manager({"data_dir": str(data_dir)}), log_samples=True)
    for task in ("latent_math_gsm8k", "latent_math_math"):
        res = out["results"][task]
        assert res["acc,none"] == pytest.approx(1 / 3)  # the two adversarial answers wrong, "30" right
        assert res["grading_error,none"] == 0.0 and res["grading_timeout,none"] == 0.0
        assert len(out["samples"][task]) == 3
