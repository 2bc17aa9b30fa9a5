"""WeChat's string(N) is UTF-8 bytes of basic-plane characters: fitting and checking text."""

from __future__ import annotations

import pytest

from wechatpay.errors import FieldError
from wechatpay.fields import check_utf8, fit_utf8, utf8_len


def test_utf8_len_counts_bytes_not_characters() -> None:
    assert (utf8_len("abc"), utf8_len("课"), utf8_len("课" * 48), utf8_len("\U0001F4DA")) == (3, 3, 144, 4)


def test_fit_cuts_on_a_character_boundary() -> None:
    fitted = fit_utf8("课" * 60, 127)

    assert fitted == "课" * 42 and utf8_len(fitted) == 126


def test_fit_keeps_text_that_fits_unchanged() -> None:
    assert fit_utf8("C++ Primer 第5版", 127) == "C++ Primer 第5版"


def test_fit_drops_characters_outside_the_basic_plane() -> None:
    assert fit_utf8("学Rust\U0001F980入门\U0001F4DA", 127) == "学Rust入门"


def test_fit_drops_lone_surrogates_that_cannot_be_encoded() -> None:
    assert fit_utf8("a\ud800b", 10) == "ab"


def test_fit_uses_the_last_byte_when_a_one_byte_character_fits() -> None:
    assert fit_utf8("课" * 42 + "ab", 127) == "课" * 42 + "a"


def test_check_returns_text_that_fits() -> None:
    assert check_utf8("reason", "退" * 26 + "ab", 80) == "退" * 26 + "ab"


def test_check_refuses_too_many_bytes_with_the_numbers() -> None:
    with pytest.raises(FieldError) as info:
        check_utf8("reason", "退" * 27, 80)

    assert (info.value.field, info.value.problem, info.value.limit, info.value.length) == ("reason", "too_long", 80, 81)
    assert "81 UTF-8 bytes" in str(info.value)


def test_check_refuses_an_emoji_naming_it() -> None:
    with pytest.raises(FieldError) as info:
        check_utf8("reason", "不要了\U0001F622", 80)

    assert info.value.problem == "unsupported_character" and "U+1F622" in str(info.value)
