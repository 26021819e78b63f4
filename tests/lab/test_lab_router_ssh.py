"""The lab router over real SSH, driven by clients that are not our adapter (raw asyncssh, netmiko).

Dialogues are compared with the real transcripts copied verbatim into tests/transcripts/.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import asyncssh
import pytest

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import render_certificate_block
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, Faults, Fleet, LabDevice, User
from eemwatchd_lab.router.clock import ticking_clock
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.clock import PINNED
from tests.support.lab_router import APPLET, PASSWORD, SMTP_PASSWORD, router_spec_for
from tests.support.ssh import RawClient, lines_of, login
from tests.support.transcripts import transcript_lines


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    """R1 with a privilege-1 user and an enable secret besides the admin."""
    return router_spec_for(tmp_path, users=(User("admin", PASSWORD), User("oper", "oper-pw", privilege=1)),
                           enable_secret="en-secret")


@pytest.fixture
def mail_server_user() -> str:
    """The lab SMTP server's account holds an @: what IOS's first-@ split of `_email_server` cannot log in as."""
    return "user@lab.example"


# --- session: prompts, echo, abbreviations, paging ------------------------------------------------------


async def test_echo_after_prompt_and_abbreviations(router: LabDevice) -> None:
    c = await login(router)
    assert await c.cmd("term len 0") == "term len 0\r\nR1#"
    out = await c.cmd("sh clock")
    assert re.fullmatch(r"sh clock\r\n\*23:49:\d\d\.\d{3} UTC Tue Dec 1 2026\r\nR1#", out)
    assert await c.cmd("conf t") == (
        "conf t\r\nEnter configuration commands, one per line.  End with CNTL/Z.\r\nR1(config)#"
    )
    assert await c.cmd("end") == "end\r\nR1#"
    await c.close()


async def test_invalid_input_caret_sits_under_the_bad_word(router: LabDevice) -> None:
    c = await login(router)
    out = await c.cmd("show crypto pki bogus")
    assert out == (
        "show crypto pki bogus\r\n"
        + " " * len("R1#show crypto pki ") + "^\r\n"
        + "% Invalid input detected at '^' marker.\r\n\r\nR1#"
    )
    assert await c.cmd("show") == "show\r\n% Incomplete command.\r\n\r\nR1#"
    await c.close()


async def test_type_ahead_with_mixed_line_endings_is_echoed_after_each_prompt(router: LabDevice) -> None:
    c = await login(router)
    c.send("term len 0\r\nterm width 512\rsh clock\n")
    out = await c.read_until(r"UTC.*\r\nR1#")
    assert out.startswith("term len 0\r\nR1#term width 512\r\nR1#sh clock\r\n*")
    # a CR LF split across writes is one line end, not an empty command
    c.send("term len 0\r")
    assert await c.read_until("R1#") == "term len 0\r\nR1#"
    c.send("\nsh clock\n")
    assert (await c.read_until(r"UTC.*\r\nR1#")).startswith("sh clock\r\n*")
    await c.close()


async def test_paging_with_more(router: LabDevice) -> None:
    c = await login(router)
    await c.cmd("terminal length 10")
    c.send("show version\n")
    first = await c.read_until(" --More-- ")
    assert len(lines_of(first)) == 11  # echo line + 9 output lines + the --More-- line
    c.send(" ")
    second = await c.read_until(" --More-- ")
    assert "\b" in second
    c.send("q")
    await c.read_until("R1#")
    await c.close()


async def test_user_exec_enable_and_secret(router: LabDevice) -> None:
    c = await RawClient.open(router, username="oper", password="oper-pw")
    assert await c.read_until("R1>") == "\r\nR1>"
    out = await c.cmd("show running-config")
    assert "% Invalid input detected at '^' marker." in out
    c.send("enable\n")
    assert await c.read_until("Password: ") == "enable\r\nPassword: "
    c.send("wrong\n")
    assert await c.read_until("Password: ") == "\r\nPassword: "
    c.send("en-secret\n")
    assert await c.read_until("R1#") == "\r\nR1#"
    assert "wrong" not in c.buffer
    await c.close()


async def test_public_key_login_and_persistent_host_key(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = key.export_public_key().decode().strip()
    spec = DeviceSpec("k1", tmp_path / "k1", hostname="R1", users=(User("robot", public_keys=(public,)),),
                      clock=ticking_clock(PINNED))
    async with Fleet([spec]) as fleet:
        router = fleet["k1"]
        known = tmp_path / "known_hosts"
        known.write_text(router.known_hosts_line() + "\n")
        conn = await asyncssh.connect("127.0.0.1", router.port, username="robot", client_keys=[key],
                                      known_hosts=str(known))
        proc = await conn.create_process(encoding="utf-8")
        client = RawClient(conn, proc)
        assert await client.read_until("R1#") == "\r\nR1#"
        await client.close()
        first_line = router.known_hosts_line()
        await router.restart()
        assert router.known_hosts_line() == first_line  # same port, same key after a reload
        await router.change_host_key()
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await asyncssh.connect("127.0.0.1", router.port, username="robot", client_keys=[key],
                                   known_hosts=str(known))


# --- PKI dialogues against the transcripts ----------------------------------------------------------------


def _qytang_pem_and_expected() -> tuple[list[str], list[str]]:
    lines = transcript_lines("crypto_pki_authenticate_terminal_paste__gh_qytang_c8kv.txt")
    begin = lines.index("-----BEGIN CERTIFICATE-----")
    end = lines.index("-----END CERTIFICATE-----")
    return lines[begin : end + 1], lines


async def _configure_tp(c: RawClient, name: str, *extra: str) -> None:
    await c.cmd("conf t")
    await c.cmd(f"crypto pki trustpoint {name}")
    for line in ("enrollment terminal", "revocation-check none", "chain-validation stop", *extra):
        out = await c.cmd(line)
        assert out == f"{line}\r\nR1(ca-trustpoint)#"
    await c.cmd("exit")


async def test_authenticate_paste_dialogue_is_the_c8kv_transcript(router: LabDevice) -> None:
    pem, expected = _qytang_pem_and_expected()
    c = await login(router)
    await c.cmd("conf t")
    assert await c.cmd("hostname CSR3", prompt=r"CSR3\(config\)#") == "hostname CSR3\r\nCSR3(config)#"
    await c.cmd("crypto pki trustpoint DTLS", prompt=r"CSR3\(ca-trustpoint\)#")
    await c.cmd("enrollment terminal", prompt=r"CSR3\(ca-trustpoint\)#")
    await c.cmd("exit", prompt=r"CSR3\(config\)#")
    c.send("crypto pki authenticate DTLS\n" + "\n".join(pem) + "\n\n")
    out = await c.read_until(re.escape("[yes/no]: "))
    c.send("yes\n")
    out += await c.read_until(r"CSR3\(config\)#")
    got = lines_of("CSR3(config)#" + out)
    # transcript: command, blank, banner, blank, PEM echo, blank (the terminating line), attributes,
    # blank, question + answer, accepted, imported, blank; then our prompt.
    assert got[:-1] == expected[: len(got) - 1]
    assert got[-1] == "CSR3(config)#"
    assert expected[len(got) - 1 :] == [""]  # the transcript ends with the blank line before the prompt
    await c.close()


async def test_running_config_shows_hex_and_sla_block_like_csr1000v(router: LabDevice) -> None:
    pki = GmailShapedPki.create(now=PINNED)
    c = await login(router)
    await c.cmd("terminal length 0")
    await _configure_tp(c, "CA-OLD")
    c.send("crypto pki authenticate CA-OLD\n" + pki.old_root.cert.pem + "quit\n")
    await c.read_until(re.escape("[yes/no]: "))
    c.send("y\n")
    tail = await c.read_until(r"R1\(config\)#")
    assert tail == "y\r\nTrustpoint CA certificate accepted.\r\n% Certificate successfully imported\r\n\r\nR1(config)#"
    await c.cmd("end")
    out = lines_of(await c.cmd("show running-config | section crypto pki certificate chain"))
    block = render_certificate_block(pki.old_root.cert)
    i = out.index("crypto pki certificate chain CA-OLD")
    assert out[i + 1 : i + 1 + len(block)] == block
    assert block[-1] == "  \tquit" and block[1].endswith(" ") and len(block[1]) == 2 + 8 * 9
    # SLA-TrustPoint exactly as the CSR1000V 17.3 capture (same real certificate, same bytes)
    real = transcript_lines("show_running-config_crypto_pki_section__gh_ansible_facts_csr1000v_17_3.txt")
    start = real.index("crypto pki certificate chain SLA-TrustPoint")
    stop = real.index("  \tquit", start)
    j = out.index("crypto pki certificate chain SLA-TrustPoint")
    assert out[j : j + stop - start + 1] == real[start : stop + 1]
    real_tp = real[real.index("crypto pki trustpoint SLA-TrustPoint") :][:3]
    tp_out = lines_of(await c.cmd("show running-config | section trustpoint SLA"))
    assert tp_out[1:4] == real_tp
    inc = lines_of(await c.cmd("sh run | include ^crypto pki trustpoint"))
    assert inc[1:-1] == ["crypto pki trustpoint SLA-TrustPoint", "crypto pki trustpoint CA-OLD"]
    beg = lines_of(await c.cmd("sh run | begin ^event|^end"))
    assert beg[1:-1] == ["end"]
    await c.close()


async def test_authenticate_refusals_and_errors(router: LabDevice) -> None:
    pki = GmailShapedPki.create(now=PINNED)
    c = await login(router)
    await _configure_tp(c, "T1")
    out = await c.cmd("crypto pki authenticate NOPE")
    assert out == "crypto pki authenticate NOPE\r\n% Certificate Authority (trustpoint) NOPE is unknown\r\nR1(config)#"
    c.send("crypto pki authenticate T1\nnot base64 at all!\n\n")
    out = await c.read_until(r"R1\(config\)#")
    assert "% Error in saving certificate: status = FAIL" in out
    # base64 body without BEGIN/END lines is accepted; `no` refuses
    body = pki.intermediate.cert.pem.splitlines()[1:-1]
    c.send("crypto pki authenticate T1\n" + "\n".join(body) + "\nquit\n")
    await c.read_until(re.escape("[yes/no]: "))
    c.send("no\n")
    assert "Trustpoint CA certificate accepted." not in await c.read_until(r"R1\(config\)#")
    c.send("crypto pki authenticate T1\n" + "\n".join(body) + "\n\n")
    await c.read_until(re.escape("[yes/no]: "))
    c.send("yes\n")
    assert "% Certificate successfully imported" in await c.read_until(r"R1\(config\)#")
    out = await c.cmd("crypto pki authenticate T1")
    assert out == (
        "crypto pki authenticate T1\r\n% Please delete your existing CA certificate first.\r\n"
        "% You must use 'no crypto pki trustpoint <trustpoint-name>' to delete the CA certificate\r\n"
        "R1(config)#"
    )
    await c.close()


async def test_configured_fingerprint_skips_the_question(router: LabDevice) -> None:
    pki = GmailShapedPki.create(now=PINNED)
    c = await login(router)
    await _configure_tp(c, "FP", f"fingerprint {pki.old_root.cert.sha1_hex}")
    c.send("crypto pki authenticate FP\n" + pki.old_root.cert.pem + "\n")
    out = await c.read_until(r"R1\(config\)#")
    assert "[yes/no]" not in out
    assert out.endswith("Trustpoint CA certificate accepted.\r\n% Certificate successfully imported\r\n\r\nR1(config)#")
    assert router.state.trustpoints["FP"].ca_cert == pki.old_root.cert
    await c.close()


async def test_no_trustpoint_dialogue_is_the_c9800_transcript(router: LabDevice) -> None:
    pki = GmailShapedPki.create(now=PINNED)
    c = await login(router)
    await _configure_tp(c, "manual_certs")
    c.send("crypto pki authenticate manual_certs\n" + pki.old_root.cert.pem + "\n")
    await c.read_until(re.escape("[yes/no]: "))
    c.send("yes\n")
    await c.read_until(r"R1\(config\)#")
    c.send("no crypto pki trustpoint manual_certs\n")
    out = await c.read_until(re.escape("[yes/no]: "))
    c.send("y\n")
    out += await c.read_until(r"R1\(config\)#")
    real = transcript_lines("no_crypto_pki_trustpoint__genielibs_wsim_c9800.txt")
    start = real.index("ewlc_2(config)#no crypto pki trustpoint manual_certs")
    stop = real.index("ewlc_2(config)#crypto key zeroize rsa manual_certs")
    expected = [ln.replace("ewlc_2", "R1") for ln in real[start : stop + 1]]
    # The WSIM tool's log repeats the typed answer on its own line ("y"): that line is the tool's.
    dup = expected.index("y")
    del expected[dup]
    got = lines_of("R1(config)#" + out)
    assert got == [*expected[:-1], "R1(config)#"]
    assert "manual_certs" not in router.state.trustpoints
    await c.close()


async def test_show_crypto_pki_renderers_match_genie_layout(router: LabDevice) -> None:
    c = await login(router)
    await c.cmd("terminal length 0")
    status = lines_of(await c.cmd("show crypto pki trustpoints SLA-TrustPoint status"))
    real = transcript_lines("show_crypto_pki_trustpoints_status__genie_isr4451.txt")
    assert status[1:-1] == real[:10]  # the SLA-TrustPoint block, byte for byte
    tps = lines_of(await c.cmd("show crypto pki trustpoints"))
    assert tps[1:7] == transcript_lines("show_crypto_pki_trustpoints__genie_1.txt")[:6]
    certs = lines_of(await c.cmd("show crypto pki certificates"))[1:-1]
    assert certs == [
        "CA Certificate",
        "  Status: Available",
        "  Certificate Serial Number (hex): 01",
        "  Certificate Usage: Signature",
        "  Issuer: ",
        "    cn=Cisco Licensing Root CA",
        "    o=Cisco",
        "  Subject: ",
        "    cn=Cisco Licensing Root CA",
        "    o=Cisco",
        "  Validity Date: ",
        "    start date: 19:48:47 UTC May 30 2013",
        "    end   date: 19:48:47 UTC May 30 2038",
        "  Associated Trustpoints: SLA-TrustPoint ",
        # the file name the IE switch 17.3 shows in its startup-config for this certificate; CA blocks of
        # certificates kept in nvram end with it (show_crypto_pki_certificates__ntc_1.txt)
        "  Storage: nvram:CiscoLicensi#1CA.cer",
    ]
    ntc = transcript_lines("show_crypto_pki_certificates__ntc_1.txt")
    ntc_ca = ntc[ntc.index("CA Certificate") :]
    assert ntc_ca[ntc_ca.index("  Storage: nvram:certfile.cer") - 1].startswith("  Associated Trustpoints:")
    # same field prefixes, in the same order, as the genie C3850 CA block (a SUDI CA: no nvram storage)
    genie = transcript_lines("show_crypto_pki_certificates_CISCO_IDEVID_SUDI__genie_c3850.txt")
    ca = genie[genie.index("CA Certificate") :]
    fields = [ln.split(":")[0] for ln in ca if ln.startswith("  ") and not ln.startswith("    ")]
    ours = [ln.split(":")[0] for ln in certs[:-1] if ln.startswith("  ") and not ln.startswith("    ")]
    assert [f for f in fields if "CRL" not in f] == ours
    verbose = lines_of(await c.cmd("show crypto pki certificates verbose SLA-TrustPoint"))
    assert "  Fingerprint SHA1: 5CA95FB6 E2980EC1 5AFB681B BB7E62B5 AD3FA8B8 " in verbose
    assert "    X509v3 Key Usage: 06000000" in verbose
    await c.close()


async def test_write_memory_survives_a_reload_and_unsaved_changes_do_not(router: LabDevice) -> None:
    pki = GmailShapedPki.create(now=PINNED)
    c = await login(router)
    await _configure_tp(c, "SAVED")
    c.send("crypto pki authenticate SAVED\n" + pki.old_root.cert.pem + "\n")
    await c.read_until(re.escape("[yes/no]: "))
    c.send("yes\n")
    await c.read_until(r"R1\(config\)#")
    await c.cmd('event manager environment _email_to "ops@lab.example"')
    await c.cmd("end")
    c.send("copy running-config startup-config\n")
    out = await c.read_until(re.escape("? "))
    c.send("\n")
    out += await c.read_until("R1#")
    real = transcript_lines("copy_running-config_startup-config__gh_cm-s6-h001.txt")
    assert lines_of("R1#" + out) == [ln.replace("CM-S6-H001", "R1") for ln in real[:5]]
    await c.cmd("conf t")
    await c.cmd("crypto pki trustpoint UNSAVED")
    await c.cmd("end")
    assert await c.cmd("wr") == "wr\r\nBuilding configuration...\r\n[OK]\r\nR1#"
    await c.cmd("conf t")
    await c.cmd("no crypto pki trustpoint UNSAVED")
    await c.cmd("end")
    await c.close()
    await router.restart()
    assert set(router.state.trustpoints) == {"SLA-TrustPoint", "SAVED", "UNSAVED"}
    assert router.state.trustpoints["SAVED"].ca_cert == pki.old_root.cert
    assert router.state.env == {"_email_to": '"ops@lab.example"'}


# --- EEM mail: the done-when ------------------------------------------------------------------------------


async def _install(c: RawClient, name: str, cert: Certificate) -> None:
    await _configure_tp(c, name)
    c.send(f"crypto pki authenticate {name}\n" + cert.pem + "quit\n")
    await c.read_until(re.escape("[yes/no]: "))
    c.send("yes\n")
    assert "successfully imported" in await c.read_until(r"R1\(config\)#")


async def _setup_applet(c: RawClient, port: int, server: str) -> None:
    for line in APPLET:
        out = await c.cmd(line.format(server=server, port=port))
        assert "%" not in out, out


async def _run_and_wait(c: RawClient, router: LabDevice) -> list[str]:
    before = len(router.state.log_lines)
    assert await c.cmd("event manager run CERTCHECK") == "event manager run CERTCHECK\r\nR1#"
    await asyncio.wait_for(router.state.wait_for_jobs(), 10)
    return router.state.log_lines[before:]


async def test_mail_is_delivered_when_the_cross_signing_root_is_installed(
    router: LabDevice, mail_server: tuple[LabSmtpServer, GmailShapedPki]
) -> None:
    server, pki = mail_server
    c = await login(router)
    await _install(c, "CA-GLOBALSIGN", pki.old_root.cert)
    # the username contains no @; the password does - IOS splits at the FIRST @ only
    await _setup_applet(c, server.port, f"user@lab.example:{SMTP_PASSWORD}@127.0.0.1")
    await c.cmd("end")
    log = await _run_and_wait(c, router)
    # With the first-@ split the user is "user" and the "host" is "lab.example:<password>@127.0.0.1":
    # it cannot work (CSCwe75439), and the lab never writes that password into the log.
    assert [ln.split(": ", 1)[1] for ln in log] == [
        "%HA_EM-3-FMPD_SMTP: Error occurred when sending mail to SMTP server: ***@127.0.0.1 : "
        "error in connecting to SMTP server",
        "%HA_EM-3-FMPD_ERROR: Error executing applet CERTCHECK statement 0010",
    ]
    assert server.messages == []
    server_user = LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key,
                                username="user", password=SMTP_PASSWORD)
    async with server_user:
        await c.cmd("conf t")
        await _setup_applet(c, server_user.port, f"user:{SMTP_PASSWORD}@127.0.0.1")
        await c.cmd("end")
        log = await _run_and_wait(c, router)
        assert [ln for ln in log if "FMPD" in ln] == []
        messages = await server_user.wait_for_messages(1, timeout=5)
    assert messages[0].tls and messages[0].login == "user"
    assert messages[0].mail_from == "router@lab.example"
    assert b"hello from router@lab.example" in messages[0].data
    outcome = router.state.mail_outcomes[-1][1]
    assert outcome.ok and outcome.validation is not None
    assert outcome.validation.anchor_trustpoint == "CA-GLOBALSIGN"
    await c.close()


async def test_self_signed_twin_alone_fails_with_the_real_fmpd_lines(
    router: LabDevice, mail_server: tuple[LabSmtpServer, GmailShapedPki]
) -> None:
    server, pki = mail_server
    c = await login(router)
    await _install(c, "CA-GTS-R1", pki.new_root.cert)
    await _setup_applet(c, server.port, f"user:{SMTP_PASSWORD}@127.0.0.1")
    await c.cmd("end")
    await c.cmd("send log 6 MARKER-1")
    log = await _run_and_wait(c, router)
    assert server.messages == []
    assert [ln.split(": ", 1)[1] for ln in log] == [
        "%HA_EM-3-FMPD_SMTP: Error occurred when sending mail to SMTP server: 127.0.0.1 : "
        "error in connecting to SMTP server",
        "%HA_EM-3-FMPD_ERROR: Error executing applet CERTCHECK statement 0010",
    ]
    assert "No trust point for cert issuer" in router.state.mail_outcomes[-1][1].detail
    # the same two lines as the IOSv capture, host and statement aside
    real = transcript_lines("eem_applet_mail_fmpd_smtp_error__gh_iosv.txt")
    real_smtp = next(ln for ln in real if "FMPD_SMTP" in ln).split(": ", 1)[1]
    assert real_smtp.replace("10.3.3.3", "127.0.0.1") == log[0].split(": ", 1)[1]
    shown = await c.cmd("show logging | include MARKER-1|FMPD")
    assert re.search(
        r"\*Dec  1 23:49:\d\d\.\d{3}: %SYS-6-USERLOG_INFO: Message from tty2\(user id: admin\): MARKER-1",
        shown,
    )
    full = await c.cmd("terminal length 0") + await c.cmd("show logging")
    assert SMTP_PASSWORD not in full
    history = lines_of(await c.cmd("show event manager history events"))
    assert history[1] == "No.  Job Id Proc Status   Time of Event            Event Type        Name"
    assert re.fullmatch(r"1    1      Actv abort    Tue Dec 1 23:49:\d\d 2026  none              "
                        r"applet: CERTCHECK", history[2])
    await c.close()


async def test_unreachable_server_and_maxrun(router: LabDevice) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    c = await login(router)
    await c.cmd("conf t")
    await _setup_applet(c, closed_port, "127.0.0.1")
    await c.cmd("end")
    log = await _run_and_wait(c, router)
    assert log[0].endswith(": 127.0.0.1 : error in connecting to SMTP server")

    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # accepts the connection, never greets
        writer.close()

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        await c.cmd("conf t")
        await _setup_applet(c, mute.sockets[0].getsockname()[1], "127.0.0.1")
        await c.cmd("event manager applet CERTCHECK")
        await c.cmd("event none maxrun 1")
        await c.cmd("end")
        started = asyncio.get_running_loop().time()
        log = await _run_and_wait(c, router)
        assert asyncio.get_running_loop().time() - started < 3
        assert log[0].endswith(": 127.0.0.1 : timeout error")
        assert log[1].endswith("%HA_EM-3-FMPD_ERROR: Error executing applet CERTCHECK statement 0010")
    finally:
        release.set()
        mute.close()
        await mute.wait_closed()
    policy = lines_of(await c.cmd("show event manager policy registered"))
    assert policy[1] == transcript_lines("show_event_manager_policy_registered_applets_cron__gh_switch.txt")[1]
    assert re.fullmatch(
        r"1    applet    user    none                Off   Tue Dec 1 23:49:\d\d 2026   CERTCHECK", policy[2]
    )
    assert policy[3] == " maxrun 1.000"
    env = lines_of(await c.cmd("show event manager environment all"))
    assert env[1] == transcript_lines("show_event_manager_environment_all_and_policy_registered__gh_r1.txt")[1]
    assert env[2] == "1    _email_server                 127.0.0.1"
    assert await c.cmd("event manager run NOPE") == (
        "event manager run NOPE\r\nEEM policy NOPE not registered with event none Event Detector\r\n\r\nR1#"
    )
    await c.close()


# --- faults -----------------------------------------------------------------------------------------------


async def test_faults(tmp_path: Path) -> None:
    faults = Faults(drop_at_command="show version", command_errors={"show clock": "% Clock is broken"},
                    output_delay=0.05)
    spec = DeviceSpec("f1", tmp_path / "f1", hostname="R1", users=(User("admin", PASSWORD),), faults=faults,
                      clock=ticking_clock(PINNED))
    async with Fleet([spec]) as fleet:
        router = fleet["f1"]
        c = await login(router)
        started = asyncio.get_running_loop().time()
        assert await c.cmd("show clock") == "show clock\r\n% Clock is broken\r\n\r\nR1#"
        assert asyncio.get_running_loop().time() - started >= 0.05
        c.send("show version\n")
        with pytest.raises(EOFError):
            await c.read_until("R1#")
        faults.drop_at_command = None
        faults.drop_after_commands = 1
        c = await login(router)
        await c.cmd("terminal length 0")
        c.send("show clock\n")
        with pytest.raises(EOFError):
            await c.read_until("UTC")
        faults.refuse_login = True
        with pytest.raises(asyncssh.PermissionDenied):
            await RawClient.open(router)


# --- netmiko: a second, independent client -----------------------------------------------------------------


async def test_netmiko_full_flow(router: LabDevice, mail_server: tuple[LabSmtpServer, GmailShapedPki]) -> None:
    _, pki = mail_server
    router.spec.users = (*router.spec.users, User("user", PASSWORD))
    smtp_user = LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key, username="user",
                              password=SMTP_PASSWORD)
    netmiko = pytest.importorskip("netmiko")

    def flow() -> tuple[str, str]:
        conn = netmiko.ConnectHandler(
            device_type="cisco_ios", host="127.0.0.1", port=router.port, username="admin", password=PASSWORD,
            fast_cli=False, conn_timeout=5,
        )
        try:
            conn.send_config_set(["crypto pki trustpoint CA-OLD", "enrollment terminal", "revocation-check none"])
            conn.config_mode()
            out = conn.send_command("crypto pki authenticate CA-OLD", expect_string=r"by itself", cmd_verify=False)
            out += conn.send_command(pki.old_root.cert.pem + "quit", expect_string=r"\[yes/no\]: ",
                                     cmd_verify=False)
            out += conn.send_command("yes", expect_string=r"\(config\)#", cmd_verify=False)
            conn.send_config_set([
                f"event manager environment _email_server user:{SMTP_PASSWORD}@127.0.0.1",
                "event manager environment _email_to ops@lab.example",
                "event manager environment _email_from router@lab.example",
                "event manager applet CERTCHECK",
                "event none",
                'action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" '
                f'subject "netmiko" body "b" secure tls port {smtp_user.port}',
            ])
            conn.exit_config_mode()
            running = conn.send_command("show running-config")
            run = conn.send_command("event manager run CERTCHECK")
            assert run.strip() == ""
            conn.save_config()
            return out, running
        finally:
            conn.disconnect()

    async with smtp_user:
        out, running = await asyncio.wait_for(asyncio.to_thread(flow), 30)
        await smtp_user.wait_for_messages(1, timeout=8)
    assert "% Do you accept this certificate? [yes/no]:" in out
    assert "% Certificate successfully imported" in out
    assert "\n".join(render_certificate_block(pki.old_root.cert)[1:3]) in running
    assert smtp_user.messages[0].tls
    assert (router.spec.state_dir / "startup-config").exists()
