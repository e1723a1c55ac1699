"""extract_answer: the final answer a generation states (pure string work, no sympy)."""

from __future__ import annotations

import pytest
from grading_helpers import _id

from lm_latent.grading import extract_answer

EXTRACT_CASES: list[tuple[str, str | None]] = [
    ("So the answer is \\boxed{5}.", "5"),
    ("\\boxed{3} then \\boxed{7}", "7"),  # one sentence: grade() may read them as a set
    ("\\boxed{3}. Then \\boxed{7}", "7"),  # last box wins
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
    ("\\boxed{\\frac{\\sqrt{3}}{\\left(2\\right)}}", "\\frac{\\sqrt{3}}{\\left(2\\right)}"),
    ("We get $\\boxed{\\{1,2\\}}$.", "\\{1,2\\}"),
    ("\\fbox{42}", "42"),
    ("\\boxed {8}", "8"),
    ("\\boxed 9", "9"),
    ("\\boxed{1} and finally \\boxed{2", "1"),  # an unclosed last box is skipped
    ("\\boxed{}", None),
    ("The answer is: 18.", "18"),
    ("The answer is 18", "18"),
    ("blah. The answer is: $\\frac{1}{2}$.", "\\frac{1}{2}"),
    ("The answer is 3. Then the answer is 4.", "4"),  # last occurrence
    ("Final Answer: The final answer is $7$. I hope it is correct.", "7"),
    ("The answer is $18$. This is because 9 * 2 = 18.", "18"),
    ("The answer is **12**.", "12"),
    ("Janet sells 9 eggs.\n#### 18", "18"),
    ("#### 1,234", "1,234"),
    ("#### 5\n", "5"),
    ("so 3 + 4 = 7 apples", "7"),
    ("the total is -12.5", "-12.5"),
    ("she paid $1,234.50 in total", "1,234.50"),
    ("half of it: 3/4 of them", "3/4"),
    ("10-5 leaves", "5"),
    ("x - 3 = -4", "-4"),
    ("no numbers here", None),
    ("", None),
    ("<boLatent><latent_3><latent_17><eoLatent> so \\boxed{4}", "4"),
    ("The value is 12 <boLatent><latent_99><eoLatent>", "12"),
    ("7 <boLatent><latent_12><latent_5>", "7"),  # unclosed span at the end
    ("3 <latent_42> ", "3"),  # a stray latent token
    ("<boLatent><latent_1><eoLatent>The answer is: 5.", "5"),
]

# (generation, expected extract_answer)
READER_EXTRACT_CASES: list[tuple[str, str | None]] = [
    # 14.1: an unboxed final answer is the last math span of the final sentence, not its last digit
    ("We count the cases. Hence the probability is $\\frac{10}{9}$.", "\\frac{10}{9}"),
    ("Solving the quadratic, so $x = \\frac{1+\\sqrt{5}}{2}$", "x = \\frac{1+\\sqrt{5}}{2}"),
    ("The only solution is $(7, 6)$.", "(7, 6)"),
    ("The range of $f$ is $[0,1)$.", "[0,1)"),
    ("The matrix is $\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$.",
     "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}"),
    ("Therefore $$f(y) = y$$", "f(y) = y"),
    ("Therefore \\[x^2+1\\] is the polynomial.", "x^2+1"),
    ("so it equals \\(25\\sqrt{3}\\).", "25\\sqrt{3}"),
    ("The value is $\\frac{10}{9}$ (approximately 1.11).", "\\frac{10}{9}"),  # the exact form stated first
    ("The value is $\\frac{10}{9} \\approx 1.11$.", "\\frac{10}{9}"),
    ("In total $16 - 3 - 4 = 9$.", "9"),  # an arithmetic chain states its end
    ("We had $x = 3$.\nSo the total is 12 apples.", "12"),  # a later sentence with only a number
    ("$\\frac{1}{2}$ of them left.\n\nI hope this helps!", "\\frac{1}{2}"),  # trailing chatter without math
    ("She paid $5 and got $3 back.", "3"),  # dollar amounts are not math
    ("It costs $18.", "18"),
    ("The cost is \\$5 and then $x+1$.", "x+1"),
    # 14.2: several boxes in the final sentence are one answer set; the last stated answer wins
    ("The roots are $\\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}$.", "1"),  # grade() reads a set
    ("\\boxed{-5}. Multiplying out, this matches, so our answer is correct.", "-5"),
    ("\\boxed{4}. Checking again, the answer is positive.", "4"),
    ("\\boxed{4}. Checking again, the answer is yes.", "yes"),
    ("First \\boxed{200}. Then \\boxed{255}. The final answer is $10,455$", "10,455"),
    ("We try $\\boxed{4}$.\n\nActually the answer is $\\boxed{5}$.", "5"),
    ("The final answer is $\\boxed{5}$. I hope it is correct.", "5"),
    ("**Final Answer:** 17", "17"),
    ("#### 18\nThe answer is 19", "19"),
    ("The answer is 19\n#### 18", "18"),
    # smaller ones: Unicode
    ("The answer is х = 5.", "x = 5"),
    ("The answer is ½.", "\\frac{1}{2}"),
    ("The area is 9 cm² in total, so the answer is 9\u00a0cm².", "9 cm^{2}"),
    ("The answer is 1\u200b2.", "12"),
]

