"""Counting generated ids exactly (EOS, stop strings, padding)."""

from lm_latent.models.accounting import CountedText, generated_length


def _decode(ids):
    return "".join(chr(ord("a") + i) if i < 26 else "" for i in ids)


def test_eos_is_counted_and_padding_is_not():
    assert generated_length([1, 2, 99, 50, 50], eos_ids=[99], pad_id=50, stop=[], decode=_decode) == 3


def test_trailing_padding_without_eos():
    assert generated_length([1, 2, 3, 50, 50], eos_ids=[99], pad_id=50, stop=[], decode=_decode) == 3


def test_stop_string_ends_at_the_completing_id():
    ids = [0, 1, 23, 24, 2, 3]  # "ab" "xy" "cd": stop "xy" completes at index 3
    assert generated_length(ids, eos_ids=[99], pad_id=None, stop=["xy"], decode=_decode) == 4


def test_no_end_means_everything_counts():
    assert generated_length([0, 1, 2], eos_ids=[99], pad_id=None, stop=["zz"], decode=_decode) == 3


def test_counted_text_survives_pickle_and_str_ops():
    import pickle

    text = CountedText("abc <latent_1>", gen_tokens=7, latent_tokens=1)
    back = pickle.loads(pickle.dumps(text))
    assert back == "abc <latent_1>" and back.gen_tokens == 7 and back.latent_tokens == 1


def test_generation_end_says_whether_the_answer_ended():
    from lm_latent.models.accounting import generation_end

    assert generation_end([1, 2, 99, 50], eos_ids=[99], pad_id=50, stop=[], decode=_decode) == (3, True)
    assert generation_end([0, 1, 23, 24, 2], eos_ids=[99], pad_id=None, stop=["xy"], decode=_decode) == (4, True)
    assert generation_end([0, 1, 2], eos_ids=[99], pad_id=None, stop=["zz"], decode=_decode) == (3, False)


def test_truncated_survives_pickle_and_reaches_the_metrics():
    import math
    import pickle

    from lm_latent.tasks.scoring import process_results

    text = CountedText("So 3 + 4", gen_tokens=8, latent_tokens=0, truncated=True)
    back = pickle.loads(pickle.dumps(text))
    assert back.truncated is True and CountedText("x", 1).truncated is False
    doc = {"problem": "3 + 4?", "answer": "7"}
    assert process_results(doc, [back])["truncated"] == 1.0
    assert process_results(doc, [CountedText("7", 1)])["truncated"] == 0.0
    assert math.isnan(process_results(doc, ["7"])["truncated"])  # a model that does not count


def test_a_stop_string_before_the_eos_ends_the_answer_there():
    """A batched HF row runs on past its stop string until the batch stops; those ids are not the answer's
    (vLLM stops the row at the stop string: both backends must count the same)."""
    from lm_latent.models.accounting import generation_end

    ids = [0, 1, 23, 24, 2, 3, 4, 99, 50]  # "ab" "xy" "cde" EOS pad: the stop "xy" comes first
    assert generation_end(ids, eos_ids=[99], pad_id=50, stop=["xy"], decode=_decode) == (4, True)
    assert generation_end(ids[:4], eos_ids=[99], pad_id=50, stop=["xy"], decode=_decode) == (4, True)  # vLLM's ids
    # an EOS before the stop string still ends it (the stop string after it was never generated text)
    assert generation_end([0, 99, 23, 24], eos_ids=[99], pad_id=None, stop=["xy"], decode=_decode) == (2, True)
    assert generation_end([0, 1, 99], eos_ids=[99], pad_id=None, stop=["xy"], decode=_decode) == (3, True)
