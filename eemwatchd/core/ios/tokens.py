"""IOS CLI tokens: is a name safe to put into one IOS command line as a single word?"""

from __future__ import annotations

import string

# Length limits. Where a public Cisco source states one, it is cited; otherwise the limit is a
# conservative choice (shorter than any source we found) and says so.
# - Trustpoint names: 32. The ASA CLI reference gives `crypto ca enroll <trustpoint-name: WORD (<65 char)>`;
#   no IOS XE document states a limit. 32 is the one limit eemwatchd uses for every trustpoint name it makes
#   and leaves room for prefix + 16 hex characters of the fingerprint. Conservative.
# - EEM applet names: 64. Cisco-IOS-XE-eem.yang (YangModels/yang vendor/cisco/xe/17121) types the applet
#   name as an unbounded string; NX-OS's DME model (evms:Applet) allows 1-29. We only name applets that
#   exist on the router (and, for onboarding, the one the user chose), so a longer limit refuses nothing
#   IOS accepts; safety comes from the character rules, not from the length.
# - User names: 64. Cisco-IOS-XE-eem.yang types `event manager session cli username` as length 1..64.
TRUSTPOINT_NAME_MAX = 32
APPLET_NAME_MAX = 64
USERNAME_MAX = 64
TOKEN_MAX = 64

# Characters allowed in each kind of name besides ASCII letters and digits.
APPLET_NAME_EXTRA = "-_.:"
TRUSTPOINT_NAME_EXTRA = "-_"

_PRINTABLE = frozenset(string.ascii_letters + string.digits + string.punctuation)
_LETTERS_DIGITS = frozenset(string.ascii_letters + string.digits)
# Control characters worth naming in a message; others are shown as \xNN.
_CONTROL_NAMES = {"\t": "TAB", "\x1b": "ESC", "\x00": "NUL", "\x7f": "DEL", "\x08": "BS", "\x03": "Ctrl-C",
                  "\x1a": "Ctrl-Z"}
_SHOWN = 40


def show_value(value: str) -> str:
    """The value in double quotes with control characters escaped, cut to a readable length."""
    escaped = value.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    if len(escaped) > _SHOWN:
        escaped = escaped[:_SHOWN] + "..."
    return f'"{escaped}"'


def _describe_alphabet(what: str, extra: str | None) -> str:
    if extra is None:
        return f"{what} is one word of printable ASCII characters"
    if not extra:
        return f"{what} is one word (letters and digits)"
    return f"{what} is one word (letters, digits, {' '.join(extra)})"


def _first_problem(value: str, *, max_length: int, extra: str | None) -> str | None:
    if not value:
        return "is empty"
    for char in value:
        if char in "\r\n":
            return "contains a line break"
        if char == " " or (char.isspace() and char.isascii()):
            return "contains a space" if char == " " else f"contains a control character ({_control(char)})"
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return f"contains a control character ({_control(char)})"
        if char.isspace():
            return f"contains a space character (U+{ord(char):04X})"
        if not char.isascii():
            return f"contains a character that is not ASCII (U+{ord(char):04X})"
    for char, why in (("?", "IOS answers '?' with help instead of taking the command"),
                      ("|", "IOS reads '|' as an output modifier"),
                      ('"', "IOS reads a quote as the start of a quoted string"),
                      ("'", "IOS reads a quote as the start of a quoted string")):
        if char in value:
            return f"contains {char!r}: {why}"
    if value[0] in "!#":
        return f"starts with {value[0]!r}, which IOS reads as a comment"
    if len(value) > max_length:
        return f"is {len(value)} characters, more than the {max_length} IOS accepts"
    allowed = _PRINTABLE if extra is None else _LETTERS_DIGITS | set(extra)
    for char in value:
        if char not in allowed:
            return f"contains {char!r}"
    return None


def _control(char: str) -> str:
    return _CONTROL_NAMES.get(char, f"\\x{ord(char):02x}")


def check_ios_token(
    value: str, *, what: str, max_length: int = TOKEN_MAX, extra: str | None = None, show: bool = True
) -> str | None:
    """None when ``value`` is one IOS CLI token safe to put into a command line, else a one-line reason.

    One token: printable ASCII, no whitespace or control characters (a line break would start a new
    command), no ``?`` (IOS help), no quotes, no ``|`` (output modifiers), no ``!``/``#`` at the start
    (comments), not empty, at most ``max_length`` characters. ``extra`` narrows the alphabet to letters,
    digits and these characters (None: any printable ASCII left after the rules above). ``what`` names the
    kind of value ("an EEM applet name"); ``show=False`` keeps the value out of the reason (secrets).
    """
    problem = _first_problem(value, max_length=max_length, extra=extra)
    if problem is None:
        return None
    head = f"{show_value(value)} {problem}" if show else problem
    return f"{head}; {_describe_alphabet(what, extra)}"


def check_applet_name(value: str) -> str | None:
    return check_ios_token(value, what="an EEM applet name", max_length=APPLET_NAME_MAX, extra=APPLET_NAME_EXTRA)


def check_trustpoint_name(value: str) -> str | None:
    return check_ios_token(
        value, what="a trustpoint name", max_length=TRUSTPOINT_NAME_MAX, extra=TRUSTPOINT_NAME_EXTRA
    )


def check_username(value: str) -> str | None:
    return check_ios_token(value, what="a user name", max_length=USERNAME_MAX)