# Issue 30: what a reader reads at a glance. Each rule has a near miss that must stay as it was.
ISSUE30_EXTRACT_CASES: list[tuple[str, str | None]] = [
    # a math span is any balanced $...$ whose content can be a formula, spaces inside allowed
    ("Thus the result is $ \\sqrt{2} $", "\\sqrt{2}"),
    ("So the probability is $\\dfrac{1}{3} $.", "\\dfrac{1}{3}"),
    ("Hence $ x = 5 $.", "x = 5"),
    ("The value of $x$ is 12.", "12"),  # a span that only names a variable states no value
    ("The rent is $2\\,500$ a month.", "2\\,500"),
    # ... and a dollar amount is recognised by what follows it (no span in these)
    ("He paid $ 15 for the shirt and $ 5 for the socks, so he spent 20 dollars.", "20"),
    ("She paid $5, and then $x$ is 3.", "3"),
    ("He had $10 - $3 = $7 left", "7"),
    # LaTeX without delimiters is a span: the last number no longer splits it
    ("We get -\\frac{10}{9}", "-\\frac{10}{9}"),
    ("The length of the diagonal is 5\\sqrt{2} cm.", "5\\sqrt{2}"),
    ("So the area of the circle is 12\\pi.", "12\\pi"),
    ("The derivative is therefore 3x^2 \\cos(x^3).", "3x^2 \\cos(x^3)"),
    ("So the energy is 3.2 \\times 10^{-19} J.", "3.2 \\times 10^{-19}"),
    ("This gives a \\frac{1}{2} chance.", "\\frac{1}{2}"),  # "a" is the article
    ("By Vieta, the sum of the roots is -\\frac{b}{a} = \\frac{7}{2}.", "-\\frac{b}{a} = \\frac{7}{2}"),
    ("We get \\frac{1}{2}, so x = 3.", "\\frac{1}{2}"),  # as with $..$: a span earlier in the sentence wins
    ("So 16 - 3 - 4 = 9 eggs.", "9"),  # no command: plain arithmetic, its last number
    ("The interval is (-\\infty, 2].", "(-\\infty, 2]"),
    # thousands grouped by a space, \\, or {,} are one number
    ("The answer is 1 000.", "1 000"),
    ("So the total is 1 000 apples.", "1 000"),
    ("She needs 1\\,250 more stickers.", "1\\,250"),
    ("The number of bits needed is 1{,}024.", "1{,}024"),
    ("The sorted list is 12 3 0", "0"),  # groups of other lengths do not join
    # the value a final sentence ends with: a list, a tuple, an option, a percentage
    ("The prime factors of 42 are 2, 3 and 7.", "2, 3, 7"),
    ("It lies between 2 and 7.", "7"),  # no comma: no list
    ("The confidence interval is approximately (0.354, 0.447).", "(0.354, 0.447)"),
    ("Comparing the options, the correct option is (c).", "(c)"),
    ("So x = 5, as in part (a).", "5"),  # an option only where nothing else is stated
    ("The probability of success is 25%.", "25%"),
    # "Final Answer:" / "The answer is" followed by a sentence that states a value
    ("Final Answer: The largest $n$ is 34.", "34"),
    ("Final Answer: Tom has 8 marbles left.", "8"),
    ("The answer is approximately 30.16.", "30.16"),
    ("The answer is: the triangle has side \\sqrt3 and height 2.", "the triangle has side \\sqrt3 and height 2"),
    ("The answer is: all real numbers except 3.", "all real numbers except 3"),  # no "is" before the 3
    # <think>: the answer is what follows the reasoning; cut off inside it, there is none
    ("<think>\nso 36 - 20 = 16", None),
    ("<think>\nmaybe 12\n</think>\n\nThe answer is 14.", "14"),
    ("<think>\nIt is \\boxed{12}.\n</think>\n\nSo the count is $14$.", "14"),
    ("Reasoning done.\n</think>\n\nThe count is 14.", "14"),  # the chat template opened the block
    ("<think>\nIt is \\boxed{12}.\n</think>\n\nI hope this helps.", "12"),  # nothing stated after it
]

@pytest.mark.parametrize("text,expected", EXTRACT_CASES, ids=[_id(c) for c in EXTRACT_CASES])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected

@pytest.mark.parametrize("text,expected", READER_EXTRACT_CASES, ids=[_id(c) for c in READER_EXTRACT_CASES])
def test_reader_extraction(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text,expected", ISSUE30_EXTRACT_CASES, ids=[_id(c) for c in ISSUE30_EXTRACT_CASES])
def test_issue30_extraction(text, expected):
    assert extract_answer(text) == expected
