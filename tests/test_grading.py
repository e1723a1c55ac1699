"""Table-driven tests of lm_latent.grading (extraction, equivalence, time limits).

All comparisons share the module's own persistent worker, so sympy is imported once
for the whole file.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lm_latent.grading import (
    GradeResult,
    api,
    extract_answer,
    grade,
    is_equiv,
    is_equiv_multi,
    split_answers,
    strip_latent,
)
from lm_latent.grading.worker import _WORKER, _Budget, _Reply, _SympyWorker

# (prediction, reference, expected)
EQUIV_CASES: list[tuple[str, str, bool]] = [
    # --- identical / wrappers / whitespace ---------------------------------------
    ("5", "5", True),
    ("$5$", "5", True),
    ("$$5$$", "5", True),
    ("\\(5\\)", "5", True),
    ("\\[5\\]", "5", True),
    ("\\boxed{5}", "5", True),
    ("\\fbox{5}", "5", True),
    ("\\text{5}", "5", True),
    ("5.", "5", True),
    ("  5  ", "5", True),
    ("**5**", "5", True),
    ("$\\boxed{5}$", "5", True),
    ("\\boxed{\\boxed{5}}", "5", True),
    ("\\displaystyle 5", "5", True),
    ("5", "6", False),
    ("$5$", "$6$", False),
    ("\\boxed{5}", "\\boxed{50}", False),
    ("-5", "5", False),
    ("+5", "5", True),
    ("05", "5", True),
    ("", "5", False),
    ("5", "", False),
    # --- thousands separators ----------------------------------------------------
    ("1,000", "1000", True),
    ("1000", "1,000", True),
    ("1,234,567", "1234567", True),
    ("12,345.67", "12345.67", True),
    ("\\$1,234", "1234", True),
    ("$1,234$", "1234", True),
    ("1{,}000", "1000", True),
    ("1\\,000", "1000", True),
    ("1\\!000", "1000", True),
    ("1,000", "1", False),
    ("1,000", "100", False),
    ("1,23", "123", False),
    ("-1,500", "-1500", True),
    ("1,500", "1,501", False),
    ("(1,2)", "(12)", False),
    ("(1,2)", "12", False),
    ("\\{1,2\\}", "12", False),
    ("[1,2]", "12", False),
    ("10,000 dollars", "10000", True),
    # --- units -------------------------------------------------------------------
    ("5 dollars", "5", True),
    ("10 cm", "10", True),
    ("5\\text{ cm}^2", "5", True),
    ("5 \\text{ cm}^2", "5", True),
    ("5\\text{ cm}^{2}", "5", True),
    ("\\$5", "5", True),
    ("$5", "5", True),
    ("\\$5.50", "5.5", True),
    ("12 apples", "12", True),
    ("3\\text{ inches}", "3", True),
    ("15\\mbox{ m}", "15", True),
    ("4 \\mathrm{~cm}", "4", True),
    ("18 \\mathrm{~min}", "18", True),
    ("7 km/h", "7", True),
    ("100 square feet", "100", True),
    ("5cm", "5", True),
    ("3 hours", "3", True),
    ("2.5 kg", "2.5", True),
    ("\\frac{41}{12} \\text{ km}", "\\frac{41}{12}", True),
    ("145 \\pi / 72 \\mathrm{~m} / \\mathrm{s}", "\\frac{145\\pi}{72}", True),
    ("5 cm", "6", False),
    ("5 dollars", "6 dollars", False),
    ("2 \\pi", "2", False),
    ("2 pi", "2", False),
    ("2 n", "2", False),
    ("2x", "2", False),
    ("10\\text{ cm}", "11\\text{ cm}", False),
    # --- degrees -----------------------------------------------------------------
    ("30^\\circ", "30", True),
    ("30^{\\circ}", "30", True),
    ("30°", "30", True),
    ("30 degrees", "30", True),
    ("30\\degree", "30", True),
    ("30^\\circ", "30^{\\circ}", True),
    ("90^\\circ", "90", True),
    ("30^\\circ", "31", False),
    ("30°", "60°", False),
    ("(45^{\\circ}, 60^{\\circ})", "(45, 60)", True),
    ("45^\\circ,135^\\circ", "45^\\circ, 135^\\circ", True),
    # --- percentages (a % sign is ignored, or the value is divided by 100) ---------
    ("50\\%", "50", True),
    ("50", "50\\%", True),
    ("50%", "50", True),
    ("50\\%", "0.5", True),
    ("0.5", "50\\%", True),
    ("50 percent", "50", True),
    ("12.5\\%", "\\frac{1}{8}", True),
    ("8\\%", "0.08", True),
    ("8 \\%", "8", True),
    ("50\\%", "0.05", False),
    ("50\\%", "5", False),
    ("50\\%", "51\\%", False),
    ("4.2\\%", "4.2", True),
    ("\\frac{25}{3}\\%", "\\frac{1}{12}", True),
    # --- \dfrac, \tfrac, \left/\right -------------------------------------------
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("\\tfrac{3}{4}", "0.75", True),
    ("\\dfrac12", "0.5", True),
    ("\\frac12", "\\frac{1}{2}", True),
    ("\\dfrac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{2}", True),
    ("\\left(1,2\\right)", "(1,2)", True),
    ("\\left[0,1\\right)", "[0,1)", True),
    ("\\left[0,1\\right)", "[0,1]", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{3})", False),
    ("\\left\\{1,2\\right\\}", "\\{2,1\\}", True),
    ("\\bigl(1, 2\\bigr)", "(1,2)", True),
    # --- equations: "x = value" equals its right-hand side -------------------------
    ("x=3", "3", True),
    ("x = 3", "3", True),
    ("3", "x=3", True),
    ("y=5", "5", True),
    ("x=3", "4", False),
    ("x=-2", "-2", True),
    ("k=2n-1", "2n-1", True),
    ("k = 2 n - 1", "2n-1", True),
    ("\\theta = \\frac{\\pi}{4}", "\\frac{\\pi}{4}", True),
    ("x_1 = 7", "7", True),
    ("n=\\frac{1}{2}", "0.5", True),
    ("f(x)=x^2", "x^2", True),
    ("y=2x+1", "y=1+2x", True),
    ("y=2x+1", "y=2x+2", False),
    ("y=2x+1", "2x+1", True),
    ("x^2+4x+20=0", "0", False),
    ("9 x^{2}-12 x+29=0", "0", False),
    ("x \\in [2,3)", "[2,3)", True),
    ("x \\in [2,3)", "[2,3]", False),
    ("x=3", "y=3", True),
    ("x=2, y=3", "x=2, y=3", True),
    ("x=2, y=3", "x=2, y=4", False),
    ("\\sin A = \\frac{\\sqrt{7}}{4}", "\\frac{\\sqrt{7}}{4}", True),
    ("x = 5", "x = 6", False),
    ("2x=4", "x=2", True),  # proportional equations
    ("x=2", "2x=4", True),
    ("y=2x+1", "2x-y+1=0", True),
    ("4x^2+8x+19=0", "8x^2+16x+38=0", True),
    ("4x^2+8x+19=0", "5x^2+8x+19=0", False),  # no real roots: math_verify alone says equal
    ("9 x^{2}-12 x+29=0", "x^2-2x+10=0", False),
    ("x^2=4", "x=2", False),
    ("\\log_3(32)=5", "\\log_2(32)=5", False),  # a false statement vs a true one
    ("\\ln(e^{6})=5", "\\ln(e^{5})=5", False),
    ("1,1,2,3", "1,1,2,3", True),
    ("1,2,1,3", "1,1,2,3", True),  # a bare list is a multiset
    ("2,1,2,3", "1,1,2,3", False),
    # --- booleans ----------------------------------------------------------------
    ("True", "True", True),
    ("true", "True", True),
    ("TRUE", "True", True),
    ("yes", "True", True),
    ("Yes", "True", True),
    ("\\text{True}", "True", True),
    ("\\text{yes}", "True", True),
    ("True.", "True", True),
    ("False", "False", True),
    ("no", "False", True),
    ("No", "False", True),
    ("\\text{False}", "False", True),
    ("True", "False", False),
    ("yes", "False", False),
    ("no", "True", False),
    ("False", "True", False),
    ("1", "True", False),
    ("0", "False", False),
    ("True", "1", False),
    # --- multiple-choice options ---------------------------------------------------
    ("(a)", "(a)", True),
    ("(A)", "(a)", True),
    ("A", "(a)", True),
    ("a", "(a)", True),
    ("\\text{(C)}", "(c)", True),
    ("\\text{(C)}", "C", True),
    ("(C)", "\\text{(C)}", True),
    ("C", "\\text{(C)}", True),
    ("(c)", "(a)", False),
    ("B", "(c)", False),
    ("(d)", "(b)", False),
    ("5", "(a)", False),
    # --- lists (TheoremQA "list of integer/float") --------------------------------
    ("[1, 2, 3]", "[1, 2, 3]", True),
    ("[1,2,3]", "[1, 2, 3]", True),
    ("[ 1 , 2 , 3 ]", "[1, 2, 3]", True),
    ("[1, 2, 3]", "[3, 2, 1]", False),
    ("[1, 2]", "[1, 2, 3]", False),
    ("[1, 2, 3]", "[1, 2, 4]", False),
    ("[0.3333, 0.25]", "[0.333, 0.25]", True),
    ("[0.5, 0.66667]", "[0.5, 0.6667]", True),
    ("[0.5, 0.7]", "[0.5, 0.6667]", False),
    ("[-1, 6]", "[-1, 6]", True),
    ("[-1, 6]", "[1, 6]", False),
    ("[8, 0, 2, -2]", "[8, 0, 2, -2]", True),
    ("[8, 0, 2, -2]", "[8, 0, -2, 2]", False),
    ("[51.2, 78.15, 125.0]", "[51.2, 78.15, 125]", True),
    ("[1, 2, 3]", "(1, 2, 3)", True),
    # --- intervals (open vs closed differ) -----------------------------------------
    ("(1,2)", "[1,2]", False),
    ("[1,2]", "(1,2)", False),
    ("[1,2)", "[1,2)", True),
    ("(1,2]", "[1,2)", False),
    ("(1,2]", "(1,2]", True),
    ("(-\\infty, 3]", "(-\\infty,3]", True),
    ("(-\\infty, 3)", "(-\\infty,3]", False),
    ("(-\\infty, \\infty)", "(-\\infty,\\infty)", True),
    ("[2, 5] \\cup [6, 7]", "[2,5]\\cup[6,7]", True),
    ("[2, 5] \\cup [6, 7]", "[2,5]\\cup(6,7]", False),
    ("(-\\infty, 0) \\cup\\{1\\}", "(-\\infty,0)\\cup\\{1\\}", True),
    ("(0,125) \\cup(125, \\infty)", "(0,125)\\cup(125,\\infty)", True),
    ("[2, 3)", "[2,3)", True),
    ("\\{x | -2 \\leq x < 1\\}", "[-2,1)", True),
    ("[-2,1)", "\\{x | -2 \\leq x < 1\\}", True),
    ("[-2,1]", "\\{x | -2 \\leq x < 1\\}", False),
    ("[\\frac{1}{2}, 8]", "[0.5, 8]", True),
    ("(-\\sqrt{11},-2)\\cup (\\sqrt{11},9)", "(-\\sqrt{11},-2)\\cup(\\sqrt{11},9)", True),
    ("\\left[ \\frac{\\sqrt{6}-1}{2}, -1 \\right)", "\\left[ \\frac{\\sqrt{5}-1}{2}, -1 \\right)", False),
    # --- sets (order does not matter) ----------------------------------------------
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\{1,2\\}", "\\{1,2\\}", True),
    ("\\{1,2\\}", "\\{1,3\\}", False),
    ("\\{1,2,3\\}", "\\{1,2\\}", False),
    ("\\{-2\\}", "\\{-2\\}", True),
    ("\\{-2\\}", "\\{2\\}", False),
    ("\\{\\frac{1}{2}, 3\\}", "\\{3, 0.5\\}", True),
    ("2, 3", "3, 2", True),
    ("2, 3", "2, 4", False),
    ("\\emptyset", "\\varnothing", True),
    ("\\emptyset", "\\{0\\}", False),
    # --- tuples (order matters) -----------------------------------------------------
    ("(1,2)", "(1,2)", True),
    ("(1, 2)", "(1,2)", True),
    ("(1,2)", "(2,1)", False),
    ("(2,1)", "(1,2)", False),
    ("(1,2,3)", "(1,2,3)", True),
    ("(1,2,3)", "(3,2,1)", False),
    ("(1,2,3)", "(1,2)", False),
    ("(3, \\frac{\\pi}{2})", "(3, \\pi/2)", True),
    ("(0, 3)", "(0,3)", True),
    ("(6,5)", "(5,6)", False),
    ("(-7,-1)", "(-7,-1)", True),
    ("(2,251,252)", "(2, 251, 252)", True),
    ("(4, \\log_{10} 2)", "(4, \\log _{10} 2)", True),
    ("(\\frac{1}{4}, \\frac{1}{27})", "(0.25, \\frac{1}{27})", True),
    # --- matrices --------------------------------------------------------------------
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\3\\end{pmatrix}", False),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", False),
    ("\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\begin{pmatrix} \\frac{1}{2} \\\\ 0 \\end{pmatrix}", "\\begin{pmatrix} 0.5 \\\\ 0 \\end{pmatrix}", True),
    ("\\begin{pmatrix} -1 \\\\ 4 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 4 \\end{pmatrix}", False),
    # --- scientific notation ----------------------------------------------------------
    ("1.2e3", "1200", True),
    ("1.2E3", "1200", True),
    ("1200", "1.2e3", True),
    ("1.2\\times10^{3}", "1200", True),
    ("1.2 \\times 10^3", "1200", True),
    ("1.2\\cdot10^{3}", "1200", True),
    ("4e-05", "0.00004", True),
    ("4e-05", "4 \\times 10^{-5}", True),
    ("3\\times10^{8}", "3e8", True),
    ("6.02\\times10^{23}", "6.02e23", True),
    ("1.6 \\times 10^{-19}", "1.6e-19", True),
    ("1.76 \\times 10^{-10}", "1.76e-10", True),
    ("10^{6}", "1000000", True),
    ("1.2e3", "1300", False),
    ("1.2e3", "1.2e4", False),
    ("6.02\\times10^{23}", "6.02\\times10^{22}", False),
    ("4e-05", "4e-06", False),
    # --- roots and pi --------------------------------------------------------------------
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
    ("\\sqrt2", "\\sqrt{2}", True),
    ("sqrt(8)", "2\\sqrt{2}", True),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    ("2\\sqrt{3}", "3\\sqrt{2}", False),
    ("\\frac{\\pi}{2}", "\\pi/2", True),
    ("pi/2", "\\frac{\\pi}{2}", True),
    ("2\\pi", "\\pi+\\pi", True),
    ("\\pi", "3.14159", True),
    ("6.2832", "2\\pi", False),  # an exact reference needs ~6 digits (issue 14.8)
    ("6.283185", "2\\pi", True),
    ("2\\pi", "6.28", True),  # a rounded reference keeps its tolerance
    ("\\frac{\\sqrt{3}}{2}", "0.866", True),
    ("0.87", "\\frac{\\sqrt{3}}{2}", False),
    ("\\pi", "3", False),
    ("\\frac{\\pi}{3}", "\\frac{\\pi}{6}", False),
    ("4-2 \\sqrt{3}", "4-2\\sqrt{3}", True),
    ("4-2 \\sqrt{3}", "4+2\\sqrt{3}", False),
    ("\\sqrt[3]{8}", "2", True),
    ("2^{1/2}", "\\sqrt{2}", True),
    ("\\frac{1+\\sqrt{5}}{2}", "\\frac{\\sqrt{5}+1}{2}", True),
    ("\\frac{1+\\sqrt{5}}{2}", "\\frac{\\sqrt{5}-1}{2}", False),
    # --- decimals vs fractions -------------------------------------------------------------
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac{1}{2}", "0.5", True),
    ("1/2", "0.5", True),
    ("1/2", "\\frac{1}{2}", True),
    (".5", "0.5", True),
    ("0.50", "0.5", True),
    ("2/4", "1/2", True),
    ("-0.5", "-\\frac{1}{2}", True),
    ("\\frac{-1}{2}", "-0.5", True),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True),
    ("0.5", "0.51", False),
    ("0.51", "0.5", False),
    ("0.333", "\\frac{1}{3}", False),
    ("0.3333333", "\\frac{1}{3}", True),
    ("\\frac{1}{3}", "0.333", True),
    ("0.3333", "1/3", False),
    ("0.33", "\\frac{1}{3}", False),
    ("0.3", "\\frac{1}{3}", False),
    ("3", "3.0", True),
    ("3.0", "3", True),
    ("3", "3.0001", True),
    ("3", "3.001", False),
    ("1000000", "1000001", False),
    ("1.094", "1.0936", True),
    ("1.0936", "1.094", True),
    ("1.09", "1.094", True),  # either side may be a rounding of the other (>= 3 digits)
    ("1.1", "1.094", False),  # ... but not with only 2 significant digits
    ("5.333", "\\frac{16}{3}", False),
    ("5.33", "\\frac{16}{3}", False),
    ("5.333333", "\\frac{16}{3}", True),
    ("\\frac{16}{3}", "5.33", True),
    ("5.3", "\\frac{16}{3}", False),
    ("-0.0", "0", True),
    ("0", "0.0001", False),
    ("2\\frac{1}{2}", "2.5", True),
    ("2\\frac{1}{2}", "\\frac{5}{2}", True),
    ("1\\frac{12}{13}", "\\frac{25}{13}", True),
    ("\\frac{12}{5,\\!525}", "\\frac{12}{5525}", True),
    ("\\frac{1}{2004!}", "\\frac{1}{2004!}", True),
    ("\\frac{2}{2004!}", "\\frac{1}{2004!}", False),
    ("0.1", "0.01", False),
    ("-1.047", "-1.0472", True),
    ("1898.27", "1898.2699", True),
    ("12 3 0", "12 3 0", True),
    ("12, 3, 0", "12 3 0", True),
    ("22 3 0", "12 3 0", False),
    ("0, 3, 12", "12 3 0", False),
    # --- plain expressions --------------------------------------------------------------------
    ("2x+1", "1+2x", True),
    ("1+2x", "2x+1", True),
    ("2*x+1", "2x+1", True),
    ("x^2-1", "(x-1)(x+1)", True),
    ("(x-1)(x+1)", "x^2-1", True),
    ("2(x+1)", "2x+2", True),
    ("\\frac{x}{2}", "0.5x", True),
    ("x^2", "x^3", False),
    ("x^2-1", "(x-1)(x+2)", False),
    ("a+b", "b+a", True),
    ("ab", "ba", True),
    ("a-b", "b-a", False),
    ("\\sin^2 x+\\cos^2 x", "1", True),
    ("10-4 n", "-4n+10", True),
    ("10-4 n", "10+4n", False),
    ("n^{2}+1", "n^2+1", True),
    ("n^{2}+1", "n^2-1", False),
    ("\\frac{1}{2 n+2}", "\\frac{1}{2(n+1)}", True),
    ("\\frac{1}{2 n+2}", "\\frac{1}{2n+1}", False),
    ("2^{k}", "2^k", True),
    ("2^{k}", "2^{k+1}", False),
    ("\\frac{n(n+1)}{2}", "\\frac{n^2+n}{2}", True),
    ("\\binom{2n}{n}", "\\binom{2n}{n}", True),
    ("x^{2}+2x+1", "(x+1)^2", True),
    ("e^{x}", "\\exp(x)", True),
    ("\\log_2 8", "3", True),
    ("\\ln e^{2}", "2", True),
    ("\\ln 2", "\\ln 3", False),
    ("2RC+R+C", "R+C+2RC", True),
    ("2RC+R+C", "R+C+RC", False),
    # --- complex numbers -----------------------------------------------------------------------
    ("-1 - \\sqrt{3}i", "-1-i\\sqrt{3}", True),
    ("3+4i", "4i+3", True),
    ("1+i", "1-i", False),
    ("-i", "-i", True),
    ("\\frac{4-6 i}{13}", "\\frac{4}{13}-\\frac{6}{13}i", True),
    ("9+11i", "9-11i", False),
    # --- words / text answers ---------------------------------------------------------------------
    ("\\text{Monday}", "Monday", True),
    ("monday", "\\text{Monday}", True),
    ("\\text{odd}", "\\text{even}", False),
    ("\\text{east}", "east", True),
    ("No solution", "no solution", True),
    ("converges", "diverges", False),
    # --- infinity ------------------------------------------------------------------------------------
    ("\\infty", "\\infty", True),
    ("inf", "\\infty", True),
    ("infinity", "\\infty", True),
    ("-\\infty", "\\infty", False),
    # --- things that only look alike -------------------------------------------------------------------
    ("3", "[3]", True),  # a one-element list equals its element (documented)
    ("[3]", "[5]", False),
    ("d=3\\sqrt{5}, M=(1,2)", "3", False),
    ("\\min at 2 n \\pi, \\max at (2 n+1) \\pi", "2", False),
    ("No. Consider $x+y+z=2$ and $x+y+z=1$.", "1", False),
    ("1", "No. Consider $x+y+z=2$ and $x+y+z=1$.", False),
    ("x+y=2", "2", True),  # "x+y = 2" read as its value (math_verify) when the reference is a value
    ("5", "five", False),
]

MULTI_CASES: list[tuple[str, list[str] | str, bool]] = [
    ("2, 3", ["3", "2"], True),
    ("3, 2", ["2", "3"], True),
    ("2, 3", ["2"], False),
    ("2", ["2", "3"], False),
    ("2, 3, 4", ["2", "3"], False),
    ("1, 2, 3", ["1,2,3"], True),
    ("3,1,2", ["1,2,3"], True),
    ("1, 2, 4", ["1,2,3"], False),
    ("(1,2), (3,4)", ["(3,4)", "(1,2)"], True),
    ("(3,4), (1,2)", ["$(1,2),(3,4)$"], True),
    ("(1,2), (3,4)", ["(2,1)", "(3,4)"], False),
    ("x=1 and x=2", ["1", "2"], True),
    ("1 \\text{ and } 2", ["2", "1"], True),
    ("-2, -2", ["-2", "-2"], True),
    ("2, 2", ["2", "3"], False),
    ("69, 84", ["$69$", "$84$"], True),
    ("84, 69", ["$69$", "$84$"], True),
    ("84, 68", ["$69$", "$84$"], False),
    ("\\frac{1}{2}, 3", ["3", "0.5"], True),
    ("\\frac{1}{3}, 1, 9", ["$\\frac{1}{3}, 1, 9$"], True),
    ("9, 1, \\frac{1}{3}", ["$\\frac{1}{3}, 1, 9$"], True),
    ("f(x)=x, f(x)=2-x", ["$f(x)=x$,$f(x)=2-x$"], True),
    ("f(x)=2-x, f(x)=x", ["$f(x)=x$,$f(x)=2-x$"], True),
    ("f(x)=x, f(x)=3-x", ["$f(x)=x$,$f(x)=2-x$"], False),
    ("2500, 7500", ["2500,7500"], True),
    ("7500, 2500", ["2500,7500"], True),
    ("1+\\sqrt{2}, 1-\\sqrt{2}", ["$1-\\sqrt{2}$", "$1+\\sqrt{2}$"], True),
    ("1+\\sqrt{2}, 1-\\sqrt{3}", ["$1-\\sqrt{2}$", "$1+\\sqrt{2}$"], False),
    ("(2,4), (1,1)", "['$(1,1)$', '$(2,4)$']", True),  # a list written as a string
    ("$64$, $\\frac{1}{4}$", ["$64,\\frac{1}{4}$"], True),
    ("90^\\circ, 60^\\circ", ["$90^{\\circ}$,$60^{\\circ}$"], True),
    ("", ["1"], False),
]

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

STRIP_LATENT_CASES: list[tuple[str, str]] = [
    ("a<boLatent><latent_1><latent_2><eoLatent>b", "a b"),
    ("a <boLatent><latent_1>", "a  "),
    ("a <latent_7> b", "a   b"),
    ("no latent", "no latent"),
    ("<boLatent>x<eoLatent>1<boLatent>y<eoLatent>2", " 1 2"),
    ("<boLatent><latent_1> <latent_2> tail", "  tail"),
]

SPLIT_CASES: list[tuple[str, list[str]]] = [
    ("2, 3", ["2", "3"]),
    ("$(1,2),(3,4)$", ["(1,2)", "(3,4)"]),
    ("\\{1,2\\}, 3", ["\\{1,2\\}", "3"]),
    ("[2, 3), (4, 5]", ["[2, 3)", "(4, 5]"]),
    ("1 and 2", ["1", "2"]),
    ("1{,}000", ["1000"]),
    ("f(x)=x, f(x)=-x", ["f(x)=x", "f(x)=-x"]),
]


def _id(case) -> str:
    return " | ".join(str(x) for x in case)[:80]


@pytest.mark.parametrize("prediction,reference,expected", EQUIV_CASES, ids=[_id(c) for c in EQUIV_CASES])
def test_is_equiv(prediction, reference, expected):
    assert is_equiv(prediction, reference, timeout=10.0) is expected


@pytest.mark.parametrize("prediction,references,expected", MULTI_CASES, ids=[_id(c) for c in MULTI_CASES])
def test_is_equiv_multi(prediction, references, expected):
    assert is_equiv_multi(prediction, references, timeout=10.0) is expected


@pytest.mark.parametrize("text,expected", EXTRACT_CASES, ids=[_id(c) for c in EXTRACT_CASES])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text,expected", STRIP_LATENT_CASES, ids=[_id(c) for c in STRIP_LATENT_CASES])
def test_strip_latent(text, expected):
    assert strip_latent(text) == expected


@pytest.mark.parametrize("text,expected", SPLIT_CASES, ids=[_id(c) for c in SPLIT_CASES])
def test_split_answers(text, expected):
    assert split_answers(text) == expected


def test_case_counts():
    """The table is meant to stay large; guard against accidental truncation."""
    assert len(EQUIV_CASES) + len(MULTI_CASES) + len(EXTRACT_CASES) >= 400
    assert sum(1 for *_, e in EQUIV_CASES if not e) >= 100


# --------------------------------------------------------------------------------------
# grade()
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Hard time limit, crashes, pathological input
# --------------------------------------------------------------------------------------

LIMIT = 2.5
PATHOLOGICAL = [
    ("10^{10^{10}}", "1"),
    ("\\frac{1}{" * 50 + "2" + "}" * 50, "1"),
    ("1000000!", "1"),
    ("2^{2^{2^{2^{2^{2}}}}}", "3"),
    ("(" * 500 + "1" + ")" * 500, "1"),
]


def _garbage(n: int = 100_000) -> str:
    import random
    import string

    rng = random.Random(0)
    return "".join(rng.choice(string.printable) for _ in range(n))


def _check_normal_comparison_still_works():
    t0 = time.perf_counter()
    assert is_equiv("x^2-1", "(x-1)(x+1)", timeout=30.0)  # needs sympy: exercises the worker
    assert not is_equiv("x^2-1", "(x-1)(x+2)", timeout=30.0)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("prediction,reference", PATHOLOGICAL, ids=[p[:30] for p, _ in PATHOLOGICAL])
def test_pathological_input_returns_within_limit(prediction, reference, caplog):
    _WORKER.ensure_started()
    t0 = time.perf_counter()
    res = is_equiv(prediction, reference, timeout=LIMIT)
    elapsed = time.perf_counter() - t0
    assert res is False
    assert elapsed < LIMIT + 3, elapsed
    _check_normal_comparison_still_works()


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


@pytest.fixture(scope="module")
def hooked():
    """A real worker of its own that also runs the jobs of tests/grading_test_jobs.py
    ("sleep" never finishes in time, "crash" kills the process mid-comparison)."""
    worker = _SympyWorker(jobs_module="grading_test_jobs")
    yield worker
    worker.shutdown()


def _check_worker_still_works(worker: _SympyWorker) -> None:
    """The worker (or its replacement) still compares with sympy."""
    t0 = time.perf_counter()
    assert worker.call("single", ("x^2-1", "(x-1)(x+1)", False, False), 30.0, ("c", "d")) == (True, False, False)
    assert worker.call("single", ("x^2-1", "(x-1)(x+2)", False, False), 30.0, ("c", "d")) == (False, False, False)
    assert time.perf_counter() - t0 < 30


def test_timeout_kills_worker_and_restarts(hooked, caplog):
    hooked.ensure_started()
    old_pid = hooked._proc.pid
    t0 = time.perf_counter()
    with caplog.at_level("WARNING", logger="lm_latent.grading"):
        reply = hooked.call("sleep", 60, 1.0, ("sleepy-pred", "sleepy-ref"))
    assert reply == (False, True, False)
    assert time.perf_counter() - t0 < 1.0 + 3
    assert any("sleepy-pred" in r.getMessage() for r in caplog.records)
    assert hooked._proc is None  # killed; its replacement is already starting
    assert hooked._pending is not None
    _check_worker_still_works(hooked)
    assert hooked._proc.pid != old_pid


def test_worker_crash_counts_as_unequal(hooked, caplog):
    with caplog.at_level("WARNING", logger="lm_latent.grading"):
        reply = hooked.call("crash", None, 10.0, ("crash-pred", "crash-ref"))
    assert reply == (False, False, True)  # a crash is an error, not a time-out
    assert any("crashed" in r.getMessage() for r in caplog.records)
    _check_worker_still_works(hooked)


def test_unknown_job_is_an_error_and_the_test_jobs_stay_in_tests(hooked):
    """A kind the worker does not know is reported as an error (the worker lives on); the
    module-wide worker knows only "single" and "multi", so the test jobs do not exist there."""
    assert hooked.call("no-such-job", None, 10.0, ("a", "b")) == (False, False, True)
    _check_worker_still_works(hooked)
    pid = _WORKER._proc.pid if _WORKER._alive() else None
    assert _WORKER.call("sleep", 60, 10.0, ("a", "b")) == (False, False, True)
    assert _WORKER._proc is not None and (pid is None or _WORKER._proc.pid == pid)  # answered, not killed


def test_worker_killed_between_calls_is_replaced():
    _WORKER.ensure_started()
    os.kill(_WORKER._proc.pid, 9)
    _WORKER._proc.join(5)
    _check_normal_comparison_still_works()


def test_thread_safety():
    pairs = [("x^2-1", "(x-1)(x+1)", True), ("2x+1", "1+2x", True), ("x^2", "x^3", False), ("(1,2)", "(2,1)", False)]
    results: list[tuple[bool, bool]] = []
    lock = threading.Lock()

    def work():
        for p, r, expected in pairs * 3:
            got = is_equiv(p, r, timeout=30.0)
            with lock:
                results.append((got, expected))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 4 * len(pairs) * 3
    assert all(got == expected for got, expected in results)


def test_warm_calls_are_fast():
    _WORKER.ensure_started()
    is_equiv("x^2+3", "3+x^2", timeout=30.0)
    t0 = time.perf_counter()
    for i in range(20):
        assert is_equiv(f"x^2+{i}", f"{i}+x^2", timeout=30.0)
    assert (time.perf_counter() - t0) / 20 < 0.5


def test_no_heavy_imports_in_parent():
    """Grading that needs sympy (so the worker starts and answers) leaves the parent without it."""
    code = (
        "import sys, lm_latent.grading as g; "
        "g.extract_answer('\\\\boxed{1}'); assert g.is_equiv('1,000', '1000'); "
        "assert g.grade('so \\\\boxed{x^2-1}', '(x-1)(x+1)', timeout=60).correct; "
        "assert g.is_equiv_multi('x+1, 3', ['3', '1+x'], timeout=60); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'sympy', 'math_verify', 'mpmath')"
        " or m == 'lm_latent.grading.worker_child']; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


_PACKAGE = Path(__file__).resolve().parents[1] / "lm_latent" / "grading"
_SYMPY_SIDE = ("sympy", "math_verify", "mpmath", "latex2sympy2_extended")


def _imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """(module imported, node) for every import in ``tree``; relative ones as ``.name``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            out += [(base if node.module else base + a.name, node) for a in node.names]
    return out


