"""Chinese numerals as read aloud in news speech: 35 -> 三十五, 2008 -> 两千零八."""

from __future__ import annotations

DIGITS = "零一二三四五六七八九"
_UNITS = ((1000, "千"), (100, "百"), (10, "十"))


def _below_10000(value: int, leading: bool) -> str:
    text = ""
    pending_zero = False
    for unit_value, unit in _UNITS:
        digit, value = divmod(value, unit_value)
        if digit == 0:
            pending_zero = bool(text)
            continue

        if pending_zero:
            text += DIGITS[0]
            pending_zero = False
        if unit == "十" and digit == 1 and leading and not text:
            # Spoken as 十五, not 一十五, when the tens lead the number.
            text += unit
        elif digit == 2 and unit in ("千", "百") and not text:
            text += "两" + unit
        else:
            text += DIGITS[digit] + unit

    if value:
        if pending_zero:
            text += DIGITS[0]
        text += DIGITS[value]
    return text


def chinese_numeral(value: int) -> str:
    """Spell a cardinal 0 <= value < 10**8 in Chinese characters, e.g. 20500 -> 两万零五百."""
    if not 0 <= value < 10**8:
        raise ValueError(f"Chinese numeral out of range: {value}; expected 0 <= value < 100000000.")
    if value == 0:
        return DIGITS[0]

    high, low = divmod(value, 10000)
    if high == 0:
        return _below_10000(low, leading=True)

    high_text = "两" if high == 2 else _below_10000(high, leading=True)
    text = high_text + "万"
    if low:
        if low < 1000:
            text += DIGITS[0]
        text += _below_10000(low, leading=False)
    return text
