"""Type-ahead read back (eemwatchd.core.ios.typeahead): one reply per command, split at the prompt that precedes
the next command's echo. The texts are IOS's answers as the lab router and the transcripts show them (prompt,
then the echo of the line IOS took from its input, field notes sec. 6), with CR removed as scrapli does."""

from __future__ import annotations

import re

import pytest

from eemwatchd.core.ios.typeahead import Reply, ends_with_prompt, hostname_of, split_replies

QUESTION = re.compile(r"Are you sure you want to do this\? \[yes/no\]:\s*$", re.M)

SETUP = ("terminal length 0", "terminal width 512")
SHOWS = ("show clock", "show running-config | include hostname")


@pytest.mark.parametrize(
    ("text", "commands", "complete", "replies"),
    [
        pytest.param("terminal length 0\nR1#terminal width 512\nR1#", SETUP, True,
                     [Reply("terminal length 0", "", "R1#"), Reply("terminal width 512", "", "R1#")],
                     id="two-silent-commands"),
        pytest.param("terminal length 0\nR1#terminal width 512\n", SETUP, False,
                     [Reply("terminal length 0", "", "R1#")], id="last-prompt-not-yet"),
        pytest.param("terminal length 0\nR1#", SETUP, False, [], id="next-echo-not-yet"),
        pytest.param("show clock\n*23:49:35.123 UTC Tue Dec 1 2026\nR1#show running-config | include hostname\n"
                     "hostname R1\nR1#", SHOWS, True,
                     [Reply("show clock", "*23:49:35.123 UTC Tue Dec 1 2026", "R1#"),
                      Reply("show running-config | include hostname", "hostname R1", "R1#")], id="outputs"),
        # a line that looks like a prompt inside the output is not a boundary (no echo follows it)
        pytest.param("show clock\nR1#\nbanner text\nR1#show running-config | include hostname\nhostname R1\nR1#",
                     SHOWS, True,
                     [Reply("show clock", "R1#\nbanner text", "R1#"),
                      Reply("show running-config | include hostname", "hostname R1", "R1#")],
                     id="prompt-like-line-in-output"),
        pytest.param("\nterminal length 0\nR1#terminal width 512\nR1#", SETUP, True,
                     [Reply("terminal length 0", "", "R1#"), Reply("terminal width 512", "", "R1#")],
                     id="blank-line-before-the-first-echo"),
        pytest.param("configure terminal\nEnter configuration commands, one per line.  End with CNTL/Z.\n"
                     "R1(config)#crypto pki trustpoint T1\nR1(ca-trustpoint)#enrollment terminal\nR1(ca-trustpoint)#",
                     ("configure terminal", "crypto pki trustpoint T1", "enrollment terminal"), True,
                     [Reply("configure terminal", "Enter configuration commands, one per line.  End with CNTL/Z.",
                            "R1(config)#"),
                      Reply("crypto pki trustpoint T1", "", "R1(ca-trustpoint)#"),
                      Reply("enrollment terminal", "", "R1(ca-trustpoint)#")], id="config-modes"),
        # AAA refused `configure terminal`: the line typed after it ran in exec mode and was invalid
        pytest.param("configure terminal\nCommand authorization failed.\n\nR1#crypto pki trustpoint T1\n"
                     "          ^\n% Invalid input detected at '^' marker.\n\nR1#",
                     ("configure terminal", "crypto pki trustpoint T1"), True,
                     [Reply("configure terminal", "Command authorization failed.", "R1#"),
                      Reply("crypto pki trustpoint T1", "          ^\n% Invalid input detected at '^' marker.", "R1#")],
                     id="refused-configure-terminal"),
    ],
)
def test_split_replies(text: str, commands: tuple[str, ...], complete: bool, replies: list[Reply]) -> None:
    read = split_replies(text, commands, hostname="R1")
    assert read.complete is complete
    assert list(read.replies) == replies
    assert not read.asked


def test_a_question_ends_the_last_reply() -> None:
    text = ("configure terminal\nEnter configuration commands, one per line.  End with CNTL/Z.\n"
            "R1(config)#no crypto pki trustpoint T1\n% Removing an enrolled trustpoint will destroy all certificates\n"
            " received from the related Certificate Authority.\n\nAre you sure you want to do this? [yes/no]: ")
    read = split_replies(text, ("configure terminal", "no crypto pki trustpoint T1"), hostname="R1", question=QUESTION)
    assert read.complete
    assert read.asked
    assert read.replies[0].mode == "config"
    assert read.replies[1].mode == "question"
    assert "Are you sure" in read.replies[1].output
    # the same text before the question arrived: not complete, and the config prompt at the end of the first
    # reply (a moment before the next echo comes) is not taken for the end
    assert not split_replies(text[:text.index("no crypto")], ("configure terminal", "no crypto pki trustpoint T1"),
                             hostname="R1", question=QUESTION).complete


def test_another_hostnames_prompt_is_no_boundary() -> None:
    text = "show clock\nR2#show running-config | include hostname\nhostname R1\nR1#"
    assert not split_replies(text, SHOWS, hostname="R1").complete
    assert split_replies(text, SHOWS).complete  # with any hostname


def test_a_missing_echo_is_reported() -> None:
    read = split_replies("show version\nR1#", ("show clock",), hostname="R1")
    assert not read.complete
    assert read.echo_missing == "show clock"


@pytest.mark.parametrize(("prompt", "hostname"), [("R1#", "R1"), ("R1(config)#", "R1"), ("lab-rtr-01>", "lab-rtr-01"),
                                                  ("r.1(ca-trustpoint)#", "r.1")])
def test_hostname_of(prompt: str, hostname: str) -> None:
    assert hostname_of(prompt) == hostname


def test_ends_with_prompt_looks_at_the_tail_only() -> None:
    assert ends_with_prompt("x" * 10_000 + "\nR1#", "R1")
    assert ends_with_prompt("R1(config)# ", "R1")
    assert not ends_with_prompt("R1#show clock\n", "R1")
    assert not ends_with_prompt("\nR2#", "R1")