def test_only_the_worker_side_imports_sympy():
    """By structure: sympy/math_verify are imported only by worker_child.py, and worker_child
    only inside worker._child_process (which runs in the spawned process)."""
    modules = sorted(_PACKAGE.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "api.py", "worker.py", "worker_child.py"}
    child_imports = []
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        entry = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_child_process"]
        allowed = {id(n) for f in entry for n in ast.walk(f)}
        for name, node in _imports(tree):
            if path.name != "worker_child.py":
                assert name.split(".")[0] not in _SYMPY_SIDE, f"{path.name} imports {name}"
            if name.endswith("worker_child"):
                child_imports.append(path.name)
                assert path.name == "worker.py" and id(node) in allowed, f"{path.name} imports worker_child"
    assert child_imports == ["worker.py"]
    child = ast.parse((_PACKAGE / "worker_child.py").read_text(encoding="utf-8"))
    top = {a.name.split(".")[0] for n in child.body if isinstance(n, ast.Import) for a in n.names}
    assert {"sympy", "math_verify"} <= top  # at the top of the worker side, not hidden in functions


def test_unguarded_main_script_can_grade(tmp_path):
    """Spawn must not re-run the caller's script (no ``if __name__ == '__main__'`` here)."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from lm_latent.grading import is_equiv\n"
        "print('RESULT', is_equiv('x^2-1', '(x-1)(x+1)'))\n"
    )
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("RESULT") == 1 and "RESULT True" in proc.stdout


# --------------------------------------------------------------------------------------
# Issue 14: extraction a reader would do, no input raises, one budget per answer
# --------------------------------------------------------------------------------------

# (generation, expected extract_answer)
READER_EXTRACT_CASES: list[tuple[str, str | None]] = [
    # 14.1: an unboxed final answer is the last math span of the final sentence, not its last digit
    ("We count the cases. Hence the probability is $\\frac{10}{9}$.", "\\frac{10}{9}"),
    ("Solving the quadratic, so $x = \\frac{1+\\sqrt{5}}{2}$", "x = \\frac{1+\\sqrt{5}}{2}"),
    ("The only solution is $(7, 6)$.", "(7, 6)"),
    ("The range of $f$ is $[0,1)$.", "[0,1)"),
    ("The matrix is $\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$.", "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}"),
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
    ("So the value is $\\log _{6}\\left(\\frac{1}{36}\\right)=-2$.", "$\\log _{6}\\left(\\frac{1}{36}\\right)=-2$", True),
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
    ("The answer is: the triangle has side \\sqrt3 and height 2.", "the triangle has side \\sqrt{3} and height 2", True),
    ("The answer is х = 5.", "5", True),
    ("The answer is ½.", "0.5", True),
    ("The answer is 9\u00a0cm².", "9", True),
    ("The answer is 1\u200b2\u00a0000.", "12000", False),  # a space inside a number is not a separator
    ("The answer is 1\u200b2.", "12", True),
    ("\\boxed{x²+1}", "x^2+1", True),
    ("\\boxed{−3}", "-3", True),
]


@pytest.mark.parametrize("text,expected", READER_EXTRACT_CASES, ids=[_id(c) for c in READER_EXTRACT_CASES])
def test_reader_extraction(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("generation,reference,correct", READER_GRADE_CASES, ids=[_id(c) for c in READER_GRADE_CASES])
def test_reader_grading(generation, reference, correct):
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


def test_budget_is_shared_across_worker_calls(hooked):
    hooked.ensure_started()
    budget = _Budget(1.0)
    t0 = time.perf_counter()
    first = hooked.call("sleep", 60, budget, ("a", "b"))
    second = hooked.call("sleep", 60, budget, ("a", "b"))
    assert first.timed_out and second.timed_out
    assert time.perf_counter() - t0 < 1.0 + 1.5
    _check_worker_still_works(hooked)


def test_restart_after_time_out_is_charged_to_the_budget(hooked):
    """Two time-outs in a row: the spare is used up, and an answer that needs the worker
    while its replacement is still starting waits at most its own budget."""
    hooked.ensure_started()
    # short time-outs, so the replacements cannot finish starting in between (on a quiet machine a
    # worker starts within 0.5 s, which let the third 0.5 s time-out wait one out)
    assert hooked.call("sleep", 60, 0.05, ("a", "b")).timed_out
    assert hooked.call("sleep", 60, 0.05, ("a", "b")).timed_out
    assert hooked.call("sleep", 60, 0.05, ("a", "b")).timed_out
    t0 = time.perf_counter()
    reply = hooked.call("single", ("x^2-1", "(x-1)(x+1)", False, False), 0.01, ("c", "d"))
    assert time.perf_counter() - t0 < 0.01 + 1.0
    assert reply.timed_out  # no worker imports sympy in 10 ms: the restart was charged, not waited out
    assert hooked._pending is not None  # ... and it goes on starting for the next answer
    _check_worker_still_works(hooked)


def test_spare_worker_makes_a_restart_free(hooked):
    """After a time-out a warm spare takes over: the next answer does not pay for sympy's import."""
    hooked.ensure_started()
    assert hooked.call("sleep", 60, 0.5, ("a", "b")).timed_out
    _check_worker_still_works(hooked)  # waits for the replacement
    deadline = time.monotonic() + 60
    while hooked._spare is not None and not hooked._spare[1].poll(0) and time.monotonic() < deadline:
        time.sleep(0.1)  # the new spare finishes importing sympy
    assert hooked.call("sleep", 60, 0.5, ("a", "b")).timed_out
    t0 = time.perf_counter()
    reply = hooked.call("single", ("x^2-1", "(x-1)(x+1)", False, False), 5.0, ("c", "d"))
    assert reply == (True, False, False)
    assert time.perf_counter() - t0 < 1.5  # no sympy import on the way (that takes seconds)


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
        ("gsm8k", "7"): "So the answer is 1e400.",  # OverflowError in the parent before
        ("math", "7"): "\\boxed{1\\frac{" + "1" * 5000 + "}{" + "2" * 5000 + "}}",  # int() digit limit before
        ("gsm8k", "30"): "Thus \\boxed{30}.",
        ("math", "30"): "So it is $30$.",
    }
    out = simple_evaluate(model=_ScriptedLM(outputs), tasks=["gsm8k", "math"], limit=3,
                          task_manager=_task_manager({"data_dir": str(data_dir)}), log_samples=True)
    for task in ("gsm8k", "math"):
        res = out["results"][task]
        assert res["acc,none"] == pytest.approx(1 / 3)  # the two adversarial answers wrong, "30" right
        assert res["grading_error,none"] == 0.0 and res["grading_timeout,none"] == 0.0
        assert len(out["samples"][task]) == 3
